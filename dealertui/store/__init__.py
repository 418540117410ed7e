"""The job store: the only package with SQL in it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dealertui.store.db import Database, describe_url, mask_password
from dealertui.store.jobstore import JobStore, JobTypeRule

if TYPE_CHECKING:
    from dealertui.config import Config

__all__ = [
    "Database",
    "JobStore",
    "JobTypeRule",
    "describe_database",
    "mask_password",
    "open_store",
    "rules_from_config",
]


async def open_store(
    config: Config, *, create: bool = True, retry_budget_s: float = 10.0,
    read_only: bool = False, must_exist: bool = False,
) -> JobStore:
    """Open the configured database (schema created on first use) with the config's dealers.

    *retry_budget_s* bounds how long transient faults are retried before StoreUnavailable:
    short for a person at a prompt, longer for a worker that should ride out a restart.
    *read_only*: for commands that only read; no schema, no dealers, nothing written (a
    database that does not exist is refused).
    With *must_exist*, a SQLite file that does not exist or a database without our schema is
    refused (StoreUnavailable, as `status` says it) instead of created; an older schema is
    still brought up to date.
    """
    if must_exist and not read_only:
        # read-only: the probe itself must not write (a WAL switch leaves -wal and -shm)
        probe = await JobStore.open(
            config.database_url, rules_from_config(config), read_only=True,
            retry_budget_s=retry_budget_s, breaker=config.circuit_breaker,
        )
        await probe.close()
    store = await JobStore.open(
        config.database_url, rules_from_config(config), create=create,
        retry_budget_s=retry_budget_s, breaker=config.circuit_breaker, read_only=read_only,
    )
    if config.dealers and not read_only:
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
