"""Enqueue and waiting -> ready of docs/design.md ("Job states"), on SQLite and Postgres.

Every test checks the state the store holds *and* the job_events audit rows the transition
wrote. Time comes from a controllable clock so leases and retry delays are deterministic.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock
from jobstates import (
    DEFAULT_RULES,
    DIAMOND_RULES,
    T0,
    claim_ids,
    last_event,
    opened,
    pipeline,
    state,
    states,
    trail,
)

from dealertui.errors import UsageError
from dealertui.model import JobOutcome
from dealertui.store import JobTypeRule

pytestmark = pytest.mark.anyio


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
