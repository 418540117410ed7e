"""Helpers for the job-state-machine tests (tests/test_store_*.py): a store opened on given
job-type rules and a controllable clock, a pipeline enqueued, and the states and job_events
audit rows read back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import storeops
from helpers import Clock

from dealertui.store import JobStore, JobTypeRule

T0 = 1_000.0

DEFAULT_RULES: dict[str, JobTypeRule] = {
    "homenet": JobTypeRule(1, ()),
    "dealer_com": JobTypeRule(2, ("homenet",)),
    "product_scrape": JobTypeRule(3, ("homenet",)),
    "url_shorten": JobTypeRule(4, ("product_scrape",)),
}

#: five job types with no dependencies between them
INDEPENDENT_RULES: dict[str, JobTypeRule] = {f"t{i}": JobTypeRule(i, ()) for i in range(1, 6)}

#: c needs both a and b
DIAMOND_RULES: dict[str, JobTypeRule] = {
    "a": JobTypeRule(1, ()),
    "b": JobTypeRule(2, ()),
    "c": JobTypeRule(3, ("a", "b")),
}


@asynccontextmanager
async def opened(
    db_url: str,
    rules: Mapping[str, JobTypeRule] = DEFAULT_RULES,
    clock: Clock | None = None,
    dealers: tuple[str, ...] = ("d1",),
) -> AsyncIterator[JobStore]:
    store = await JobStore.open(db_url, rules, clock=clock or Clock(T0))
    try:
        if dealers:
            await store.add_dealers([(d, None) for d in dealers])
        yield store
    finally:
        await store.close()


async def pipeline(store: JobStore, dealer: str = "d1", types: list[str] | None = None) -> dict:
    """Enqueue one pipeline; returns {job_type: job_id}."""
    ids = await store.enqueue([dealer], types)
    got = await store.list_jobs(job_ids=ids)
    return {j.job_type: j.id for j in got}


async def state(store: JobStore, job_id: int) -> str:
    job = await store.get_job(job_id)
    assert job is not None
    return job.state


async def states(store: JobStore, ids: Mapping[str, int]) -> dict[str, str]:
    return {t: await state(store, i) for t, i in ids.items()}


async def trail(store: JobStore, job_id: int) -> list[tuple[str | None, str]]:
    return [(e["from_state"], e["to_state"]) for e in await storeops.job_events(store, job_id)]


async def last_event(store: JobStore, job_id: int) -> dict[str, Any]:
    events = await storeops.job_events(store, job_id)
    assert events, f"job {job_id} has no events"
    return events[-1]


async def claim_ids(
    store: JobStore,
    worker: str = "w1",
    limit: int = 100,
    per_dealer: int = 100,
    lease_s: float = 60.0,
    **kw: Any,
) -> list[int]:
    result = await store.claim(worker, limit, per_dealer=per_dealer, lease_s=lease_s, **kw)
    return [c.id for c in result.jobs]


async def run_everything(store: JobStore, worker: str = "w1") -> int:
    """Claim and complete until nothing is claimable; returns how many ran."""
    n = 0
    for _ in range(100):
        ids = await claim_ids(store, worker)
        if not ids:
            return n
        done = await storeops.complete(store, worker, ids)
        assert sorted(done.done) == sorted(ids)
        n += len(ids)
    raise AssertionError("run_everything did not converge")
