"""`health` checks and `analyze-errors` groups, on SQLite and Postgres, with a frozen clock."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import storeops
from helpers import Clock
from sqlalchemy import insert

from dealertui.config import parse_config
from dealertui.engine.health import Check, check_health, health_json
from dealertui.headless import print_error_groups, print_health
from dealertui.model import JobOutcome
from dealertui.store import JobStore, JobTypeRule
from dealertui.store.reads import error_groups, health_facts, normalize_error
from dealertui.store.schema import breakers

T0 = 1_000_000.0
RULES = {"feed": JobTypeRule(1, (), max_attempts=3), "scrape": JobTypeRule(2, (), max_attempts=3)}
DEALERS = tuple(f"d{i:03d}" for i in range(1, 11))


@asynccontextmanager
async def opened(db_url: str, clock: Clock) -> AsyncIterator[JobStore]:
    store = await JobStore.open(db_url, RULES, clock=clock)
    try:
        await store.add_dealers([(d, None) for d in DEALERS])
        yield store
    finally:
        await store.close()


async def claimed(store: JobStore, dealers: Sequence[str], job_type: str, **kw: Any) -> dict:
    """Enqueue *job_type* for *dealers*, claim everything ready; {dealer: job id}."""
    await store.enqueue(list(dealers), [job_type])
    got = await store.claim("w1", 1000, per_dealer=10, lease_s=kw.get("lease_s", 60))
    return {c.dealer_id: c.id for c in got.jobs if c.job_type == job_type}


async def reclaim(store: JobStore, clock: Clock) -> dict:
    clock.t += 10  # past every retry's run_after
    got = await store.claim("w1", 1000, per_dealer=10, lease_s=60)
    return {(c.dealer_id, c.job_type): c.id for c in got.jobs}


def _by(groups: list[dict], cls: str, job_type: str) -> dict:
    [g] = [g for g in groups if g["error_class"] == cls and g["job_type"] == job_type]
    return g


# -- normalize_error ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "da", "b", "db"),
    [
        ("HTTP 503 from feed host homenet.example for dealer d004", "d004",
         "HTTP 503 from feed host homenet.example for dealer d009", "d009"),
        ("timed out after 30s", None, "timed out after 31s", None),
        ("HTTP 502 from https://api.example.com/v1/items/123?page=4&sig=abc", "d1",
         "HTTP 503 from https://api.example.com/v1/items/98?page=5", "d2"),
        ("job 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed", None,
         "job 9b2e1c77-0000-4abc-8def-001122334455 failed", None),
        ("KeyError: 'vin'", None, "KeyError: 'stock number'", None),
        ("commit deadbeef1234 rejected", None, "commit 0a1b2c3d4e5f rejected", None),
        ("feed   for dealer a.b-c\n is malformed", "a.b-c", "feed for dealer x_1 is malformed",
         "x_1"),
    ],
)
def test_same_fault_same_signature(a: str, da: str | None, b: str, db: str | None) -> None:
    assert normalize_error(a, da) == normalize_error(b, db)


def test_signature_placeholders() -> None:
    assert normalize_error("HTTP 503 from feed host homenet.example for dealer d004", "d004") == (
        "HTTP <n> from feed host homenet.example for dealer <dealer>"
    )
    assert normalize_error("timed out after 30s") == "timed out after <n>s"
    url = "GET https://u:pw@api2.example.com:8443/dealers/d7/items/12/0f3a9c7e12?token=t#x."
    assert normalize_error(url, "d7") == (
        "GET https://api2.example.com:8443/dealers/<dealer>/items/<n>/<id>."
    )
    # another dealer's id is not the row's: only its number goes
    assert normalize_error("dealer d004 blocks d009", "d009") == "dealer d<n> blocks <dealer>"
    assert normalize_error("the dealer's feed can't be read") == "the dealer's feed can't be read"
    assert len(normalize_error("x" * 500)) == 200


def test_different_faults_stay_apart() -> None:
    assert normalize_error("HTTP 503 from homenet") != normalize_error("HTTP 503 from dealer.com")
    assert normalize_error("timeout", None) != normalize_error("connection refused", None)


# -- error_groups ---------------------------------------------------------------------------

@pytest.mark.anyio
async def test_error_groups(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        assert await error_groups(store) == []
        # failures stay under the breakers' threshold (5 in the window) until the last batch,
        # so the claims in between are not held by an open type:feed breaker
        feed = await claimed(store, DEALERS[:5], "feed")
        await storeops.finish(store, 
            "w1",
            retry=[JobOutcome(feed[d], f"HTTP 503 from feed host homenet.example for dealer {d}",
                              delay_s=5) for d in DEALERS[:3]],
            failed=[JobOutcome(feed["d005"], "feed for dealer d005 is malformed at line 17")],
            succeeded=[feed["d004"]],
        )
        again = await reclaim(store, clock)
        assert sorted(again) == [(d, "feed") for d in DEALERS[:3]]
        await storeops.finish(store, 
            "w1",
            retry=[JobOutcome(again[(d, "feed")], f"HTTP 502 from feed host homenet.example "
                              f"for dealer {d}", delay_s=5) for d in DEALERS[:2]],
            succeeded=[again[("d003", "feed")]],
        )
        scrape = await claimed(store, DEALERS[5:7], "scrape")
        await storeops.finish(store, "w1", retry=[
            JobOutcome(scrape["d006"], "timed out after 30s", delay_s=5),
            JobOutcome(scrape["d007"], "timed out after 31s", delay_s=5),
        ])
        groups = await error_groups(store)

    assert [(g["error_class"], g["job_type"], g["count"]) for g in groups] == [
        ("transient", "feed", 5), ("timeout", "scrape", 2), ("permanent", "feed", 1),
    ]
    top = groups[0]
    assert top["signature"] == "HTTP <n> from feed host homenet.example for dealer <dealer>"
    assert top["dealers"] == 3 and top["jobs"] == 3
    assert top["dealer_ids"] == ["d001", "d002", "d003"]
    assert top["top_dealers"] == [["d001", 2], ["d002", 2], ["d003", 1]]
    assert top["first_at"] == T0 and top["last_at"] == T0 + 10
    assert top["example"].startswith("HTTP 502 from feed host")  # the newest
    timeout = _by(groups, "timeout", "scrape")
    assert timeout["signature"] == "timed out after <n>s"
    assert timeout["dealer_ids"] == ["d006", "d007"]
    assert _by(groups, "permanent", "feed")["signature"] == (
        "feed for dealer <dealer> is malformed at line <n>"
    )


@pytest.mark.anyio
async def test_error_groups_since_limit_and_exhausted_retries(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await claimed(store, ["d001"], "feed")
        job = ids["d001"]
        secret = "postgresql://app:hunter2@db.example/feeds"
        for attempt in range(3):  # max_attempts = 3: the third retry fails the job
            done = await storeops.finish(store, 
                "w1", retry=[JobOutcome(job, f"cannot reach {secret} (try {attempt})", 5)]
            )
            assert done.done == [job]
            if attempt < 2:
                got = await reclaim(store, clock)
                job = got[("d001", "feed")]
        assert (await store.get_job(job)).state == "failed"
        clock.t += 100
        other = await claimed(store, ["d002"], "scrape")
        await storeops.fail(store, "w1", [JobOutcome(other["d002"], "bad credentials")])

        groups = await error_groups(store)
        recent = await error_groups(store, since=T0 + 50)
        limited = await error_groups(store, limit=1)

    # the attempts ran out on a transient error: one transient group, not a permanent one
    assert [(g["error_class"], g["count"], g["jobs"]) for g in groups] == [
        ("transient", 3, 1), ("permanent", 1, 1),
    ]
    assert groups[0]["signature"] == (
        "cannot reach postgresql://db.example/feeds (try <n>)"
    )
    assert "hunter2" not in str(groups) and "app:***@" in groups[0]["example"]
    assert [g["job_type"] for g in recent] == ["scrape"]
    assert len(limited) == 1 and limited[0]["count"] == 3


# -- health ---------------------------------------------------------------------------------


def failed_names(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if not c.ok]


@pytest.mark.anyio
async def test_healthy_when_empty(db_url: str) -> None:
    async with opened(db_url, Clock(T0)) as store:
        code, checks = await check_health(store, parse_config({}, None))
    assert code == 0
    assert [c.name for c in checks] == [
        "database", "open_breakers", "stuck_jobs", "worker_heartbeat", "failure_rate",
    ]
    assert all(c.ok for c in checks)
    assert health_json(code, checks)["status"] == "healthy"
    out = io.StringIO()
    print_health(code, checks, detailed=False, file=out)
    assert out.getvalue() == "healthy\n"


@pytest.mark.anyio
async def test_stuck_job_degrades(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        await claimed(store, ["d001"], "feed", lease_s=10)
        assert (await check_health(store, None))[0] == 0
        clock.t += 30
        code, checks = await check_health(store, None)
        facts = await health_facts(store, heartbeat_within_s=120, window_s=900)
    assert code == 1 and failed_names(checks) == ["stuck_jobs"]
    assert facts["stuck_jobs"] == 1 and facts["oldest_expired_lease_at"] == T0 + 10
    assert "1 running job has an expired lease (the oldest expired 20s ago)" in checks[2].detail
    doc = health_json(code, checks)
    assert doc["status"] == "degraded" and doc["exit_code"] == 1
    assert {"name": "stuck_jobs", "ok": False, "detail": checks[2].detail} in doc["checks"]


@pytest.mark.anyio
async def test_ready_work_needs_a_worker(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        await store.enqueue(["d001", "d002"], ["feed"])
        code, checks = await check_health(store, None)
        assert code == 1 and failed_names(checks) == ["worker_heartbeat"]
        assert "2 jobs are due but no worker has sent a heartbeat within 2m" in checks[3].detail

        # a console's engine does not count as a worker, but is named (the check said that
        # no live worker was registered while one heartbeated)
        await store.register_worker("c1", host="h", pid=2, kind="console")
        code, checks = await check_health(store, None)
        assert code == 1 and failed_names(checks) == ["worker_heartbeat"]
        assert "only 1 console engine runs" in checks[3].detail, checks[3].detail
        await store.unregister_worker("c1")

        await store.register_worker("w1", host="h", pid=1, kind="worker")
        clock.t += 30
        code, checks = await check_health(store, None)
        assert code == 0, checks
        assert "1 worker sent a heartbeat within 2m" in checks[3].detail

        clock.t += 200  # alive on paper, silent in fact (kill -9)
        code, checks = await check_health(store, None)
        assert failed_names(checks) == ["worker_heartbeat"]
        assert "heartbeat was 3m50s ago" in checks[3].detail

        await storeops.extend_leases(store, "w1", 60)  # a heartbeat
        assert (await check_health(store, None))[0] == 0

        # a run-once that just finished counts as seen; later it does not
        await store.unregister_worker("w1")
        assert (await check_health(store, None))[0] == 0
        clock.t += 121
        assert failed_names((await check_health(store, None))[1]) == ["worker_heartbeat"]
        assert (await check_health(store, None, heartbeat_within_s=600))[0] == 0

        # everything paused: nobody is expected to take the work
        await store.set_paused(True)
        code, checks = await check_health(store, None)
        assert code == 0 and "paused" in checks[3].detail


@pytest.mark.anyio
async def test_failure_rate(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        # two job types, three failures each: under the breakers' threshold of 5
        feed = await claimed(store, DEALERS[:5], "feed")
        scrape = await claimed(store, DEALERS[5:], "scrape")
        await storeops.finish(store, 
            "w1",
            failed=[JobOutcome(feed[d], "boom") for d in DEALERS[:2]]
            + [JobOutcome(scrape[d], "boom") for d in DEALERS[5:7]],
            retry=[JobOutcome(feed["d003"], "flaky", 600), JobOutcome(scrape["d008"], "x", 600)],
            succeeded=[feed["d004"], feed["d005"], scrape["d009"], scrape["d010"]],
        )
        code, checks = await check_health(store, None)
        assert code == 1 and failed_names(checks) == ["failure_rate"]
        assert checks[4].detail.startswith("6 of 10 outcomes in the last 15m failed")
        assert "over the 50% threshold" in checks[4].detail
        assert (await check_health(store, None, failure_rate_threshold=0.6))[0] == 0
        assert (await check_health(store, None, min_outcomes=11))[0] == 0
        clock.t += 901  # out of the window
        assert (await check_health(store, None))[1][4].ok


@pytest.mark.anyio
async def test_open_breaker_degrades(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:

        async def tx(conn: Any) -> None:
            await conn.execute(insert(breakers), [
                {"key": "type:feed", "dealer_id": None, "job_type": "feed", "state": "open",
                 "failures": 7, "calls": 20, "opened_at": T0 - 15, "updated_at": T0 - 15},
                {"key": "dealer:d001:scrape", "dealer_id": "d001", "job_type": "scrape",
                 "state": "closed", "failures": 1, "calls": 4, "opened_at": None,
                 "updated_at": T0},
            ])

        await store.db.run(tx)
        code, checks = await check_health(store, parse_config({}, None))
    assert code == 1 and failed_names(checks) == ["open_breakers"]
    assert checks[1].detail == (
        "1 circuit breaker is not closed: type:feed open since 15s ago, half-open in 45s, "
        "7/20 dealers failed (35%)."
    )
    out = io.StringIO()
    print_health(code, checks, detailed=True, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "degraded: open_breakers"
    assert len(lines) == 6 and lines[2].startswith(("✖ open_breakers", "FAIL open_breakers"))


def test_print_error_groups_plain() -> None:
    group = {
        "signature": "HTTP <n> from feed host homenet.example", "error_class": "transient",
        "job_type": "homenet", "count": 37, "jobs": 37, "dealers": 37,
        "dealer_ids": [f"d{i:03d}" for i in range(1, 11)], "top_dealers": [],
        "first_at": T0, "last_at": T0 - 120, "example": "HTTP 503 ...",
        "fingerprint": "4376df8c",
    }
    out = io.StringIO()
    print_error_groups([group], file=out, now=T0, table=False)
    assert out.getvalue() == (
        "4376df8c  homenet [transient] HTTP <n> from feed host homenet.example: 37 times in "
        "37 dealers (d001, d002, d003, ...), last 2m ago\n"
    )
    out = io.StringIO()
    print_error_groups([group], file=out, now=T0, table=True)
    table = out.getvalue()
    assert "HTTP <n>" in table and "homenet.example" in table
    assert "transient" in table and "37" in table and "4376df8c" in table
    out = io.StringIO()
    print_error_groups([], file=out)
    assert out.getvalue() == "no failures recorded.\n"
