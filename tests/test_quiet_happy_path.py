"""The happy path writes no job_events row, yet the timeline, the tallies and the console's
counts show what they showed when every move wrote one (docs/design.md, "Job states").

A successful job used to cost three event rows (claim, success, a child's promotion): most of
the 630 bytes a finished job took in SQLite. The fear here is the opposite failure: a timeline
that lost a move, or put one in the wrong place, once the rows are not there to read.
"""

from __future__ import annotations

import pytest
import storeops
from helpers import Clock, claim, opened, pipeline
from sqlalchemy import func, select

from dealertui.model import JobOutcome
from dealertui.store import tallies
from dealertui.store.reads import console_snapshot
from dealertui.store.schema import job_events

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0


def moves(timeline: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(e["from_state"], e["to_state"], e["at"]) for e in timeline]


async def event_rows(store: object) -> int:
    async with store.db.engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(job_events))).scalar())


async def test_a_pipeline_that_succeeds_writes_no_event_and_keeps_its_timeline(
    db_url: str,
) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        clock.set(T0 + 5)
        assert await claim(store) == [ids["homenet"]]
        clock.set(T0 + 7)
        await storeops.complete(store, "w1", [ids["homenet"]])  # promotes two children
        clock.set(T0 + 9)
        got = await claim(store, "w2")
        assert got == sorted([ids["dealer_com"], ids["product_scrape"]])
        clock.set(T0 + 12)
        await storeops.complete(store, "w2", got)
        clock.set(T0 + 13)
        assert await claim(store) == [ids["url_shorten"]]
        clock.set(T0 + 20)
        await storeops.complete(store, "w1", [ids["url_shorten"]])

        assert await event_rows(store) == 0
        # born ready (no parent), claimed at +5 by w1, succeeded at +7
        root = await storeops.job_events(store, ids["homenet"])
        assert moves(root) == [(None, "ready", T0), ("ready", "running", T0 + 5),
                               ("running", "succeeded", T0 + 7)]
        assert root[1]["worker"] == "w1" and root[1]["attempt"] == 1
        # born waiting, promoted by its parent's success at +7, claimed by w2
        child = await storeops.job_events(store, ids["dealer_com"])
        assert moves(child) == [(None, "waiting", T0), ("waiting", "ready", T0 + 7),
                                ("ready", "running", T0 + 9), ("running", "succeeded", T0 + 12)]
        assert child[2]["worker"] == "w2" and child[3]["worker"] == "w2"
        assert child[0]["message"] == "enqueued"

        # what the console counts and charts, with no event to read
        t = await store.db.run(lambda c: tallies.read(c, window_s=60, now=T0 + 20), write=False)
        assert (t.succeeded, t.failed, t.retried) == (4, 0, 0)
        snap = await console_snapshot(store, after_event_id=None)
        assert snap.by_state["succeeded"] == 4 and snap.throughput.succeeded == 4


async def test_a_retried_job_keeps_every_attempt_in_order(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store, types=["homenet"])
        job = ids["homenet"]
        clock.set(T0 + 1)
        assert await claim(store) == [job]
        clock.set(T0 + 2)
        await storeops.schedule_retry(store, "w1", [JobOutcome(job, "503", delay_s=10)])
        clock.set(T0 + 12)
        assert await claim(store, "w2") == [job]  # promoted when due, then claimed
        clock.set(T0 + 14)
        await storeops.complete(store, "w2", [job])

        stored = await storeops.stored_events(store, job)
        # the failed attempt stores its claim before its outcome; the last attempt, a
        # success, stores nothing
        assert [(e["from_state"], e["to_state"]) for e in stored][:2] == [
            ("ready", "running"), ("running", "retrying")]
        assert stored[0]["worker"] == "w1" and stored[0]["at"] == T0 + 1
        full = await storeops.job_events(store, job)
        assert [(e["from_state"], e["to_state"]) for e in full] == [
            (None, "ready"), ("ready", "running"), ("running", "retrying"),
            ("retrying", "ready"), ("ready", "running"), ("running", "succeeded")]
        assert [e["at"] for e in full] == sorted(e["at"] for e in full)
        assert full[-1]["worker"] == "w2" and full[-1]["attempt"] == 2
        t = await store.db.run(lambda c: tallies.read(c, window_s=60, now=T0 + 14), write=False)
        assert (t.succeeded, t.retried) == (1, 1)


async def test_a_failed_job_stores_its_claim_and_its_failure(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        clock.set(T0 + 3)
        assert await claim(store) == [ids["homenet"]]
        clock.set(T0 + 4)
        await storeops.fail(store, "w1", [JobOutcome(ids["homenet"], "boom")])
        stored = [(e["from_state"], e["to_state"])
                  for e in await storeops.stored_events(store, ids["homenet"])]
        assert stored == [("ready", "running"), ("running", "failed")]
        # its children are blocked, and that is stored too
        below = await storeops.stored_events(store, ids["dealer_com"])
        assert [(e["from_state"], e["to_state"]) for e in below] == [("waiting", "blocked")]
