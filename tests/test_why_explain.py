"""`explain()`'s JSON shape and the `why` CLI (text, JSON, errors; in-process on SQLite), and
the run plan holding what `why` says a half-open breaker holds.

Times matter, so the store runs on a controllable clock and `reasons()` is called with that
clock's "now" directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Clock, cli, job_ids, ok, one_error, pipeline
from whycase import CONFIG, T0, only, opened, put_breaker, why

from dealertui.engine.detail import explain

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
                              "max_attempts": 5, "payload": {}}
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
