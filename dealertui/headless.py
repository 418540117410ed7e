"""Headless front end: human and machine output for cron, scripts and terminals (rich)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dealertui.config import Config
from dealertui.errors import StoreUnavailable, UsageError
from dealertui.model import ALL_STATES, ProcessingStats, Role, styles_by_state
from dealertui.text import plural, span


class _Out(Console):
    """stdout for people. A reader that leaves (`status | head -1`) is a BrokenPipeError,
    which the CLI answers with exit 0 as for `status --json | head`; rich exited 1 itself."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    return _Out(file=sys.stdout, highlight=False, soft_wrap=True, emoji=False)


#: a report's style per colour role (docs/design.md, "Job states")
ROLE_STYLE: dict[Role, str] = {
    Role.IDLE: "dim",
    Role.QUEUED: "cyan",
    Role.ACTIVE: "yellow",
    Role.RETRY: "magenta",
    Role.OK: "green",
    Role.BAD: "red",
    Role.HELD: "red dim",
    Role.OFF: "dim",
    Role.RELEASED: "blue",
}
_STATE_STYLE = styles_by_state(ROLE_STYLE)


def _counts_table(
    title: str, rows: dict[str, dict[str, int]], first: str, states: list[str]
) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column(first, no_wrap=True)
    for state in states:
        table.add_column(state, justify="right", style=_STATE_STYLE[state], header_style="bold")
    for name, counts in rows.items():
        table.add_row(name, *(str(counts.get(s, 0) or "·") for s in states))
    return table


def print_status(status: dict[str, Any], config: Config, *, max_dealers: int = 50) -> None:
    """`dealertui status` for people: totals, per type, per dealer (busiest first), pauses."""
    out = stdout_console()
    by_state = status["by_state"]
    out.print(
        f"[bold]{status['total']}[/] jobs: "
        + ", ".join(f"[{_STATE_STYLE[s]}]{by_state[s]} {s}[/]" for s in ALL_STATES if by_state[s])
        if status["total"]
        else "no jobs yet: enqueue a pipeline with 'dealertui enqueue --all-dealers'"
    )
    paused = status["paused"]
    if paused["global"] or paused["dealers"] or paused["types"]:
        parts = ["everything"] if paused["global"] else []
        parts += [f"dealer {d}" for d in paused["dealers"]]
        parts += [f"type {t}" for t in paused["types"]]
        out.print(f"[bold yellow]paused:[/] {', '.join(parts)}")
    if status.get("disabled_dealers"):
        out.print(f"[bold yellow]disabled[/] (kept, never claimed): "
                  f"{', '.join(status['disabled_dealers'])}")
    if status.get("dealers_not_in_config"):
        gone = status["dealers_not_in_config"]
        out.print(f"[bold yellow]not in the config[/] ({escape(str(config.source))}) but still "
                  f"in the database: {', '.join(gone)} (dealertui dealers disable|remove ID)")
    out.print()
    # Only states that occur get a column, so the tables fit an 80-column terminal.
    states = [s for s in ALL_STATES if by_state[s]] or ["waiting", "ready"]
    out.print(_counts_table("By job type", status["by_type"], "job type", states))
    dealers = status["by_dealer"]
    busiest = sorted(
        dealers.items(),
        key=lambda kv: (-(kv[1]["failed"] + kv[1]["blocked"]), -sum(kv[1].values()), kv[0]),
    )
    shown = dict(busiest[:max_dealers])
    out.print()
    title = "By dealer" + (
        f" (the {max_dealers} with most failures and jobs of {len(dealers)}; --json for all)"
        if len(dealers) > max_dealers
        else ""
    )
    out.print(_counts_table(title, shown, "dealer", states))
    if status.get("last_runs"):
        out.print()
        out.print("[bold]Last runs[/] (newest first)")
        for run in status["last_runs"]:
            st = run["stats"] or {}
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"]))
            out.print(
                f"  {when} {run['kind']:<8} {st.get('processed_jobs', 0)} processed, "
                f"{st.get('successful_jobs', 0)} ok, {st.get('failed_jobs', 0)} failed, "
                f"{st.get('retried_jobs', 0)} retrying, {st.get('blocked_jobs', 0)} blocked "
                f"in {st.get('processing_time_ms', 0) / 1000:.1f}s "
                f"({st.get('throughput_jobs_per_s', 0):g} jobs/s)"
            )
    fair = status.get("fairness") or {}
    starved = sorted(d for d, f in fair.items() if f["starved"])
    busiest = sorted(fair.items(), key=lambda kv: -kv[1]["share"])[:5]
    if any(f["outcomes"] for _, f in busiest):
        out.print()
        out.print("[bold]Fairness[/] (last 5 min): " + ", ".join(
            f"{d} {f['share']:.0%}" for d, f in busiest if f["outcomes"]
        ))
    if starved:
        out.print("[bold red]starved[/] (ready jobs waiting > 60s): " + ", ".join(
            f"{d} ({fair[d]['oldest_ready_wait_s']:.0f}s)" for d in starved
        ))
    workers = status["workers"]
    now = time.time()
    # a worker killed with -9 never unregisters: its silence says so (it looked live)
    silent_after = config.concurrency.lease_s

    def alive(w: dict[str, Any]) -> bool:
        return bool(w.get("alive", now - (w["heartbeat_at"] or 0) <= silent_after))

    def heartbeat(w: dict[str, Any]) -> str:
        age = max(now - (w["heartbeat_at"] or 0), 0)
        if not alive(w):
            return f", [bold red]silent for {span(age)}[/] (gone? its leases run out)"
        return f", heartbeat {span(age)} ago"

    live = sum(1 for w in workers if alive(w))
    out.print()
    out.print(f"workers: {live} live" + (f", {len(workers) - live} silent"
                                         if live < len(workers) else "") + "".join(
        f"\n  {escape(w['id'])} ({w['kind']}, {escape(w['host'] or '')} pid {w['pid']}): "
        f"{w['running']} running{heartbeat(w)}"
        for w in workers
    ))


