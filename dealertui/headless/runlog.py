"""What a run says on stderr, for cron and journald: which config and database it uses, one
plain line per failure or retry, and its summary."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console

from dealertui.config import Config
from dealertui.model import ProcessingStats
from dealertui.text import plural


class PlainLog:
    """Cron output: one line per failure or retry, then the summary (no escape codes)."""

    def __init__(self) -> None:
        # no markup or emoji: errors are handlers' own text ("[/x]" would raise MarkupError,
        # and a host name in a worker id would turn ":x:" into an emoji)
        self.console = Console(file=sys.stderr, highlight=False, no_color=True, soft_wrap=True,
                               markup=False, emoji=False)

    def __call__(self, event: Any) -> None:
        from dealertui.engine.events import (
            HistoryPruned,
            JobFailed,
            JobRetrying,
            LeasesRescued,
            ScheduleFired,
        )

        if isinstance(event, LeasesRescued):
            self.console.print(f"rescued  {event.count} jobs whose worker's lease expired")
        if isinstance(event, HistoryPruned):
            self.console.print(f"pruned   {event.summary}")
        if isinstance(event, ScheduleFired):
            tick = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.tick))
            self.console.print(
                f"schedule {event.schedule} fired its {tick} tick: "
                f"{plural(event.enqueued, 'pipeline')} enqueued"
                + (f", {plural(event.skipped, 'dealer')} skipped (pipeline unfinished)"
                   if event.skipped else ""))

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


def log(message: str, who: str = "worker") -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} dealertui {who}: {message}", file=sys.stderr, flush=True)
