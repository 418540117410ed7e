"""The job state machine of docs/design.md ("Job states"), edge by edge, on SQLite and Postgres.

Every test checks the state the store holds *and* the job_events audit rows the transition
wrote. Time comes from a controllable clock so leases and retry delays are deterministic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import storeops
from helpers import Clock
from sqlalchemy import update

from dealertui.errors import StoreUnavailable, UsageError
from dealertui.model import ALL_STATES, ClaimRequest, ClaimResult, JobOutcome
from dealertui.store import JobStore, JobTypeRule, migrate
from dealertui.store.db import Database
from dealertui.store.schema import SCHEMA_VERSION
from dealertui.store.schema import jobs as jobs_table

pytestmark = pytest.mark.anyio

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


# -- enqueue ----------------------------------------------------------------------------------


async def test_enqueue_pipeline_states_edges_and_events(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        assert set(ids) == set(DEFAULT_RULES)
        assert await states(store, ids) == {
            "homenet": "ready",
            "dealer_com": "waiting",
            "product_scrape": "waiting",
            "url_shorten": "waiting",
        }
        assert sorted(await store.edges()) == sorted(
            [
                (ids["homenet"], ids["dealer_com"]),
                (ids["homenet"], ids["product_scrape"]),
                (ids["product_scrape"], ids["url_shorten"]),
            ]
        )
        assert sorted(await store.edges(dealer_id="d1")) == sorted(await store.edges())
        for t, i in ids.items():
            events = await storeops.job_events(store, i)
            assert len(events) == 1
            e = events[0]
            assert (e["from_state"], e["to_state"]) == (None, await state(store, i))
            assert e["dealer_id"] == "d1" and e["job_type"] == t and e["at"] == T0
        home = await store.get_job(ids["homenet"])
        assert home is not None
        assert home.attempts == 0 and home.max_attempts == 5 and home.priority == 1
        assert home.ready_at == T0
        waiting = await store.get_job(ids["url_shorten"])
        assert waiting is not None and waiting.ready_at is None


async def test_enqueue_several_dealers_in_one_call(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2", "d3")) as store:
        new = await store.enqueue(["d1", "d2", "d3"])
        assert len(new) == 12
        got = await store.list_jobs(job_ids=new)
        assert sorted((j.dealer_id, j.job_type) for j in got) == sorted(
            (d, t) for d in ("d1", "d2", "d3") for t in DEFAULT_RULES
        )
        by_id = {j.id: j for j in got}
        # jobs depend only on jobs of the same dealer
        edges = await store.edges()
        assert len(edges) == 9
        for parent, child in edges:
            assert by_id[parent].dealer_id == by_id[child].dealer_id


async def test_enqueue_child_type_without_homenet_is_blocked(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store, types=["dealer_com"])
        job = await store.get_job(ids["dealer_com"])
        assert job is not None
        assert job.state == "blocked"
        assert job.blocked_reason == "no successful homenet run"
        assert await store.edges() == []
        e = await last_event(store, job.id)
        assert (e["from_state"], e["to_state"]) == (None, "blocked")
        assert e["message"] == "no successful homenet run"


async def test_enqueue_child_type_after_failed_homenet_is_blocked(db_url: str) -> None:
    async with opened(db_url) as store:
        home = (await pipeline(store, types=["homenet"]))["homenet"]
        assert await claim_ids(store) == [home]
        await storeops.fail(store, "w1", [JobOutcome(home, "boom")])
        ids = await pipeline(store, types=["dealer_com"])
        job = await store.get_job(ids["dealer_com"])
        assert job is not None and job.state == "blocked"
        assert job.blocked_reason == "no successful homenet run"


async def test_enqueue_child_type_after_homenet_succeeded_is_ready(db_url: str) -> None:
    async with opened(db_url) as store:
        home = (await pipeline(store, types=["homenet"]))["homenet"]
        assert await claim_ids(store) == [home]
        await storeops.complete(store, "w1", [home])
        ids = await pipeline(store, types=["dealer_com"])
        assert await state(store, ids["dealer_com"]) == "ready"
        assert await store.edges() == [(home, ids["dealer_com"])]
        assert await trail(store, ids["dealer_com"]) == [(None, "ready")]


@pytest.mark.parametrize("home_state", ["ready", "running", "retrying"])
async def test_enqueue_child_type_links_to_unfinished_homenet(
    db_url: str, home_state: str
) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        home = (await pipeline(store, types=["homenet"]))["homenet"]
        if home_state in ("running", "retrying"):
            assert await claim_ids(store) == [home]
        if home_state == "retrying":
            await storeops.schedule_retry(store, "w1", [JobOutcome(home, "flaky", delay_s=5)])
        assert await state(store, home) == home_state

        child = (await pipeline(store, types=["dealer_com"]))["dealer_com"]
        assert await state(store, child) == "waiting"
        assert await store.edges() == [(home, child)]
        assert await trail(store, child) == [(None, "waiting")]

        clock.advance(10)
        if home_state != "running":
            assert await claim_ids(store) == [home]
        assert await state(store, child) == "waiting"
        result = await storeops.complete(store, "w1", [home])
        assert result.done == [home]
        assert result.promoted == [child]
        assert await state(store, child) == "ready"
        assert await trail(store, child) == [(None, "waiting"), ("waiting", "ready")]


async def test_enqueue_child_type_links_to_waiting_homenet(db_url: str) -> None:
    # homenet itself waits for a "seed" job here, so the latest homenet is `waiting`
    rules = {
        "seed": JobTypeRule(1, ()),
        "homenet": JobTypeRule(2, ("seed",)),
        "dealer_com": JobTypeRule(3, ("homenet",)),
    }
    async with opened(db_url, rules) as store:
        first = await pipeline(store, types=["seed", "homenet"])
        assert await states(store, first) == {"seed": "ready", "homenet": "waiting"}
        child = (await pipeline(store, types=["dealer_com"]))["dealer_com"]
        assert await state(store, child) == "waiting"
        assert (first["homenet"], child) in await store.edges()

        assert await claim_ids(store) == [first["seed"]]
        await storeops.complete(store, "w1", [first["seed"]])
        assert await state(store, first["homenet"]) == "ready"
        assert await state(store, child) == "waiting"
        assert await claim_ids(store) == [first["homenet"]]
        await storeops.complete(store, "w1", [first["homenet"]])
        assert await state(store, child) == "ready"


async def test_enqueue_unknown_dealer_is_a_usage_error_and_writes_nothing(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2")) as store:
        with pytest.raises(UsageError, match="unknown dealer 'nope'"):
            await store.enqueue(["d1", "nope", "d2"])
        assert await store.list_jobs() == []
        assert await store.edges() == []
        status = await store.status()
        assert status["total"] == 0


async def test_enqueue_unknown_type_is_a_usage_error(db_url: str) -> None:
    async with opened(db_url) as store:
        with pytest.raises(UsageError, match="unknown job type 'nope'"):
            await store.enqueue(["d1"], ["homenet", "nope"])
        assert await store.list_jobs() == []


# -- waiting -> ready -------------------------------------------------------------------------


async def test_child_becomes_ready_only_when_all_parents_succeeded(db_url: str) -> None:
    async with opened(db_url, DIAMOND_RULES) as store:
        ids = await pipeline(store)
        assert await states(store, ids) == {"a": "ready", "b": "ready", "c": "waiting"}
        assert sorted(await store.edges()) == sorted([(ids["a"], ids["c"]), (ids["b"], ids["c"])])

        assert sorted(await claim_ids(store)) == sorted([ids["a"], ids["b"]])
        done = await storeops.complete(store, "w1", [ids["a"]])
        assert done.promoted == []
        assert await state(store, ids["c"]) == "waiting"
        assert await trail(store, ids["c"]) == [(None, "waiting")]

        done = await storeops.complete(store, "w1", [ids["b"]])
        assert done.promoted == [ids["c"]]
        assert await state(store, ids["c"]) == "ready"
        assert await trail(store, ids["c"]) == [(None, "waiting"), ("waiting", "ready")]


async def test_both_parents_completed_in_one_batch_promote_child_once(db_url: str) -> None:
    async with opened(db_url, DIAMOND_RULES) as store:
        ids = await pipeline(store)
        await claim_ids(store)
        done = await storeops.complete(store, "w1", [ids["a"], ids["b"]])
        assert done.promoted == [ids["c"]]
        assert await trail(store, ids["c"]) == [(None, "waiting"), ("waiting", "ready")]


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


# -- operator retry ---------------------------------------------------------------------------


async def test_operator_retry_of_failed_parent_revives_children(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        await storeops.fail(store, "w1", [JobOutcome(home, "boom")])

        clock.advance(60)
        result = await store.retry(job_ids=[home], by="alice")
        assert result.changed == [home]
        assert sorted(result.followers) == sorted(
            [ids["dealer_com"], ids["product_scrape"], ids["url_shorten"]]
        )
        assert result.count == 4
        job = await store.get_job(home)
        assert job is not None
        assert job.state == "ready" and job.attempts == 0 and job.ready_at == T0 + 60
        e = await last_event(store, home)
        assert (e["from_state"], e["to_state"], e["worker"], e["message"]) == (
            "failed", "ready", "alice", "operator retry"
        )
        for t in ("dealer_com", "product_scrape", "url_shorten"):
            child = await store.get_job(ids[t])
            assert child is not None
            assert child.state == "waiting" and child.blocked_reason is None
            e = await last_event(store, ids[t])
            assert (e["from_state"], e["to_state"]) == ("blocked", "waiting")

        result2 = await store.claim("w1", 10, per_dealer=10, lease_s=30)
        assert [(c.id, c.attempt) for c in result2.jobs] == [(home, 1)]
        await storeops.complete(store, "w1", [home])
        assert await run_everything(store) == 3
        assert set((await states(store, ids)).values()) == {"succeeded"}


async def test_operator_retry_of_blocked_child_with_failed_parent_stays_blocked(
    db_url: str,
) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        await storeops.fail(store, "w1", [JobOutcome(home, "boom")])
        await store.retry(job_ids=[ids["dealer_com"]])
        child = await store.get_job(ids["dealer_com"])
        assert child is not None
        assert child.state == "blocked"
        assert child.blocked_reason is not None and f"#{home}" in child.blocked_reason
        assert (await last_event(store, ids["dealer_com"]))["to_state"] == "blocked"
        assert await state(store, home) == "failed"
        assert await claim_ids(store) == []


async def test_operator_retry_by_dealer_and_all_failed(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2", "d3")) as store:
        per = {d: await pipeline(store, d) for d in ("d1", "d2", "d3")}
        await claim_ids(store)
        await storeops.fail(store, 
            "w1", [JobOutcome(per[d]["homenet"], f"{d} down") for d in ("d1", "d2", "d3")]
        )
        result = await store.retry(dealer_id="d2")
        assert sorted(result.changed + result.followers) == sorted(per["d2"].values())
        assert await state(store, per["d2"]["homenet"]) == "ready"
        assert await state(store, per["d1"]["homenet"]) == "failed"
        assert await state(store, per["d3"]["homenet"]) == "failed"
        # d2's children end up waiting even though they were selected directly
        for t in ("dealer_com", "product_scrape", "url_shorten"):
            assert await state(store, per["d2"][t]) == "waiting"

        result = await store.retry(all_failed=True)
        assert sorted(result.changed + result.followers) == sorted(
            [*per["d1"].values(), *per["d3"].values()]
        )
        for d in ("d1", "d3"):
            assert await state(store, per[d]["homenet"]) == "ready"
        assert await run_everything(store) == 12
        assert (await store.status())["by_state"]["succeeded"] == 12


async def test_operator_retry_needs_a_selector(db_url: str) -> None:
    async with opened(db_url) as store:
        with pytest.raises(UsageError):
            await store.retry()


async def test_operator_retry_of_nothing_failed_changes_nothing(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        result = await store.retry(all_failed=True)
        assert result.count == 0
        assert await trail(store, ids["homenet"]) == [(None, "ready")]


async def test_operator_retry_relinks_job_blocked_for_missing_homenet(db_url: str) -> None:
    async with opened(db_url) as store:
        child = (await pipeline(store, types=["dealer_com"]))["dealer_com"]
        assert await state(store, child) == "blocked"
        home = (await pipeline(store, types=["homenet"]))["homenet"]
        assert await claim_ids(store) == [home]
        await storeops.complete(store, "w1", [home])
        assert await state(store, child) == "blocked"  # no edge yet, so not promoted

        result = await store.retry(job_ids=[child])
        assert result.changed == [child]
        job = await store.get_job(child)
        assert job is not None
        assert job.state == "ready" and job.blocked_reason is None
        assert (home, child) in await store.edges()
        e = await last_event(store, child)
        assert (e["from_state"], e["to_state"]) == ("blocked", "ready")
        assert await claim_ids(store) == [child]


async def test_operator_retry_relinks_to_unfinished_homenet_and_waits(db_url: str) -> None:
    async with opened(db_url) as store:
        child = (await pipeline(store, types=["dealer_com"]))["dealer_com"]
        home = (await pipeline(store, types=["homenet"]))["homenet"]
        await store.retry(job_ids=[child])
        assert await state(store, child) == "waiting"
        assert (home, child) in await store.edges()
        assert await claim_ids(store) == [home]
        await storeops.complete(store, "w1", [home])
        assert await state(store, child) == "ready"


async def test_operator_retry_of_job_still_missing_homenet_stays_blocked(db_url: str) -> None:
    """Retrying a job blocked for "no successful homenet run" while there is still no homenet
    job must not let it run without its prerequisite."""
    async with opened(db_url) as store:
        child = (await pipeline(store, types=["dealer_com"]))["dealer_com"]
        await store.retry(job_ids=[child])
        job = await store.get_job(child)
        assert job is not None
        assert job.state == "blocked", "ran without any homenet run"
        assert job.blocked_reason == "no successful homenet run"
        assert await claim_ids(store) == []


async def test_operator_retry_relinks_and_children_in_pipeline_follow(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store, types=["product_scrape", "url_shorten"])
        ps, us = ids["product_scrape"], ids["url_shorten"]
        job = await store.get_job(ps)
        assert job is not None and job.blocked_reason == "no successful homenet run"
        child = await store.get_job(us)
        assert child is not None and child.state == "blocked"
        assert await store.edges() == [(ps, us)]

        home = (await pipeline(store, types=["homenet"]))["homenet"]
        await claim_ids(store)
        await storeops.complete(store, "w1", [home])
        result = await store.retry(job_ids=[ps])
        assert result.changed == [ps] and result.followers == [us]
        assert await state(store, ps) == "ready"
        assert await state(store, us) == "waiting"
        assert await run_everything(store) == 2
        assert await state(store, us) == "succeeded"


async def test_operator_retry_follower_with_another_dead_parent_stays_blocked(
    db_url: str,
) -> None:
    async with opened(db_url, DIAMOND_RULES) as store:
        ids = await pipeline(store)
        await claim_ids(store)
        await storeops.fail(store, "w1", [JobOutcome(ids["a"], "a broke"), JobOutcome(ids["b"], "b broke")])
        assert await states(store, ids) == {"a": "failed", "b": "failed", "c": "blocked"}
        result = await store.retry(job_ids=[ids["a"]])
        # c stays blocked, so it is no follower: the message counts only what moved
        assert result.changed == [ids["a"]] and result.followers == []
        assert await state(store, ids["a"]) == "ready"
        c = await store.get_job(ids["c"])
        assert c is not None
        assert c.state == "blocked" and c.blocked_reason == f"parent b #{ids['b']} is failed"
        await store.retry(job_type="b")
        assert await states(store, ids) == {"a": "ready", "b": "ready", "c": "waiting"}
        assert await run_everything(store) == 3


# -- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["waiting", "ready", "running"])
async def test_cancel_blocks_descendants(db_url: str, which: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        if which == "running":
            await claim_ids(store)
        target = ids["product_scrape"] if which == "waiting" else ids["homenet"]
        assert await state(store, target) == which

        result = await store.cancel([target], by="bob")
        assert result.changed == [target]
        job = await store.get_job(target)
        assert job is not None
        assert job.state == "cancelled" and job.locked_by is None
        e = await last_event(store, target)
        assert (e["from_state"], e["to_state"], e["worker"], e["message"]) == (
            which, "cancelled", "bob", "operator cancel"
        )
        if which == "waiting":
            below = [ids["url_shorten"]]
        else:
            below = [ids["dealer_com"], ids["product_scrape"], ids["url_shorten"]]
        assert sorted(result.followers) == sorted(below)
        for i in below:
            child = await store.get_job(i)
            assert child is not None
            assert child.state == "blocked"
            assert child.blocked_reason == f"{job.job_type} #{target} cancelled"
            assert (await last_event(store, i))["to_state"] == "blocked"
        if which == "waiting":
            assert await state(store, ids["homenet"]) in ("ready", "running")
            assert await state(store, ids["dealer_com"]) == "waiting"


async def test_cancel_of_blocked_and_retrying_jobs(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        await claim_ids(store)
        await storeops.schedule_retry(store, "w1", [JobOutcome(ids["homenet"], "x", delay_s=10)])
        result = await store.cancel([ids["homenet"]])
        assert result.changed == [ids["homenet"]]
        assert await trail(store, ids["homenet"]) == [
            (None, "ready"), ("ready", "running"), ("running", "retrying"),
            ("retrying", "cancelled"),
        ]
        clock.advance(20)
        assert await claim_ids(store) == []
        # a blocked job can be cancelled too
        assert await state(store, ids["dealer_com"]) == "blocked"
        result = await store.cancel([ids["dealer_com"]])
        assert result.changed == [ids["dealer_com"]]
        assert await state(store, ids["dealer_com"]) == "cancelled"


async def test_cancel_succeeded_job_changes_nothing(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        await claim_ids(store)
        await storeops.complete(store, "w1", [ids["homenet"]])
        result = await store.cancel([ids["homenet"]])
        assert result.changed == [] and result.followers == [] and result.count == 0
        assert await state(store, ids["homenet"]) == "succeeded"
        assert (await last_event(store, ids["homenet"]))["to_state"] == "succeeded"
        # cancelling twice is a no-op the second time
        assert (await store.cancel([ids["dealer_com"]])).changed == [ids["dealer_com"]]
        assert (await store.cancel([ids["dealer_com"]])).changed == []


async def test_finishing_a_cancelled_running_job_is_ignored(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        home = ids["homenet"]
        await claim_ids(store)
        await store.cancel([home])
        for outcome in (
            storeops.complete(store, "w1", [home]),
            storeops.fail(store, "w1", [JobOutcome(home, "x")]),
            storeops.schedule_retry(store, "w1", [JobOutcome(home, "x", delay_s=1)]),
        ):
            done = await outcome
            assert done.done == [] and done.promoted == [] and done.blocked == []
            assert await state(store, home) == "cancelled"
        assert await state(store, ids["dealer_com"]) == "blocked"
        assert (await trail(store, home))[-1] == ("running", "cancelled")


async def test_cancelled_job_can_be_retried_by_id(db_url: str) -> None:
    async with opened(db_url) as store:
        ids = await pipeline(store)
        await store.cancel([ids["homenet"]])
        result = await store.retry(job_ids=[ids["homenet"]])
        assert result.changed == [ids["homenet"]]
        assert len(result.followers) == 3
        assert await state(store, ids["homenet"]) == "ready"
        assert await run_everything(store) == 4


# -- pause / resume ---------------------------------------------------------------------------


async def test_global_pause(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2")) as store:
        await store.enqueue(["d1", "d2"])
        await store.set_paused(True, by="ops", reason="maintenance")
        pauses = await store.pauses()
        assert [(p.scope, p.key, p.by, p.reason) for p in pauses] == [
            ("global", "", "ops", "maintenance")
        ]
        assert (await store.status())["paused"]["global"] is True
        assert await claim_ids(store) == []
        await store.set_paused(False)
        assert await store.pauses() == []
        assert len(await claim_ids(store)) == 2


async def test_dealer_pause(db_url: str) -> None:
    async with opened(db_url, dealers=("d1", "d2")) as store:
        await store.enqueue(["d1", "d2"])
        await store.set_paused(True, dealer_id="d1")
        assert [(p.scope, p.key) for p in await store.pauses()] == [("dealer", "d1")]
        got = await store.claim("w1", 10, per_dealer=10, lease_s=30)
        assert [c.dealer_id for c in got.jobs] == ["d2"]
        assert await claim_ids(store) == []
        await store.set_paused(False, dealer_id="d1")
        got = await store.claim("w1", 10, per_dealer=10, lease_s=30)
        assert [c.dealer_id for c in got.jobs] == ["d1"]


async def test_type_pause(db_url: str) -> None:
    async with opened(db_url, INDEPENDENT_RULES, dealers=("d1", "d2")) as store:
        await store.enqueue(["d1", "d2"])
        await store.set_paused(True, job_type="t1")
        await store.set_paused(True, job_type="t3")
        assert [(p.scope, p.key) for p in await store.pauses()] == [
            ("type", "t1"), ("type", "t3")
        ]
        got = await store.claim("w1", 100, per_dealer=100, lease_s=30)
        assert sorted((c.dealer_id, c.job_type) for c in got.jobs) == sorted(
            (d, t) for d in ("d1", "d2") for t in ("t2", "t4", "t5")
        )
        await store.set_paused(False, job_type="t1")
        got = await store.claim("w1", 100, per_dealer=100, lease_s=30)
        assert sorted((c.dealer_id, c.job_type) for c in got.jobs) == [("d1", "t1"), ("d2", "t1")]
        assert [(p.scope, p.key) for p in await store.pauses()] == [("type", "t3")]


async def test_dealer_and_type_pause_together(db_url: str) -> None:
    async with opened(db_url, INDEPENDENT_RULES, dealers=("d1", "d2")) as store:
        await store.enqueue(["d1", "d2"])
        await store.set_paused(True, dealer_id="d1", job_type="t2")
        assert [(p.scope, p.key) for p in await store.pauses()] == [
            ("dealer", "d1"), ("type", "t2")
        ]
        got = await store.claim("w1", 100, per_dealer=100, lease_s=30)
        assert sorted(c.job_type for c in got.jobs) == ["t1", "t3", "t4", "t5"]
        assert {c.dealer_id for c in got.jobs} == {"d2"}
        # pausing twice is idempotent
        await store.set_paused(True, dealer_id="d1")
        assert len(await store.pauses()) == 2


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


# -- status -----------------------------------------------------------------------------------


async def test_status_shape(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock, dealers=("d1", "d2", "d3")) as store:
        empty = await store.status()
        assert empty["total"] == 0
        assert set(empty["by_state"]) == set(ALL_STATES)
        assert set(empty["by_state"].values()) == {0}
        assert set(empty["by_type"]) == set(DEFAULT_RULES)
        assert set(empty["by_dealer"]) == {"d1", "d2", "d3"}
        assert empty["paused"] == {"global": False, "dealers": [], "types": []}
        assert empty["workers"] == []

        await store.enqueue(["d1", "d2"])
        await store.register_worker("w1", host="box", pid=123, kind="worker")
        await store.register_worker("w2", host="box", pid=124, kind="run-once")
        await store.unregister_worker("w2")
        await claim_ids(store, "w1", only_dealers=["d1"])
        await store.set_paused(True, dealer_id="d2")
        await store.set_paused(True, job_type="url_shorten")

        s = await store.status()
        assert s["total"] == 8
        assert s["by_state"] == {
            "waiting": 6, "ready": 1, "running": 1, "retrying": 0,
            "succeeded": 0, "failed": 0, "blocked": 0, "cancelled": 0, "skipped": 0,
        }
        assert list(s["by_state"]) == list(ALL_STATES)
        for name, counts in s["by_type"].items():
            assert set(counts) == set(ALL_STATES), name
        assert s["by_type"]["homenet"]["running"] == 1
        assert s["by_type"]["homenet"]["ready"] == 1
        assert s["by_type"]["url_shorten"]["waiting"] == 2
        assert s["by_dealer"]["d1"]["running"] == 1 and s["by_dealer"]["d1"]["waiting"] == 3
        assert s["by_dealer"]["d2"]["ready"] == 1
        assert s["by_dealer"]["d3"] == dict.fromkeys(ALL_STATES, 0)
        assert s["paused"] == {"global": False, "dealers": ["d2"], "types": ["url_shorten"]}
        assert s["workers"] == [
            {
                "id": "w1", "host": "box", "pid": 123, "kind": "worker",
                "started_at": T0, "heartbeat_at": T0, "running": 1,
            }
        ]


# -- schema -----------------------------------------------------------------------------------


async def test_init_schema_is_idempotent(db_url: str) -> None:
    store = JobStore(Database(db_url), DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) is None
        assert await migrate.init_schema(store.db) is True
        assert await migrate.init_schema(store.db) is False
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        await migrate.check_schema(store.db)
    finally:
        await store.close()
    again = await JobStore.open(db_url, DEFAULT_RULES, create=False)
    try:
        assert await storeops.schema_version(again) == SCHEMA_VERSION
        assert await migrate.init_schema(again.db) is False
    finally:
        await again.close()


async def test_open_without_create_on_empty_database_fails_clearly(db_url: str) -> None:
    with pytest.raises(StoreUnavailable, match="init-db"):
        await JobStore.open(db_url, DEFAULT_RULES, create=False)


async def test_version_1_database_is_upgraded_on_first_use(db_url: str) -> None:
    """A database made by schema version 1 (no audit_log) gets the new table and version."""
    from sqlalchemy import text

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        async with store.db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE audit_log"))
            await conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"], by="alice@host")
        [entry] = await store.audit_entries()
        assert (entry["who"], entry["action"], entry["count"]) == ("alice@host", "enqueue", 4)
    finally:
        await store.close()


async def test_version_2_database_loses_the_state_index_on_upgrade(db_url: str) -> None:
    """Version 3 dropped ix_jobs_state_type (every transition paid for it), and on Postgres
    ix_jobs_dealer_type; an older database has them removed on first use, and its jobs run."""
    from sqlalchemy import inspect, text

    async def job_indexes(store: JobStore) -> set[str]:
        async with store.db.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {ix["name"] for ix in inspect(sync).get_indexes("jobs")}
            )

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        async with store.db.engine.begin() as conn:
            await conn.execute(text("CREATE INDEX ix_jobs_state_type ON jobs (state, job_type)"))
            if not db_url.startswith("sqlite"):
                await conn.execute(text(
                    "CREATE INDEX ix_jobs_dealer_type ON jobs (dealer_id, job_type, id)"))
            await conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
        assert "ix_jobs_state_type" in await job_indexes(store)
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        names = await job_indexes(store)
        assert "ix_jobs_state_type" not in names
        assert {"ix_jobs_ready", "ix_jobs_running_dealer"} <= names
        # the newest-job-per-lane index stays where it is free (SQLite), not on Postgres
        assert ("ix_jobs_dealer_type" in names) == db_url.startswith("sqlite")
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"])
        claimed = await store.claim("w", 10, per_dealer=1, lease_s=30)
        assert [j.job_type for j in claimed.jobs] == ["homenet"]
    finally:
        await store.close()


async def test_version_3_database_gains_the_new_columns_on_upgrade(db_url: str) -> None:
    """Version 4 added jobs.claim_seq (the fencing token) and dealers.disabled_at; a version 3
    database without them gets them on first use, its jobs keep their rows and still run."""
    from sqlalchemy import inspect, text

    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"])
        async with store.db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE jobs DROP COLUMN claim_seq"))
            await conn.execute(text("ALTER TABLE dealers DROP COLUMN disabled_at"))
            await conn.execute(text("UPDATE meta SET value = '3' WHERE key = 'schema_version'"))
    finally:
        await store.close()
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        async with store.db.engine.connect() as conn:
            cols = await conn.run_sync(lambda sync: {
                t: {c["name"] for c in inspect(sync).get_columns(t)} for t in ("jobs", "dealers")
            })
        assert "claim_seq" in cols["jobs"] and "disabled_at" in cols["dealers"]
        claimed = await store.claim("w", 10, per_dealer=1, lease_s=30)
        assert [j.job_type for j in claimed.jobs] == ["homenet"]
    finally:
        await store.close()


async def test_forty_thousand_dealers_in_one_call(db_url: str) -> None:
    """A dealers file or `enqueue` of every dealer is one call with the whole list; an
    expanding IN of one parameter per dealer stopped at 32,767 on both backends (Postgres
    said "the number of query arguments cannot exceed 32767")."""
    store = await JobStore.open(db_url, DEFAULT_RULES)
    try:
        ids = [f"d{i:05d}" for i in range(40_000)]
        assert await store.add_dealers([(d, None) for d in ids]) == 40_000
        assert await store.add_dealers([(d, "again") for d in ids[:3]]) == 0
        new = await store.enqueue(ids, ["homenet"])
        assert len(new) == 40_000
        assert len(await store.enqueue(ids[:5], ["dealer_com"])) == 5  # links to the latest
    finally:
        await store.close()