# -- --run-once ---------------------------------------------------------------------------------


class _PlainLog:
    """Cron output: one line per failure or retry, then the summary (no escape codes)."""

    def __init__(self) -> None:
        # no markup or emoji: errors are handlers' own text ("[/x]" raised MarkupError, and
        # host names in worker ids turned ":x:" into an emoji)
        self.console = Console(file=sys.stderr, highlight=False, no_color=True, soft_wrap=True,
                               markup=False, emoji=False)

    def __call__(self, event: Any) -> None:
        from dealertui.engine.events import JobFailed, JobRetrying, LeasesRescued

        if isinstance(event, LeasesRescued):
            self.console.print(f"rescued  {event.count} jobs whose worker's lease expired")

        if isinstance(event, JobFailed):
            self.console.print(
                f"failed   {event.dealer_id} {event.job_type} #{event.job_id} "
                f"(attempt {event.attempt}): {event.error}"
            )
        elif isinstance(event, JobRetrying):
            self.console.print(
                f"retrying {event.dealer_id} {event.job_type} #{event.job_id} "
                f"in {event.delay_s:.0f}s (attempt {event.attempt}): {event.error}"
            )


def using(config: Config) -> str:
    """Which config file and which database (password masked) a run uses, for its first line:
    a cron job in $HOME without $DEALERTUI_CONFIG ran on defaults without a word."""
    import os

    from dealertui.store import describe_database
    from dealertui.store.engines import sqlite_path

    where = (f"config {os.path.abspath(config.source)}" if config.source is not None
             else "no config file")
    url = config.database_url
    return f"{where}, database {sqlite_path(url) or describe_database(url)}"


def _summary_line(stats: ProcessingStats) -> str:
    released = stats.released_jobs
    retrying = f"{stats.retried_jobs + released} retrying" + (
        f" ({released} handed back unfinished)" if released else "")
    return (
        f"processed {stats.processed_jobs} jobs for {stats.dealers_processed} dealers in "
        f"{stats.processing_time_ms / 1000:.2f}s: {stats.successful_jobs} succeeded, "
        f"{stats.failed_jobs} failed, {retrying}, {stats.blocked_jobs} "
        f"blocked; {stats.throughput_jobs_per_s:g} jobs/s, dependency violations "
        f"{stats.dependency_violations}"
    )


def _held_line(held: dict[str, int], shown: int = 5) -> str | None:
    """'12 jobs held: dealer d004 paused, breaker type:homenet open' (None when none is)."""
    if not held:
        return None
    why = ", ".join(list(held)[:shown]) + (f" and {len(held) - shown} more"
                                           if len(held) > shown else "")
    return f"{plural(sum(held.values()), 'job')} held: {why}"


