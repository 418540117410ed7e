"""Which pipelines may go, and deleting them: the work of one transaction of a prune pass
(store/retention.py walks the candidates and bounds the pass; docs/design.md, "Retention").

A pipeline may go when every job of it is finished, its newest job finished longer ago than
the limit of its worst outcome, no job of it is a dealer's newest of its type (newest_jobs),
and no job that is not finished depends on one of its jobs (job_deps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES, UNFINISHED_STATES, JobState
from dealertui.store.idlists import in_list, list_value
from dealertui.store.pending import OUTCOME_ORDER, jobs_of
from dealertui.store.states import as_sql

_FINISHED_SQL = as_sql(TERMINAL_STATES)
_WILL_RUN_SQL = as_sql(UNFINISHED_STATES)

#: the limit a pipeline's worst outcome is kept under, where it is not a finished state
#: itself: blocked (by a failed or cancelled job upstream) keeps as long as a failure
KEPT_AS = {JobState.BLOCKED.value: JobState.FAILED.value}


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
    #: candidate pipelines read (kept or not)
    read: int = 0
    longest_tx_ms: float = 0.0
    #: every walk reached its end (False: a bound stopped the pass; the next one resumes)
    complete: bool = True
    #: the pass ended because another process held the pruning lock (Postgres)
    busy: bool = False

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
        self.read += other.read
        self.longest_tx_ms = max(self.longest_tx_ms, other.longest_tx_ms)
        self.complete = other.complete
        self.busy = other.busy


@dataclass(frozen=True)
class Pipeline:
    """A candidate as read: its settled mark as stored, its jobs (id, state, finished)."""

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
        """No job left that will run, and the newest longer ago than the limit of the worst
        outcome. Blocked jobs count as their failure does (KEPT_AS): an install left alone
        for a year would otherwise keep every failed pipeline for ever, as blocked jobs
        wait for an operator who may never come."""
        if any(s in UNFINISHED_STATES for _, s, _ in self.jobs):
            return False
        at, outcome = self.mark()
        cutoff = limits.cutoff(KEPT_AS.get(outcome, outcome), now) if outcome else None
        return at is not None and cutoff is not None and at < cutoff


async def plan(conn: AsyncConnection, pipeline_ids: Sequence[int], limits: Limits,
               now: float, *, lock: bool) -> tuple[list[Pipeline], list[dict[str, Any]]]:
    """Of *pipeline_ids*: the pipelines that may go (see the module docstring), and the new
    settled marks of the others whose mark their jobs no longer say. *lock*: see
    _without_dependents."""
    if not pipeline_ids:
        return [], []
    found = await _read(conn, pipeline_ids)
    newest = await _newest(conn, sorted({p.dealer_id for p in found}))
    going = await _without_dependents(conn, [
        p for p in found
        if p.due(limits, now) and not any(j in newest for j, _, _ in p.jobs)], lock=lock)
    gone = {p.id for p in going}
    fixes = []
    for p in found:
        at, outcome = p.mark()
        if p.id not in gone and (at, outcome) != p.settled:
            fixes.append({"pid": p.id, "at": at, "outcome": outcome})
    return going, fixes


def _tally(going: list[Pipeline]) -> Tally:
    tally = Tally()
    for p in going:
        outcome = p.mark()[1] or JobState.SUCCEEDED.value
        outcome = KEPT_AS.get(outcome, outcome)
        tally.pipelines[outcome] += 1
        tally.jobs[outcome] += len(p.jobs)
    return tally


async def count(conn: AsyncConnection, going: list[Pipeline]) -> Tally:
    """What deleting *going* would delete (a dry run)."""
    tally = _tally(going)
    if not going:
        return tally
    ids = {"ids": list_value(conn, [j for p in going for j, _, _ in p.jobs])}
    tally.events = int((await conn.execute(text(
        f"SELECT count(*) FROM job_events WHERE {in_list(conn, 'job_id')}"), ids)
    ).scalar_one())
    tally.deps = int((await conn.execute(text(
        f"SELECT count(*) FROM job_deps WHERE {in_list(conn, 'child_id')} "
        f"OR {in_list(conn, 'parent_id')}"), ids)).scalar_one())
    return tally


async def settle_or_delete(conn: AsyncConnection, pipeline_ids: Sequence[int],
                           limits: Limits, now: float) -> Tally:
    """In a write transaction: plan *pipeline_ids* again (locked), write the new settled
    marks and delete the pipelines that may go with all their rows."""
    going, fixes = await plan(conn, pipeline_ids, limits, now, lock=True)
    if fixes:
        await conn.execute(text(
            "UPDATE pipelines SET settled_at = :at, outcome = :outcome WHERE id = :pid"), fixes)
    tally = _tally(going)
    if not going:
        return tally
    ids = {"ids": list_value(conn, [j for p in going for j, _, _ in p.jobs])}
    tally.events = (await conn.execute(text(
        f"DELETE FROM job_events WHERE {in_list(conn, 'job_id')}"), ids)).rowcount
    for column in ("child_id", "parent_id"):
        tally.deps += (await conn.execute(text(
            f"DELETE FROM job_deps WHERE {in_list(conn, column)}"), ids)).rowcount
    await conn.execute(text(f"DELETE FROM jobs WHERE {in_list(conn, 'id')}"), ids)
    await conn.execute(text(f"DELETE FROM pipelines WHERE {in_list(conn, 'id', 'pids')}"),
                       {"pids": list_value(conn, [p.id for p in going])})
    return tally


async def _read(conn: AsyncConnection, pipeline_ids: Sequence[int]) -> list[Pipeline]:
    rows = await conn.execute(text(
        "SELECT p.id AS pid, p.dealer_id, p.settled_at, p.outcome, j.id, j.state, "
        f"coalesce(j.finished_at, j.updated_at) AS at FROM pipelines p "
        f"LEFT {jobs_of(conn.dialect.name)} "
        f"WHERE {in_list(conn, 'p.id', 'pids')} ORDER BY p.id, j.id"),
        {"pids": list_value(conn, pipeline_ids)})
    found: dict[int, Pipeline] = {}
    for r in rows:
        p = found.setdefault(r.pid, Pipeline(r.pid, r.dealer_id, (r.settled_at, r.outcome), []))
        if r.id is not None:
            p.jobs.append((r.id, r.state, r.at or 0.0))
    return list(found.values())


async def _newest(conn: AsyncConnection, dealer_ids: Sequence[str]) -> set[int]:
    if not dealer_ids:
        return set()
    return set((await conn.execute(text(
        f"SELECT job_id FROM newest_jobs WHERE {in_list(conn, 'dealer_id')}"),
        {"ids": list_value(conn, dealer_ids)})).scalars())


async def _without_dependents(conn: AsyncConnection, going: list[Pipeline], *,
                              lock: bool) -> list[Pipeline]:
    """*going* less the pipelines a job not finished depends on. With *lock*, on Postgres,
    their jobs are locked first (an operator's retry waits, then finds them gone) and read
    again: one re-armed since the first read keeps its pipeline."""
    if not going:
        return going
    job_ids = sorted(j for p in going for j, _, _ in p.jobs)
    ids = {"ids": list_value(conn, job_ids)}
    stay: set[int] = set()
    if lock and conn.dialect.name == "postgresql":
        await conn.execute(text(
            f"SELECT id FROM jobs WHERE {in_list(conn, 'id')} ORDER BY id FOR UPDATE"), ids)
        stay |= set((await conn.execute(text(
            f"SELECT id FROM jobs WHERE {in_list(conn, 'id')} "
            f"AND state IN {_WILL_RUN_SQL}"), ids)).scalars())
    edges = (await conn.execute(text(
        f"SELECT d.parent_id, d.child_id FROM job_deps d JOIN jobs c ON c.id = d.child_id "
        f"WHERE {in_list(conn, 'd.parent_id')} AND c.state NOT IN {_FINISHED_SQL}"), ids)
    ).all()
    # a blocked child that goes in the same pass (its own pipeline's) holds nothing back;
    # until no pipeline more is kept, as one kept keeps its blocked jobs' parents too
    while True:
        leaving = {j for p in going for j, _, _ in p.jobs}
        held = stay | {parent for parent, child in edges if child not in leaving}
        kept = [p for p in going if not any(j in held for j, _, _ in p.jobs)]
        if len(kept) == len(going):
            return kept
        going = kept
