"""Upkeep: the work every engine does besides running jobs (a worker, the console's engine and
`--run-once` alike), so no process has to be the leader and a cron line running `--run-once`
gets it for free.

Each step is one coroutine taking the store, the config, the engine's worker id and its event
bus. A step must be safe to run in many processes at once (the database decides who does
what) and bounded per call (it runs between claims). A run calls every step once before it
claims, and an engine that waits for work calls them again every UPKEEP_S.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio

from dealertui.config import Config
from dealertui.engine.events import EventBus
from dealertui.engine.schedules import fire_due
from dealertui.errors import StoreUnavailable
from dealertui.store import JobStore

#: how often a waiting engine repeats its upkeep (schedules fire within this of their tick)
UPKEEP_S = 1.0

log = logging.getLogger("dealertui.upkeep")

Step = Callable[[JobStore, Config, str, EventBus], Awaitable[None]]


def steps() -> Sequence[Step]:
    """The upkeep steps, in the order they run."""
    from dealertui.engine.pruning import prune_step

    return (fire_due, prune_step)


async def run_once(store: JobStore, config: Config, worker_id: str, bus: EventBus) -> None:
    """Run every step once. A step's StoreUnavailable propagates (the run's own handling of a
    lost database applies); any other error is logged and the next step still runs: upkeep
    failing must not stop jobs from running."""
    for step in steps():
        try:
            await step(store, config, worker_id, bus)
        except StoreUnavailable:
            raise
        except Exception:  # see the docstring
            log.exception("upkeep step %s failed", getattr(step, "__qualname__", step))


async def forever(store: JobStore, config: Config, worker_id: str, bus: EventBus) -> None:
    """Repeat run_once every UPKEEP_S (a side task of a waiting engine)."""
    while True:
        await anyio.sleep(UPKEEP_S)
        await run_once(store, config, worker_id, bus)
