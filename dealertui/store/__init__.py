"""The job store: the only package with SQL in it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dealertui.model import Intent
from dealertui.store.db import Database
from dealertui.store.engines import describe_url
from dealertui.store.jobstore import JobStore, JobTypeRule

if TYPE_CHECKING:
    from dealertui.config import Config

__all__ = [
    "Database",
    "Intent",
    "JobStore",
    "JobTypeRule",
    "describe_database",
    "open_store",
    "rules_from_config",
]


async def open_store(
    config: Config, intent: Intent, *, retry_budget_s: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> JobStore:
    """Open the configured database for *intent*.

    *retry_budget_s* bounds how long transient faults are retried before StoreUnavailable:
    short for a person at a prompt, longer for a worker that should ride out a restart.
    """
    rules = rules_from_config(config)
    breaker = config.circuit_breaker
    if intent is not Intent.CREATE:
        # a read-only probe first: refusing a missing database must not write (a WAL switch
        # leaves -wal and -shm behind) or create the file
        probe = await JobStore.open(config.database_url, rules, read_only=True, clock=clock,
                                    retry_budget_s=retry_budget_s, breaker=breaker)
        if intent is Intent.READ:
            return probe
        await probe.close()
    store = await JobStore.open(config.database_url, rules, create=True, clock=clock,
                                retry_budget_s=retry_budget_s, breaker=breaker)
    if config.dealers:
        try:
            await store.add_dealers([(d.id, d.name) for d in config.dealers])
        except BaseException:
            await store.close()
            raise
    return store


def rules_from_config(config: Config) -> dict[str, JobTypeRule]:
    return {
        name: JobTypeRule(jt.priority, tuple(jt.depends_on), jt.retry.max_attempts)
        for name, jt in config.job_types.items()
    }


def describe_database(url: str) -> str:
    return describe_url(url)
