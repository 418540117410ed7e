"""The fairness meter on SQLite and Postgres: share, last slot and starvation, without blaming
the scheduler for work held on purpose or counting a released job as an outcome.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import storeops
from graphops import T0, operator, snapshot
from helpers import Clock, claim, pipeline
from sqlalchemy import insert

from dealertui.model import JobOutcome
from dealertui.store.reads import fairness
from dealertui.store.schema import breakers as breakers_table

pytestmark = pytest.mark.anyio


# --- fairness ------------------------------------------------------------------------------------


async def test_fairness_share_last_slot_and_starvation(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        # shares are counted over the breakers' window (their per-dealer tally): one that
        # holds every outcome below
        store.breaker_cfg = dataclasses.replace(store.breaker_cfg, window_s=300.0)
        await pipeline(store, "d1")  # ready since T0
        p3 = await pipeline(store, "d3")
        p4 = await pipeline(store, "d4")
        clock.set(T0 + 50)
        assert await claim(store, only_dealers=["d4"]) == [p4["homenet"]]
        await storeops.complete(store, "w1", [p4["homenet"]])
        clock.set(T0 + 60)
        assert await claim(store, only_dealers=["d4"]) == sorted(
            [p4["dealer_com"], p4["product_scrape"]])
        await storeops.complete(store, "w1", [p4["dealer_com"]])
        await storeops.fail(store, "w1", [JobOutcome(p4["product_scrape"], "boom")])
        clock.set(T0 + 100)
        assert await claim(store, only_dealers=["d3"]) == [p3["homenet"]]
        await storeops.complete(store, "w1", [p3["homenet"]])  # d3's children ready since T0+100
        clock.set(T0 + 110)
        await pipeline(store, "d2")  # ready since T0+110
        clock.set(T0 + 120)

        before = await snapshot(store)
        f = await fairness(store)
        assert await snapshot(store) == before
        assert sorted(f) == ["d1", "d2", "d3", "d4"]
        for row in f.values():
            assert set(row) == {"share", "outcomes", "since_last_slot_s",
                                "oldest_ready_wait_s", "starved"}
        assert f["d1"]["oldest_ready_wait_s"] == 120.0 and f["d1"]["starved"] is True
        assert f["d2"]["oldest_ready_wait_s"] == 10.0 and f["d2"]["starved"] is False
        assert f["d3"]["oldest_ready_wait_s"] == 20.0 and f["d3"]["starved"] is False
        assert f["d4"]["oldest_ready_wait_s"] is None and f["d4"]["starved"] is False
        assert f["d1"]["since_last_slot_s"] is None and f["d2"]["since_last_slot_s"] is None
        assert f["d3"]["since_last_slot_s"] == 20.0
        assert f["d4"]["since_last_slot_s"] == 60.0
        assert (f["d3"]["outcomes"], f["d4"]["outcomes"]) == (1, 3)
        assert f["d1"]["share"] == 0.0 and f["d2"]["share"] == 0.0
        assert f["d3"]["share"] == 0.25 and f["d4"]["share"] == 0.75
        assert sum(r["share"] for r in f.values()) == pytest.approx(1.0, abs=1e-3)

        # a narrower window drops d4's outcomes: counted in the breakers' 30 s buckets, the
        # one of T0+50 and T0+60 (from 49,980 + 60) ends before T0+80
        f = await fairness(store, window_s=40)
        assert (f["d3"]["outcomes"], f["d4"]["outcomes"]) == (1, 0)
        assert f["d3"]["share"] == 1.0 and f["d4"]["share"] == 0.0
        f = await fairness(store, window_s=65)  # that bucket overlaps T0+55..: counted whole
        assert (f["d3"]["outcomes"], f["d4"]["outcomes"]) == (1, 3)
        # a stricter threshold starves d2 too; a claim ends d1's starvation
        f = await fairness(store, starved_after_s=5)
        assert f["d2"]["starved"] is True and f["d3"]["starved"] is True
        assert await claim(store, only_dealers=["d1"], per_dealer=1) != []
        f = await fairness(store)
        assert f["d1"]["starved"] is False and f["d1"]["since_last_slot_s"] == 0.0
        # no outcomes in the window: every share is 0
        clock.advance(10_000)
        f = await fairness(store)
        assert all(r["share"] == 0.0 and r["outcomes"] == 0 for r in f.values())


async def test_fairness_does_not_blame_the_scheduler_for_work_held_on_purpose(
    db_url: str,
) -> None:
    """Ready work held back by a breaker that is not closed or by a pause is not starving."""
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        for d in ("d1", "d2", "d3", "d4"):
            await pipeline(store, d)  # every homenet ready since T0
        clock.set(T0 + 120)

        async def breaker(conn: Any) -> None:
            await conn.execute(insert(breakers_table).values(
                key="dealer:d1:homenet", dealer_id="d1", job_type="homenet", state="open",
                failures=3, opened_at=T0, half_open_at=T0 + 600, updated_at=T0))

        await store.db.run(breaker)
        await store.set_paused(True, dealer_id="d2")
        f = await fairness(store)
        assert (f["d1"]["starved"], f["d2"]["starved"], f["d3"]["starved"]) == (
            False, False, True)

        await store.set_paused(True, job_type="homenet")  # nobody's homenet may run now
        f = await fairness(store)
        assert not any(r["starved"] for r in f.values()), f
        await store.set_paused(False, job_type="homenet")

        async def type_breaker(conn: Any) -> None:
            await conn.execute(insert(breakers_table).values(
                key="type:homenet", job_type="homenet", state="half_open", failures=9,
                opened_at=T0, half_open_at=T0, updated_at=T0))

        await store.db.run(type_breaker)
        f = await fairness(store)
        assert not any(r["starved"] for r in f.values()), f


async def test_fairness_does_not_count_a_released_job_as_an_outcome(db_url: str) -> None:
    """A job handed back by a stopping worker (retrying, no error) is no outcome, as in
    `health`; a real retry (with an error) is one."""
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2")) as op:
        store = op.store
        p1 = await pipeline(store, "d1")
        p2 = await pipeline(store, "d2")
        assert await claim(store) == sorted([p1["homenet"], p2["homenet"]])
        await storeops.finish(store, "w1", release=[p1["homenet"]], release_reason="worker stopping")
        await storeops.schedule_retry(store, "w1", [JobOutcome(p2["homenet"], "HTTP 503", 1.0)])
        f = await fairness(store)
        assert (f["d1"]["outcomes"], f["d2"]["outcomes"]) == (0, 1)
        assert (f["d1"]["share"], f["d2"]["share"]) == (0.0, 1.0)
