"""Helpers for the graph-operation tests (skip, rerun, previews, failure groups, the run plan,
the fairness meter): an operator's store on a controllable clock, running and failing jobs,
reading job_events back, and snapshots of every job's state to compare a preview with the
real action.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import storeops
from helpers import Clock, claim, opened
from sqlalchemy import func, select

from dealertui.config import Config, parse_config
from dealertui.engine.actions import Operator
from dealertui.model import ActionResult, JobOutcome
from dealertui.store import JobStore
from dealertui.store.schema import job_events as job_events_table

T0 = 50_000.0
CONFIG: Config = parse_config({}, None)  # homenet → dealer_com, product_scrape → url_shorten
WHO = "carol@ops-host"
DESCENDANTS = ("dealer_com", "product_scrape", "url_shorten")


@asynccontextmanager
async def operator(
    db_url: str, clock: Clock | None = None, dealers: Sequence[str] = ("d1",)
) -> AsyncIterator[Operator]:
    async with opened(db_url, clock=clock or Clock(T0), dealers=dealers, config=CONFIG) as store:
        yield Operator(store, CONFIG, who=WHO)


async def run_everything(store: JobStore, worker: str = "w1", **kw: Any) -> list[int]:
    """Claim and complete until nothing is claimable; returns the ids that ran, in order."""
    ran: list[int] = []
    for _ in range(50):
        ids = await claim(store, worker, **kw)
        if not ids:
            return ran
        done = await storeops.complete(store, worker, ids)
        assert sorted(done.done) == ids
        ran += ids
    raise AssertionError("run_everything did not converge")


async def fail_homenet(store: JobStore, ids: dict[str, int], error: str = "HTTP 503",
                       worker: str = "w1") -> None:
    dealer = (await store.get_job(ids["homenet"])).dealer_id  # type: ignore[union-attr]
    assert await claim(store, worker, only_dealers=[dealer]) == [ids["homenet"]]
    res = await storeops.fail(store, worker, [JobOutcome(ids["homenet"], error)])
    assert res.failed == [ids["homenet"]]


async def event_count(store: JobStore) -> int:
    async def tx(conn: Any) -> int:
        return (await conn.execute(select(func.count()).select_from(job_events_table))
                ).scalar_one()

    return await store.db.run(tx, write=False)


async def max_event_id(store: JobStore) -> int:
    async def tx(conn: Any) -> int:
        return (await conn.execute(select(func.max(job_events_table.c.id)))).scalar() or 0

    return await store.db.run(tx, write=False)


async def event_jobs_since(store: JobStore, event_id: int) -> set[int]:
    """Ids of the jobs that have job_events rows after *event_id*."""

    async def tx(conn: Any) -> set[int]:
        return set((await conn.execute(
            select(job_events_table.c.job_id).where(job_events_table.c.id > event_id)
        )).scalars())

    return await store.db.run(tx, write=False)


async def snapshot(store: JobStore) -> dict[str, Any]:
    """Everything an action may touch: every job row (all fields), edges, events, audit
    rows, pauses, dealers (with last_served_at), breakers."""
    return {
        "jobs": await store.list_jobs(),
        "edges": sorted(await store.edges()),
        "events": await event_count(store),
        "max_event": await max_event_id(store),
        "audit": await store.audit_entries(limit=100_000),
        "pauses": await store.pauses(),
        "dealers": await store.list_dealers(),
        "breakers": await store.breaker_states(),
    }


def moved(before: dict[str, Any], after: dict[str, Any]) -> set[int]:
    """Ids of jobs whose state, attempts or blocked reason differ between two snapshots."""
    was = {j.id: (j.state, j.attempts, j.blocked_reason) for j in before["jobs"]}
    return {j.id for j in after["jobs"] if was.get(j.id) != (j.state, j.attempts,
                                                             j.blocked_reason)}


def as_sets(r: ActionResult) -> tuple[list[int], list[int]]:
    return sorted(r.changed), sorted(r.followers)


async def preview_then_act(
    op: Operator, act: Callable[[Operator], Awaitable[ActionResult]]
) -> ActionResult:
    """Run *act* through a preview (twice) and check nothing changed, then for real and
    check it changed exactly what the preview said: the jobs whose state, attempts or blocked
    reason moved, and the jobs it wrote job_events rows for, are the result's jobs."""
    before = await snapshot(op.store)
    shown = await act(op.preview())
    assert await snapshot(op.store) == before, "a preview changed the store"
    again = await act(op.preview())
    assert as_sets(again) == as_sets(shown), "a second preview disagrees with the first"
    assert await snapshot(op.store) == before, "a second preview changed the store"
    real = await act(op)
    assert as_sets(real) == as_sets(shown), (shown, real)
    after = await snapshot(op.store)
    listed = {*real.changed, *real.followers}
    assert moved(before, after) <= listed
    assert await event_jobs_since(op.store, before["max_event"]) == listed
    assert not set(real.changed) & set(real.followers)
    return real


# --- failure groups ------------------------------------------------------------------------------


def _feed_error(dealer: str, n: int) -> str:
    return (f"HTTP 503 from https://feeds.example.com/{dealer}/inventory.xml?page={n} "
            f"after {1000 + 37 * n} ms (dealer {dealer}, attempt {n})")
