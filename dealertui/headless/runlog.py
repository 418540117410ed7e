"""What a run says on stderr, for cron and journald: which config and database it uses, one
plain line per failure or retry, and its summary."""

from __future__ import annotations

import sys
import time
from typing import Any

from dealertui.config import Config
from dealertui.model import ProcessingStats, RunSummary
from dealertui.text import plural


def when(at: float | None = None) -> str:
    """A time as every run line, `runs` and `status` show it: local, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def run_line(run: RunSummary) -> str:
    """One past run as `runs` and `status` list it, by its start, shown as its log lines
    show times: `2026-12-04 18:31:54 run-once[3f9a2c] on box1, 2.1s: 12 processed, 1 failed,
    exit 1`."""
    st = run["stats"] or {}
    took = (f", {run['finished_at'] - run['started_at']:.1f}s"
            if run["finished_at"] is not None else ", unfinished")
    code = "" if run["exit_code"] is None else f", exit {run['exit_code']}"
    return (f"{when(run['started_at'])} {run['kind']}[{run['run']}] on {run['host'] or '?'}"
            f"{took}: {st.get('processed_jobs', 0)} processed, {st.get('failed_jobs', 0)} "
            f"failed{code}")


class RunLog:
    """A run's stderr lines: `2026-12-04 18:31:54 dealertui run-once[3f9a2c]: …`. The time
    and the run's id (the one `runs` lists) tell apart the lines of two cron runs that
    overlap in one log file."""

    def __init__(self, kind: str, worker_id: str) -> None:
        from dealertui.store.reads.runs import run_id_of

        self.prefix = f"dealertui {kind}[{run_id_of(worker_id)}]: "

    def __call__(self, message: str) -> None:
        print(f"{when()} {self.prefix}{message}", file=sys.stderr, flush=True)


class PlainLog:
    """Cron output: one line per failure or retry (the summary is the front end's). Plain
    print, not rich: errors are handlers' own text ("[/x]" would be markup)."""

    def __init__(self, say: RunLog) -> None:
        self.say = say

    def __call__(self, event: Any) -> None:
        from dealertui.engine.events import (
            HistoryPruned,
            JobFailed,
            JobRetrying,
            LeasesRescued,
            ScheduleFired,
        )

        if isinstance(event, LeasesRescued):
            self.say(f"rescued  {event.count} jobs whose worker's lease expired")
        if isinstance(event, HistoryPruned):
            self.say(f"pruned   {event.summary}")
        if isinstance(event, ScheduleFired):
            tick = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.tick))
            self.say(
                f"schedule {event.schedule} fired its {tick} tick: "
                f"{plural(event.enqueued, 'pipeline')} enqueued"
                + (f", {plural(event.skipped, 'dealer')} skipped (pipeline unfinished)"
                   if event.skipped else ""))

        if isinstance(event, JobFailed):
            self.say(
                f"failed   {event.dealer_id} {event.job_type} #{event.job_id} "
                f"(attempt {event.attempt}): {event.error}"
            )
        elif isinstance(event, JobRetrying):
            self.say(
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


def summary_line(stats: ProcessingStats) -> str:
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


def held_line(held: dict[str, int], shown: int = 5) -> str | None:
    """'12 jobs held: dealer d004 paused, breaker type:homenet open' (None when none is)."""
    if not held:
        return None
    why = ", ".join(list(held)[:shown]) + (f" and {len(held) - shown} more"
                                           if len(held) > shown else "")
    return f"{plural(sum(held.values()), 'job')} held: {why}"
