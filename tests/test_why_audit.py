"""`why` (every reason that holds, with the numbers) and the operator audit log, on both
backends; the CLI side of each in-process (SQLite is enough there).

Times matter in both, so the store runs on a controllable clock and `reasons()` is called with
that clock's "now" directly.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import storeops
from helpers import Clock, claim, cli, job_ids, ok, one_error, pipeline
from helpers import opened as opened_store
from sqlalchemy import insert

from dealertui.config import Config, parse_config
from dealertui.engine.actions import Operator
from dealertui.engine.detail import explain
from dealertui.engine.explain import Reason, reasons
from dealertui.model import JobOutcome
from dealertui.store import JobStore
from dealertui.store.reads import why_facts
from dealertui.store.schema import breakers as breakers_table

T0 = 10_000.0
CONFIG: Config = parse_config({}, None)  # homenet → dealer_com, product_scrape → url_shorten
WHO = "alice@host"


@asynccontextmanager
async def opened(
    db_url: str, clock: Clock, dealers: Sequence[str] = ("d1",)
) -> AsyncIterator[JobStore]:
    async with opened_store(db_url, clock=clock, dealers=dealers, config=CONFIG) as store:
        yield store


async def why(store: JobStore, job_id: int, now: float) -> list[Reason]:
    facts = await why_facts(store, job_id)
    assert facts is not None
    return reasons(facts, CONFIG, now)


def codes(rs: list[Reason]) -> list[str]:
    return [r.code for r in rs]


def only(rs: list[Reason], code: str) -> Reason:
    """The one reason with *code*, and no other reason at all."""
    assert codes(rs) == [code], [(r.code, r.text) for r in rs]
    return rs[0]


def by_code(rs: list[Reason], code: str) -> list[Reason]:
    return [r for r in rs if r.code == code]


async def fail_homenet(store: JobStore, ids: dict[str, int], error: str = "HTTP 503") -> None:
    assert await claim(store, only_dealers=[await dealer_of(store, ids["homenet"])]) == [
        ids["homenet"]
    ]
    await storeops.fail(store, "w1", [JobOutcome(ids["homenet"], error)])


async def state(store: JobStore, job_id: int) -> str:
    job = await store.get_job(job_id)
    assert job is not None
    return job.state


async def dealer_of(store: JobStore, job_id: int) -> str:
    job = await store.get_job(job_id)
    assert job is not None
    return job.dealer_id


async def put_breaker(store: JobStore, key: str, job_type: str, state: str, *,
                      dealer_id: str | None = None, failures: int = 5, calls: int = 5,
                      trials: int = 0, half_open_at: float | None = None) -> None:
    now = store.clock()

    async def tx(conn: Any) -> None:
        await conn.execute(insert(breakers_table).values(
            key=key, dealer_id=dealer_id, job_type=job_type, state=state, failures=failures,
            calls=calls, window_started_at=now, opened_at=now if state != "closed" else None,
            half_open_at=half_open_at, trials=trials, updated_at=now,
        ))

    await store.db.run(tx)


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


# --- explain() and the why CLI ----------------------------------------------------------------


@pytest.mark.anyio
async def test_explain_json_shape(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)
        assert await explain(store, CONFIG, 999_999) is None
        got = await explain(store, CONFIG, ids["dealer_com"])
        assert got is not None
        assert got["job"] == {"id": ids["dealer_com"], "dealer_id": "d1",
                              "job_type": "dealer_com", "state": "waiting", "attempts": 0,
                              "max_attempts": 5}
        assert [r["code"] for r in got["reasons"]] == ["waiting_on_parents"]
        assert set(got["reasons"][0]) == {"code", "text", "data"}
        json.dumps(got)  # serialisable as is


def test_why_cli_text_json_and_errors(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "enqueue", "--dealer", "d1"))
    ok(cli(tmp_path, url, "pause", "--dealer", "d1", "--reason", "feed down"))
    ids = job_ids(url, "d1")
    out = ok(cli(tmp_path, url, "why", "--job", str(ids["dealer_com"]))).splitlines()
    assert out[0] == f"job {ids['dealer_com']}: d1 dealer_com, waiting (attempt 0 of 5)"
    assert len(out) == 3, out
    assert out[1].startswith("  - waiting on 1 of 1 parents: ")
    assert f"homenet #{ids['homenet']} (ready)" in out[1]
    assert out[2].startswith("  - dealer d1 is paused by ")
    assert "(feed down)" in out[2]

    got = json.loads(ok(cli(tmp_path, url, "why", "--job", str(ids["homenet"]), "--json")))
    assert set(got) == {"job", "reasons"}
    assert got["job"]["id"] == ids["homenet"] and got["job"]["state"] == "ready"
    assert [r["code"] for r in got["reasons"]] == ["paused"]
    assert all(set(r) == {"code", "text", "data"} for r in got["reasons"])
    assert got["reasons"][0]["data"]["scope"] == "dealer"
    assert got["reasons"][0]["data"]["key"] == "d1"

    ok(cli(tmp_path, url, "resume", "--dealer", "d1"))
    out = ok(cli(tmp_path, url, "why", "--job", str(ids["homenet"]))).splitlines()
    assert out[1].startswith("  - ready: nothing holds it; 0 ready jobs come before it")

    one_error(cli(tmp_path, url, "why", "--job", "999999"), 2, "no job 999999")
    one_error(
        cli(tmp_path, "postgresql://u:s3cret@127.0.0.1:1/x", "why", "--job", "1"), 3,
        "127.0.0.1",
    )


# --- audit log --------------------------------------------------------------------------------


@asynccontextmanager
async def operator(db_url: str, clock: Clock, dealers: Sequence[str] = ("d1", "d2")
                   ) -> AsyncIterator[Operator]:
    async with opened(db_url, clock, dealers) as store:
        yield Operator(store, CONFIG, who=WHO)


@pytest.mark.anyio
async def test_every_operator_action_writes_one_audit_row(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        assert await store.audit_entries() == []

        new = await op.enqueue(["d1"])
        assert len(new) == 4
        clock.advance(10)
        await op.set_paused(True, dealer_id="d1", reason="feed down")
        clock.advance(10)
        await op.set_paused(True, job_type="homenet", reason="flaky")
        clock.advance(10)
        await op.set_paused(True, reason="freeze")
        clock.advance(10)
        await op.set_paused(False)
        await op.set_paused(False, dealer_id="d1")
        await op.set_paused(False, job_type="homenet")
        ids = {j.job_type: j.id for j in await store.list_jobs(job_ids=new)}
        hn = ids["homenet"]
        clock.advance(10)
        assert await claim(store) == [hn]
        await storeops.fail(store, "w1", [JobOutcome(hn, "HTTP 503")])
        res = await op.retry(job_ids=[hn], reason="feed fixed")
        assert res.changed == [hn] and len(res.followers) == 3
        clock.advance(10)
        await op.cancel([ids["url_shorten"]], reason="not needed")
        clock.advance(10)
        assert await claim(store, lease_s=30) == [hn]
        clock.advance(60)  # the lease expired: stuck
        res = await op.reset_stuck()
        assert res.changed == [hn]

        rows = await store.audit_entries()
        got = [(r["action"], r["target"], r["job_ids"], r["count"], r["reason"]) for r in rows]
        assert got == [
            ("reset-stuck", "stuck jobs", [hn], 1, None),
            ("cancel", f"job {ids['url_shorten']}", [ids["url_shorten"]], 1, "not needed"),
            ("retry", f"job {hn}", [hn], 1, "feed fixed"),
            ("resume", "type homenet", [], 0, None),
            ("resume", "dealer d1", [], 0, None),
            ("resume", "everything", [], 0, None),
            ("pause", "everything", [], 0, "freeze"),
            ("pause", "type homenet", [], 0, "flaky"),
            ("pause", "dealer d1", [], 0, "feed down"),
            ("enqueue", "dealer d1", sorted(new), 4, None),
        ]
        assert {r["who"] for r in rows} == {WHO}
        ats = [r["at"] for r in rows]
        assert ats == sorted(ats, reverse=True)
        assert ats[-1] == T0 and ats[0] == T0 + 130
        assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
        assert set(rows[0]) == {"id", "at", "who", "action", "target", "job_ids", "count",
                                "reason"}

        # since: only actions at or after that moment, still newest first
        recent = await store.audit_entries(since=T0 + 60)  # the cancel's moment
        assert [r["action"] for r in recent] == ["reset-stuck", "cancel"]
        assert [r["action"] for r in await store.audit_entries(limit=2)] == [
            "reset-stuck", "cancel"]
        assert await store.audit_entries(since=T0 + 1000) == []


@pytest.mark.anyio
async def test_audit_targets_name_what_was_aimed_at(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        await op.enqueue(["d1", "d2"], types=["homenet"])
        await op.enqueue(all_dealers=True, types=["homenet", "dealer_com"])
        hn = [j.id for j in await store.list_jobs() if j.job_type == "homenet"]
        assert len(await claim(store)) == 4  # every homenet job
        await storeops.fail(store, "w1", [JobOutcome(i, "boom") for i in hn])
        await op.retry(dealer_id="d1", reason="by dealer")  # 2 homenet + 1 blocked dealer_com
        await op.retry(job_type="homenet")  # d2's two; its blocked dealer_com follows
        clock.advance(5)
        assert len(await claim(store, only_dealers=["d2"])) == 2
        clock.advance(120)
        await op.reset_stuck(older_than_s=100)
        rows = await store.audit_entries()
        assert [(r["action"], r["target"], r["count"]) for r in rows] == [
            ("reset-stuck", "stuck jobs (older than 100s)", 2),
            ("retry", "type homenet", 2),
            ("retry", "dealer d1", 3),
            ("enqueue", "dealer d1, d2; types homenet, dealer_com", 4),
            ("enqueue", "dealer d1, d2; types homenet", 2),
        ]
        # rescued jobs with attempts left are ready again: nothing failed, nothing to audit
        assert (await op.retry(all_failed=True)).changed == []
        assert len(await store.audit_entries()) == 5


@pytest.mark.anyio
async def test_engine_rescue_and_noop_actions_write_no_audit_rows(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)  # the engine / a script: no by, no audit row
        assert await store.audit_entries() == []
        assert await claim(store, lease_s=30) == [ids["homenet"]]
        clock.advance(60)
        res = await store.rescue_expired()  # the engine's own lease rescue
        assert res.changed == [ids["homenet"]]
        assert await store.audit_entries() == []

        op = Operator(store, CONFIG, who=WHO)
        # nothing failed or blocked: a retry that changes nothing writes nothing
        assert (await op.retry(all_failed=True)).changed == []
        assert (await op.retry(dealer_id="d1")).changed == []
        assert (await op.retry(job_ids=[ids["homenet"]], reason="x")).changed == []  # ready
        # nothing stuck: a reset that rescues nothing writes nothing
        assert (await op.reset_stuck()).changed == []
        # cancelling a job that already succeeded changes nothing
        assert await claim(store) == [ids["homenet"]]
        await storeops.complete(store, "w1", [ids["homenet"]])
        assert (await op.cancel([ids["homenet"]], reason="late")).changed == []
        assert await store.audit_entries() == []


@pytest.mark.anyio
async def test_retry_that_leaves_the_job_blocked_writes_no_audit_row(db_url: str) -> None:
    """A job blocked for lack of a prerequisite run stays blocked when retried with still
    no such run: nothing changed, so nothing should be audited."""
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        ids = await pipeline(op.store, types=["dealer_com"])
        await op.retry(all_failed=True, reason="try")
        assert await state(op.store, ids["dealer_com"]) == "blocked"
        assert await op.store.audit_entries() == []


def test_audit_cli_shows_os_user_at_host(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    # a read-only command does not create the schema
    one_error(cli(tmp_path, url, "audit"), 3, "init-db")
    ok(cli(tmp_path, url, "init-db"))
    assert ok(cli(tmp_path, url, "audit")).strip() == "no operator actions recorded yet"
    assert json.loads(ok(cli(tmp_path, url, "audit", "--json"))) == []
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "enqueue", "--dealer", "d1"))
    ids = job_ids(url, "d1")
    ok(cli(tmp_path, url, "pause", "--dealer", "d1", "--reason", "feed down"))
    ok(cli(tmp_path, url, "resume", "--dealer", "d1"))
    ok(cli(tmp_path, url, "cancel", "--job", str(ids["homenet"]), "--reason", "wrong feed"))
    ok(cli(tmp_path, url, "retry", "--job", str(ids["homenet"]), "--reason", "feed fixed"))

    rows = json.loads(ok(cli(tmp_path, url, "audit", "--json")))
    assert [(r["action"], r["target"], r["count"], r["reason"]) for r in rows] == [
        ("retry", f"job {ids['homenet']}", 1, "feed fixed"),
        ("cancel", f"job {ids['homenet']}", 1, "wrong feed"),
        ("resume", "dealer d1", 0, None),
        ("pause", "dealer d1", 0, "feed down"),
        ("enqueue", "dealer d1", 4, None),
        ("add-dealer", "dealer d1", 0, None),
    ]
    assert {r["who"] for r in rows} == {who}
    assert rows[-2]["job_ids"] == sorted(ids.values())

    lines = ok(cli(tmp_path, url, "audit")).splitlines()
    assert len(lines) == 6, lines
    assert all(f"  {who}  " in line for line in lines), lines
    assert lines[0].endswith(f"retry job {ids['homenet']} (1 jobs) — feed fixed")
    assert lines[3].endswith("pause dealer d1 (0 jobs) — feed down")
    assert lines[4].endswith("enqueue dealer d1 (4 jobs)")
    assert len(ok(cli(tmp_path, url, "audit", "--limit", "2")).splitlines()) == 2
    one_error(
        cli(tmp_path, "postgresql://u:s3cret@127.0.0.1:1/x", "audit"), 3, "127.0.0.1"
    )


@pytest.mark.anyio
async def test_the_plan_holds_what_why_says_a_half_open_breaker_holds(db_url: str) -> None:
    # plan and why share their pause and breaker reasons (engine/holds.py): the plan used
    # to know only open breakers, and planned a job whose half-open trials were all taken
    from dealertui.engine.plan import build_plan

    clock = Clock(T0)
    trials = CONFIG.circuit_breaker.half_open_max_jobs
    async with opened(db_url, clock) as store:
        ids = await pipeline(store, types=["homenet"])
        await put_breaker(store, "dealer:d1:homenet", "homenet", "half_open", dealer_id="d1",
                          half_open_at=T0 - 1, trials=trials)
        plan = await build_plan(store, CONFIG)
        assert plan["would_run"] == 0
        [held] = plan["dealers"][0]["held"]
        assert held["id"] == ids["homenet"]
        assert held["reason"] == ("circuit breaker dealer:d1:homenet is half-open: "
                                  "0 trial jobs left")
        assert only(await why(store, ids["homenet"], clock()), "breaker_half_open").text == (
            held["reason"])

    async with opened(db_url, clock, dealers=("d2",)) as store:
        await pipeline(store, dealer="d2", types=["homenet"])
        await put_breaker(store, "dealer:d2:homenet", "homenet", "half_open", dealer_id="d2",
                          half_open_at=T0 - 1, trials=trials - 1)
        plan = await build_plan(store, CONFIG, dealers=["d2"])
        assert plan["would_run"] == 1 and plan["held"] == 0  # a trial is left: it may run
