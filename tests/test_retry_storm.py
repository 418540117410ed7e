"""Retry storm: always-failing jobs end failed after exactly max_attempts, spaced by backoff."""

from __future__ import annotations

import dataclasses
import time

import anyio
import pytest
import storeops

from dealertui.config import RetryPolicy, parse_config
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.engine.resilience import backoff_delay
from dealertui.store import Intent, open_store

pytestmark = pytest.mark.anyio

POLICY = {"max_attempts": 4, "backoff_initial_s": 0.2, "backoff_max_s": 0.4,
          "backoff_jitter_s": 0.1}


def test_backoff_delay_bounds() -> None:
    p = RetryPolicy(max_attempts=9, backoff_initial_s=1, backoff_max_s=30, backoff_jitter_s=0.5)
    for attempt in range(1, 9):
        base = min(2 ** (attempt - 1), 30)
        for _ in range(20):
            assert base <= backoff_delay(p, attempt) <= base + 0.5


async def test_200_always_failing_jobs_end_failed_with_backoff_gaps(db_url: str) -> None:
    cfg = parse_config(
        {
            "retry": POLICY,
            # the breaker must not hold the storm back: this test is about retries
            "circuit_breaker": {"dealer_min_calls": 100000, "type_min_dealers": 100000},
            "concurrency": {"max_concurrent_dealers": 50, "max_concurrent_jobs_per_dealer": 4},
            "job_types": {"feed": {"priority": 1, "handler": "tests.fixtures.handlers:flaky"}},
            "dealers": [{"id": f"d{i:03d}"} for i in range(50)],
        },
        None,
    )
    cfg = dataclasses.replace(cfg, database_url=db_url)
    store = await open_store(cfg, Intent.CREATE)
    try:
        for _ in range(4):
            await store.enqueue([d.id for d in cfg.dealers], ["feed"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await MultiDealerDependencyManager(store, cfg).process_multi_dealer_jobs()
            left = await store.list_jobs(states=["ready", "retrying", "running"])
            if not left:
                break
            await anyio.sleep(0.05)
        jobs = await store.list_jobs()
        assert len(jobs) == 200
        assert {j.state for j in jobs} == {"failed"}
        assert {j.attempts for j in jobs} == {POLICY["max_attempts"]}
        for job in jobs[:40]:  # the audit trail of a sample: gaps within the backoff bounds
            trail = await storeops.job_events(store, job.id)
            retried = [e for e in trail if e["to_state"] == "retrying"]
            started = [e for e in trail if e["to_state"] == "running"]
            assert len(started) == POLICY["max_attempts"]
            assert len(retried) == POLICY["max_attempts"] - 1
            for n, (r, nxt) in enumerate(zip(retried, started[1:], strict=True), start=1):
                low = min(POLICY["backoff_initial_s"] * 2 ** (n - 1), POLICY["backoff_max_s"])
                assert nxt["at"] - r["at"] >= low - 0.01
                # not sooner than the backoff, and not held back far beyond it either
                assert nxt["at"] - r["at"] <= low + POLICY["backoff_jitter_s"] + 5
    finally:
        await store.close()
