"""Helpers for the `why` and audit-log tests (test_why_*.py, test_audit_log.py): a store on a
controllable clock with the built-in job types, `why` at that clock's now, picking reasons by
code, failing a homenet, and putting a breaker in place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from helpers import Clock
from helpers import opened as opened_store
from sqlalchemy import insert

from dealertui.config import Config, parse_config
from dealertui.engine.explain import Reason, reasons
from dealertui.store import JobStore
from dealertui.store.reads import why_facts
from dealertui.store.schema import breakers as breakers_table

T0 = 10_000.0
CONFIG: Config = parse_config({}, None)  # homenet → dealer_com, product_scrape → url_shorten


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


async def state(store: JobStore, job_id: int) -> str:
    job = await store.get_job(job_id)
    assert job is not None
    return job.state


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
