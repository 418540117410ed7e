"""The jobs that matter now, read without touching the finished history: every open job
(through the partial indexes on jobs, one query per index) and the newest job of each dealer
and type (through newest_jobs). What status, the console and health count is these, so their
cost grows with unfinished work and the number of lanes, not with every job ever run.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import TERMINAL_STATES
from dealertui.store.states import OPEN_STATES, as_sql

# Each predicate is the exact predicate of one partial index of jobs (schema.py): a planner
# uses a partial index only where the query implies its predicate, and an IN list of all open
# states implies none of them (it reads the whole table instead).
_OPEN_BY_INDEX = (
    "state = 'ready'", "state IN ('waiting', 'blocked')", "state = 'retrying'",
    "state = 'running'",
)
_OPEN_COUNTS = text(" UNION ALL ".join(
    f"SELECT dealer_id, job_type, state, count(*) AS n FROM jobs WHERE {p} "
    "GROUP BY dealer_id, job_type, state" for p in _OPEN_BY_INDEX
))
_NEWEST_FINISHED = text(
    "SELECT j.dealer_id, j.job_type, j.state, 1 FROM newest_jobs n "
    f"JOIN jobs j ON j.id = n.job_id WHERE j.state IN {as_sql(TERMINAL_STATES)}"
)
# a change here must change the list above
assert sorted(s for p in _OPEN_BY_INDEX for s in OPEN_STATES if f"'{s}'" in p) == sorted(
    OPEN_STATES)


class Count(NamedTuple):
    dealer_id: str
    job_type: str
    state: str
    n: int


async def current_counts(conn: AsyncConnection) -> list[Count]:
    """Jobs by dealer, type and state: every open job, and each finished one that is still the
    newest of its dealer and type (what the lanes show)."""
    out = [Count(*r) for r in await conn.execute(_OPEN_COUNTS)]
    out += [Count(*r) for r in await conn.execute(_NEWEST_FINISHED)]
    return out

