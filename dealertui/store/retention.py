"""Retention: deleting finished history past its limit in small transactions
(docs/design.md, "Retention").

Only whole pipelines go (which ones: store/prunable.py), each with its jobs, their events
and dependency edges and its pipelines row, in one transaction; audit rows older than theirs
go too.

A pass reads candidates through the pipelines' settled mark (settled_at, outcome; see
store/pending.py): the ones not yet settled oldest first, then the held ones, then per
outcome the ones settled before that outcome's limit, each walk resuming where the last pass
of this process stopped. It settles what it finds finished on the way, so a pass reads what
will still run and what is past a limit, never the history kept. Candidates are read
READ_PAGE at a time in read transactions; what changes is written PAGE pipelines a
transaction; a pass stops after about PASS_ROWS deleted rows or PASS_READS pipelines read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES
from dealertui.store import prunable
from dealertui.store.db import Database
from dealertui.store.pending import OUTCOME_ORDER
from dealertui.store.prunable import Limits, Tally
from dealertui.store.reads.storage import free_pages

__all__ = ["Limits", "Pruner", "Tally"]

#: pipelines deleted or settled per write transaction: ~4 jobs and ~3 events each, about
#: 500 rows, ~8 ms on SQLite (design.md, "Retention", has the numbers)
PAGE = 25
#: candidates read per read transaction (no write lock: most are kept as they are)
READ_PAGE = 200
#: rows a pass deletes, about (it stops at the first page past it)
PASS_ROWS = 10_000
#: pipelines a pass reads at most, kept or not
PASS_READS = 5_000
#: free pages a pass hands back to the file system at most (SQLite, incremental
#: auto-vacuum): moving the live pages at the end of a big file into the holes took ~0.15 ms
#: a page in benchmarks/prune_bench.py; 100 a minute still give back ~600 MB a day
VACUUM_PAGES = 100
#: the share of a file left free for new rows to reuse: the engines give back only what is
#: above it, so a steady state does not shrink the file each minute to grow it again
VACUUM_KEEP = 0.1
#: Postgres: the advisory lock a pruning transaction holds, so one process prunes at a time
_PG_LOCK = 7262003

#: outcomes of a pipeline no engine will run but an operator may (blocked): looked at again
#: every pass, as an operator's cancel or skip finishes it without re-arming it
_HELD = tuple(s.value for s in OUTCOME_ORDER if s.value not in TERMINAL_STATES)


class _Busy(Exception):
    """Another process holds the pruning lock (Postgres): this pass ends."""


#: before every key: settled_at and ids are never negative
_START = (-1.0, -1)


@dataclass
class _Walk:
    """One walk over candidates: the key of the last row read (resumed by the next pass)."""

    name: str
    after: tuple[float, int] = _START


class Pruner:
    """Prune passes over one database; the walks resume where the last pass stopped, so a
    bound never starves the candidates behind the ones kept."""

    def __init__(self, db: Database, limits: Limits, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.db, self.limits, self.clock = db, limits, clock
        self._walks = {name: _Walk(name) for name in ("unsettled", *_HELD, *TERMINAL_STATES)}

    async def prune(self, *, dry_run: bool = False, max_rows: int | None = PASS_ROWS,
                    max_reads: int | None = PASS_READS) -> Tally:
        """One pass (with no bounds: everything due). A dry run only reads."""
        tally = Tally()
        now = self.clock()
        try:
            for walk in self._walks.values():
                if not await self._walk(walk, now, tally, dry_run, max_rows, max_reads):
                    tally.complete = False
                    return tally
            await self._audit(now, tally, dry_run, max_rows)
        except _Busy:
            tally.complete, tally.busy = False, True
        return tally

    def _left(self, tally: Tally, max_rows: int | None) -> int | None:
        return None if max_rows is None else max_rows - tally.rows

    async def _walk(self, walk: _Walk, now: float, tally: Tally, dry_run: bool,
                    max_rows: int | None, max_reads: int | None) -> bool:
        """Read this walk's candidates page by page, in read transactions (no write lock for
        the pipelines that stay as they are), and write what changes in small ones; False
        when a bound stopped it (the walk resumes there next pass)."""
        query, params = self._candidates(walk.name, now)
        if query is None:
            return True
        after = walk.after if not dry_run else _START
        while True:
            left = self._left(tally, max_rows)
            if (left is not None and left <= 0) or (max_reads is not None
                                                    and tally.read >= max_reads):
                if not dry_run:
                    walk.after = after
                return False

            async def look(conn: AsyncConnection, after: tuple[float, int] = after
                           ) -> tuple[list[Any], list[int], Tally]:
                rows = list((await conn.execute(text(query), {
                    **params, "a": after[0], "i": after[1], "n": READ_PAGE})).all())
                going, fixes = await prunable.plan(conn, [r.id for r in rows], self.limits,
                                                   now, lock=False)
                touched = {p.id for p in going} | {f["pid"] for f in fixes}
                counted = await prunable.count(conn, going) if dry_run else Tally()
                return rows, [r.id for r in rows if r.id in touched], counted

            rows, touched, counted = await self._timed(look, tally, write=False)
            tally.read += len(rows)
            tally.add(counted)
            if touched and not dry_run:
                undone = await self._apply(touched, now, tally, max_rows)
                if undone is not None:  # resume at the first pipeline not written yet
                    keys = [(float(r.k), int(r.id)) for r in rows]
                    at = [r.id for r in rows].index(undone)
                    walk.after = keys[at - 1] if at else after
                    return False
            if len(rows) < READ_PAGE:
                walk.after = _START  # the next pass starts this walk over
                return True
            after = (float(rows[-1].k), int(rows[-1].id))

    async def _apply(self, pipeline_ids: list[int], now: float, tally: Tally,
                     max_rows: int | None) -> int | None:
        """Delete or settle *pipeline_ids* in transactions of at most PAGE pipelines (the
        last cut to the pass's bound); the first id left undone when the bound is reached."""
        i = 0
        while i < len(pipeline_ids):
            left = self._left(tally, max_rows)
            if left is not None and left <= 0:
                return pipeline_ids[i]
            n = PAGE if left is None else min(PAGE, -(-left // _rows_each(tally)))
            chunk = pipeline_ids[i:i + n]

            async def tx(conn: AsyncConnection, chunk: list[int] = chunk) -> Tally:
                await self._lock(conn, False)
                return await prunable.settle_or_delete(conn, chunk, self.limits, now)

            tally.add(await self._timed(tx, tally, write=True))
            i += n
        return None

    def _candidates(self, name: str, now: float) -> tuple[str | None, dict[str, Any]]:
        """The page query of walk *name* (keyed by (k, id), read after (:a, :i))."""
        if name == "unsettled":
            # all of them, young too: settled once, a finished pipeline leaves this walk for
            # its outcome's, which reads it again only once it is past its limit; what stays
            # here is what will still run
            return ("SELECT id, id AS k FROM pipelines WHERE settled_at IS NULL "
                    "AND id > :i ORDER BY id LIMIT :n", {})
        settled = ("SELECT id, settled_at AS k FROM pipelines WHERE settled_at IS NOT NULL "
                   "AND outcome = :o AND (settled_at, id) > (:a, :i) {cut}"
                   "ORDER BY settled_at, id LIMIT :n")
        if name in _HELD:
            return settled.format(cut=""), {"o": name}
        cutoff = self.limits.cutoff(name, now)
        if cutoff is None:
            return None, {}
        return settled.format(cut="AND settled_at < :cut "), {"o": name, "cut": cutoff}

    async def _audit(self, now: float, tally: Tally, dry_run: bool,
                     max_rows: int | None) -> None:
        if self.limits.audit_s is None:
            return
        cutoff = now - self.limits.audit_s
        if dry_run:
            async def count(conn: AsyncConnection) -> int:
                return int((await conn.execute(text(
                    "SELECT count(*) FROM audit_log WHERE at < :cut"), {"cut": cutoff})
                ).scalar_one())

            tally.audit += await self._timed(count, tally, write=False)
            return
        while (left := self._left(tally, max_rows)) is None or left > 0:
            n = PAGE * 10 if left is None else min(PAGE * 10, left)

            async def tx(conn: AsyncConnection, n: int = n) -> int:
                await self._lock(conn, dry_run)
                result = await conn.execute(text(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < :cut "
                    "ORDER BY at, id LIMIT :n)"), {"cut": cutoff, "n": n})
                return int(result.rowcount)

            gone = await self._timed(tx, tally, write=True)
            tally.audit += gone
            if gone < n:
                return
        tally.complete = False

    async def _lock(self, conn: AsyncConnection, dry_run: bool) -> None:
        # SQLite: BEGIN IMMEDIATE already makes pruners take turns
        if dry_run or conn.dialect.name != "postgresql":
            return
        got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                  {"k": _PG_LOCK})).scalar()
        if not got:
            raise _Busy

    async def _timed(self, fn: Callable[[AsyncConnection], Any], tally: Tally, *,
                     write: bool) -> Any:
        t0 = time.perf_counter()
        result = await self.db.run(fn, write=write)
        tally.transactions += 1
        tally.longest_tx_ms = max(tally.longest_tx_ms, (time.perf_counter() - t0) * 1000)
        return result

    async def vacuum(self, *, keep_share: float = VACUUM_KEEP) -> bool:
        """SQLite with incremental auto-vacuum: hand up to VACUUM_PAGES free pages back to
        the file system once more than *keep_share* of the file is free. False when there
        was nothing to do (or the file was busy): a loop of calls empties the free list."""
        free, total = await free_pages(self.db)
        if not free or free <= total * keep_share:
            return False
        return await self.db.sqlite_script(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")


def _rows_each(tally: Tally) -> int:
    """Rows a deleted pipeline took so far this pass (20 before the first: four jobs, their
    events and edges), so the last page of a pass is cut to fit the pass's bound."""
    pipelines = sum(tally.pipelines.values())
    return max(1, round((tally.rows - tally.audit) / pipelines)) if pipelines else 20


