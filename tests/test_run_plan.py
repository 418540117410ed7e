"""The run plan on SQLite and Postgres: waves follow dependencies and the per-dealer limit,
held work and its descendants are reported, dealers are ordered least recently served first,
dependency cycles are reported.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import storeops
from graphops import CONFIG, T0, operator, snapshot
from helpers import Clock, claim, pipeline
from sqlalchemy import insert

from dealertui.engine.plan import build_plan
from dealertui.model import JobOutcome
from dealertui.store.schema import job_deps as job_deps_table

pytestmark = pytest.mark.anyio


# --- plan ----------------------------------------------------------------------------------------


def _waves(plan: dict[str, Any], dealer: str) -> list[list[int]]:
    (d,) = [d for d in plan["dealers"] if d["dealer_id"] == dealer]
    return [[j["id"] for j in w] for w in d["waves"]]


def _held(plan: dict[str, Any], dealer: str) -> dict[int, str]:
    (d,) = [d for d in plan["dealers"] if d["dealer_id"] == dealer]
    return {h["id"]: h["reason"] for h in d["held"]}


async def test_plan_waves_follow_dependencies_and_the_per_dealer_limit(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        assert _waves(plan, "d1") == [
            [ids["homenet"]], [ids["dealer_com"], ids["product_scrape"]], [ids["url_shorten"]]
        ]
        assert plan["dry_run"] is True and plan["would_run"] == 4 and plan["held"] == 0
        assert plan["max_jobs_per_dealer"] == 2 and plan["cycles"] == []
        assert plan["dealers"][0]["waves"][0] == [
            {"id": ids["homenet"], "job_type": "homenet", "state": "ready"}
        ]
        one = await build_plan(store, CONFIG, max_jobs_per_dealer=1)
        assert _waves(one, "d1") == [[ids[t]] for t in ("homenet", "dealer_com",
                                                         "product_scrape", "url_shorten")]
        # the config's limit is the default
        assert (await build_plan(store, CONFIG))["max_jobs_per_dealer"] == (
            CONFIG.concurrency.max_concurrent_jobs_per_dealer)
        json.dumps(plan)
        assert await snapshot(store) == before


async def test_plan_holds_paused_blocked_backing_off_and_their_descendants(
    db_url: str,
) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        p1 = await pipeline(store, "d1")
        await op.set_paused(True, job_type="product_scrape", reason="scraper broken")
        blocked = await pipeline(store, "d2", types=["dealer_com"])
        p3 = await pipeline(store, "d3")
        assert await claim(store, only_dealers=["d3"]) == [p3["homenet"]]
        await storeops.schedule_retry(store, "w1", [JobOutcome(p3["homenet"], "HTTP 503", 300.0)])
        p4 = await pipeline(store, "d4")
        assert await claim(store, "w9", only_dealers=["d4"]) == [p4["homenet"]]
        clock.advance(100)
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        assert await snapshot(store) == before

        assert _waves(plan, "d1") == [[p1["homenet"]], [p1["dealer_com"]]]
        held = _held(plan, "d1")
        assert held[p1["product_scrape"]] == "job type product_scrape is paused"
        assert held[p1["url_shorten"]].startswith(
            f"waits for product_scrape #{p1['product_scrape']}")
        assert set(held) == {p1["product_scrape"], p1["url_shorten"]}

        assert _waves(plan, "d2") == []
        assert _held(plan, "d2") == {blocked["dealer_com"]: "blocked: no successful homenet run"}

        assert _waves(plan, "d3") == []
        held = _held(plan, "d3")
        assert held[p3["homenet"]].startswith("backing off: due in 200s")
        assert held[p3["dealer_com"]].startswith(f"waits for homenet #{p3['homenet']}")
        assert held[p3["url_shorten"]].startswith(
            f"waits for product_scrape #{p3['product_scrape']}")
        # product_scrape is paused as a type: that reason comes first
        assert held[p3["product_scrape"]] == "job type product_scrape is paused"

        held = _held(plan, "d4")
        assert held[p4["homenet"]] == "running now on w9"
        assert held[p4["dealer_com"]].startswith(f"waits for homenet #{p4['homenet']}")

        assert plan["would_run"] == 2
        assert plan["held"] == 2 + 1 + 4 + 4
        # the retry comes due: the plan takes it
        clock.advance(200)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2, dealers=["d3"])
        assert [d["dealer_id"] for d in plan["dealers"]] == ["d3"]
        assert _waves(plan, "d3") == [[p3["homenet"]], [p3["dealer_com"]]]


async def test_plan_orders_dealers_least_recently_served_first_and_honours_limit(
    db_url: str,
) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3")) as op:
        store = op.store
        pipes = {d: await pipeline(store, d) for d in ("d1", "d2", "d3")}
        clock.advance(10)
        assert await claim(store, only_dealers=["d3"]) == [pipes["d3"]["homenet"]]
        await storeops.complete(store, "w1", [pipes["d3"]["homenet"]])
        clock.advance(10)
        assert await claim(store, only_dealers=["d1"]) == [pipes["d1"]["homenet"]]
        await storeops.complete(store, "w1", [pipes["d1"]["homenet"]])
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        # d2 never served, then d3 (served first), then d1 (served last)
        assert [d["dealer_id"] for d in plan["dealers"]] == ["d2", "d3", "d1"]
        assert plan["would_run"] == 4 + 3 + 3
        limited = await build_plan(store, CONFIG, max_jobs_per_dealer=2, limit=3)
        assert limited["would_run"] == 3
        assert _waves(limited, "d2") == [
            [pipes["d2"]["homenet"]], [pipes["d2"]["dealer_com"], pipes["d2"]["product_scrape"]]
        ]
        limited = await build_plan(store, CONFIG, max_jobs_per_dealer=2, limit=2)
        assert limited["would_run"] == 2
        assert _waves(limited, "d2") == [[pipes["d2"]["homenet"]], [pipes["d2"]["dealer_com"]]]
        assert all(_waves(limited, d) == [] for d in ("d1", "d3"))
        assert await snapshot(store) == before


async def test_plan_reports_dependency_cycles(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)

        async def close_loop(conn: Any) -> None:  # url_shorten -> homenet closes a cycle
            await conn.execute(insert(job_deps_table).values(
                parent_id=ids["url_shorten"], child_id=ids["homenet"]))

        await store.db.run(close_loop)
        plan = await build_plan(store, CONFIG)
        assert len(plan["cycles"]) == 1
        assert set(plan["cycles"][0]) == {ids["homenet"], ids["product_scrape"],
                                          ids["url_shorten"]}
        assert plan["would_run"] == 0  # nothing in or below a cycle can run
