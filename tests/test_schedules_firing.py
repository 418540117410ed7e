"""Schedules fired by the upkeep step (engine/schedules.fire_due) on a store whose clock the
test moves, on SQLite and Postgres: a new schedule waits for its next tick, a day without any
engine is one catch-up firing, a dealer whose pipeline is unfinished is skipped and counted
(overlap = "skip") or not (overlap = "queue"), pipelines name their schedule, and a pause is
audited, shared, and resumed without a burst of the ticks it held back."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import Clock, make_config, opened
from sqlalchemy import select

from dealertui.config import Config
from dealertui.engine.actions import Operator
from dealertui.engine.events import EventBus
from dealertui.engine.schedules import fire_due, report
from dealertui.model import JobState
from dealertui.store import JobStore
from dealertui.store.schema import pipelines, schedule_ticks

pytestmark = pytest.mark.anyio

HOUR = 3600
T0 = 1_800_000_000  # a whole hour (2027-01-15 08:00 UTC)


def config(db_url: str, **schedule: Any) -> Config:
    entry = {"name": "hourly", "every": "1h", **schedule}
    return make_config(db_url, dealers=["d1", "d2"], schedules=[entry])


async def fire(store: JobStore, cfg: Config) -> None:
    await fire_due(store, cfg, "w1", EventBus())


async def info(store: JobStore, cfg: Config) -> dict[str, Any]:
    (one,) = await report(store, cfg)
    return dict(one)


async def scheduled(store: JobStore) -> list[tuple[str, str | None, str | None]]:
    rows = await store.db.run(lambda c: c.execute(
        select(pipelines.c.dealer_id, pipelines.c.schedule, pipelines.c.payload)
        .order_by(pipelines.c.id)), write=False)
    return [tuple(r) for r in rows]


async def finish_all(store: JobStore) -> None:
    """Every unfinished job succeeds (the pipelines of a tick are done)."""
    jobs = await store.list_jobs(states=[JobState.READY, JobState.WAITING])
    while jobs:
        claimed = await store.claim("w1", 100, per_dealer=100, lease_s=60)
        await store.finish("w1", succeeded=[c.claim for c in claimed.jobs])
        jobs = await store.list_jobs(states=[JobState.READY, JobState.WAITING])


async def test_a_new_schedule_fires_from_its_next_tick_once(db_url: str) -> None:
    clock = Clock(T0 + 600)  # ten minutes past a tick
    cfg = config(db_url, payload={"full": True})
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        await fire(store, cfg)
        assert await scheduled(store) == []  # the tick before it was first seen never fires
        seen = await info(store, cfg)
        assert (seen["first_seen_at"], seen["last_tick"], seen["next_due"]) == (
            T0 + 600, None, T0 + HOUR)
        clock.set(T0 + HOUR)
        await fire(store, cfg)
        await fire(store, cfg)  # again, same tick: nothing more
        assert await scheduled(store) == [("d1", "hourly", '{"full": true}'),
                                          ("d2", "hourly", '{"full": true}')]
        now = await info(store, cfg)
        assert (now["last_tick"], now["ticks"], now["pipelines"], now["skipped"]) == (
            T0 + HOUR, 1, 2, 0)
        assert now["next_due"] == T0 + 2 * HOUR and not now["overdue"]
        # the audit log says which schedule enqueued them
        (entry,) = [e for e in await store.audit_entries() if e["action"] == "enqueue"]
        assert entry["who"] == "schedule hourly" and entry["count"] == 8


async def test_a_day_without_an_engine_is_one_catch_up_firing(db_url: str) -> None:
    clock = Clock(T0)
    cfg = config(db_url)
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        await fire(store, cfg)  # seen at T0
        clock.set(T0 + 24 * HOUR + 90)  # 24 ticks missed
        assert (await info(store, cfg))["overdue"]
        for _ in range(3):
            await fire(store, cfg)
        after = await info(store, cfg)
        assert (after["ticks"], after["pipelines"], after["last_tick"]) == (
            1, 2, T0 + 24 * HOUR)  # the newest due tick, once
        ticks = await store.db.run(lambda c: c.execute(select(schedule_ticks.c.tick)),
                                   write=False)
        assert [t for (t,) in ticks] == [T0 + 24 * HOUR]


async def test_an_unfinished_pipeline_skips_its_dealer_and_the_skip_is_counted(
        db_url: str) -> None:
    clock = Clock(T0)
    cfg = config(db_url)
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        await fire(store, cfg)
        clock.set(T0 + HOUR)
        await fire(store, cfg)  # d1 and d2 enqueued
        d2 = [j for j in await store.list_jobs(dealer_id="d2")]
        await store.cancel([j.id for j in d2])  # d2's pipeline is done (cancelled); d1's is not
        clock.set(T0 + 2 * HOUR)
        await fire(store, cfg)
        assert [d for d, _s, _p in await scheduled(store)] == ["d1", "d2", "d2"]
        now = await info(store, cfg)
        assert (now["ticks"], now["pipelines"], now["skipped"]) == (2, 3, 1)
        await finish_all(store)
        clock.set(T0 + 3 * HOUR)
        await fire(store, cfg)  # nothing unfinished now: both enqueued
        now = await info(store, cfg)
        assert (now["ticks"], now["pipelines"], now["skipped"]) == (3, 5, 1)
        # a manual enqueue of the same types finds the schedule's pipelines pending
        held = await store.enqueue_pipelines(["d1"])
        assert not held.enqueued and held.skipped[0].dealer_id == "d1"


async def test_overlap_queue_enqueues_beside_an_unfinished_pipeline(db_url: str) -> None:
    clock = Clock(T0)
    cfg = config(db_url, overlap="queue", dealers=["d2"], types=["homenet"])
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        for hour in range(4):
            clock.set(T0 + hour * HOUR)
            await fire(store, cfg)
        assert [d for d, _s, _p in await scheduled(store)] == ["d2", "d2", "d2"]
        assert {j.job_type for j in await store.list_jobs()} == {"homenet"}
        assert (await info(store, cfg))["skipped"] == 0


async def test_pause_is_audited_and_resume_fires_no_burst(db_url: str) -> None:
    clock = Clock(T0)
    cfg = config(db_url)
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        op = Operator(store, cfg, who="ops@host")
        await fire(store, cfg)
        await op.set_schedule_paused("hourly", True, reason="feed maintenance")
        clock.set(T0 + 5 * HOUR + 60)
        await fire(store, cfg)
        paused = await info(store, cfg)
        assert paused["paused"] and paused["paused_by"] == "ops@host"
        assert paused["ticks"] == 0 and not paused["overdue"]
        await op.set_schedule_paused("hourly", False)
        await fire(store, cfg)
        resumed = await info(store, cfg)
        assert not resumed["paused"] and resumed["ticks"] == 0  # no burst, no catch-up
        assert resumed["next_due"] == T0 + 6 * HOUR
        clock.set(T0 + 6 * HOUR)
        await fire(store, cfg)
        assert (await info(store, cfg))["ticks"] == 1
        actions = [(e["action"], e["target"], e["who"], e["reason"])
                   for e in await store.audit_entries() if e["action"] in ("pause", "resume")]
        assert actions == [("resume", "schedule hourly", "ops@host", None),
                           ("pause", "schedule hourly", "ops@host", "feed maintenance")]
        status = await store.status()
        assert status["paused"]["schedules"] == []


async def test_many_engines_at_once_fire_a_tick_once(db_url: str) -> None:
    clock = Clock(T0)
    cfg = config(db_url)
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        await fire(store, cfg)
        clock.set(T0 + HOUR)
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(fire_due, store, cfg, f"w{i}", EventBus())
        assert len(await scheduled(store)) == 2
        assert (await info(store, cfg))["ticks"] == 1


async def test_old_tick_rows_are_pruned_and_an_engine_behind_fires_no_old_tick(
        db_url: str) -> None:
    from dealertui.store import schedules as store_schedules

    clock = Clock(T0)
    cfg = config(db_url, every="1s")
    async with opened(db_url, clock=clock, dealers=["d1", "d2"], config=cfg) as store:
        await fire(store, cfg)
        for second in range(1, store_schedules.KEEP_TICKS + 6):
            clock.set(T0 + second)
            await fire(store, cfg)
        ticks = [t for (t,) in await store.db.run(lambda c: c.execute(
            select(schedule_ticks.c.tick).order_by(schedule_ticks.c.tick)), write=False)]
        last = T0 + store_schedules.KEEP_TICKS + 5
        assert ticks == list(range(last - store_schedules.KEEP_TICKS + 1, last + 1))
        now = await info(store, cfg)
        assert now["ticks"] == store_schedules.KEEP_TICKS + 5  # the totals keep counting
        assert now["pipelines"] + now["skipped"] == 2 * now["ticks"]
        # an engine whose clock is behind: its tick's row is gone, and still it fires nothing
        late = await store_schedules.fire(store, "hourly", T0 + 2, worker_id="slow",
                                          dealer_ids=None, types=(), payload=None,
                                          allow_duplicate=True)
        assert late is None
        assert (await info(store, cfg))["ticks"] == now["ticks"]
        assert T0 + 2 not in [t for (t,) in await store.db.run(lambda c: c.execute(
            select(schedule_ticks.c.tick)), write=False)]
