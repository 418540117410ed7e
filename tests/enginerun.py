"""Helpers for the engine's end-to-end tests (tests/test_engine_*.py): a config with given job
types and dealers, a store opened on it, running the engine to the end, and reading the log
tests/fixtures/stamp.py writes (spans, dependency order, peak concurrency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dealertui.config import Config, parse_config
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.store import Intent, JobStore, open_store

DEALERS = tuple(f"d{i}" for i in range(1, 7))
FIXTURE_HANDLERS = "tests.fixtures.handlers"


def make_config(
    db_url: str,
    job_types: dict[str, Any],
    *,
    dealers: tuple[str, ...] = DEALERS,
    retry: dict[str, Any] | None = None,
) -> Config:
    cfg = parse_config(
        {
            "concurrency": {"max_concurrent_dealers": 2, "max_concurrent_jobs_per_dealer": 2},
            "retry": retry or {"backoff_initial_s": 30, "backoff_jitter_s": 0},
            "job_types": job_types,
            "dealers": [{"id": d} for d in dealers],
        },
        None,
    )
    return dataclasses.replace(cfg, database_url=db_url)


@asynccontextmanager
async def opened(cfg: Config) -> AsyncIterator[JobStore]:
    store = await open_store(cfg, Intent.CREATE)
    try:
        yield store
    finally:
        await store.close()


async def run_all(store: JobStore, cfg: Config, limit: int | None = None) -> Any:
    manager = MultiDealerDependencyManager(store, cfg)
    return await manager.process_multi_dealer_jobs(limit=limit)


async def jobs_by(store: JobStore) -> dict[tuple[str, str], Any]:
    return {(j.dealer_id, j.job_type): j for j in await store.list_jobs()}
