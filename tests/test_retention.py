"""Retention in the store (store/retention.py), on both backends: what goes and what stays,
every row of a pipeline going with it, the bound of a pass, and one pruner at a time on
Postgres. The clock is the store's, moved by the test: limits are exact, nothing waits."""

from __future__ import annotations

from typing import Any

import pytest
import storeops
from helpers import Clock
from jobstates import T0, claim_ids, opened, pipeline, run_everything
from sqlalchemy import text

from dealertui.model import TERMINAL_STATES, JobOutcome
from dealertui.store import JobStore, JobTypeRule
from dealertui.store.retention import Limits, Pruner, Tally
from dealertui.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

DAY = 86400.0
#: a parent type and a child type
TWO_TYPES = {"homenet": JobTypeRule(1, ()), "dealer_com": JobTypeRule(2, ("homenet",))}
#: every finished state kept 7 days, failed 30 (the defaults), audit rows for ever
DEFAULTS = {**dict.fromkeys(TERMINAL_STATES, 7 * DAY), "failed": 30 * DAY}


def pruner(store: JobStore, audit_s: float | None = None, **states: float | None) -> Pruner:
    return Pruner(store.db, Limits({**DEFAULTS, **states}, audit_s), clock=store.clock)


async def prune(store: JobStore, **kw: Any) -> Tally:
    """One unbounded pass."""
    return await pruner(store, **kw).prune(max_rows=None, max_reads=None)


async def rows(store: JobStore, sql: str) -> list[tuple[Any, ...]]:
    async with store.db.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


async def pipeline_ids(store: JobStore) -> list[int]:
    return [r[0] for r in await rows(store, "SELECT id FROM pipelines ORDER BY id")]


async def job_rows(store: JobStore, ids: list[int]) -> dict[str, int]:
    """How many rows of each per-job table still name one of *ids*."""
    listed = ", ".join(map(str, ids))
    return {
        "jobs": len(await rows(store, f"SELECT id FROM jobs WHERE id IN ({listed})")),
        "job_events": len(await rows(
            store, f"SELECT id FROM job_events WHERE job_id IN ({listed})")),
        "job_deps": len(await rows(store, f"SELECT child_id FROM job_deps WHERE child_id IN "
                                          f"({listed}) OR parent_id IN ({listed})")),
    }


async def finished_pipeline(store: JobStore, dealer: str = "d1", *, retries: int = 0,
                            clock: Clock | None = None) -> dict[str, int]:
    """A pipeline run to success; with *retries* (and the store's *clock*), its homenet went
    back to retry that many times first (3 job_events rows each: the happy path alone
    writes none)."""
    ids = await pipeline(store, dealer)
    for _ in range(retries):
        (job,) = await claim_ids(store, job_types=["homenet"])
        await storeops.schedule_retry(store, "w1", [JobOutcome(job, "HTTP 503", delay_s=1)])
        assert clock is not None
        clock.advance(3600)  # past the breakers' window: two failures in one would open one
    await run_everything(store)
    return ids


