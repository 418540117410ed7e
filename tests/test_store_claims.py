"""Which jobs a claim takes (limits, per-dealer caps, round-robin fairness) and how long it
holds them (leases: expiry, rescue, extension); on SQLite and Postgres.

Time comes from a controllable clock so leases are deterministic.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock
from jobstates import (
    DEFAULT_RULES,
    INDEPENDENT_RULES,
    T0,
    claim_ids,
    last_event,
    opened,
    pipeline,
    state,
    trail,
)

from dealertui.model import JobOutcome
from dealertui.store import JobTypeRule

pytestmark = pytest.mark.anyio


# -- claim limits and fairness ----------------------------------------------------------------


async def test_claim_per_dealer_limit(db_url: str) -> None:
    async with opened(db_url, INDEPENDENT_RULES) as store:
        ids = await pipeline(store)
        got = await store.claim("w1", 10, per_dealer=2, lease_s=30)
        assert [c.job_type for c in got.jobs] == ["t1", "t2"]  # priority order
        # the limit holds across workers
        assert await claim_ids(store, "w2", per_dealer=2) == []
        await storeops.complete(store, "w1", [ids["t1"]])
        got = await store.claim("w2", 10, per_dealer=2, lease_s=30)
        assert [c.job_type for c in got.jobs] == ["t3"]
        assert await claim_ids(store, "w1", per_dealer=2) == []
        assert await claim_ids(store, "w1", per_dealer=3) == [ids["t4"]]


async def test_claim_limit(db_url: str) -> None:
    async with opened(db_url, INDEPENDENT_RULES) as store:
        ids = await pipeline(store)
        assert await claim_ids(store, limit=3) == [ids["t1"], ids["t2"], ids["t3"]]
        assert await claim_ids(store, limit=0) == []
        assert await claim_ids(store, limit=3) == [ids["t4"], ids["t5"]]


async def test_claim_max_dealers_and_active_dealers(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, INDEPENDENT_RULES, clock=clock, dealers=("d1", "d2", "d3")) as store:
        await store.enqueue(["d1", "d2", "d3"])
        got = await store.claim("w1", 2, per_dealer=3, lease_s=30, max_dealers=1)
        assert [c.dealer_id for c in got.jobs] == ["d1", "d1"]
        got = await store.claim("w1", 10, per_dealer=3, lease_s=30, max_dealers=1)
        assert {c.dealer_id for c in got.jobs} == {"d2"}
        assert len(got.jobs) == 3

        clock.advance(1)
        # d1 has one free slot; as an active dealer it does not count against max_dealers
        got = await store.claim(
            "w1", 10, per_dealer=3, lease_s=30, max_dealers=1, active_dealers=["d1"]
        )
        assert sorted(c.dealer_id for c in got.jobs) == ["d1", "d3", "d3", "d3"]


async def test_claim_max_dealers_zero_serves_only_active_dealers(db_url: str) -> None:
    async with opened(db_url, INDEPENDENT_RULES, dealers=("d1", "d2", "d3")) as store:
        await store.enqueue(["d1", "d2", "d3"])
        got = await store.claim(
            "w1", 10, per_dealer=2, lease_s=30, max_dealers=0, active_dealers=["d2"]
        )
        assert [c.dealer_id for c in got.jobs] == ["d2", "d2"]
        got = await store.claim("w1", 10, per_dealer=2, lease_s=30, max_dealers=0)
        assert got.jobs == []


async def test_claim_only_dealers(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2", "d3")) as store:
        await store.enqueue(["d1", "d2", "d3"])
        got = await store.claim("w1", 10, per_dealer=2, lease_s=30, only_dealers=["d3"])
        assert [c.dealer_id for c in got.jobs] == ["d3"]


async def test_claim_round_robin_least_recently_served_first(db_url: str) -> None:
    clock = Clock(T0)
    rules = {"homenet": JobTypeRule(1, ())}
    async with opened(db_url, rules, clock=clock, dealers=("d1", "d2", "d3")) as store:
        for _ in range(3):
            await store.enqueue(["d3", "d1", "d2"])
        order = []
        for _ in range(6):
            clock.advance(1)
            got = await store.claim("w1", 1, per_dealer=10, lease_s=300)
            order += [c.dealer_id for c in got.jobs]
        assert order == ["d1", "d2", "d3", "d1", "d2", "d3"]
        served = {d.id: d.last_served_at for d in await store.list_dealers()}
        assert served == {"d1": T0 + 4, "d2": T0 + 5, "d3": T0 + 6}

        # in one batch every dealer's first job comes before anyone's second (the order of
        # the returned list is not part of the contract, the choice of jobs is)
        clock.advance(1)
        got = await store.claim("w1", 3, per_dealer=10, lease_s=300)
        assert sorted(c.dealer_id for c in got.jobs) == ["d1", "d2", "d3"]


async def test_claim_batch_prefers_least_recently_served_dealers(db_url: str) -> None:
    clock = Clock(T0)
    rules = {"homenet": JobTypeRule(1, ())}
    async with opened(db_url, rules, clock=clock, dealers=("d1", "d2", "d3")) as store:
        for _ in range(2):
            await store.enqueue(["d1", "d2", "d3"])
        clock.advance(1)
        got = await store.claim("w1", 1, per_dealer=9, lease_s=99)
        assert [c.dealer_id for c in got.jobs] == ["d1"]
        clock.advance(1)
        got = await store.claim("w1", 2, per_dealer=9, lease_s=99)
        assert sorted(c.dealer_id for c in got.jobs) == ["d2", "d3"]
        clock.advance(1)
        got = await store.claim("w1", 1, per_dealer=9, lease_s=99)
        assert [c.dealer_id for c in got.jobs] == ["d1"]


async def test_claim_interleaves_dealers_in_one_batch(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, INDEPENDENT_RULES, clock=clock, dealers=("d1", "d2")) as store:
        await store.enqueue(["d1", "d2"])
        got = await store.claim("w1", 4, per_dealer=10, lease_s=300)
        assert sorted((c.dealer_id, c.job_type) for c in got.jobs) == [
            ("d1", "t1"), ("d1", "t2"), ("d2", "t1"), ("d2", "t2")
        ]


# -- leases -----------------------------------------------------------------------------------


async def test_expired_lease_is_rescued_and_attempt_counted(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        assert await claim_ids(store, "w1", lease_s=10) == [home]
        clock.advance(10)
        assert (await store.rescue_expired()).changed == []  # lease ends at T0+10, not before

        clock.advance(1)
        result = await store.rescue_expired(worker_id="janitor")
        assert result.changed == [home] and result.followers == []
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "ready" and job.attempts == 1
        assert job.locked_by is None and job.locked_until is None
        assert job.last_error == "lease expired"
        e = await last_event(store, home)
        assert (e["from_state"], e["to_state"], e["worker"], e["attempt"]) == (
            "running", "ready", "janitor", 1
        )
        assert "w1" in (e["message"] or "")

        got = await store.claim("w2", 10, per_dealer=10, lease_s=10)
        assert [(c.id, c.attempt) for c in got.jobs] == [(home, 2)]

        # the old worker's late report is ignored; the new holder's counts
        late = await storeops.complete(store, "w1", [home])
        assert late.done == [] and late.promoted == []
        assert await state(store, home) == "running"
        late = await storeops.fail(store, "w1", [JobOutcome(home, "x")])
        assert late.done == []
        done = await storeops.complete(store, "w2", [home])
        assert done.done == [home]
        assert await state(store, home) == "succeeded"


async def test_finish_after_rescue_before_reclaim_is_ignored(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        home = (await pipeline(store))["homenet"]
        await claim_ids(store, "w1", lease_s=10)
        clock.advance(11)
        await store.rescue_expired()
        done = await storeops.complete(store, "w1", [home])
        assert done.done == []
        assert await state(store, home) == "ready"


async def test_expired_lease_without_attempts_left_fails(db_url: str) -> None:
    clock = Clock(T0)
    rules = dict(DEFAULT_RULES, homenet=JobTypeRule(1, (), max_attempts=1))
    async with opened(db_url, rules, clock=clock) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store, "w1", lease_s=10)
        clock.advance(11)
        result = await store.rescue_expired()
        assert result.changed == [home]
        assert sorted(result.followers) == sorted(
            [ids["dealer_com"], ids["product_scrape"], ids["url_shorten"]]
        )
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "failed" and job.attempts == 1
        assert job.last_error is not None and "lease expired" in job.last_error
        assert (await trail(store, home))[-1] == ("running", "failed")
        for t in ("dealer_com", "product_scrape", "url_shorten"):
            child = await store.get_job(ids[t])
            assert child is not None
            assert child.state == "blocked" and child.blocked_reason == f"homenet #{home} failed"
            assert (await last_event(store, ids[t]))["to_state"] == "blocked"


async def test_rescue_older_than(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, INDEPENDENT_RULES, clock=clock) as store:
        ids = await pipeline(store)
        assert await claim_ids(store, "w1", limit=1, lease_s=3600) == [ids["t1"]]
        clock.advance(100)
        assert await claim_ids(store, "w1", limit=1, lease_s=3600) == [ids["t2"]]
        clock.advance(10)
        assert (await store.rescue_expired()).changed == []
        result = await store.rescue_expired(older_than_s=60)
        assert result.changed == [ids["t1"]]  # t2 started only 10 s ago
        assert await state(store, ids["t1"]) == "ready"
        assert await state(store, ids["t2"]) == "running"
        job = await store.get_job(ids["t1"])
        assert job is not None and job.attempts == 1
        assert (await trail(store, ids["t1"]))[-1] == ("running", "ready")


async def test_extend_leases(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, INDEPENDENT_RULES, clock=clock) as store:
        ids = await pipeline(store)
        await store.register_worker("w1", host="h", pid=1, kind="worker")
        await claim_ids(store, "w1", limit=2, lease_s=10)
        await claim_ids(store, "w2", limit=1, lease_s=10)
        n_events = {i: len(await storeops.job_events(store, i)) for i in ids.values()}
        clock.advance(5)
        assert len(await storeops.extend_leases(store, "w1", 30)) == 2
        assert await storeops.extend_leases(store, "nobody", 30) == []
        for t in ("t1", "t2"):
            job = await store.get_job(ids[t])
            assert job is not None and job.locked_until == T0 + 35
        job = await store.get_job(ids["t3"])
        assert job is not None and job.locked_until == T0 + 10
        status = await store.status()
        assert [w["heartbeat_at"] for w in status["workers"] if w["id"] == "w1"] == [T0 + 5]
        # not a transition: no audit rows
        assert {i: len(await storeops.job_events(store, i)) for i in ids.values()} == n_events

        clock.advance(6)  # T0+11: w2's lease expired, w1's not
        assert (await store.rescue_expired()).changed == [ids["t3"]]
        assert await state(store, ids["t1"]) == "running"
