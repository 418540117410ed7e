"""`dealertui --run-once` for cron: run what is ready, then exit with what happened; and its
`--dry-run`, the plan of what a run would do now."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from dealertui.config import Config
from dealertui.errors import StoreUnavailable, UsageError
from dealertui.headless.render import stdout_console
from dealertui.headless.runlog import PlainLog, RunLog, held_line, summary_line, using
from dealertui.headless.signals import run_until_signalled
from dealertui.model import ProcessingStats


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
    code is 128 + the signal's number. Python's default for SIGTERM, dying on the spot, would
    leave the jobs `running` until their leases run out, and a handler's children working."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from dealertui.engine.actions import Operator
    from dealertui.engine.events import EventBus, StatsTick
    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.engine.process import make_worker_id
    from dealertui.handlers.check import check_runnable
    from dealertui.store import Intent, open_store

    worker_id = make_worker_id("run-once")
    say = RunLog("run-once", worker_id)
    say(using(config))
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
            worker_id=worker_id, only_dealers=dealers,
        )
        manager.exit_code_of = lambda s: _exit_code(s, interrupted)
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
                stats = await run_until_signalled(manager, limit, interrupted, say)
        else:
            bus.subscribe(PlainLog(say))
            stats = await run_until_signalled(manager, limit, interrupted, say)
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
    say(summary_line(stats))
    if (line := held_line(held)) is not None:
        say(line)
    if json_out:
        print(json.dumps({**stats.summary(), "held_jobs": sum(held.values()), "held": held}),
              flush=True)
    return _exit_code(stats, interrupted)


def _exit_code(stats: ProcessingStats, interrupted: list[int]) -> int:
    """0 when no job failed or was blocked in this run, else 1; 128 + the signal that
    stopped it (the run records this too, before the process exits with it)."""
    if interrupted:
        return 128 + interrupted[0]
    return 0 if not (stats.failed_jobs or stats.blocked_jobs) else 1


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
