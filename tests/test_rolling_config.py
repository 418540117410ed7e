"""A rolling deploy: workers whose configs differ in job types share one database.

A worker whose config lacks a job type leaves that type's jobs alone: they wait (ready), their
children are not blocked, `why` names the worker that does not know the type, and a worker with
the type runs them later. It used to claim them and fail them for good ("no handler").
"""

from __future__ import annotations

import dataclasses

import pytest

from dealertui.config import Config, parse_config
from dealertui.engine.explain import reasons
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.store import Intent, open_store
from dealertui.store.reads import why_facts

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]

TYPES = {"homenet": [], "dealer_com": ["homenet"], "product_scrape": ["homenet"],
         "url_shorten": ["product_scrape"]}



def config(db_url: str, types: list[str]) -> Config:
    cfg = parse_config({
        "job_types": {
            name: {"priority": i, "depends_on": [d for d in TYPES[name] if d in types],
                   "handler": "tests.fixtures.handlers:ok"}
            for i, name in enumerate(types, 1)
        },
        "dealers": [{"id": "d1"}, {"id": "d2"}],
    }, None)
    return dataclasses.replace(cfg, database_url=db_url)


async def test_a_worker_leaves_job_types_it_does_not_know_for_one_that_does(
    db_url: str,
) -> None:
    new = config(db_url, list(TYPES))
    old = config(db_url, ["homenet", "dealer_com", "product_scrape"])  # before url_shorten
    store = await open_store(new, Intent.CREATE)
    try:
        await store.enqueue(["d1", "d2"])
        stats = await MultiDealerDependencyManager(store, old).process_multi_dealer_jobs()
        assert (stats.successful_jobs, stats.failed_jobs, stats.blocked_jobs) == (6, 0, 0)
        left = {j.job_type: j.state for j in await store.list_jobs()
                if j.job_type == "url_shorten"}
        assert left == {"url_shorten": "ready"}, left
        url_job = next(j for j in await store.list_jobs() if j.job_type == "url_shorten")

        # an old worker is still heartbeating: why names it
        await store.register_worker("worker:old:1", host="old", pid=1, kind="worker",
                                    job_types=list(old.job_types))
        await store.register_worker("worker:new:2", host="new", pid=2, kind="worker",
                                    job_types=list(new.job_types))
        facts = await why_facts(store, url_job.id)
        assert facts is not None
        said = [r for r in reasons(facts, new, store.clock())
                if r.code == "type_not_in_worker_config"]
        assert [r.text for r in said] == [
            "job type url_shorten is not in this worker's config (worker worker:old:1): it "
            "leaves the job for a worker that has it"
        ]

        stats = await MultiDealerDependencyManager(store, new).process_multi_dealer_jobs()
        assert (stats.successful_jobs, stats.failed_jobs) == (2, 0)
        assert {j.state for j in await store.list_jobs()} == {"succeeded"}
    finally:
        await store.close()
