"""Outcome tallies: how many jobs succeeded, failed and went to retry, per 10-second bucket
and worker, so throughput, success rates and `health` read a few rows instead of one
job_events row per job (the happy path writes none, see docs/design.md "Job states").

One row per (bucket, worker), added to once per batch of outcomes: a worker only ever adds to
its own rows, so two workers never wait on each other's row lock (Postgres), and the cost per
job is a fraction of one row. Buckets older than KEEP_S are deleted by the writer, at most
once per bucket; every reader of a window up to KEEP_S sees the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.store.fastpath import fetch

#: width of a bucket, in seconds
BUCKET_S = 10.0
#: how long buckets are kept: the longest window any reader asks for (`health`: 15 min)
KEEP_S = 3600.0

_pruned: WeakKeyDictionary[Any, float] = WeakKeyDictionary()

_ADD = (
    "INSERT INTO outcome_tallies (at, worker, succeeded, failed, retried) "
    "VALUES (:at, :worker, :ok, :failed, :retried) "
    "ON CONFLICT (at, worker) DO UPDATE SET "
    "succeeded = outcome_tallies.succeeded + excluded.succeeded, "
    "failed = outcome_tallies.failed + excluded.failed, "
    "retried = outcome_tallies.retried + excluded.retried"
)


def bucket_of(t: float) -> float:
    return math.floor(t / BUCKET_S) * BUCKET_S


async def add(
    conn: AsyncConnection, worker: str, *, succeeded: int, failed: int, retried: int,
    now: float,
) -> None:
    """Count a batch of outcomes, in the caller's transaction."""
    if not (succeeded or failed or retried):
        return
    at = bucket_of(now)
    await fetch(conn, _ADD, {"at": at, "worker": worker, "ok": succeeded, "failed": failed,
                             "retried": retried})
    engine = conn.sync_engine
    if _pruned.get(engine, -math.inf) < at:
        await fetch(conn, "DELETE FROM outcome_tallies WHERE at < :old", {"old": at - KEEP_S})
        _pruned[engine] = at


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes over a window: the totals and, oldest first, the jobs per bucket."""

    window_s: float
    #: the seconds the buckets read actually cover (a whole number of buckets up to now)
    span_s: float
    succeeded: int
    failed: int
    retried: int
    per_bucket: tuple[int, ...]

    @property
    def outcomes(self) -> int:
        return self.succeeded + self.failed + self.retried

    @property
    def rate(self) -> float:
        """Outcomes per second over the span."""
        return self.outcomes / self.span_s if self.span_s > 0 else 0.0


async def read(conn: AsyncConnection, *, window_s: float, now: float) -> Tally:
    """The outcomes of the buckets that start within the last *window_s* (at most KEEP_S)."""
    window_s = min(window_s, KEEP_S)
    first = math.ceil((now - window_s) / BUCKET_S) * BUCKET_S
    rows = await fetch(
        conn,
        "SELECT at, sum(succeeded), sum(failed), sum(retried) FROM outcome_tallies "
        "WHERE at >= :first GROUP BY at",
        {"first": first},
    )
    by_at = {float(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    n = max(1, math.ceil((now - first) / BUCKET_S))
    per_bucket = tuple(sum(by_at.get(first + i * BUCKET_S, (0, 0, 0))) for i in range(n))
    return Tally(
        window_s, max(now - first, 0.0),
        sum(v[0] for v in by_at.values()), sum(v[1] for v in by_at.values()),
        sum(v[2] for v in by_at.values()), per_bucket,
    )
