"""Graph operations on the right pipeline, and messages that count what really changed.

A pipeline is the jobs one enqueue made for one dealer; its id is the id of its first job.
The tester's sequence (issue #13): a dealer has an old pipeline whose homenet failed and a
newer, partial one (homenet + dealer_com) whose homenet an operator cancelled. `rerun
--dealer` re-armed "the newest job of each type", two of them from the old, dead pipeline,
which stayed blocked while the message counted them; `retry --job` of the cancelled
homenet's child said "retried 1 job" and left it blocked.

The store runs on a frozen clock: every enqueue of a test has the same created_at, so a
pipeline cannot be told by its time, only by what the store recorded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import storeops
from helpers import Clock, cli, ok, opened
from helpers import job_states as states
from helpers import pipeline as enqueue
from sqlalchemy import update

from dealertui.config import Config, parse_config
from dealertui.engine.actions import Operator
from dealertui.errors import UsageError
from dealertui.model import JobOutcome
from dealertui.store import JobStore, rules_from_config
from dealertui.store.schema import jobs as jobs_table

pytestmark = pytest.mark.anyio

CONFIG: Config = parse_config({}, None)  # homenet → dealer_com, product_scrape → url_shorten
T0 = 70_000.0


@asynccontextmanager
async def operator(db_url: str) -> AsyncIterator[Operator]:
    async with opened(db_url, clock=Clock(T0), dealers=("dlr01", "dlr02"), config=CONFIG
                      ) as store:
        yield Operator(store, CONFIG, who="tester@qa")


async def the_testers_state(op: Operator) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """dlr01: an old full pipeline whose homenet failed (its three others blocked), a newer
    homenet + dealer_com pipeline whose homenet is cancelled; dlr02: a full pipeline."""
    store = op.store
    old = await enqueue(store, "dlr01")
    claimed = await store.claim("w1", 10, per_dealer=10, lease_s=60, only_dealers=["dlr01"])
    assert [j.id for j in claimed.jobs] == [old["homenet"]]
    await storeops.fail(store, "w1", [JobOutcome(old["homenet"], "HTTP 503")])
    new = await enqueue(store, "dlr01", ["homenet", "dealer_com"])
    other = await enqueue(store, "dlr02")
    cancelled = await op.cancel([new["homenet"]])
    assert cancelled.changed == [new["homenet"]] and cancelled.followers == [new["dealer_com"]]
    assert await states(store, old) == {"homenet": "failed", "dealer_com": "blocked",
                                        "product_scrape": "blocked", "url_shorten": "blocked"}
    assert await states(store, new) == {"homenet": "cancelled", "dealer_com": "blocked"}
    return old, new, other


async def test_enqueue_records_one_pipeline_per_dealer(db_url: str) -> None:
    async with operator(db_url) as op:
        ids = await op.store.enqueue(["dlr01", "dlr02"])
        jobs = await op.store.list_jobs(job_ids=ids)
        first = {d: min(j.id for j in jobs if j.dealer_id == d) for d in ("dlr01", "dlr02")}
        assert {j.id: j.pipeline_id for j in jobs} == {j.id: first[j.dealer_id] for j in jobs}


async def test_retry_of_a_cancelled_parents_child_says_it_stays_blocked(db_url: str) -> None:
    async with operator(db_url) as op:
        _, new, _ = await the_testers_state(op)
        child = new["dealer_com"]
        audit_before = len(await op.store.audit_entries())
        events_before = len(await storeops.job_events(op.store, child))
        res = await op.retry(job_ids=[child])
        assert res.changed == [] and res.followers == []
        assert res.held == {child: f"parent homenet #{new['homenet']} is cancelled"}
        assert (await op.store.get_job(child)).state == "blocked"  # type: ignore[union-attr]
        # nothing changed, so nothing is written: no audit row, no job_events row
        assert len(await op.store.audit_entries()) == audit_before
        assert len(await storeops.job_events(op.store, child)) == events_before


async def test_rerun_dealer_reruns_its_newest_pipeline_only(db_url: str) -> None:
    async with operator(db_url) as op:
        old, new, other = await the_testers_state(op)
        res = await op.rerun(dealer_id="dlr01")
        assert res.pipeline == new["homenet"]
        assert res.changed == sorted(new.values()) and res.followers == [] and res.held == {}
        assert await states(op.store, new) == {"homenet": "ready", "dealer_com": "waiting"}
        # the old pipeline and the other dealer are left as they were
        assert await states(op.store, old) == {"homenet": "failed", "dealer_com": "blocked",
                                               "product_scrape": "blocked",
                                               "url_shorten": "blocked"}
        assert set((await states(op.store, other)).values()) == {"ready", "waiting"}
        audit = (await op.store.audit_entries())[0]
        assert audit["job_ids"] == sorted(new.values())
        assert f"pipeline {new['homenet']}" in audit["target"]


async def test_rerun_pipeline_names_an_older_one(db_url: str) -> None:
    async with operator(db_url) as op:
        old, new, _ = await the_testers_state(op)
        res = await op.rerun(pipeline_id=old["homenet"])
        assert res.pipeline == old["homenet"]
        assert res.changed == sorted(old.values()) and res.held == {}
        assert await states(op.store, old) == {"homenet": "ready", "dealer_com": "waiting",
                                               "product_scrape": "waiting",
                                               "url_shorten": "waiting"}
        assert await states(op.store, new) == {"homenet": "cancelled", "dealer_com": "blocked"}
        # with --dealer too, the pipeline must be that dealer's
        with pytest.raises(UsageError, match=f"pipeline {old['homenet']} is dealer dlr01's"):
            await op.rerun(dealer_id="dlr02", pipeline_id=old["homenet"])
        with pytest.raises(UsageError, match=(
                f"there is no pipeline {old['dealer_com']}; job {old['dealer_com']} "
                f"is in pipeline {old['homenet']}")):
            await op.rerun(pipeline_id=old["dealer_com"])
        with pytest.raises(UsageError, match="there is no pipeline 424242"):
            await op.rerun(pipeline_id=424_242)


async def test_rerun_of_a_pipeline_whose_outside_parent_is_dead_holds_it(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        _, new, _ = await the_testers_state(op)
        # a dealer_com alone while the newest homenet is cancelled: no run to link to
        lone = await enqueue(store, "dlr01", ["dealer_com"])
        assert await states(store, lone) == {"dealer_com": "blocked"}
        res = await op.rerun(dealer_id="dlr01")
        assert res.pipeline == lone["dealer_com"]
        assert res.changed == [] and res.held == {lone["dealer_com"]: "no successful homenet run"}
        assert await states(store, lone) == {"dealer_com": "blocked"}
        # once the cancelled homenet is retried, a rerun links to it and waits for it
        assert (await op.retry(job_ids=[new["homenet"]])).changed == [new["homenet"]]
        res = await op.rerun(dealer_id="dlr01")
        assert res.changed == [lone["dealer_com"]] and res.held == {}
        assert await states(store, lone) == {"dealer_com": "waiting"}


async def test_the_testers_sequence_on_the_cli(db_url: str, tmp_path: Path) -> None:
    url = db_url
    async with operator(db_url) as op:
        old, new, _ = await the_testers_state(op)
    said = ok(cli(tmp_path, url, "retry", "--job", str(new["dealer_com"]))).strip()
    assert said == (f"retried 0 jobs; 0 descendants unblocked; job {new['dealer_com']} stays "
                    f"blocked: parent homenet #{new['homenet']} is cancelled")
    said = ok(cli(tmp_path, url, "rerun", "--dealer", "dlr01")).strip()
    assert said == (f"rerunning 2 jobs of pipeline {new['homenet']} (dealer dlr01); "
                    "0 descendants re-armed")
    said = ok(cli(tmp_path, url, "rerun", "--pipeline", str(old["homenet"]))).strip()
    assert said == (f"rerunning 4 jobs of pipeline {old['homenet']} (dealer dlr01); "
                    "0 descendants re-armed")
    bad = cli(tmp_path, url, "rerun", "--pipeline", str(old["url_shorten"]))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert re.search(rf"there is no pipeline {old['url_shorten']}; job {old['url_shorten']} "
                     rf"is in pipeline {old['homenet']}", bad.stderr), bad.stderr


async def test_jobs_enqueued_before_pipeline_ids_are_told_by_their_enqueue(db_url: str) -> None:
    clock = [T0]
    store = await JobStore.open(db_url, rules_from_config(CONFIG), clock=lambda: clock[0])
    try:
        await store.add_dealers([("dlr01", None)])
        old = await enqueue(store, "dlr01")
        clock[0] += 5
        new = await enqueue(store, "dlr01", ["homenet", "dealer_com"])

        async def forget(conn: Any) -> None:  # what an upgraded schema-3 database holds
            await conn.execute(update(jobs_table).values(pipeline_id=None))

        await store.db.run(forget)
        op = Operator(store, CONFIG, who="tester@qa")
        res = await op.rerun(dealer_id="dlr01")
        assert res.pipeline == new["homenet"] and res.changed == sorted(new.values())
        res = await op.rerun(pipeline_id=old["homenet"])
        assert res.changed == sorted(old.values())
        with pytest.raises(UsageError, match=f"job {old['url_shorten']} is in pipeline "
                                             f"{old['homenet']}"):
            await op.rerun(pipeline_id=old["url_shorten"])
    finally:
        await store.close()


async def test_enqueue_prints_the_pipeline_ids(db_url: str, tmp_path: Path) -> None:
    async with operator(db_url):
        pass  # the schema and the dealers dlr01, dlr02
    said = ok(cli(tmp_path, db_url, "enqueue", "--dealer", "dlr01", "--dealer", "dlr02"))
    assert said.strip() == "enqueued 8 jobs (pipelines 1 of dlr01, 5 of dlr02)"
    said = ok(cli(tmp_path, db_url, "enqueue", "--dealer", "dlr02", "--type", "homenet"))
    assert said.strip() == "enqueued 1 job (pipeline 9 of dlr02)"
