"""`dealertui worker`: a long-running worker that rides out database outages and stops
gracefully on the first signal, at once on the second."""

from __future__ import annotations

import time

import anyio

from dealertui.config import Config
from dealertui.headless.runlog import PlainLog, RunLog, summary_line, using
from dealertui.headless.signals import bare_error

DB_RETRY_PAUSE_S = (1.0, 2.0, 5.0, 10.0)
HARD_STOP_S = 5.0  # after a hard stop, how long releases may wait for a database that is down
METRICS_REFRESH_S = 5.0


async def run_worker(
    config: Config,
    *,
    max_dealers: int | None = None,
    max_jobs_per_dealer: int | None = None,
    grace_s: float = 30.0,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    create: bool = False,
) -> int:
    """`dealertui worker`: run until SIGTERM/SIGINT, riding out database outages.

    First signal: stop claiming and let running jobs finish for up to *grace_s*. A second
    signal, or the end of the grace period: cancel running jobs and release them as
    `retrying` (due at once, attempt not charged). Exit 0 either way.
    """
    import signal

    from dealertui.engine.events import EventBus
    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.engine.process import make_worker_id
    from dealertui.errors import StoreUnavailable
    from dealertui.handlers.check import check_runnable
    from dealertui.store import Intent, open_store

    worker_id = make_worker_id("worker")
    log = RunLog("worker", worker_id)
    log(using(config))
    check_runnable(config)
    bus = EventBus()
    bus.subscribe(PlainLog(log))
    server = None
    if metrics_port is not None:  # first: a port in use is refused before anything is opened
        from dealertui.engine.metrics import EngineMetrics

        metrics = EngineMetrics()
        metrics.subscribe(bus)
        server = metrics.serve(metrics_port, host=metrics_host)
        log(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
    try:
        store = await open_store(config, Intent.CREATE if create else Intent.WRITE,
                                 retry_budget_s=30.0)
    except BaseException:
        if server is not None:
            server.close()
        raise
    store.db.on_outage = log  # an outage shorter than the retry budget is logged too
    manager = MultiDealerDependencyManager(
        store, config, max_dealers, max_jobs_per_dealer, bus=bus, kind="worker",
        worker_id=worker_id,
    )
    manager.exit_code_of = lambda _stats: 0  # a worker that stops exits 0 (README)
    stopping = anyio.Event()
    aborted = anyio.Event()
    run_scope = [anyio.CancelScope()]  # the current run's (a scope is entered only once)

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stopping.is_set():
                    stopping.set()
                    log(f"{name}: no new jobs; waiting up to {grace_s:g}s for "
                         f"{manager.in_flight} running jobs (signal again to stop now)")
                    manager.stop()
                    tg.start_soon(grace_timer)
                else:
                    log(f"{name}: stopping now; releasing {manager.in_flight} running jobs")
                    hard_stop(f"worker stopped by {name}")

    def hard_stop(reason: str) -> None:
        if aborted.is_set():
            return
        aborted.set()
        manager.abort(reason)
        tg.start_soon(give_up_on_the_database)

    async def give_up_on_the_database() -> None:
        # The releases are recorded in a moment when the database answers. During an outage
        # the calls in flight would keep retrying (30 s each, then 30 s more to unregister),
        # past --grace and systemd's and Kubernetes' stop timeouts. So after HARD_STOP_S,
        # run() is cancelled and its last calls retry briefly; jobs whose release is lost
        # come back when their leases run out.
        await anyio.sleep(HARD_STOP_S)
        if not store.db.answering:
            log(f"the database does not answer; exiting without recording "
                 f"{manager.in_flight} releases (their leases bring the jobs back)")
            run_scope[0].cancel()

    async def refresh_metrics() -> None:
        while True:
            try:
                await metrics.refresh(store)
            except StoreUnavailable:
                pass  # the run loop reports the outage; gauges keep their last values
            await anyio.sleep(METRICS_REFRESH_S)

    async def grace_timer() -> None:
        await anyio.sleep(grace_s)
        if not aborted.is_set():
            log(f"grace period over; releasing {manager.in_flight} running jobs")
            hard_stop("worker stopped: grace period over")

    log(f"{manager.worker_id} started: up to {manager.max_concurrent_dealers} dealers × "
         f"{manager.max_concurrent_jobs_per_dealer} jobs")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals)
            if server is not None:
                tg.start_soon(refresh_metrics)
            failures = 0
            while True:
                started = time.monotonic()
                run_scope[0] = anyio.CancelScope()
                if aborted.is_set():
                    break
                try:
                    with run_scope[0]:
                        await manager.run(wait=True)
                    break
                except StoreUnavailable as exc:
                    if stopping.is_set():
                        break
                    if exc.lasting:  # a wrong password or privilege: reconnecting cannot help
                        raise
                    if time.monotonic() - started > 60:
                        failures = 0  # a new outage, not the same one: short pauses again
                    if store.db.answering:
                        # another call got through since this one gave up: the outage is over
                        # (a stale error logged after "answers again" would mislead on-call)
                        continue
                    pause = DB_RETRY_PAUSE_S[min(failures, len(DB_RETRY_PAUSE_S) - 1)]
                    failures += 1
                    log(f"{exc} Retrying in {pause:g}s.")
                    with anyio.move_on_after(pause):
                        await stopping.wait()
                    if stopping.is_set():
                        break
                    continue
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise bare_error(group) from None
    finally:
        if server is not None:
            server.close()
        with anyio.CancelScope(shield=True):
            await store.close()
    s = manager.get_processing_stats()
    log(f"stopped: {summary_line(s)}")
    return 0
