"""Retention as an upkeep step (engine/upkeep.py), and `dealertui prune` on demand.

Every engine prunes, so a cron line running `--run-once` needs nothing more; a pass runs at
most every PRUNE_EVERY_S per store (a worker's upkeep comes round every second). The store
decides what goes and bounds each pass (store/retention.py).
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

import anyio

from dealertui.config import Config, RetentionConfig
from dealertui.engine.events import EventBus, HistoryPruned
from dealertui.model import TERMINAL_STATES
from dealertui.store import audit
from dealertui.store.retention import Limits, Pruner, Tally
from dealertui.text import plural

if TYPE_CHECKING:
    from dealertui.store import JobStore

PRUNE_EVERY_S = 60.0
#: `prune` waits this long when another process is pruning, up to BUSY_TRIES times in a row
BUSY_WAIT_S = 0.2
BUSY_TRIES = 50

#: per store: its pruner (whose walks resume where the last pass stopped) and when it ran
_pruners: weakref.WeakKeyDictionary[JobStore, tuple[Pruner, float]] = (
    weakref.WeakKeyDictionary())


def limits(cfg: RetentionConfig, older_than_s: float | None = None) -> Limits:
    """The store's limits from [retention]; *older_than_s* replaces every state's."""
    states = {s: older_than_s if older_than_s is not None else cfg.limit_s(s)
              for s in TERMINAL_STATES}
    return Limits(states, cfg.audit_s)


async def prune_step(store: JobStore, config: Config, worker_id: str, bus: EventBus) -> None:
    """The upkeep step: one bounded pass, then (SQLite) the pages it freed handed back."""
    if not config.retention.prunes:
        return
    now = time.monotonic()
    pruner, last = _pruners.get(store, (None, None))
    if last is not None and now - last < PRUNE_EVERY_S:
        return
    if pruner is None:
        pruner = Pruner(store.db, limits(config.retention), clock=store.clock)
    _pruners[store] = (pruner, now)
    tally = await pruner.prune()
    if tally.rows:
        await pruner.vacuum()
        bus.emit(HistoryPruned(tally.rows, describe(tally), store.clock()))


async def prune_all(store: JobStore, lim: Limits, *, dry_run: bool, by: str,
                    what: str) -> Tally:
    """`dealertui prune`: passes until nothing due is left (each bounded like the engines'),
    then, on SQLite, the freed pages back, and one audit row by *by* (*what*: the limits
    in words). A dry run reads it all in one pass and writes nothing."""
    pruner = Pruner(store.db, lim, clock=store.clock)
    if dry_run:
        return await pruner.prune(dry_run=True, max_rows=None, max_reads=None)
    total = Tally()
    busy = 0
    while True:
        tally = await pruner.prune()
        total.add(tally)
        if tally.complete:
            break
        # Postgres: another process's pass holds the lock for a second or so; after
        # BUSY_TRIES in a row, leave the rest to the engines' passes
        busy = busy + 1 if tally.busy else 0
        if busy >= BUSY_TRIES:
            break
        if tally.busy:
            await anyio.sleep(BUSY_WAIT_S)
    while total.rows and await pruner.vacuum(keep_share=0.0):
        pass  # each call bounded, as the engines' own
    now = store.clock()
    await store.db.run(lambda c: audit.record(
        c, by=by, action="prune", target=f"{describe(total)}, {what}", job_ids=(),
        count=sum(total.jobs.values()), reason=None, at=now))
    return total


def describe(tally: Tally) -> str:
    """'3 pipelines (12 jobs, 30 events): 2 succeeded, 1 failed; 5 audit rows'."""
    parts = []
    n = sum(tally.pipelines.values())
    if n or not tally.audit:
        by = ", ".join(f"{c} {s}" for s, c in tally.pipelines.items() if c)
        parts.append(f"{plural(n, 'pipeline')} ({plural(sum(tally.jobs.values()), 'job')}, "
                     f"{plural(tally.events, 'event')}){': ' + by if by else ''}")
    if tally.audit:
        parts.append(plural(tally.audit, "audit row"))
    return "; ".join(parts)
