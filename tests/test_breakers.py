"""Circuit breakers in the database, edge by edge, on both backends."""

from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from typing import Any

import pytest

from dealertui.config import BreakerConfig, parse_config
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.model import JobOutcome
from dealertui.store import JobStore, JobTypeRule, open_store
import storeops

pytestmark = pytest.mark.anyio

RULES = {"feed": JobTypeRule(1, (), 1000), "other": JobTypeRule(2, (), 1000)}
CFG = BreakerConfig(
    failure_threshold=5, window_s=60, reset_timeout_s=30, half_open_max_jobs=2, min_dealers=2
)


@asynccontextmanager
async def opened(db_url: str, clock: list[float]) -> Any:
    store = await JobStore.open(db_url, RULES, clock=lambda: clock[0], breaker=CFG)
    try:
        yield store
    finally:
        await store.close()


async def fail_all(store: JobStore, dealers: list[str], *, per_dealer: int = 100) -> list[int]:
    """Claim every due job of *dealers* and report each as a transient failure."""
    result = await store.claim("w", 1000, per_dealer=per_dealer, lease_s=60,
                               only_dealers=dealers)
    ids = [j.id for j in result.jobs]
    await storeops.finish(store, "w", retry=[JobOutcome(i, "HTTP 503 from feed host", 0.0) for i in ids])
    return ids


def states(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["key"]: r["state"] for r in rows}


async def test_one_dealer_failing_50_times_opens_only_its_own_breaker(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None), ("d3", None)])
        for _ in range(50):
            await store.enqueue(["d1"], ["feed"])
        await store.enqueue(["d2", "d3"], ["feed"])
        clock[0] += 1
        failed = await fail_all(store, ["d1"])
        assert len(failed) == 50
        assert states(await store.breaker_states()) == {"dealer:d1:feed": "open"}
        # d1's feed jobs wait (ready, not charged); other dealers still run
        clock[0] += 1
        claimed = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert sorted(j.dealer_id for j in claimed.jobs) == ["d2", "d3"]
        jobs = await store.list_jobs(dealer_id="d1")
        assert {j.state for j in jobs} == {"ready"}
        assert {j.attempts for j in jobs} == {1}


async def test_failures_of_three_dealers_open_the_type_breaker(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([(f"d{i}", None) for i in range(1, 5)])
        for _ in range(2):
            await store.enqueue(["d1", "d2", "d3"], ["feed"])
        await store.enqueue(["d4"], ["feed", "other"])
        clock[0] += 1
        await fail_all(store, ["d1", "d2", "d3"])  # 6 failures from 3 dealers
        assert states(await store.breaker_states())["type:feed"] == "open"
        clock[0] += 1
        claimed = await store.claim("w", 100, per_dealer=100, lease_s=60)
        # the feed breaker holds every dealer's feed job; other types still run
        assert [(j.dealer_id, j.job_type) for j in claimed.jobs] == [("d4", "other")]
        assert (await store.list_jobs(dealer_id="d4", states=["ready"]))[0].attempts == 0


async def test_half_open_admits_exactly_k_then_success_closes(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([(f"d{i}", None) for i in range(1, 4)])
        for _ in range(3):
            await store.enqueue(["d1", "d2", "d3"], ["feed"])
        clock[0] += 1
        await fail_all(store, ["d1", "d2"])
        assert states(await store.breaker_states())["type:feed"] == "open"
        clock[0] += 10
        assert (await store.claim("w", 100, per_dealer=100, lease_s=60)).jobs == []
        clock[0] += CFG.reset_timeout_s  # past half_open_at
        trial = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(trial.jobs) == CFG.half_open_max_jobs
        assert states(await store.breaker_states())["type:feed"] == "half_open"
        assert (await store.claim("w", 100, per_dealer=100, lease_s=60)).jobs == []
        await storeops.complete(store, "w", [trial.jobs[0].id])
        assert states(await store.breaker_states())["type:feed"] == "closed"
        rest = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(rest.jobs) > 0


async def test_half_open_trial_failure_reopens(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None)])
        for _ in range(6):
            await store.enqueue(["d1"], ["feed"])
        clock[0] += 1
        await fail_all(store, ["d1"])
        assert states(await store.breaker_states()) == {"dealer:d1:feed": "open"}
        clock[0] += CFG.reset_timeout_s + 1
        trial = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(trial.jobs) == CFG.half_open_max_jobs
        await storeops.finish(store, "w", retry=[JobOutcome(trial.jobs[0].id, "still 503", 0.0)])
        rows = {r["key"]: r for r in await store.breaker_states()}
        assert rows["dealer:d1:feed"]["state"] == "open"
        assert rows["dealer:d1:feed"]["half_open_at"] == pytest.approx(
            clock[0] + CFG.reset_timeout_s
        )


async def test_async_handler_failures_are_counted(db_url: str, tmp_path: Any) -> None:
    """Failures raised by an async python handler reach the breaker through the engine."""
    cfg = parse_config(
        {
            "circuit_breaker": {"failure_threshold": 3, "min_dealers": 2},
            "retry": {"max_attempts": 10, "backoff_initial_s": 30, "backoff_jitter_s": 0},
            "job_types": {"feed": {"priority": 1, "handler": "tests.fixtures.handlers:flaky"}},
            "dealers": [{"id": "d1"}, {"id": "d2"}],
        },
        None,
    )
    cfg = dataclasses.replace(cfg, database_url=db_url)
    store = await open_store(cfg)
    try:
        for _ in range(2):
            await store.enqueue(["d1", "d2"], ["feed"])
        stats = await MultiDealerDependencyManager(store, cfg, 2, 2).process_multi_dealer_jobs()
        assert stats.retried_jobs == 4
        assert states(await store.breaker_states()) == {"type:feed": "open"}
    finally:
        await store.close()