async def run_once(
    config: Config,
    *,
    limit: int | None = None,
    max_dealers: int | None = None,
    max_jobs_per_dealer: int | None = None,
    dealers: list[str] | None = None,
    json_out: bool = False,
    metrics_textfile: str | None = None,
    create: bool = False,
) -> int:
    """`dealertui --run-once`: exit 0 when no job failed or was blocked in this run, else 1.

    With *metrics_textfile*, the run's metrics are written there in node_exporter's textfile
    format (atomically), for cron hosts without a long-running worker to scrape.

    SIGTERM (cron's timeout, systemd, `timeout`) or SIGINT: running jobs are cancelled (an
    exec handler's whole process group is killed) and released as `retrying`, due at once
    and not charged an attempt; the summary (and JSON) of what ran is printed and the exit
    code is 128 + the signal's number. Python's default for SIGTERM, dying on the spot, left
    the jobs `running` until their leases ran out and a handler's children still working."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dealertui.engine.actions import Operator
    from dealertui.engine.events import EventBus, StatsTick
    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.handlers.check import check_runnable
    from dealertui.store import Intent, open_store

    print(f"dealertui run-once: {using(config)}", file=sys.stderr, flush=True)
    check_runnable(config)
    if metrics_textfile is not None:
        _check_writable_dir(metrics_textfile, "--metrics-textfile")
    store = await open_store(config, Intent.CREATE if create else Intent.WRITE)
    interrupted: list[int] = []
    try:
        if dealers:
            await Operator(store, config).check_dealers(dealers)
        bus = EventBus()
        manager = MultiDealerDependencyManager(
            store, config, max_dealers, max_jobs_per_dealer, bus=bus, kind="run-once",
            only_dealers=dealers,
        )
        metrics = None
        if metrics_textfile is not None:
            from dealertui.engine.metrics import EngineMetrics

            metrics = EngineMetrics()
            metrics.subscribe(bus)
        if sys.stderr.isatty():
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=Console(file=sys.stderr), transient=True,
            ) as progress:
                task = progress.add_task("starting")

                def on_event(event: Any) -> None:
                    if isinstance(event, StatsTick):
                        s = event.stats
                        progress.update(task, description=(
                            f"{s.processed_jobs} processed · {s.successful_jobs} ok · "
                            f"{s.failed_jobs} failed · {s.retried_jobs} retrying · "
                            f"{event.in_flight} running"
                        ))

                bus.subscribe(on_event)
                stats = await _run_until_signalled(manager, limit, interrupted)
        else:
            bus.subscribe(_PlainLog())
            stats = await _run_until_signalled(manager, limit, interrupted)
        if metrics is not None and metrics_textfile is not None:
            metrics.observe_stats(stats, in_flight=0)
            await metrics.refresh(store)
            try:
                metrics.write_textfile(metrics_textfile)
            except OSError as exc:
                raise UsageError(
                    f"cannot write --metrics-textfile {metrics_textfile}: "
                    f"{exc.strerror or exc}."
                ) from None
        from dealertui.engine.plan import held_jobs

        try:  # what the run left behind, and why; a run that lost the database says nothing
            with store.db.short_retries(2.0):
                held = await held_jobs(store, dealers)
        except StoreUnavailable:
            held = {}
    finally:
        await store.close()
    print(_summary_line(stats), file=sys.stderr)
    if (line := _held_line(held)) is not None:
        print(line, file=sys.stderr)
    if json_out:
        print(json.dumps({**stats.summary(), "held_jobs": sum(held.values()), "held": held}),
              flush=True)
    if interrupted:
        return 128 + interrupted[0]
    return 0 if not (stats.failed_jobs or stats.blocked_jobs) else 1


async def _run_until_signalled(manager: Any, limit: int | None, interrupted: list[int]
                               ) -> ProcessingStats:
    """manager.process_multi_dealer_jobs(limit), aborted by SIGTERM or SIGINT (whose numbers
    are appended to *interrupted*)."""
    import signal

    async def watch() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not interrupted:
                    name = signal.Signals(signum).name
                    _log(f"{name}: stopping now; releasing {manager.in_flight} running jobs",
                         "run-once")
                    manager.abort(f"run-once stopped by {name}")
                interrupted.append(signum)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            stats: ProcessingStats = await manager.process_multi_dealer_jobs(limit)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _bare(group) from None
    return stats


def _bare(group: BaseExceptionGroup) -> BaseException:
    """The one error in a task group's *group*, for the CLI's one sentence (the group itself
    reached the user as a traceback); the group when it holds more."""
    errors = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    return errors[0] if len(errors) == 1 else group


def _check_writable_dir(path: str, option: str) -> None:
    """Refuse, before any work, a file path whose directory is missing or not writable."""
    import os

    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a directory, not a file.")
    if not os.path.isdir(directory):
        raise UsageError(f"{option} {path}: directory {directory} does not exist.")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{option} {path}: directory {directory} is not writable.")


# -- bench ----------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 < q < 1) of *values*, interpolated; 0.0 for none."""
    import statistics

    if len(values) < 2:
        return values[0] if values else 0.0
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[min(max(round(q * 100) - 1, 0), 98)]


