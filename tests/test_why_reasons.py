"""`why`: every reason that holds a job, with the numbers, on both backends — one reason at a
time (parents, blocked ancestors, pauses, breakers, backoff, dealer slots, leases, finished,
jobs ahead) and several at once.

Times matter, so the store runs on a controllable clock and `reasons()` is called with that
clock's "now" directly.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock, claim, pipeline
from whycase import CONFIG, T0, codes, only, opened, put_breaker, state, why

from dealertui.engine.explain import Reason
from dealertui.model import JobOutcome
from dealertui.store import JobStore


def by_code(rs: list[Reason], code: str) -> list[Reason]:
    return [r for r in rs if r.code == code]


async def fail_homenet(store: JobStore, ids: dict[str, int], error: str = "HTTP 503") -> None:
    assert await claim(store, only_dealers=[await dealer_of(store, ids["homenet"])]) == [
        ids["homenet"]
    ]
    await storeops.fail(store, "w1", [JobOutcome(ids["homenet"], error)])


async def dealer_of(store: JobStore, job_id: int) -> str:
    job = await store.get_job(job_id)
    assert job is not None
    return job.dealer_id


# --- why: one reason at a time --------------------------------------------------------------

@pytest.mark.anyio
async def test_waiting_on_parents_names_parent_type_id_and_state(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        r = only(await why(store, ids["dealer_com"], clock()), "waiting_on_parents")
        assert f"homenet #{ids['homenet']} (ready)" in r.text
        assert "waiting on 1 of 1 parents" in r.text
        assert r.data == {"parents": {ids["homenet"]: "ready"}}
        # two levels down: the direct parent, not the grandparent
        r = only(await why(store, ids["url_shorten"], clock()), "waiting_on_parents")
        assert f"product_scrape #{ids['product_scrape']} (waiting)" in r.text
        assert "homenet" not in r.text
        # the parent runs: the child says so
        assert await claim(store) == [ids["homenet"]]
        r = only(await why(store, ids["dealer_com"], clock()), "waiting_on_parents")
        assert f"homenet #{ids['homenet']} (running)" in r.text


@pytest.mark.anyio
async def test_blocked_by_failed_ancestor_names_it(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        await fail_homenet(store, ids, "HTTP 503 from feed host")
        assert await state(store, ids["url_shorten"]) == "blocked"
        rs = await why(store, ids["url_shorten"], clock())
        # the failed grandparent first; the (blocked) direct parent it waits on after it
        assert codes(rs) == ["blocked_by_ancestor", "waiting_on_parents"], rs
        anc = rs[0]
        assert f"homenet #{ids['homenet']} (failed)" in anc.text
        assert "retry it" in anc.text
        assert anc.data == {"ancestors": [ids["homenet"]]}
        assert f"product_scrape #{ids['product_scrape']} (blocked)" in rs[1].text
        # the plain "blocked" reason is not repeated when the ancestor explains it
        assert not by_code(rs, "blocked")
        # the failed job itself: finished, with its error
        r = only(await why(store, ids["homenet"], clock()), "finished")
        assert "failed: HTTP 503 from feed host" in r.text
        assert r.data == {"state": "failed"}


@pytest.mark.anyio
async def test_blocked_by_cancelled_ancestor(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        await store.cancel([ids["homenet"]])
        rs = await why(store, ids["dealer_com"], clock())
        assert codes(rs) == ["blocked_by_ancestor", "waiting_on_parents"], rs
        assert f"homenet #{ids['homenet']} (cancelled)" in rs[0].text


@pytest.mark.anyio
async def test_blocked_for_lack_of_a_prerequisite_run(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store, types=["dealer_com"])
        r = only(await why(store, ids["dealer_com"], clock()), "blocked")
        assert "no successful homenet run" in r.text
        assert r.data == {"reason": "no successful homenet run"}
        # in-pipeline child of a blocked job: blocked, names the blocked parent
        ids = await pipeline(store, types=["product_scrape", "url_shorten"])
        rs = await why(store, ids["url_shorten"], clock())
        assert codes(rs) == ["blocked", "waiting_on_parents"], rs
        assert "parent product_scrape is blocked" in rs[0].text
        assert f"product_scrape #{ids['product_scrape']} (blocked)" in rs[1].text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("scope", "kw", "needle"),
    [
        ("global", {}, "everything is paused"),
        ("dealer", {"dealer_id": "d1"}, "dealer d1 is paused"),
        ("type", {"job_type": "homenet"}, "job type homenet is paused"),
    ],
)
async def test_paused_says_what_by_whom_since_when_and_why(
    db_url: str, scope: str, kw: dict[str, str], needle: str
) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        ids = await pipeline(store)
        await store.set_paused(True, by="bob@ops", reason="feed maintenance", **kw)
        clock.advance(90)
        r = only(await why(store, ids["homenet"], clock()), "paused")
        assert needle in r.text
        assert "by bob@ops" in r.text
        assert "90s ago" in r.text
        assert "(feed maintenance)" in r.text
        assert r.data == {"scope": scope, "key": kw.get("dealer_id") or kw.get("job_type") or "",
                          "by": "bob@ops", "at": T0}
        clock.advance(210)
        assert "5m ago" in only(await why(store, ids["homenet"], clock()), "paused").text
        # paused again without a reason (a second operator, a script): who, since when and
        # why are kept; they were wiped
        await store.set_paused(True, by="alice@ops", **kw)
        again = only(await why(store, ids["homenet"], clock()), "paused").text
        assert "by bob@ops" in again and "5m ago" in again and "(feed maintenance)" in again
        # resumed: ready again, nothing holds it
        await store.set_paused(False, **kw)
        only(await why(store, ids["homenet"], clock()), "ready")


@pytest.mark.anyio
async def test_pause_of_another_dealer_or_type_does_not_count(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        ids = await pipeline(store)
        await store.set_paused(True, dealer_id="d2", by="bob", reason="x")
        await store.set_paused(True, job_type="url_shorten", by="bob", reason="y")
        only(await why(store, ids["homenet"], clock()), "ready")


@pytest.mark.anyio
async def test_pause_without_by_or_reason(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        await store.set_paused(True)
        clock.advance(5)
        r = only(await why(store, ids["homenet"], clock()), "paused")
        assert r.text == "everything is paused 5s ago"


@pytest.mark.anyio
async def test_breaker_open_names_key_and_half_open_time(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        ids = await pipeline(store)
        await put_breaker(store, "type:homenet", "homenet", "open", failures=7, calls=20,
                          half_open_at=T0 + 45)
        # breakers of another type, another dealer, or closed ones do not count
        await put_breaker(store, "type:dealer_com", "dealer_com", "open", half_open_at=T0 + 45)
        await put_breaker(store, "dealer:d2:homenet", "homenet", "open", dealer_id="d2",
                          half_open_at=T0 + 45)
        await put_breaker(store, "dealer:d1:homenet", "homenet", "closed", dealer_id="d1",
                          failures=1)
        r = only(await why(store, ids["homenet"], clock()), "breaker_open")
        assert "type:homenet" in r.text
        assert "is open: 7/20 dealers failed (35%); half-open in 45s" in r.text
        assert "half-open in 45s" in r.text
        assert r.data == {"key": "type:homenet", "half_open_at": T0 + 45}
        clock.advance(15)
        assert "half-open in 30s" in only(
            await why(store, ids["homenet"], clock()), "breaker_open").text


@pytest.mark.anyio
async def test_breaker_opened_by_failures(db_url: str) -> None:
    clock = Clock(T0)
    # one dealer is far from type_min_dealers, so the shared type breaker stays closed
    n = CONFIG.circuit_breaker.dealer_min_calls
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        for _ in range(n):
            await store.enqueue(["d1"], ["homenet"])
        clock.advance(1)
        ids = await claim(store)
        assert len(ids) == n
        await storeops.schedule_retry(store, "w1", [JobOutcome(i, "HTTP 503", 0.0) for i in ids])
        assert {b["key"]: b["state"] for b in await store.breaker_states()} == {
            "dealer:d1:homenet": "open"
        }
        clock.advance(10)
        rs = await why(store, ids[0], clock())
        assert codes(rs) == ["breaker_open", "backoff"], rs
        reset = CONFIG.circuit_breaker.reset_timeout_s
        assert "dealer:d1:homenet" in rs[0].text
        assert f"is open: {n}/{n} failed (100%)" in rs[0].text
        assert f"half-open in {int(reset - 10)}s" in rs[0].text
        assert "backoff is over" in rs[1].text and "HTTP 503" in rs[1].text


@pytest.mark.anyio
async def test_breaker_half_open_counts_trial_jobs_left(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        await put_breaker(store, "dealer:d1:homenet", "homenet", "half_open", dealer_id="d1",
                          half_open_at=T0 - 1)
        r = only(await why(store, ids["homenet"], clock()), "breaker_half_open")
        assert "dealer:d1:homenet" in r.text
        left = CONFIG.circuit_breaker.half_open_max_jobs
        assert f"{left} trial jobs left" in r.text
        assert r.data == {"key": "dealer:d1:homenet"}


@pytest.mark.anyio
async def test_backoff_runs_in(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        assert await claim(store) == [ids["homenet"]]
        await storeops.schedule_retry(store, "w1", [JobOutcome(ids["homenet"], "timeout", 120.0)])
        clock.advance(30)
        r = only(await why(store, ids["homenet"], clock()), "backoff")
        assert "attempt 1 of 5" in r.text
        assert "runs in 90s" in r.text
        assert "(last error: timeout)" in r.text
        assert r.data == {"run_after": T0 + 120, "attempts": 1}
        clock.advance(100)
        r = only(await why(store, ids["homenet"], clock()), "backoff")
        assert "backoff is over" in r.text and "runs in" not in r.text
        # its children wait on it, and say it is retrying
        r = only(await why(store, ids["dealer_com"], clock()), "waiting_on_parents")
        assert f"homenet #{ids['homenet']} (retrying)" in r.text


@pytest.mark.anyio
async def test_dealer_slots_full(db_url: str) -> None:
    clock = Clock(T0)
    limit = CONFIG.concurrency.max_concurrent_jobs_per_dealer
    assert limit == 2
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        for _ in range(3):
            await store.enqueue(["d1"], ["homenet"])
        other = (await pipeline(store, "d2", ["homenet"]))["homenet"]
        running = await claim(store, per_dealer=limit, only_dealers=["d1"])
        assert len(running) == 2
        left = [j.id for j in await store.list_jobs(dealer_id="d1") if j.state == "ready"]
        assert len(left) == 1
        r = only(await why(store, left[0], clock()), "dealer_slots_full")
        assert "dealer d1 already runs 2 jobs, its limit of 2" in r.text
        assert r.data == {"running": 2, "limit": 2}
        # another dealer's ready job is not held by d1's slots
        assert codes(await why(store, other, clock())) == ["ready"]
        # one finishes: the slot is free again
        await storeops.complete(store, "w1", running[:1])
        only(await why(store, left[0], clock()), "ready")


@pytest.mark.anyio
async def test_running_names_the_lease_holder(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        assert await claim(store, "worker-7@box", lease_s=60) == [ids["homenet"]]
        clock.advance(20)
        r = only(await why(store, ids["homenet"], clock()), "running")
        assert "lease held by worker-7@box" in r.text
        assert "since 20s ago" in r.text
        assert "expiring in 40s" in r.text
        assert r.data == {"locked_by": "worker-7@box", "started_at": T0,
                          "locked_until": T0 + 60}
        # its worker went silent: not "expiring in 0s" for ever
        clock.advance(100)
        r = only(await why(store, ids["homenet"], clock()), "lease_expired")
        assert "lease expired 60s ago" in r.text and "reset-stuck" in r.text, r.text
        assert "worker-7@box" in r.text


@pytest.mark.anyio
async def test_finished_succeeded_failed_cancelled(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        assert await claim(store) == [ids["homenet"]]
        await storeops.complete(store, "w1", [ids["homenet"]])
        r = only(await why(store, ids["homenet"], clock()), "finished")
        assert r.text == "it already succeeded"
        assert r.data == {"state": "succeeded"}
        await store.cancel([ids["dealer_com"]])
        r = only(await why(store, ids["dealer_com"], clock()), "finished")
        assert "it finished as cancelled; retry it" in r.text
        ps = ids["product_scrape"]
        assert await claim(store) == [ps]
        await storeops.fail(store, "w1", [JobOutcome(ps, "parse error at line 3")])
        r = only(await why(store, ps, clock()), "finished")
        assert r.text.startswith("it finished as failed: parse error at line 3; retry it")


@pytest.mark.anyio
async def test_ready_counts_jobs_ahead(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock, dealers=("d1", "d2", "d3")) as store:
        first = await pipeline(store, "d1")
        second = await pipeline(store, "d2")
        third = await pipeline(store, "d3")
        r = only(await why(store, first["homenet"], clock()), "ready")
        assert "0 ready jobs come before it" in r.text
        assert r.data == {"ready_ahead": 0}
        r = only(await why(store, third["homenet"], clock()), "ready")
        assert "2 ready jobs come before it" in r.text
        assert r.data == {"ready_ahead": 2}
        assert only(await why(store, second["homenet"], clock()), "ready").data == {
            "ready_ahead": 1}


# --- why: several reasons at once -------------------------------------------------------------


@pytest.mark.anyio
async def test_paused_and_waiting_together(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        await store.set_paused(True, by="bob", reason="global freeze")
        await store.set_paused(True, dealer_id="d1", by="carol", reason="dealer asked")
        clock.advance(60)
        rs = await why(store, ids["dealer_com"], clock())
        assert codes(rs) == ["waiting_on_parents", "paused", "paused"], rs
        texts = " | ".join(r.text for r in rs)
        assert f"homenet #{ids['homenet']} (ready)" in texts
        assert "everything is paused by bob 60s ago (global freeze)" in texts
        assert "dealer d1 is paused by carol 60s ago (dealer asked)" in texts
        assert {r.data["scope"] for r in by_code(rs, "paused")} == {"global", "dealer"}


@pytest.mark.anyio
async def test_backoff_breaker_pause_and_full_slots_together(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock, dealers=("d1", "d2")) as store:
        for _ in range(3):
            await store.enqueue(["d1"], ["homenet"])
        first, *rest = await claim(store, per_dealer=1, only_dealers=["d1"])
        assert not rest
        await storeops.schedule_retry(store, "w1", [JobOutcome(first, "HTTP 500", 300.0)])
        assert len(await claim(store, per_dealer=2, only_dealers=["d1"])) == 2
        await store.set_paused(True, job_type="homenet", by="bob", reason="flaky")
        await put_breaker(store, "type:homenet", "homenet", "open", half_open_at=T0 + 120)
        clock.advance(60)
        rs = await why(store, first, clock())
        assert codes(rs) == ["paused", "breaker_open", "backoff", "dealer_slots_full"], rs
        assert "half-open in 60s" in rs[1].text
        assert "runs in 4m" in rs[2].text
        assert "already runs 2 jobs" in rs[3].text
