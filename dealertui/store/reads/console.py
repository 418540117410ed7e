"""The console's read: everything one refresh shows, in one read transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import empty_state_counts
from dealertui.store import tallies
from dealertui.store.reads.current import current_counts
from dealertui.store.reads.fairness import oldest_claimable
from dealertui.store.schema import breakers, controls, dealers, job_events, workers
from dealertui.store.tallies import Tally

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: job_events a refresh reads at most (the event log's backlog)
EVENT_LIMIT = 200
#: the throughput line's window: every console on one database shows the same numbers
THROUGHPUT_WINDOW_S = 60.0
#: the sparkline: outcomes per bucket (store/tallies.py) over this long
SPARK_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class LaneCell:
    job_id: int
    state: str
    attempts: int
    updated_at: float
    last_error: str | None
    payload: str | None = None


@dataclass(slots=True)
class ConsoleSnapshot:
    """Everything one console refresh shows, read in one transaction."""

    now: float
    dealers: list[tuple[str, str | None]]
    #: (dealer_id, job_type) -> the newest job of that type for the dealer
    lanes: dict[tuple[str, str], LaneCell]
    #: open jobs (every one) and the lanes' finished ones, by state
    by_state: dict[str, int]
    breakers: list[dict[str, Any]]
    paused: set[tuple[str, str]]
    workers: list[dict[str, Any]]
    #: job_events newer than the caller's cursor, oldest first (at most EVENT_LIMIT)
    events: list[dict[str, Any]] = field(default_factory=list)
    last_event_id: int = 0
    #: what changes whenever a lane or a count may have: see _fingerprint
    fingerprint: tuple[Any, ...] = ()
    #: what changes whenever a dealer is added, removed, renamed, disabled or enabled
    dealers_mark: tuple[Any, ...] = ()
    #: outcomes over the last THROUGHPUT_WINDOW_S, and per bucket over SPARK_WINDOW_S
    throughput: Tally = field(default_factory=lambda: Tally(THROUGHPUT_WINDOW_S, 0, 0, 0, 0, ()))
    spark: tuple[int, ...] = ()
    #: dealer -> when its oldest due ready job became ready (the fairness meter's input)
    oldest_ready: dict[str, float] = field(default_factory=dict)
    #: dealers disabled (`dealers disable`): shown in their lane, never claimed
    disabled: set[str] = field(default_factory=set)


async def console_snapshot(
    store: JobStore, *, after_event_id: int | None, previous: ConsoleSnapshot | None = None
) -> ConsoleSnapshot:
    """Dealers, each dealer's newest job per type, counts, breakers, pauses, workers, the
    throughput and the events since *after_event_id* (None: just the cursor, no backlog).

    With *previous*, the lanes and the counts by state are taken from it when the fingerprint
    has not moved since it was read: reading the lanes is most of a refresh (1,000 dealers x 4
    types), and an idle console must cost next to nothing."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> ConsoleSnapshot:
        # 1,000 dealer rows through the driver were most of an idle refresh: one row of
        # aggregates (in SQL, no rows out) says whether they can have changed
        dealers_mark = tuple((await conn.execute(_DEALERS_MARK)).one())
        if previous is not None and previous.dealers_mark == dealers_mark:
            dealer_rows, disabled = previous.dealers, previous.disabled
        else:
            dealer_rows, disabled = [], set()
            for r in await conn.execute(select(dealers.c.id, dealers.c.name,
                                               dealers.c.disabled_at).order_by(dealers.c.id)):
                dealer_rows.append((r.id, r.name))
                if r.disabled_at is not None:
                    disabled.add(r.id)
        top = (await conn.execute(select(func.max(job_events.c.id)))).scalar() or 0
        mark = await _fingerprint(conn, top)
        if previous is not None and previous.fingerprint == mark:
            lanes, by_state = previous.lanes, previous.by_state
        else:
            lanes, by_state = await _lanes_and_counts(conn)
        breaker_rows = [
            dict(r._mapping)
            for r in await conn.execute(select(breakers).order_by(breakers.c.key))
        ]
        paused = {
            (r.scope, r.key)
            for r in await conn.execute(
                select(controls.c.scope, controls.c.key).where(controls.c.paused == 1)
            )
        }
        worker_rows = [
            dict(r._mapping)
            for r in await conn.execute(
                select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.id)
            )
        ]
        # the fairness meter's wait is read again when a job, a pause or a breaker moved
        # (most of an idle refresh otherwise: every ready job, each checked against them)
        if previous is not None and previous.fingerprint == mark and (
            previous.paused == paused and previous.breakers == breaker_rows
        ):
            oldest = previous.oldest_ready
        else:
            oldest = await oldest_claimable(conn, now)
        spark = await tallies.read(conn, window_s=SPARK_WINDOW_S, now=now)
        snap = ConsoleSnapshot(now, dealer_rows, lanes, by_state, breaker_rows, paused,
                               worker_rows, last_event_id=top, fingerprint=mark,
                               dealers_mark=dealers_mark,
                               throughput=await tallies.read(
                                   conn, window_s=THROUGHPUT_WINDOW_S, now=now),
                               spark=spark.per_bucket, oldest_ready=oldest, disabled=disabled)
        if after_event_id is not None and top > after_event_id:
            rows = await conn.execute(
                select(job_events)
                .where(job_events.c.id > after_event_id)
                .order_by(job_events.c.id.desc())
                .limit(EVENT_LIMIT)
            )
            snap.events = [dict(r._mapping) for r in reversed(rows.all())]
        return snap

    return await store.db.run(tx, write=False)


# The happy path writes no job_events row, so the newest event id alone misses a claim or a
# success. With it: the newest job id (an enqueue), the running jobs' count and fencing
# tokens (a claim, a finish) and the tallied outcomes (a finish that promotes a child in the
# same transaction). Every read is an index or a handful of rows.
_FINGERPRINT = text(
    "SELECT (SELECT max(id) FROM jobs), "
    "(SELECT count(*) FROM jobs WHERE state = 'running'), "
    "(SELECT sum(claim_seq) FROM jobs WHERE state = 'running'), "
    "(SELECT sum(succeeded + failed + retried) FROM outcome_tallies)"
)


_DEALERS_MARK = text(
    "SELECT count(*), max(id), sum(length(id) + coalesce(length(name), 0)), "
    "count(disabled_at), sum(disabled_at) FROM dealers"
)


async def _fingerprint(conn: AsyncConnection, top_event: int) -> tuple[Any, ...]:
    return (top_event, *(await conn.execute(_FINGERPRINT)).one())


_LANES = text(
    "SELECT n.dealer_id, n.job_type, j.id, j.state, j.attempts, j.updated_at, j.last_error, "
    "j.payload FROM newest_jobs n JOIN jobs j ON j.id = n.job_id"
)


async def _lanes_and_counts(
    conn: AsyncConnection,
) -> tuple[dict[tuple[str, str], LaneCell], dict[str, int]]:
    lanes = {
        (r.dealer_id, r.job_type): LaneCell(r.id, r.state, r.attempts, r.updated_at,
                                            r.last_error, r.payload)
        for r in await conn.execute(_LANES)
    }
    by_state = empty_state_counts()
    for c in await current_counts(conn):
        if c.state in by_state:
            by_state[c.state] += c.n
    return lanes, by_state
