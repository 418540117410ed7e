"""Graph operations on SQLite and Postgres: skip (a job counts as done, its descendants are
released) and rerun (a job and every descendant re-armed), with their argument checks.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import pytest
import storeops
from graphops import DESCENDANTS, T0, WHO, fail_homenet, operator, run_everything, snapshot
from helpers import Clock, claim, pipeline
from helpers import job_states as states

from dealertui.errors import UsageError
from dealertui.model import SATISFIED_STATES
from dealertui.store import JobStore, JobTypeRule

pytestmark = pytest.mark.anyio


# --- skip ------------------------------------------------------------------------------------


async def test_skip_failed_job_releases_its_blocked_descendants(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        ids = await pipeline(store)
        await fail_homenet(store, ids, "HTTP 503 from feed host")
        assert await states(store, ids) == {
            "homenet": "failed", "dealer_com": "blocked", "product_scrape": "blocked",
            "url_shorten": "blocked",
        }
        clock.advance(5)
        res = await op.skip([ids["homenet"]], "  feed retired upstream  ")
        assert res.changed == [ids["homenet"]]
        assert sorted(res.followers) == sorted(ids[t] for t in DESCENDANTS)
        assert await states(store, ids) == {
            "homenet": "skipped", "dealer_com": "ready", "product_scrape": "ready",
            "url_shorten": "waiting",
        }
        h = await store.get_job(ids["homenet"])
        assert h is not None and h.finished_at == clock() and h.locked_by is None
        for t in DESCENDANTS:
            j = await store.get_job(ids[t])
            assert j is not None and j.blocked_reason is None, j

        ev = (await storeops.job_events(store, ids["homenet"]))[-1]
        assert (ev["from_state"], ev["to_state"]) == ("failed", "skipped")
        assert ev["message"] == "skipped: feed retired upstream"
        assert ev["worker"] == WHO and ev["at"] == clock()
        for t, to in (("dealer_com", "ready"), ("product_scrape", "ready"),
                      ("url_shorten", "waiting")):
            ev = (await storeops.job_events(store, ids[t]))[-1]
            assert (ev["from_state"], ev["to_state"]) == ("blocked", to), (t, ev)
            assert "a parent was skipped: feed retired upstream" in (ev["message"] or "")

        audit = await store.audit_entries()
        assert audit[0]["action"] == "skip"
        assert audit[0]["who"] == WHO
        assert audit[0]["reason"] == "feed retired upstream"
        assert audit[0]["job_ids"] == [ids["homenet"]] and audit[0]["count"] == 1
        assert str(ids["homenet"]) in audit[0]["target"]

        # counted apart from successes, in every breakdown
        st = await store.status()
        assert st["by_state"]["skipped"] == 1 and st["by_state"]["succeeded"] == 0
        assert st["by_type"]["homenet"]["skipped"] == 1
        assert st["by_dealer"]["d1"]["skipped"] == 1

        # the released descendants run to the end; the skipped job never runs
        ran = await run_everything(store)
        assert sorted(ran) == sorted(ids[t] for t in DESCENDANTS)
        st = await store.status()
        assert st["by_state"]["skipped"] == 1 and st["by_state"]["succeeded"] == 3


async def test_skip_waiting_job_readies_children_whose_only_unmet_parent_it_was(
    db_url: str,
) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        # product_scrape waits on homenet (ready); url_shorten waits on product_scrape
        res = await op.skip([ids["product_scrape"]], "no catalogue this week")
        assert res.changed == [ids["product_scrape"]]
        assert res.followers == [ids["url_shorten"]]
        assert await states(store, ids) == {
            "homenet": "ready", "dealer_com": "waiting", "product_scrape": "skipped",
            "url_shorten": "ready",
        }
        ev = (await storeops.job_events(store, ids["url_shorten"]))[-1]
        assert (ev["from_state"], ev["to_state"]) == ("waiting", "ready")
        # skipping a ready root readies both its children; url_shorten is already ready
        res = await op.skip([ids["homenet"]], "feed retired")
        assert sorted(res.followers) == sorted([ids["dealer_com"]])
        assert await states(store, ids) == {
            "homenet": "skipped", "dealer_com": "ready", "product_scrape": "skipped",
            "url_shorten": "ready",
        }


async def test_skip_keeps_a_child_waiting_while_another_parent_is_unmet(db_url: str) -> None:
    """c needs a and b: skipping a leaves c waiting on b; then b succeeds and c is ready."""
    rules = {"a": JobTypeRule(1, ()), "b": JobTypeRule(2, ()), "c": JobTypeRule(3, ("a", "b"))}
    store = await JobStore.open(db_url, rules, clock=Clock(T0))
    try:
        await store.add_dealers([("d1", None)])
        ids = await pipeline(store)
        res = await store.skip([ids["a"]], reason="not needed", by=WHO)
        assert res.changed == [ids["a"]] and res.followers == []
        assert await states(store, ids) == {"a": "skipped", "b": "ready", "c": "waiting"}
        assert await claim(store) == [ids["b"]]
        done = await storeops.complete(store, "w1", [ids["b"]])
        assert done.promoted == [ids["c"]]
        assert await states(store, ids) == {"a": "skipped", "b": "succeeded", "c": "ready"}
    finally:
        await store.close()


async def test_running_and_succeeded_jobs_cannot_be_skipped(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        assert await claim(store) == [ids["homenet"]]
        before = await snapshot(store)
        res = await op.skip([ids["homenet"]], "try")
        assert res.changed == [] and res.followers == [] and res.count == 0
        assert await snapshot(store) == before  # no state change, no event, no audit row
        await storeops.complete(store, "w1", [ids["homenet"]])
        before = await snapshot(store)
        res = await op.skip([ids["homenet"]], "try again")
        assert res.count == 0
        assert await snapshot(store) == before
        assert (await states(store, ids))["homenet"] == "succeeded"
        # a mix: only the skippable one moves
        res = await op.skip([ids["homenet"], ids["dealer_com"]], "mixed")
        assert res.changed == [ids["dealer_com"]]


async def test_skip_needs_a_reason_and_a_real_job(db_url: str) -> None:
    async with operator(db_url) as op:
        ids = await pipeline(op.store)
        before = await snapshot(op.store)
        for reason in ("", "   ", None):
            with pytest.raises(UsageError, match="reason"):
                await op.skip([ids["homenet"]], reason)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="no job 999999"):
            await op.skip([999_999], "gone")
        assert await snapshot(op.store) == before


async def test_skipped_job_satisfies_a_later_enqueues_prerequisite(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        first = await pipeline(store, types=["homenet"])
        await op.skip([first["homenet"]], "feed retired")
        new = (await op.enqueue(["d1"], types=["dealer_com"])).job_ids
        assert len(new) == 1
        job = await store.get_job(new[0])
        assert job is not None and job.state == "ready", job
        assert job.blocked_reason is None and job.ready_at is not None
        assert (first["homenet"], new[0]) in await store.edges()
        # the same with the prerequisite failed instead: blocked for lack of a good run
        await op.add_dealers([("d2", None)])
        failed = await pipeline(store, "d2", types=["homenet"])
        await fail_homenet(store, failed)
        new2 = (await op.enqueue(["d2"], types=["dealer_com"])).job_ids
        j2 = await store.get_job(new2[0])
        assert j2 is not None and j2.state == "blocked"
        assert j2.blocked_reason == "no successful homenet run"
        assert SATISFIED_STATES == ("succeeded", "skipped")


# --- rerun -----------------------------------------------------------------------------------


async def test_rerun_job_rearms_it_and_every_descendant(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        ids = await pipeline(store)
        assert len(await run_everything(store)) == 4
        assert set((await states(store, ids)).values()) == {"succeeded"}
        clock.advance(30)
        res = await op.rerun(job_id=ids["homenet"], reason="feed fixed, refresh")
        assert res.changed == [ids["homenet"]]
        assert sorted(res.followers) == sorted(ids[t] for t in DESCENDANTS)
        assert await states(store, ids) == {
            "homenet": "ready", "dealer_com": "waiting", "product_scrape": "waiting",
            "url_shorten": "waiting",
        }
        for j in await store.list_jobs(job_ids=list(ids.values())):
            assert j.attempts == 0 and j.finished_at is None and j.locked_by is None, j
        h = await store.get_job(ids["homenet"])
        assert h is not None and h.ready_at == clock()
        ev = (await storeops.job_events(store, ids["homenet"]))[-1]
        assert (ev["from_state"], ev["to_state"]) == ("succeeded", "ready")
        assert ev["message"] == "operator rerun" and ev["worker"] == WHO
        audit = (await store.audit_entries())[0]
        assert audit["action"] == "rerun" and audit["who"] == WHO
        assert audit["reason"] == "feed fixed, refresh"
        assert audit["job_ids"] == sorted(ids.values()) and audit["count"] == 4
        # the re-armed pipeline runs again in dependency order and succeeds
        ran = await run_everything(store, per_dealer=2)
        assert ran[0] == ids["homenet"] and ran[-1] == ids["url_shorten"]
        assert sorted(ran) == sorted(ids.values())
        assert set((await states(store, ids)).values()) == {"succeeded"}
        for j in await store.list_jobs(job_ids=list(ids.values())):
            assert j.attempts == 1, j


async def test_rerun_middle_job_leaves_its_ancestors_and_siblings(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        await run_everything(store)
        res = await op.rerun(job_id=ids["product_scrape"])
        assert res.changed == [ids["product_scrape"]]
        assert res.followers == [ids["url_shorten"]]
        assert await states(store, ids) == {
            "homenet": "succeeded", "dealer_com": "succeeded", "product_scrape": "ready",
            "url_shorten": "waiting",
        }
        assert (await store.audit_entries())[0]["reason"] is None


async def test_rerun_dealer_rearms_its_newest_job_of_each_type(db_url: str) -> None:
    async with operator(db_url, dealers=("d1", "d2")) as op:
        store = op.store
        old = await pipeline(store, "d1")
        await run_everything(store)
        new = await pipeline(store, "d1")
        other = await pipeline(store, "d2")
        await run_everything(store)
        everything = await snapshot(store)
        assert {j.state for j in everything["jobs"]} == {"succeeded"}
        res = await op.rerun(dealer_id="d1", reason="whole pipeline")
        assert sorted([*res.changed, *res.followers]) == sorted(new.values())
        assert res.changed == sorted(new.values())  # every newest job is a root here
        assert await states(store, new) == {
            "homenet": "ready", "dealer_com": "waiting", "product_scrape": "waiting",
            "url_shorten": "waiting",
        }
        assert set((await states(store, old)).values()) == {"succeeded"}
        assert set((await states(store, other)).values()) == {"succeeded"}
        audit = (await store.audit_entries())[0]
        assert audit["action"] == "rerun" and "dealer d1" in audit["target"]
        assert audit["job_ids"] == sorted(new.values())
        await run_everything(store)
        assert set((await states(store, new)).values()) == {"succeeded"}


async def test_rerun_leaves_running_jobs_alone(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        assert await claim(store) == [ids["homenet"]]
        await storeops.complete(store, "w1", [ids["homenet"]])
        assert await claim(store) == sorted([ids["dealer_com"], ids["product_scrape"]])
        await storeops.complete(store, "w1", [ids["product_scrape"]])
        # dealer_com is running on w1; url_shorten is ready
        res = await op.rerun(job_id=ids["homenet"])
        assert res.changed == [ids["homenet"]]
        assert sorted(res.followers) == sorted([ids["product_scrape"], ids["url_shorten"]])
        assert await states(store, ids) == {
            "homenet": "ready", "dealer_com": "running", "product_scrape": "waiting",
            "url_shorten": "waiting",
        }
        dc = await store.get_job(ids["dealer_com"])
        assert dc is not None and dc.locked_by == "w1" and dc.attempts == 1
        # the running one still finishes under its own lease
        assert (await storeops.complete(store, "w1", [ids["dealer_com"]])).done == [ids["dealer_com"]]
        await run_everything(store)
        assert set((await states(store, ids)).values()) == {"succeeded"}
        # a pipeline whose only job is running: nothing to do, no audit row
        n_audit = len(await store.audit_entries())
        only = await pipeline(store, types=["homenet"])
        assert await claim(store) == [only["homenet"]]
        res = await op.rerun(job_id=only["homenet"])
        assert res.count == 0
        assert len(await store.audit_entries()) == n_audit


async def test_rerun_argument_checks(db_url: str) -> None:
    async with operator(db_url) as op:
        ids = await pipeline(op.store)
        with pytest.raises(UsageError, match="exactly one"):
            await op.store.rerun()
        with pytest.raises(UsageError, match="exactly one"):
            await op.store.rerun(job_id=ids["homenet"], dealer_id="d1")
        with pytest.raises(UsageError, match="no job 424242"):
            await op.rerun(job_id=424_242)
        with pytest.raises(UsageError, match="unknown dealer"):
            await op.rerun(dealer_id="nobody")
