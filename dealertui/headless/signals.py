"""--run-once under SIGTERM and SIGINT: the run is aborted, its jobs released; and the one
error of a task group, for the CLI's one sentence."""

from __future__ import annotations

from typing import Any

import anyio

from dealertui.headless.runlog import RunLog
from dealertui.model import ProcessingStats


async def run_until_signalled(manager: Any, limit: int | None, interrupted: list[int],
                              say: RunLog) -> ProcessingStats:
    """manager.process_multi_dealer_jobs(limit), aborted by SIGTERM or SIGINT (whose numbers
    are appended to *interrupted*)."""
    import signal

    async def watch() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not interrupted:
                    name = signal.Signals(signum).name
                    say(f"{name}: stopping now; releasing {manager.in_flight} running jobs")
                    manager.abort(f"run-once stopped by {name}")
                interrupted.append(signum)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            stats: ProcessingStats = await manager.process_multi_dealer_jobs(limit)
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise bare_error(group) from None
    return stats


def bare_error(group: BaseExceptionGroup) -> BaseException:
    """The one error in a task group's *group*, for the CLI's one sentence (the group itself
    would reach the user as a traceback); the group when it holds more."""
    errors = [e for e in group.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    return errors[0] if len(errors) == 1 else group