async def test_only_pipelines_past_their_outcomes_limit_go(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ok = await finished_pipeline(store)
        # a failure of the last job: every job finished, the worst outcome failed
        failed = await pipeline(store)
        for _ in range(3):
            await storeops.complete(store, "w1", await claim_ids(
                store, job_types=["homenet", "dealer_com", "product_scrape"]))
        await storeops.fail(store, "w1", [JobOutcome(i, "HTTP 404") for i in await claim_ids(
            store)])
        assert failed["url_shorten"] in [j.id for j in await store.list_jobs(states=["failed"])]
        newest = await finished_pipeline(store)  # the dealer's newest: kept whatever its age
        clock.advance(7 * DAY - 1)
        assert (await prune(store)).rows == 0
        clock.advance(2)
        gone = await prune(store)
        assert gone.pipelines == {**dict.fromkeys(TERMINAL_STATES, 0), "succeeded": 1}
        assert gone.jobs["succeeded"] == 4
        assert await pipeline_ids(store) == [failed["homenet"], newest["homenet"]]
        clock.advance(23 * DAY)  # the failed one: 30 days
        assert (await prune(store)).pipelines["failed"] == 1
        assert await pipeline_ids(store) == [newest["homenet"]]
        assert await job_rows(store, list(ok.values()) + list(failed.values())) == {
            "jobs": 0, "job_events": 0, "job_deps": 0}
        assert (await prune(store, succeeded=None)).rows == 0  # "off"
        assert await pipeline_ids(store) == [newest["homenet"]]


async def test_a_pipeline_with_one_unfinished_job_is_never_pruned(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        held = await pipeline(store)
        for _ in range(3):  # everything but url_shorten, which a worker holds for ever
            await storeops.complete(store, "w1", await claim_ids(
                store, job_types=["homenet", "dealer_com", "product_scrape"]))
        assert len(await claim_ids(store, "w2", job_types=["url_shorten"])) == 1
        await finished_pipeline(store, "d1")  # a newer one, so `held` is not the newest
        clock.advance(365 * DAY)
        await prune(store, **dict.fromkeys(TERMINAL_STATES, 0.0))
        assert held["homenet"] in await pipeline_ids(store)
        assert (await job_rows(store, list(held.values())))["jobs"] == 4


async def test_events_deps_and_the_pipeline_row_go_with_their_jobs(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        old = await finished_pipeline(store, retries=1, clock=clock)
        await finished_pipeline(store)
        before = await job_rows(store, list(old.values()))
        assert before["job_events"] == 3 and before["job_deps"] == 3
        clock.advance(8 * DAY)
        gone = await prune(store)
        assert (gone.jobs["succeeded"], gone.events, gone.deps) == (
            4, before["job_events"], before["job_deps"])
        assert await job_rows(store, list(old.values())) == {
            "jobs": 0, "job_events": 0, "job_deps": 0}
        # newest_jobs names only jobs that exist
        assert await rows(store, "SELECT n.job_id FROM newest_jobs n LEFT JOIN jobs j "
                                 "ON j.id = n.job_id WHERE j.id IS NULL") == []


async def test_a_job_an_unfinished_job_depends_on_stays_until_that_one_finishes(
        db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, TWO_TYPES, clock=clock) as store:
        first = await finished_pipeline(store)
        # dealer_com alone links to the dealer's newest homenet: first's, now its parent
        child = await pipeline(store, types=["dealer_com"])
        assert (await rows(store, f"SELECT parent_id FROM job_deps WHERE child_id = "
                                  f"{child['dealer_com']}")) == [(first["homenet"],)]
        # a newer homenet (cancelled: finished without running), so first holds no newest job
        newer = await pipeline(store, types=["homenet"])
        await store.cancel([newer["homenet"]])
        clock.advance(60 * DAY)
        assert (await prune(store)).pipelines["succeeded"] == 0
        assert first["homenet"] in await pipeline_ids(store)
        await run_everything(store)  # the child finishes
        gone = await prune(store)
        assert gone.pipelines["succeeded"] == 1
        assert first["homenet"] not in await pipeline_ids(store)
        # the child's pipeline is the newest dealer_com, the cancelled one the newest homenet
        assert await pipeline_ids(store) == [child["dealer_com"], newer["homenet"]]


async def test_a_failed_pipeline_with_blocked_jobs_goes_after_the_failed_limit(
        db_url: str) -> None:
    # blocked jobs wait for an operator: kept for ever, every failure of a year unattended
    # stayed (and was read again each pass); they keep as long as the failure that blocked them
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        ids = await pipeline(store)
        await storeops.fail(store, "w1", [JobOutcome(i, "HTTP 404")
                                          for i in await claim_ids(store)])
        cancelled = await pipeline(store)  # a cancel upstream blocks the rest as well
        await store.cancel([cancelled["homenet"]])
        await finished_pipeline(store)
        clock.advance(20 * DAY)  # past succeeded's and cancelled's 7 days, not failed's 30
        assert (await prune(store)).rows == 0
        # settled as enqueue's check settles it (store/pending.py): nothing will run
        assert await rows(store, f"SELECT settled_at, outcome FROM pipelines WHERE id = "
                                 f"{ids['homenet']}") == [(T0, "failed")]
        assert len(await store.list_jobs(states=["blocked"])) == 6
        clock.advance(11 * DAY)
        gone = await prune(store)
        assert (gone.pipelines["failed"], gone.jobs["failed"]) == (2, 8)
        left = await pipeline_ids(store)
        assert ids["homenet"] not in left and cancelled["homenet"] not in left
        assert await store.list_jobs(states=["blocked"]) == []


async def test_a_pass_stops_near_its_row_bound_and_the_next_resumes(db_url: str) -> None:
    clock = Clock(T0)
    dealers = tuple(f"d{i}" for i in range(30))
    async with opened(db_url, clock=clock, dealers=dealers) as store:
        for _ in range(2):
            await store.enqueue(list(dealers))
            await run_everything(store)
        await store.enqueue(list(dealers))  # the newest of each: kept
        clock.advance(8 * DAY)
        p = pruner(store)
        first = await p.prune(max_rows=200)
        assert not first.complete
        # the last page is cut to the rows a pipeline took so far (20 before the first)
        assert 150 <= first.rows <= 250, first
        total = Tally()
        total.add(first)
        while not (t := await p.prune(max_rows=200)).complete:
            assert t.rows <= 250
            total.add(t)
        total.add(t)
        assert sum(total.pipelines.values()) == 60
        assert len(await pipeline_ids(store)) == 30


async def test_audit_rows_past_their_limit_go(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        await store.enqueue(["d1"], by="ops@host")
        clock.advance(10 * DAY)
        await store.enqueue(["d1"], by="ops@host")
        assert (await prune(store, audit_s=9 * DAY)).audit == 1
        assert [e["at"] for e in await store.audit_entries()] == [T0 + 10 * DAY]


async def test_a_dry_run_counts_what_a_pass_deletes_and_deletes_nothing(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock=clock) as store:
        for _ in range(3):
            await finished_pipeline(store)
        clock.advance(8 * DAY)
        before = await rows(store, "SELECT id, settled_at, outcome FROM pipelines ORDER BY id")
        would = await pruner(store).prune(dry_run=True, max_rows=None, max_reads=None)
        assert await rows(store, "SELECT id, settled_at, outcome FROM pipelines "
                                 "ORDER BY id") == before
        did = await prune(store)
        assert (would.pipelines, would.jobs, would.events, would.deps) == (
            did.pipelines, did.jobs, did.events, did.deps)
        assert did.pipelines["succeeded"] == 2


async def test_postgres_prunes_in_one_process_at_a_time(postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    clock = Clock(T0)
    async with opened(url, clock=clock) as store:
        await finished_pipeline(store)
        await finished_pipeline(store)
        clock.advance(8 * DAY)
        async with store.db.engine.connect() as other:  # another pruner's lock, held
            await other.execute(text("SELECT pg_advisory_lock(7262003)"))
            busy = await prune(store)
            assert (busy.rows, busy.complete, busy.busy) == (0, False, True)
            await other.execute(text("SELECT pg_advisory_unlock(7262003)"))
        assert (await prune(store)).pipelines["succeeded"] == 1



async def test_sqlite_counts_a_big_table_by_its_rowids(tmp_path: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dealertui.store.reads import storage as storage_reads

    monkeypatch.setattr(storage_reads, "COUNT_CAP", 5)
    clock = Clock(T0)
    async with opened(f"sqlite+aiosqlite:///{tmp_path}/c.db", clock=clock) as store:
        for _ in range(3):
            await finished_pipeline(store, retries=2, clock=clock)  # 6 event rows each
        clock.advance(8 * DAY)
        await prune(store)  # ids 1-8 gone: 4 jobs left, ids 9-12
        facts = await storage_reads.storage(store)
        assert facts["rows"]["jobs"] == 4 and "jobs" not in facts["rows_estimated"]
        assert facts["rows"]["job_events"] > 5 and "job_events" in facts["rows_estimated"]
        assert not facts["rows_exact"]
        events = await rows(store, "SELECT min(id), max(id), count(*) FROM job_events")
        assert facts["rows"]["job_events"] == events[0][1] - events[0][0] + 1


async def test_a_version_6_database_gains_the_retention_indexes_on_upgrade(db_url: str) -> None:
    from sqlalchemy import inspect

    async def indexes(store: JobStore) -> set[str]:
        async with store.db.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {ix["name"] for ix in inspect(sync).get_indexes("pipelines")})

    async with opened(db_url, dealers=()) as store, store.db.engine.begin() as conn:
        for name in ("ix_pipelines_unsettled", "ix_pipelines_settled"):
            await conn.execute(text(f"DROP INDEX {name}"))
        await conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))
    async with opened(db_url, dealers=()) as store:
        assert {"ix_pipelines_unsettled", "ix_pipelines_settled"} <= await indexes(store)
        assert await storeops.schema_version(store) == SCHEMA_VERSION
