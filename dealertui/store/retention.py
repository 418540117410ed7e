"""Retention: deleting finished history past its limit in small transactions
(docs/design.md, "Retention").

Only whole pipelines go, and only when every job of one is finished and its newest job
finished longer ago than the limit of its worst outcome (failed, then cancelled, skipped,
succeeded: store/pending.OUTCOME_ORDER). Never a pipeline that holds a dealer's newest job of
a type (newest_jobs: the lanes show it, and a new pipeline links its prerequisites to it),
nor one whose job a job not finished depends on. A pipeline's jobs, their events and
dependency edges and its pipelines row go in one transaction; audit rows older than theirs
go too.

A pass reads candidates through the pipelines' settled mark (settled_at, outcome; see
store/pending.py): the ones not yet settled oldest first, then the held ones, then per
outcome the ones settled before that outcome's limit, each walk resuming where the last pass
of this process stopped. It settles what it finds finished on the way, so a pass reads what
will still run and what is past a limit, never the history kept. Each transaction reads PAGE
pipelines; a pass stops after about PASS_ROWS deleted rows or PASS_READS pipelines read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES, UNFINISHED_STATES, JobState
from dealertui.store.db import Database
from dealertui.store.idlists import in_list, list_value
from dealertui.store.pending import OUTCOME_ORDER
from dealertui.store.reads.storage import free_pages
from dealertui.store.states import as_sql

#: pipelines read per transaction: ~4 jobs and ~3 events each, about 500 rows deleted,
#: ~8 ms on SQLite (design.md, "Retention", has the numbers)
PAGE = 25
#: rows a pass deletes, about (it stops at the first page past it)
PASS_ROWS = 10_000
#: pipelines a pass reads at most, kept or not
PASS_READS = 5_000
#: free pages a pass hands back to the file system at most (SQLite, incremental
#: auto-vacuum): moving the live pages at the end of a big file into the holes costs ~0.1 ms
#: a page, so 200 keep the write lock under ~25 ms
VACUUM_PAGES = 200
#: the share of a file left free for new rows to reuse: the engines give back only what is
#: above it, so a steady state does not shrink the file each minute to grow it again
VACUUM_KEEP = 0.1
#: Postgres: the advisory lock a pruning transaction holds, so one process prunes at a time
_PG_LOCK = 7262003

#: outcomes of a pipeline no engine will run but an operator may (blocked): looked at again
#: every pass, as an operator's cancel or skip finishes it without re-arming it
_HELD = tuple(s.value for s in OUTCOME_ORDER if s.value not in TERMINAL_STATES)
_FINISHED_SQL = as_sql(TERMINAL_STATES)


@dataclass(frozen=True)
class Limits:
    """Seconds kept after the newest job finished, per worst outcome (None: for ever), and
    the audit log's (from its rows' time)."""

    states: Mapping[str, float | None]
    audit_s: float | None

    def cutoff(self, state: str, now: float) -> float | None:
        limit = self.states.get(state)
        return None if limit is None else now - limit


@dataclass
class Tally:
    """What one prune deleted (or would, dry run): pipelines and jobs per worst outcome,
    and the other rows that went with them."""

    pipelines: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TERMINAL_STATES, 0))
    jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TERMINAL_STATES, 0))
    events: int = 0
    deps: int = 0
    audit: int = 0
    transactions: int = 0
    longest_tx_ms: float = 0.0
    #: every walk reached its end (False: a bound stopped the pass; the next one resumes)
    complete: bool = True

    @property
    def rows(self) -> int:
        return (sum(self.pipelines.values()) + sum(self.jobs.values()) + self.events
                + self.deps + self.audit)

    def add(self, other: Tally) -> None:
        for state in self.pipelines:
            self.pipelines[state] += other.pipelines[state]
            self.jobs[state] += other.jobs[state]
        self.events += other.events
        self.deps += other.deps
        self.audit += other.audit
        self.transactions += other.transactions
        self.longest_tx_ms = max(self.longest_tx_ms, other.longest_tx_ms)
        self.complete = other.complete


class _Busy(Exception):
    """Another process holds the pruning lock (Postgres): this pass ends."""


@dataclass
class _Walk:
    """One walk over candidates: the key of the last row read (resumed by the next pass)."""

    name: str
    after: tuple[float, int] = (-1.0, -1)


@dataclass(frozen=True)
class _Pipeline:
    id: int
    dealer_id: str
    settled: tuple[float | None, str | None]
    jobs: list[tuple[int, str, float]]

    def mark(self) -> tuple[float | None, str | None]:
        """(settled_at, outcome) as store/pending.settle gives them: (None, None) while a job
        will still run, else when its newest job finished and its worst state."""
        states = {s for _, s, _ in self.jobs}
        if states & set(UNFINISHED_STATES):
            return None, None
        at = max((a for _, _, a in self.jobs), default=0.0)
        return at, next((s.value for s in OUTCOME_ORDER if s.value in states),
                        JobState.SUCCEEDED.value)

    def due(self, limits: Limits, now: float) -> bool:
        """Every job finished (a blocked one waits for an operator), and the newest longer
        ago than the limit of the worst outcome."""
        if any(s not in TERMINAL_STATES for _, s, _ in self.jobs):
            return False
        at, outcome = self.mark()
        cutoff = limits.cutoff(outcome, now) if outcome is not None else None
        return at is not None and cutoff is not None and at < cutoff


class Pruner:
    """Prune passes over one database; the walks resume where the last pass stopped, so a
    bound never starves the candidates behind the ones kept."""

    def __init__(self, db: Database, limits: Limits, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.db, self.limits, self.clock = db, limits, clock
        self._walks = {name: _Walk(name) for name in ("unsettled", *_HELD, *TERMINAL_STATES)}
        self._audit_done = False

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
            tally.complete = False
        return tally

    def _left(self, tally: Tally, max_rows: int | None) -> int | None:
        return None if max_rows is None else max_rows - tally.rows

    async def _walk(self, walk: _Walk, now: float, tally: Tally, dry_run: bool,
                    max_rows: int | None, max_reads: int | None) -> bool:
        """Read this walk's candidates page by page; False when a bound stopped it."""
        query, params = self._candidates(walk.name, now)
        if query is None:
            return True
        reads = 0
        after = walk.after if not dry_run else (-1.0, -1)
        while True:
            left = self._left(tally, max_rows)
            if (left is not None and left <= 0) or (max_reads is not None and reads >= max_reads):
                if not dry_run:
                    walk.after = after
                return False

            page = PAGE if left is None else min(PAGE, -(-left // _rows_each(tally)))

            async def tx(conn: AsyncConnection, after: tuple[float, int] = after,
                         page: int = page) -> tuple[list[Any], Tally]:
                await self._lock(conn, dry_run)
                rows = list((await conn.execute(text(query), {
                    **params, "a": after[0], "i": after[1], "n": page})).all())
                return rows, await _settle_or_delete(conn, [r.id for r in rows], self.limits,
                                                     now, dry_run)

            rows, done = await self._timed(tx, tally, write=not dry_run)
            tally.add(done)
            reads += len(rows)
            if len(rows) < page:
                walk.after = (-1.0, -1)  # the next pass starts this walk over
                return True
            after = (float(rows[-1].k), int(rows[-1].id))

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


async def _settle_or_delete(conn: AsyncConnection, pipeline_ids: Sequence[int],
                            limits: Limits, now: float, dry_run: bool) -> Tally:
    """Delete the pipelines of *pipeline_ids* that may go (see the module docstring); give
    the others the settled mark their jobs say (dry run: only count)."""
    tally = Tally()
    if not pipeline_ids:
        return tally
    found = await _read(conn, pipeline_ids)
    newest = await _newest(conn, sorted({p.dealer_id for p in found}))
    going = await _without_dependents(conn, [
        p for p in found
        if p.due(limits, now) and not any(j in newest for j, _, _ in p.jobs)])
    gone = {p.id for p in going}
    fixes = []
    for p in found:
        at, outcome = p.mark()
        if p.id not in gone and (at, outcome) != p.settled:
            fixes.append({"pid": p.id, "at": at, "outcome": outcome})
    if fixes and not dry_run:
        await conn.execute(text(
            "UPDATE pipelines SET settled_at = :at, outcome = :outcome WHERE id = :pid"), fixes)
    if not going:
        return tally
    job_ids = [j for p in going for j, _, _ in p.jobs]
    for p in going:
        outcome = p.mark()[1] or JobState.SUCCEEDED.value
        tally.pipelines[outcome] += 1
        tally.jobs[outcome] += len(p.jobs)
    ids = {"ids": list_value(conn, job_ids)}
    if dry_run:
        tally.events = int((await conn.execute(text(
            f"SELECT count(*) FROM job_events WHERE {in_list(conn, 'job_id')}"), ids)
        ).scalar_one())
        tally.deps = int((await conn.execute(text(
            f"SELECT count(*) FROM job_deps WHERE {in_list(conn, 'child_id')} "
            f"OR {in_list(conn, 'parent_id')}"), ids)).scalar_one())
        return tally
    tally.events = (await conn.execute(text(
        f"DELETE FROM job_events WHERE {in_list(conn, 'job_id')}"), ids)).rowcount
    for column in ("child_id", "parent_id"):
        tally.deps += (await conn.execute(text(
            f"DELETE FROM job_deps WHERE {in_list(conn, column)}"), ids)).rowcount
    await conn.execute(text(f"DELETE FROM jobs WHERE {in_list(conn, 'id')}"), ids)
    await conn.execute(text(f"DELETE FROM pipelines WHERE {in_list(conn, 'id', 'pids')}"),
                       {"pids": list_value(conn, [p.id for p in going])})
    return tally


async def _read(conn: AsyncConnection, pipeline_ids: Sequence[int]) -> list[_Pipeline]:
    rows = await conn.execute(text(
        "SELECT p.id AS pid, p.dealer_id, p.settled_at, p.outcome, j.id, j.state, "
        "coalesce(j.finished_at, j.updated_at) AS at FROM pipelines p LEFT JOIN jobs j "
        "ON j.id BETWEEN p.first_job_id AND p.last_job_id AND j.pipeline_id = p.id "
        f"WHERE {in_list(conn, 'p.id', 'pids')} ORDER BY p.id, j.id"),
        {"pids": list_value(conn, pipeline_ids)})
    found: dict[int, _Pipeline] = {}
    for r in rows:
        p = found.setdefault(r.pid, _Pipeline(r.pid, r.dealer_id, (r.settled_at, r.outcome), []))
        if r.id is not None:
            p.jobs.append((r.id, r.state, r.at or 0.0))
    return list(found.values())


async def _newest(conn: AsyncConnection, dealer_ids: Sequence[str]) -> set[int]:
    if not dealer_ids:
        return set()
    return set((await conn.execute(text(
        f"SELECT job_id FROM newest_jobs WHERE {in_list(conn, 'dealer_id')}"),
        {"ids": list_value(conn, dealer_ids)})).scalars())


async def _without_dependents(conn: AsyncConnection, going: list[_Pipeline]
                              ) -> list[_Pipeline]:
    """*going* less the pipelines a job not finished depends on. On Postgres their jobs are
    locked first (an operator's retry waits, then finds them gone) and read again: one
    re-armed since the first read keeps its pipeline."""
    if not going:
        return going
    job_ids = sorted(j for p in going for j, _, _ in p.jobs)
    ids = {"ids": list_value(conn, job_ids)}
    stay: set[int] = set()
    if conn.dialect.name == "postgresql":
        await conn.execute(text(
            f"SELECT id FROM jobs WHERE {in_list(conn, 'id')} ORDER BY id FOR UPDATE"), ids)
        stay |= set((await conn.execute(text(
            f"SELECT id FROM jobs WHERE {in_list(conn, 'id')} "
            f"AND state NOT IN {_FINISHED_SQL}"), ids)).scalars())
    stay |= set((await conn.execute(text(
        f"SELECT d.parent_id FROM job_deps d JOIN jobs c ON c.id = d.child_id "
        f"WHERE {in_list(conn, 'd.parent_id')} AND c.state NOT IN {_FINISHED_SQL}"), ids)
    ).scalars())
    return [p for p in going if not any(j in stay for j, _, _ in p.jobs)]
