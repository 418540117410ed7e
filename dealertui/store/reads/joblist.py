"""The jobs list (`dealertui jobs`, and later an HTTP endpoint): jobs themselves, newest first,
filtered in SQL by dealer, type, state, enqueue time and payload keys, at most a page of them.

Every filter is answered without reading the whole history:
- the walk goes through pipelines newest first (a pipeline's jobs are a primary-key range of
  jobs), so `--dealer` reads that dealer's pipelines by ix_pipelines_dealer and stops after a
  page, on Postgres too, where jobs has no dealer index (see schema.py, ix_jobs_dealer_type);
- `--since` bounds the walk below by the first pipeline enqueued since then
  (ix_pipelines_created): a job's created_at is its pipeline's;
- `--state` of states only a partial index covers (failed/cancelled/skipped, waiting/blocked,
  ready, running, retrying) repeats that index's predicate, the only way SQLite uses one, so
  the matching rows are read without the succeeded ones;
- `--where` reads the pipeline's copy of the payload (a quarter of the rows of jobs); it has
  no index (payloads have any keys), so combine it with `--dealer` or `--since` on a large
  history.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

from dealertui.errors import UsageError
from dealertui.model import ALL_STATES
from dealertui.model.jobs import shown_payload
from dealertui.store.schema import jobs, pipelines

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

DEFAULT_LIMIT = 50
#: a payload key --where may name: a top-level key, spelled the same in SQLite's JSON path
#: and Postgres's ->> (no quotes, no brackets to escape)
_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What to list. Build it with `JobQuery.of` from what a user typed (it refuses bad
    values with one sentence); *since* is epoch seconds: jobs enqueued at or after it."""

    dealer_id: str | None = None
    types: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    since: float | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def of(
        cls, *, dealer_id: str | None = None, types: Sequence[str] = (),
        states: Sequence[str] = (), where: Sequence[str] = (), since: float | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> JobQuery:
        for s in states:
            if s not in ALL_STATES:
                raise UsageError(f"unknown state {s!r} for --state; the states are "
                                 f"{', '.join(ALL_STATES)}.")
        pairs = []
        for w in where:
            key, eq, value = w.partition("=")
            if not eq or not _KEY.match(key):
                raise UsageError(
                    f"invalid --where {w!r}: give KEY=VALUE with a top-level payload key of "
                    "letters, digits, '_', '.' or '-', such as feed=full.")
            pairs.append((key, value))
        return cls(dealer_id, tuple(dict.fromkeys(types)), tuple(dict.fromkeys(states)),
                   tuple(pairs), since, limit)


@dataclass(frozen=True, slots=True)
class ListedJob:
    id: int
    pipeline_id: int
    dealer_id: str
    job_type: str
    state: str
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    last_error: str | None
    payload: str | None

    def as_json(self) -> dict[str, Any]:
        """One element of `jobs --json` (the README lists the keys)."""
        row = {k: getattr(self, k) for k in self.__slots__}
        row["payload"] = shown_payload(self.payload)
        return row




#: (states a partial index of jobs covers, its predicate), read off the schema itself
def _partial_predicates() -> list[tuple[frozenset[str], TextClause]]:
    found = []
    for index in jobs.indexes:
        where = index.dialect_options["sqlite"]["where"]
        if isinstance(where, TextClause) and where.text.startswith("state"):
            found.append((frozenset(re.findall(r"'([a-z_]+)'", where.text)), where))
    return found


_PARTIAL = _partial_predicates()


def _partial_index_of(states: tuple[str, ...]) -> TextClause | None:
    """The predicate of a partial index holding every job in *states*, if one does."""
    for covered, predicate in _PARTIAL:
        if set(states) <= covered:
            return predicate
    return None


def _unindexed(column: ColumnElement[str]) -> ColumnElement[str]:
    """*column* as an expression no index serves: SQLite would otherwise build a throwaway
    index over every job for it (an automatic index) rather than walk a page of pipelines."""
    return column.concat(literal_column("''"))


def _payload_value(dialect: str, key: str) -> ColumnElement[Any]:
    """The pipeline payload's value at *key* as text, the way Postgres's ->> renders it
    (strings unquoted, true/false, numbers; objects and arrays as JSON), on either backend."""
    if dialect == "postgresql":
        return cast(pipelines.c.payload, JSONB).op("->>")(literal(key))
    path = f'$."{key}"'
    kind = func.json_type(pipelines.c.payload, path)
    return case((kind == "true", literal("true")), (kind == "false", literal("false")),
                else_=cast(func.json_extract(pipelines.c.payload, path), String))


def _statement(q: JobQuery, dialect: str) -> Any:
    p, j = pipelines, jobs
    # Start from a partial index of jobs when the states asked for are in one (few rows, then
    # sorted); otherwise walk pipelines newest first and stop after a page. Asked to join on
    # pipeline_id, both planners would rather read every job (SQLite, which keeps no
    # statistics, by scanning jobs and sorting; Postgres by a hash join): "+ 0" leaves them
    # only the primary-key range of each pipeline. SQLite would also build a throwaway index
    # over every job for a type or state (_unindexed); Postgres misjudges that expression.
    partial = _partial_index_of(q.states) if q.states else None
    if partial is not None:
        pipeline_of_job = j.c.pipeline_id == p.c.id
    else:
        pipeline_of_job = j.c.pipeline_id + 0 == p.c.id + 0
    job_type: ColumnElement[str] = j.c.job_type
    state: ColumnElement[str] = j.c.state
    if partial is None and dialect == "sqlite":
        job_type, state = _unindexed(job_type), _unindexed(state)
    conds: list[ColumnElement[bool]] = []
    if partial is not None:
        conds.append(partial)  # type: ignore[arg-type]
    if q.dealer_id is not None:
        conds.append(p.c.dealer_id == q.dealer_id)
    if q.types:
        conds.append(job_type.in_(q.types))
    if q.states:
        conds.append(state.in_(q.states))
    if q.since is not None:
        # "+ 0": both answer a plain min(id) by walking the primary key up from the oldest
        # pipeline until one is recent, i.e. the whole history; this reads the index of
        # created_at from *since* on
        first = (select(func.min(p.c.id + 0)).where(p.c.created_at >= q.since)
                 .scalar_subquery())
        conds += [p.c.id >= first, p.c.created_at >= q.since]
    for key, value in q.where:
        conds.append(_payload_value(dialect, key) == value)
    return (
        select(j.c.id, j.c.pipeline_id, j.c.dealer_id, j.c.job_type, j.c.state, j.c.attempts,
               j.c.max_attempts, j.c.created_at, j.c.updated_at, j.c.finished_at,
               j.c.last_error, j.c.payload)
        .select_from(p.join(j, and_(j.c.id >= p.c.first_job_id, j.c.id <= p.c.last_job_id,
                                    pipeline_of_job)))
        .where(and_(true(), *conds))
        # newest pipeline first, its jobs newest first: the order of the walk, no sort
        # (the ids of concurrent Postgres enqueues may interleave; pipelines stay whole)
        .order_by(p.c.id.desc(), j.c.id.desc())
        .limit(q.limit)
    )


async def job_list(store: JobStore, q: JobQuery) -> list[ListedJob]:
    """The jobs *q* asks for, newest first, at most q.limit of them."""

    async def tx(conn: AsyncConnection) -> list[ListedJob]:
        if conn.dialect.name == "postgresql":
            # It cannot know a pipeline's range of job ids holds a few rows (it guesses
            # hundreds), so it plans parallel workers whose start costs more than the page
            # (40 ms against 6 ms for `jobs --dealer` at 1,000,000 jobs), and would compile
            # a walk that finds few matches (JIT) for longer than the walk takes
            await conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
            await conn.execute(text("SET LOCAL jit = off"))
        rows = await conn.execute(_statement(q, conn.dialect.name))
        return [ListedJob(*r) for r in rows]

    return await store.db.run(tx, write=False)