async def bench(
    config: Config,
    *,
    dealers: int = 2500,
    max_dealers: int = 500,
    max_jobs_per_dealer: int = 2,
    database_url: str | None = None,
    json_out: bool = False,
) -> int:
    """Enqueue *dealers* × the job types with no-op handlers on a fresh database and run them
    with run-once semantics; print jobs/s, ready→started latency and peak RSS."""
    import dataclasses
    import resource
    import tempfile

    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.store import Intent, open_store
    from dealertui.store.scratch import scratch_database

    job_types = {
        name: dataclasses.replace(jt, handler="dealertui.handlers.demo:noop")
        for name, jt in config.job_types.items()
    }
    with tempfile.TemporaryDirectory(prefix="dealertui-bench-") as tmp:
        async with scratch_database(database_url, tmp) as url:
            cfg = dataclasses.replace(config, database_url=url, job_types=job_types)
            store = await open_store(cfg, Intent.CREATE)
            try:
                ids = [f"bench{i:05d}" for i in range(dealers)]
                await store.add_dealers([(d, None) for d in ids])
                t = time.perf_counter()
                for i in range(0, len(ids), 500):
                    await store.enqueue(ids[i : i + 500])
                enqueue_s = time.perf_counter() - t
                manager = MultiDealerDependencyManager(
                    store, cfg, max_dealers, max_jobs_per_dealer, kind="bench"
                )
                stats = await manager.process_multi_dealer_jobs()
                lat = list(manager.latencies_ms)
            finally:
                await store.close()
    seconds = stats.processing_time_ms / 1000
    result: dict[str, Any] = {
        "backend": "sqlite" if url.startswith("sqlite") else "postgresql",
        "dealers": dealers,
        "jobs": stats.processed_jobs,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(stats.processed_jobs / seconds, 1) if seconds else 0.0,
        "latency_ms": {"p50": round(_percentile(lat, 0.5), 2),
                       "p99": round(_percentile(lat, 0.99), 2)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "enqueue_seconds": round(enqueue_s, 3),
        "max_dealers": max_dealers,
        "max_jobs_per_dealer": max_jobs_per_dealer,
        "dependency_violations": stats.dependency_violations,
        "successful_jobs": stats.successful_jobs,
    }
    if json_out:
        print(json.dumps(result), flush=True)
    else:
        print(
            f"{result['backend']}: {result['jobs']} jobs ({dealers} dealers) in "
            f"{result['seconds']}s = {result['jobs_per_s']} jobs/s; ready→started p50 "
            f"{result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms; peak RSS "
            f"{result['peak_rss_mb']} MB; dependency violations "
            f"{result['dependency_violations']}"
        )
    return 0 if stats.successful_jobs == stats.total_jobs else 1


# -- worker -------------------------------------------------------------------------------------

DB_RETRY_PAUSE_S = (1.0, 2.0, 5.0, 10.0)
HARD_STOP_S = 5.0  # after a hard stop, how long releases may wait for a database that is down
METRICS_REFRESH_S = 5.0


def _log(message: str, who: str = "worker") -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} dealertui {who}: {message}", file=sys.stderr, flush=True)


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
    from dealertui.errors import StoreUnavailable
    from dealertui.handlers.check import check_runnable
    from dealertui.store import Intent, open_store

    _log(using(config))
    check_runnable(config)
    bus = EventBus()
    bus.subscribe(_PlainLog())
    server = None
    if metrics_port is not None:  # first: a port in use is refused before anything is opened
        from dealertui.engine.metrics import EngineMetrics

        metrics = EngineMetrics()
        metrics.subscribe(bus)
        server = metrics.serve(metrics_port, host=metrics_host)
        _log(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
    try:
        store = await open_store(config, Intent.CREATE if create else Intent.WRITE,
                                 retry_budget_s=30.0)
    except BaseException:
        if server is not None:
            server.close()
        raise
    store.db.on_outage = _log  # an outage shorter than the retry budget is logged too
    manager = MultiDealerDependencyManager(
        store, config, max_dealers, max_jobs_per_dealer, bus=bus, kind="worker"
    )
    stopping = anyio.Event()
    aborted = anyio.Event()
    run_scope = [anyio.CancelScope()]  # the current run's (a scope is entered only once)

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stopping.is_set():
                    stopping.set()
                    _log(f"{name}: no new jobs; waiting up to {grace_s:g}s for "
                         f"{manager.in_flight} running jobs (signal again to stop now)")
                    manager.stop()
                    tg.start_soon(grace_timer)
                else:
                    _log(f"{name}: stopping now; releasing {manager.in_flight} running jobs")
                    hard_stop(f"worker stopped by {name}")

    def hard_stop(reason: str) -> None:
        if aborted.is_set():
            return
        aborted.set()
        manager.abort(reason)
        tg.start_soon(give_up_on_the_database)

    async def give_up_on_the_database() -> None:
        # The releases are recorded in a moment when the database answers. During an outage
        # the calls in flight kept retrying (30 s each, then 30 s more to unregister): the
        # worker took ~58 s to exit whatever --grace said, past systemd's and Kubernetes'
        # stop timeouts. After HARD_STOP_S, run() is cancelled and its last calls retry
        # briefly; jobs whose release is lost come back when their leases run out.
        await anyio.sleep(HARD_STOP_S)
        if not store.db.answering:
            _log(f"the database does not answer; exiting without recording "
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
            _log(f"grace period over; releasing {manager.in_flight} running jobs")
            hard_stop("worker stopped: grace period over")

    _log(f"{manager.worker_id} started: up to {manager.max_concurrent_dealers} dealers × "
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
                        # (logging the stale error after "answers again" confused on-call)
                        continue
                    pause = DB_RETRY_PAUSE_S[min(failures, len(DB_RETRY_PAUSE_S) - 1)]
                    failures += 1
                    _log(f"{exc} Retrying in {pause:g}s.")
                    with anyio.move_on_after(pause):
                        await stopping.wait()
                    if stopping.is_set():
                        break
                    continue
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _bare(group) from None
    finally:
        if server is not None:
            server.close()
        with anyio.CancelScope(shield=True):
            await store.close()
    s = manager.get_processing_stats()
    _log(f"stopped: {_summary_line(s)}")
    return 0


def print_blast_radius(radius: dict[str, Any]) -> None:
    """`--dry-run`: the jobs an action would change and the descendants that would move."""
    out = stdout_console()
    out.print(f"dry run: would change {plural(radius['changes'], 'job')}; "
              f"{plural(radius['follows'], 'descendant')} would move; nothing was changed")
    if not radius["groups"]:
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("dealer", "job type", "role", "jobs"):
        table.add_column(col, justify="right" if col == "jobs" else "left")
    for g in radius["groups"]:
        table.add_row(g["dealer_id"], g["job_type"], g["role"], str(g["count"]))
    out.print(table)


async def print_plan(
    config: Config,
    *,
    max_jobs_per_dealer: int | None = None,
    dealers: list[str] | None = None,
    limit: int | None = None,
    json_out: bool = False,
) -> int:
    """`--run-once --dry-run`: what a run would do now; changes nothing, exit 0."""
    from dealertui.engine.actions import Operator
    from dealertui.engine.plan import build_plan
    from dealertui.store import Intent, open_store

    print(f"dealertui run-once --dry-run: {using(config)}", file=sys.stderr, flush=True)
    store = await open_store(config, Intent.READ, retry_budget_s=3.0)
    try:
        if dealers:
            await Operator(store, config).check_dealers(dealers)
        plan = await build_plan(store, config, max_jobs_per_dealer=max_jobs_per_dealer,
                                dealers=dealers, limit=limit)
    finally:
        await store.close()
    if json_out:
        print(json.dumps(plan), flush=True)
        return 0
    out = stdout_console()
    out.print(f"[bold]plan[/] (dry run, nothing changed): {plan['would_run']} jobs would run, "
              f"{plan['held']} held; up to {plan['max_jobs_per_dealer']} at a time per dealer")
    for d in plan["dealers"]:
        steps = "  →  ".join(
            ", ".join(f"{j['job_type']} #{j['id']}" for j in wave) for wave in d["waves"]
        )
        out.print(f"[bold]{d['dealer_id']}[/]: {steps or '[dim]nothing to run[/]'}")
        for h in d["held"]:
            out.print(f"    [yellow]held[/] {h['job_type']} #{h['id']} ({h['state']}): "
                      f"{h['reason']}")
    if plan["cycles"]:
        for c in plan["cycles"]:
            out.print(f"[red]cycle[/]: {' -> '.join(map(str, [*c, c[0]]))}")
    else:
        out.print("no dependency cycles")
    return 0
