"""The operator's transitions of the job state machine (docs/design.md, "Job states"): retry,
cancel, pause and resume; on SQLite and Postgres.

Every test checks the state the store holds *and* the job_events audit rows the transition
wrote. Time comes from a controllable clock so leases and retry delays are deterministic.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock
from jobstates import (
    DIAMOND_RULES,
    INDEPENDENT_RULES,
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

from dealertui.errors import UsageError
from dealertui.model import JobOutcome

pytestmark = pytest.mark.anyio


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
