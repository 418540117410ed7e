"""The worker's side of the job state machine (docs/design.md, "Job states"): claim, succeed,
retry later, fail, and the dependency violations caught at claim; on SQLite and Postgres.

Every test checks the state the store holds *and* the job_events audit rows the transition
wrote. Time comes from a controllable clock so leases and retry delays are deterministic.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock
from jobstates import (
    DEFAULT_RULES,
    T0,
    claim_ids,
    last_event,
    opened,
    pipeline,
    run_everything,
    state,
    states,
    trail,
)
from sqlalchemy import update

from dealertui.model import ClaimRequest, ClaimResult, JobOutcome
from dealertui.store import JobTypeRule
from dealertui.store.schema import jobs as jobs_table

pytestmark = pytest.mark.anyio


# -- the worker's side ------------------------------------------------------------------------


async def test_claim_then_succeed(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        result = await store.claim("w1", 10, per_dealer=10, lease_s=30)
        assert result.dependency_violations == 0
        assert [c.id for c in result.jobs] == [ids["homenet"]]
        c = result.jobs[0]
        assert (c.dealer_id, c.job_type, c.attempt, c.max_attempts) == ("d1", "homenet", 1, 5)
        job = await store.get_job(ids["homenet"])
        assert job is not None
        assert job.state == "running" and job.attempts == 1
        assert job.locked_by == "w1" and job.locked_until == T0 + 30
        assert job.started_at == T0
        e = await last_event(store, ids["homenet"])
        assert (e["from_state"], e["to_state"], e["worker"], e["attempt"]) == (
            "ready", "running", "w1", 1
        )

        clock.advance(5)
        done = await storeops.complete(store, "w1", [ids["homenet"]])
        assert done.done == [ids["homenet"]]
        assert sorted(done.promoted) == sorted([ids["dealer_com"], ids["product_scrape"]])
        job = await store.get_job(ids["homenet"])
        assert job is not None
        assert job.state == "succeeded" and job.finished_at == T0 + 5
        assert job.locked_by is None and job.locked_until is None
        assert await trail(store, ids["homenet"]) == [
            (None, "ready"), ("ready", "running"), ("running", "succeeded")
        ]
        e = await last_event(store, ids["homenet"])
        assert e["worker"] == "w1" and e["attempt"] == 1 and e["at"] == T0 + 5
        for t in ("dealer_com", "product_scrape"):
            assert await state(store, ids[t]) == "ready"
            assert await trail(store, ids[t]) == [(None, "waiting"), ("waiting", "ready")]
        assert await state(store, ids["url_shorten"]) == "waiting"

        assert await run_everything(store) == 3
        assert set((await states(store, ids)).values()) == {"succeeded"}


async def test_finish_then_claim_takes_the_children_it_promoted(db_url: str) -> None:
    """The engine's SQLite flush claims in its own transaction: that claim must see the
    children the flush just promoted, honour the per-dealer limit, and audit both moves."""
    async with opened(db_url, dealers=("d1", "d2")) as store:
        one, two = await pipeline(store, "d1"), await pipeline(store, "d2")
        homes = await claim_ids(store)
        assert sorted(homes) == sorted([one["homenet"], two["homenet"]])
        done = await storeops.finish(store, 
            "w1", succeeded=[one["homenet"]],
            then_claim=ClaimRequest(limit=10, per_dealer=2, lease_s=60.0, max_dealers=5,
                                    active_dealers=("d2",)),
        )
        assert done.done == [one["homenet"]]
        assert done.claimed is not None
        # d1's two children, nothing of d2 (its homenet still runs: its children wait)
        assert sorted(c.id for c in done.claimed.jobs) == sorted(
            [one["dealer_com"], one["product_scrape"]]
        )
        for t in ("dealer_com", "product_scrape"):
            assert await trail(store, one[t]) == [
                (None, "waiting"), ("waiting", "ready"), ("ready", "running")
            ]
        # no outcomes, only a claim: nothing is ready now
        nothing = await storeops.finish(store, "w1", then_claim=ClaimRequest(10, 2, 60.0))
        assert nothing.done == [] and nothing.claimed == ClaimResult([])
        assert await state(store, two["dealer_com"]) == "waiting"


async def test_complete_by_another_worker_is_ignored(db_url: str) -> None:
    async with opened(db_url) as store:
        home = (await pipeline(store))["homenet"]
        await claim_ids(store, "w1")
        done = await storeops.complete(store, "w2", [home])
        assert done.done == []
        assert await state(store, home) == "running"


async def test_schedule_retry_then_due(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        done = await storeops.schedule_retry(store, "w1", [JobOutcome(home, "timeout", delay_s=30)])
        assert done.done == [home] and done.failed == []
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "retrying" and job.run_after == T0 + 30
        assert job.last_error == "timeout" and job.locked_by is None and job.attempts == 1
        e = await last_event(store, home)
        assert (e["from_state"], e["to_state"], e["error"], e["attempt"]) == (
            "running", "retrying", "timeout", 1
        )
        # children are not disturbed by a retry
        assert await state(store, ids["dealer_com"]) == "waiting"

        clock.advance(29)
        assert await claim_ids(store) == []
        assert await state(store, home) == "retrying"

        clock.advance(1)  # run_after has come
        result = await store.claim("w2", 10, per_dealer=10, lease_s=30)
        assert [(c.id, c.attempt) for c in result.jobs] == [(home, 2)]
        assert await trail(store, home) == [
            (None, "ready"),
            ("ready", "running"),
            ("running", "retrying"),
            ("retrying", "ready"),
            ("ready", "running"),
        ]
        events = await storeops.job_events(store, home)
        assert events[-1]["worker"] == "w2" and events[-1]["attempt"] == 2
        await storeops.complete(store, "w2", [home])
        assert await state(store, home) == "succeeded"
        assert await state(store, ids["dealer_com"]) == "ready"


async def test_due_retry_is_promoted_even_when_claim_is_paused(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        home = (await pipeline(store))["homenet"]
        await claim_ids(store)
        await storeops.schedule_retry(store, "w1", [JobOutcome(home, "x", delay_s=1)])
        await store.set_paused(True)
        clock.advance(2)
        assert await claim_ids(store) == []
        assert await state(store, home) == "ready"
        await store.set_paused(False)
        assert await claim_ids(store) == [home]


async def test_fail_blocks_descendants(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        done = await storeops.fail(store, "w1", [JobOutcome(home, "bad credentials")])
        assert done.done == [home] and done.failed == [home]
        assert sorted(done.blocked) == sorted(
            [ids["dealer_com"], ids["product_scrape"], ids["url_shorten"]]
        )
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "failed" and job.last_error == "bad credentials"
        assert job.locked_by is None
        e = await last_event(store, home)
        assert (e["from_state"], e["to_state"], e["error"], e["worker"]) == (
            "running", "failed", "bad credentials", "w1"
        )
        for t in ("dealer_com", "product_scrape", "url_shorten"):
            child = await store.get_job(ids[t])
            assert child is not None
            assert child.state == "blocked"
            assert child.blocked_reason == f"homenet #{home} failed"
            e = await last_event(store, ids[t])
            assert e["to_state"] == "blocked"
            assert e["from_state"] == "waiting"
            assert e["message"] == f"homenet #{home} failed"
        assert await claim_ids(store) == []


async def test_retry_with_attempts_exhausted_fails(db_url: str) -> None:
    clock = Clock(T0)
    rules = dict(DEFAULT_RULES, homenet=JobTypeRule(1, (), max_attempts=2))
    async with opened(db_url, rules, clock=clock) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        done = await storeops.schedule_retry(store, "w1", [JobOutcome(home, "e1", delay_s=1)])
        assert done.failed == []
        assert await state(store, home) == "retrying"
        clock.advance(1)
        assert await claim_ids(store) == [home]
        done = await storeops.schedule_retry(store, "w1", [JobOutcome(home, "e2", delay_s=1)])
        assert done.done == [home] and done.failed == [home]
        assert len(done.blocked) == 3
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "failed" and job.attempts == 2 and job.last_error == "e2"
        assert (await trail(store, home))[-1] == ("running", "failed")
        assert set((await states(store, ids)).values()) == {"failed", "blocked"}


# -- dependency violations --------------------------------------------------------------------


async def test_dependency_violation_is_caught_at_claim(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        bad = ids["url_shorten"]  # its parent product_scrape is waiting
        async with store.db.engine.begin() as c:
            await c.execute(
                update(jobs_table)
                .where(jobs_table.c.id == bad)
                .values(state="ready", ready_at=T0)
            )
        result = await store.claim("w1", 10, per_dealer=10, lease_s=30)
        assert [c.id for c in result.jobs] == [ids["homenet"]]
        assert result.dependency_violations == 1
        job = await store.get_job(bad)
        assert job is not None
        assert job.state == "waiting"
        assert job.attempts == 0 and job.locked_by is None and job.started_at is None
        e = await last_event(store, bad)
        assert (e["from_state"], e["to_state"]) == ("ready", "waiting")
        assert e["dealer_id"] == "d1" and e["job_type"] == "url_shorten"
        assert "dependency violation" in (e["message"] or "")
        assert not any(ev["to_state"] == "running" for ev in await storeops.job_events(store, bad))

        # the pipeline still finishes in order, with no further violations
        await storeops.complete(store, "w1", [ids["homenet"]])
        for _ in range(10):
            result = await store.claim("w1", 10, per_dealer=10, lease_s=30)
            assert result.dependency_violations == 0
            if not result.jobs:
                break
            await storeops.complete(store, "w1", [c.id for c in result.jobs])
        assert set((await states(store, ids)).values()) == {"succeeded"}


async def test_dependency_violation_with_running_parent(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        assert await claim_ids(store) == [ids["homenet"]]
        async with store.db.engine.begin() as c:
            await c.execute(
                update(jobs_table)
                .where(jobs_table.c.id == ids["dealer_com"])
                .values(state="ready", ready_at=T0)
            )
        result = await store.claim("w2", 10, per_dealer=10, lease_s=30)
        assert result.jobs == [] and result.dependency_violations == 1
        assert await state(store, ids["dealer_com"]) == "waiting"
