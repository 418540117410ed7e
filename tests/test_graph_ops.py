"""Graph operations (skip, rerun), previews and blast radius, failure-group actions, the
run plan and the fairness meter, on SQLite and Postgres; the CLI side of each (dry runs,
`--run-once --dry-run`, `status --json`) in-process on SQLite.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import storeops
from helpers import Clock, claim, cli, ok, opened, pipeline, show, with_store
from helpers import job_states as states
from sqlalchemy import func, insert, select, update

from dealertui.config import Config, parse_config
from dealertui.engine.actions import Operator
from dealertui.engine.plan import build_plan
from dealertui.errors import UsageError
from dealertui.model import SATISFIED_STATES, ActionResult, JobOutcome
from dealertui.store import JobStore, JobTypeRule
from dealertui.store.reads import error_groups, fairness
from dealertui.store.schema import breakers as breakers_table
from dealertui.store.schema import job_deps as job_deps_table
from dealertui.store.schema import job_events as job_events_table
from dealertui.store.schema import jobs as jobs_table

pytestmark = pytest.mark.anyio

T0 = 50_000.0
CONFIG: Config = parse_config({}, None)  # homenet → dealer_com, product_scrape → url_shorten
WHO = "carol@ops-host"
DESCENDANTS = ("dealer_com", "product_scrape", "url_shorten")


@asynccontextmanager
async def operator(
    db_url: str, clock: Clock | None = None, dealers: Sequence[str] = ("d1",)
) -> AsyncIterator[Operator]:
    async with opened(db_url, clock=clock or Clock(T0), dealers=dealers, config=CONFIG) as store:
        yield Operator(store, CONFIG, who=WHO)


async def run_everything(store: JobStore, worker: str = "w1", **kw: Any) -> list[int]:
    """Claim and complete until nothing is claimable; returns the ids that ran, in order."""
    ran: list[int] = []
    for _ in range(50):
        ids = await claim(store, worker, **kw)
        if not ids:
            return ran
        done = await storeops.complete(store, worker, ids)
        assert sorted(done.done) == ids
        ran += ids
    raise AssertionError("run_everything did not converge")


async def fail_homenet(store: JobStore, ids: dict[str, int], error: str = "HTTP 503",
                       worker: str = "w1") -> None:
    dealer = (await store.get_job(ids["homenet"])).dealer_id  # type: ignore[union-attr]
    assert await claim(store, worker, only_dealers=[dealer]) == [ids["homenet"]]
    res = await storeops.fail(store, worker, [JobOutcome(ids["homenet"], error)])
    assert res.failed == [ids["homenet"]]


async def event_count(store: JobStore) -> int:
    async def tx(conn: Any) -> int:
        return (await conn.execute(select(func.count()).select_from(job_events_table))
                ).scalar_one()

    return await store.db.run(tx, write=False)


async def max_event_id(store: JobStore) -> int:
    async def tx(conn: Any) -> int:
        return (await conn.execute(select(func.max(job_events_table.c.id)))).scalar() or 0

    return await store.db.run(tx, write=False)


async def event_jobs_since(store: JobStore, event_id: int) -> set[int]:
    """Ids of the jobs that have job_events rows after *event_id*."""

    async def tx(conn: Any) -> set[int]:
        return set((await conn.execute(
            select(job_events_table.c.job_id).where(job_events_table.c.id > event_id)
        )).scalars())

    return await store.db.run(tx, write=False)


async def snapshot(store: JobStore) -> dict[str, Any]:
    """Everything an action may touch: every job row (all fields), edges, events, audit
    rows, pauses, dealers (with last_served_at), breakers."""
    return {
        "jobs": await store.list_jobs(),
        "edges": sorted(await store.edges()),
        "events": await event_count(store),
        "max_event": await max_event_id(store),
        "audit": await store.audit_entries(limit=100_000),
        "pauses": await store.pauses(),
        "dealers": await store.list_dealers(),
        "breakers": await store.breaker_states(),
    }


def moved(before: dict[str, Any], after: dict[str, Any]) -> set[int]:
    """Ids of jobs whose state, attempts or blocked reason differ between two snapshots."""
    was = {j.id: (j.state, j.attempts, j.blocked_reason) for j in before["jobs"]}
    return {j.id for j in after["jobs"] if was.get(j.id) != (j.state, j.attempts,
                                                             j.blocked_reason)}


def as_sets(r: ActionResult) -> tuple[list[int], list[int]]:
    return sorted(r.changed), sorted(r.followers)


async def preview_then_act(
    op: Operator, act: Callable[[Operator], Awaitable[ActionResult]]
) -> ActionResult:
    """Run *act* through a preview (twice) and check nothing changed, then for real and
    check it changed exactly what the preview said: the jobs whose state, attempts or blocked
    reason moved, and the jobs it wrote job_events rows for, are the result's jobs."""
    before = await snapshot(op.store)
    shown = await act(op.preview())
    assert await snapshot(op.store) == before, "a preview changed the store"
    again = await act(op.preview())
    assert as_sets(again) == as_sets(shown), "a second preview disagrees with the first"
    assert await snapshot(op.store) == before, "a second preview changed the store"
    real = await act(op)
    assert as_sets(real) == as_sets(shown), (shown, real)
    after = await snapshot(op.store)
    listed = {*real.changed, *real.followers}
    assert moved(before, after) <= listed
    assert await event_jobs_since(op.store, before["max_event"]) == listed
    assert not set(real.changed) & set(real.followers)
    return real


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
        new = await op.enqueue(["d1"], types=["dealer_com"])
        assert len(new) == 1
        job = await store.get_job(new[0])
        assert job is not None and job.state == "ready", job
        assert job.blocked_reason is None and job.ready_at is not None
        assert (first["homenet"], new[0]) in await store.edges()
        # the same with the prerequisite failed instead: blocked for lack of a good run
        await op.add_dealers([("d2", None)])
        failed = await pipeline(store, "d2", types=["homenet"])
        await fail_homenet(store, failed)
        new2 = await op.enqueue(["d2"], types=["dealer_com"])
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


# --- preview (dry run) and blast radius --------------------------------------------------------


async def test_preview_retry_matches_real_retry_and_changes_nothing(db_url: str) -> None:
    async with operator(db_url, dealers=("d1", "d2", "d3")) as op:
        store = op.store
        a = await pipeline(store, "d1")
        await fail_homenet(store, a)
        b = await pipeline(store, "d2")
        await fail_homenet(store, b)
        real = await preview_then_act(op, lambda o: o.retry(job_ids=[a["homenet"]]))
        assert real.changed == [a["homenet"]]
        assert sorted(real.followers) == sorted(a[t] for t in DESCENDANTS)
        assert (await states(store, b))["homenet"] == "failed"
        real = await preview_then_act(op, lambda o: o.retry(all_failed=True, reason="bulk"))
        # --all-failed targets failed and blocked jobs alike: d2's whole pipeline
        assert real.changed == sorted(b.values()) and real.followers == []


async def test_preview_cancel_matches_real_cancel_and_changes_nothing(db_url: str) -> None:
    async with operator(db_url) as op:
        ids = await pipeline(op.store)
        real = await preview_then_act(op, lambda o: o.cancel([ids["homenet"]]))
        assert real.changed == [ids["homenet"]]
        assert sorted(real.followers) == sorted(ids[t] for t in DESCENDANTS)
        assert await states(op.store, ids) == {
            "homenet": "cancelled", "dealer_com": "blocked", "product_scrape": "blocked",
            "url_shorten": "blocked",
        }


async def test_preview_skip_and_rerun_match_the_real_actions(db_url: str) -> None:
    async with operator(db_url, dealers=("d1", "d2")) as op:
        store = op.store
        f = await pipeline(store, "d1")
        await fail_homenet(store, f)
        real = await preview_then_act(op, lambda o: o.skip([f["homenet"]], "retired"))
        assert real.changed == [f["homenet"]]
        assert sorted(real.followers) == sorted(f[t] for t in DESCENDANTS)
        s = await pipeline(store, "d2")
        await run_everything(store, only_dealers=["d2"])
        real = await preview_then_act(op, lambda o: o.rerun(job_id=s["homenet"]))
        assert real.changed == [s["homenet"]]
        assert sorted(real.followers) == sorted(s[t] for t in DESCENDANTS)
        real = await preview_then_act(op, lambda o: o.rerun(dealer_id="d1"))
        assert sorted(real.changed) == sorted(f.values())


async def test_preview_reset_stuck_matches_real_rescue(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2")) as op:
        store = op.store
        a = await pipeline(store, "d1")
        b = await pipeline(store, "d2")
        assert await claim(store, lease_s=60) == sorted([a["homenet"], b["homenet"]])

        async def exhaust(conn: Any) -> None:  # d2's homenet is on its last attempt
            await conn.execute(update(jobs_table).where(jobs_table.c.id == b["homenet"])
                               .values(attempts=5))

        await store.db.run(exhaust)
        # nothing is stuck yet: the preview and the action agree on "nothing"
        real = await preview_then_act(op, lambda o: o.reset_stuck())
        assert real.count == 0
        clock.advance(61)
        real = await preview_then_act(op, lambda o: o.reset_stuck())
        assert sorted(real.changed) == sorted([a["homenet"], b["homenet"]])
        assert sorted(real.followers) == sorted(b[t] for t in DESCENDANTS)
        assert (await states(store, a))["homenet"] == "ready"
        assert (await states(store, b))["homenet"] == "failed"
        assert (await store.audit_entries())[0]["action"] == "reset-stuck"


async def test_preview_store_is_usable_after_a_failing_action(db_url: str) -> None:
    """A preview that raises inside its transaction leaves both stores working."""
    async with operator(db_url) as op:
        ids = await pipeline(op.store)
        pv = op.preview()
        with pytest.raises(UsageError):
            await pv.store.rerun()
        before = await snapshot(op.store)
        r = await pv.cancel([ids["homenet"]])
        assert r.changed == [ids["homenet"]]
        assert await snapshot(op.store) == before
        assert (await op.cancel([ids["homenet"]])).changed == [ids["homenet"]]


async def test_blast_radius_groups_by_dealer_type_and_role(db_url: str) -> None:
    async with operator(db_url, dealers=("d1", "d2")) as op:
        store = op.store
        a = await pipeline(store, "d1")
        await fail_homenet(store, a)
        b = await pipeline(store, "d2")
        await fail_homenet(store, b)
        before = await snapshot(store)
        shown = await op.preview().retry(job_ids=[a["homenet"], b["homenet"]])
        radius = await op.blast_radius(shown)
        assert await snapshot(store) == before
        assert radius["changes"] == 2 and radius["follows"] == 6
        assert radius["groups"] == [
            {"dealer_id": d, "job_type": t, "role": r, "count": 1}
            for d in ("d1", "d2")
            for t, r in sorted([("homenet", "changes"), *((x, "follows") for x in DESCENDANTS)])
        ]
        by_id = {j["id"]: j for j in radius["jobs"]}
        assert set(by_id) == {*a.values(), *b.values()}
        # the states are those the jobs are in now (the preview changed nothing)
        assert by_id[a["homenet"]] == {"id": a["homenet"], "dealer_id": "d1",
                                       "job_type": "homenet", "state": "failed",
                                       "role": "changes"}
        assert by_id[b["url_shorten"]]["state"] == "blocked"
        assert by_id[b["url_shorten"]]["role"] == "follows"
        json.dumps(radius)
        # nothing to do: an empty radius
        empty = await op.blast_radius(ActionResult([]))
        assert empty == {"changes": 0, "follows": 0, "jobs": [], "groups": []}


# --- failure groups ------------------------------------------------------------------------------


def _feed_error(dealer: str, n: int) -> str:
    return (f"HTTP 503 from https://feeds.example.com/{dealer}/inventory.xml?page={n} "
            f"after {1000 + 37 * n} ms (dealer {dealer}, attempt {n})")


async def _three_dealer_incident(op: Operator) -> dict[str, dict[str, int]]:
    """d101..d303 fail homenet with the same fault (ids and numbers differ); d404 fails
    homenet for another reason."""
    pipes = {}
    for n, d in enumerate(("d101", "d202", "d303", "d404"), start=1):
        pipes[d] = await pipeline(op.store, d)
        err = _feed_error(d, n) if d != "d404" else "XML parse error: unexpected token '<'"
        await fail_homenet(op.store, pipes[d], err)
    return pipes


async def _group_of(store: JobStore, dealer: str) -> dict[str, Any]:
    found = [g for g in await error_groups(store) if dealer in g["all_dealer_ids"]]
    assert len(found) == 1, found
    return found[0]


async def test_failures_differing_in_ids_and_numbers_are_one_group(db_url: str) -> None:
    dealers = ("d101", "d202", "d303", "d404")
    async with operator(db_url, dealers=dealers) as op:
        pipes = await _three_dealer_incident(op)
        groups = await error_groups(op.store)
        assert len(groups) == 2, groups
        g = await _group_of(op.store, "d101")
        assert g["all_dealer_ids"] == ["d101", "d202", "d303"]
        assert g["dealers"] == 3 and g["count"] == 3 and g["jobs"] == 3
        assert g["job_ids"] == sorted(pipes[d]["homenet"] for d in ("d101", "d202", "d303"))
        assert g["job_type"] == "homenet"
        assert "d101" not in g["signature"] and "<dealer>" in g["signature"]
        assert re.fullmatch(r"[0-9a-f]{8}", g["fingerprint"]), g["fingerprint"]
        other = await _group_of(op.store, "d404")
        assert other["fingerprint"] != g["fingerprint"]
        # stable: across calls, and across a new failure joining the group
        assert (await _group_of(op.store, "d101"))["fingerprint"] == g["fingerprint"]
        await op.add_dealers([("d505", None)])
        p5 = await pipeline(op.store, "d505")
        await fail_homenet(op.store, p5, _feed_error("d505", 9))
        g2 = await _group_of(op.store, "d505")
        assert g2["fingerprint"] == g["fingerprint"] and g2["dealers"] == 4
        assert (await op.error_group(g["fingerprint"].upper() + " "))["signature"] == (
            g["signature"])


async def test_retry_group_retries_exactly_that_groups_failed_jobs(db_url: str) -> None:
    dealers = ("d101", "d202", "d303", "d404")
    async with operator(db_url, dealers=dealers) as op:
        store = op.store
        pipes = await _three_dealer_incident(op)
        fp = (await _group_of(store, "d101"))["fingerprint"]
        real = await preview_then_act(op, lambda o: o.retry_group(fp))
        assert real.changed == sorted(pipes[d]["homenet"] for d in ("d101", "d202", "d303"))
        assert sorted(real.followers) == sorted(
            pipes[d][t] for d in ("d101", "d202", "d303") for t in DESCENDANTS
        )
        for d in ("d101", "d202", "d303"):
            assert (await states(store, pipes[d]))["homenet"] == "ready"
        assert await states(store, pipes["d404"]) == {
            "homenet": "failed", "dealer_com": "blocked", "product_scrape": "blocked",
            "url_shorten": "blocked",
        }
        audit = (await store.audit_entries())[0]
        assert audit["action"] == "retry" and audit["job_ids"] == real.changed
        assert fp in audit["reason"]
        # retrying the group again: its jobs are no longer failed, nothing moves
        again = await op.retry_group(fp, reason="again")
        assert again.count == 0


async def test_pause_group_pauses_exactly_its_dealers(db_url: str) -> None:
    dealers = ("d101", "d202", "d303", "d404")
    async with operator(db_url, dealers=dealers) as op:
        store = op.store
        await _three_dealer_incident(op)
        fp = (await _group_of(store, "d202"))["fingerprint"]
        paused = await op.pause_group(fp, reason="feed host down")
        assert paused == ["d101", "d202", "d303"]
        got = await store.pauses()
        assert [(p.scope, p.key) for p in got] == [("dealer", d) for d in paused]
        assert all(p.by == WHO and p.reason == "feed host down" for p in got)
        st = await store.status()
        assert st["paused"] == {"global": False, "dealers": paused, "types": []}
        pauses_audited = [a for a in await store.audit_entries() if a["action"] == "pause"]
        assert sorted(a["target"] for a in pauses_audited) == [f"dealer {d}" for d in paused]


async def test_unknown_fingerprint_is_a_usage_error(db_url: str) -> None:
    async with operator(db_url, dealers=("d101", "d202", "d303", "d404")) as op:
        await _three_dealer_incident(op)
        before = await snapshot(op.store)
        for call in (op.error_group, op.retry_group, op.pause_group):
            with pytest.raises(UsageError, match="no failure group has fingerprint"):
                await call("deadbeef")
        assert await snapshot(op.store) == before


# --- plan ----------------------------------------------------------------------------------------


def _waves(plan: dict[str, Any], dealer: str) -> list[list[int]]:
    (d,) = [d for d in plan["dealers"] if d["dealer_id"] == dealer]
    return [[j["id"] for j in w] for w in d["waves"]]


def _held(plan: dict[str, Any], dealer: str) -> dict[int, str]:
    (d,) = [d for d in plan["dealers"] if d["dealer_id"] == dealer]
    return {h["id"]: h["reason"] for h in d["held"]}


async def test_plan_waves_follow_dependencies_and_the_per_dealer_limit(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        assert _waves(plan, "d1") == [
            [ids["homenet"]], [ids["dealer_com"], ids["product_scrape"]], [ids["url_shorten"]]
        ]
        assert plan["dry_run"] is True and plan["would_run"] == 4 and plan["held"] == 0
        assert plan["max_jobs_per_dealer"] == 2 and plan["cycles"] == []
        assert plan["dealers"][0]["waves"][0] == [
            {"id": ids["homenet"], "job_type": "homenet", "state": "ready"}
        ]
        one = await build_plan(store, CONFIG, max_jobs_per_dealer=1)
        assert _waves(one, "d1") == [[ids[t]] for t in ("homenet", "dealer_com",
                                                         "product_scrape", "url_shorten")]
        # the config's limit is the default
        assert (await build_plan(store, CONFIG))["max_jobs_per_dealer"] == (
            CONFIG.concurrency.max_concurrent_jobs_per_dealer)
        json.dumps(plan)
        assert await snapshot(store) == before


async def test_plan_holds_paused_blocked_backing_off_and_their_descendants(
    db_url: str,
) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        p1 = await pipeline(store, "d1")
        await op.set_paused(True, job_type="product_scrape", reason="scraper broken")
        blocked = await pipeline(store, "d2", types=["dealer_com"])
        p3 = await pipeline(store, "d3")
        assert await claim(store, only_dealers=["d3"]) == [p3["homenet"]]
        await storeops.schedule_retry(store, "w1", [JobOutcome(p3["homenet"], "HTTP 503", 300.0)])
        p4 = await pipeline(store, "d4")
        assert await claim(store, "w9", only_dealers=["d4"]) == [p4["homenet"]]
        clock.advance(100)
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        assert await snapshot(store) == before

        assert _waves(plan, "d1") == [[p1["homenet"]], [p1["dealer_com"]]]
        held = _held(plan, "d1")
        assert held[p1["product_scrape"]] == "job type product_scrape is paused"
        assert held[p1["url_shorten"]].startswith(
            f"waits for product_scrape #{p1['product_scrape']}")
        assert set(held) == {p1["product_scrape"], p1["url_shorten"]}

        assert _waves(plan, "d2") == []
        assert _held(plan, "d2") == {blocked["dealer_com"]: "blocked: no successful homenet run"}

        assert _waves(plan, "d3") == []
        held = _held(plan, "d3")
        assert held[p3["homenet"]].startswith("backing off: due in 200s")
        assert held[p3["dealer_com"]].startswith(f"waits for homenet #{p3['homenet']}")
        assert held[p3["url_shorten"]].startswith(
            f"waits for product_scrape #{p3['product_scrape']}")
        # product_scrape is paused as a type: that reason comes first
        assert held[p3["product_scrape"]] == "job type product_scrape is paused"

        held = _held(plan, "d4")
        assert held[p4["homenet"]] == "running now on w9"
        assert held[p4["dealer_com"]].startswith(f"waits for homenet #{p4['homenet']}")

        assert plan["would_run"] == 2
        assert plan["held"] == 2 + 1 + 4 + 4
        # the retry comes due: the plan takes it
        clock.advance(200)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2, dealers=["d3"])
        assert [d["dealer_id"] for d in plan["dealers"]] == ["d3"]
        assert _waves(plan, "d3") == [[p3["homenet"]], [p3["dealer_com"]]]


async def test_plan_orders_dealers_least_recently_served_first_and_honours_limit(
    db_url: str,
) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3")) as op:
        store = op.store
        pipes = {d: await pipeline(store, d) for d in ("d1", "d2", "d3")}
        clock.advance(10)
        assert await claim(store, only_dealers=["d3"]) == [pipes["d3"]["homenet"]]
        await storeops.complete(store, "w1", [pipes["d3"]["homenet"]])
        clock.advance(10)
        assert await claim(store, only_dealers=["d1"]) == [pipes["d1"]["homenet"]]
        await storeops.complete(store, "w1", [pipes["d1"]["homenet"]])
        before = await snapshot(store)
        plan = await build_plan(store, CONFIG, max_jobs_per_dealer=2)
        # d2 never served, then d3 (served first), then d1 (served last)
        assert [d["dealer_id"] for d in plan["dealers"]] == ["d2", "d3", "d1"]
        assert plan["would_run"] == 4 + 3 + 3
        limited = await build_plan(store, CONFIG, max_jobs_per_dealer=2, limit=3)
        assert limited["would_run"] == 3
        assert _waves(limited, "d2") == [
            [pipes["d2"]["homenet"]], [pipes["d2"]["dealer_com"], pipes["d2"]["product_scrape"]]
        ]
        limited = await build_plan(store, CONFIG, max_jobs_per_dealer=2, limit=2)
        assert limited["would_run"] == 2
        assert _waves(limited, "d2") == [[pipes["d2"]["homenet"]], [pipes["d2"]["dealer_com"]]]
        assert all(_waves(limited, d) == [] for d in ("d1", "d3"))
        assert await snapshot(store) == before


async def test_plan_reports_dependency_cycles(db_url: str) -> None:
    async with operator(db_url) as op:
        store = op.store
        ids = await pipeline(store)

        async def close_loop(conn: Any) -> None:  # url_shorten -> homenet closes a cycle
            await conn.execute(insert(job_deps_table).values(
                parent_id=ids["url_shorten"], child_id=ids["homenet"]))

        await store.db.run(close_loop)
        plan = await build_plan(store, CONFIG)
        assert len(plan["cycles"]) == 1
        assert set(plan["cycles"][0]) == {ids["homenet"], ids["product_scrape"],
                                          ids["url_shorten"]}
        assert plan["would_run"] == 0  # nothing in or below a cycle can run


# --- fairness ------------------------------------------------------------------------------------


async def test_fairness_share_last_slot_and_starvation(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        await pipeline(store, "d1")  # ready since T0
        p3 = await pipeline(store, "d3")
        p4 = await pipeline(store, "d4")
        clock.set(T0 + 50)
        assert await claim(store, only_dealers=["d4"]) == [p4["homenet"]]
        await storeops.complete(store, "w1", [p4["homenet"]])
        clock.set(T0 + 60)
        assert await claim(store, only_dealers=["d4"]) == sorted(
            [p4["dealer_com"], p4["product_scrape"]])
        await storeops.complete(store, "w1", [p4["dealer_com"]])
        await storeops.fail(store, "w1", [JobOutcome(p4["product_scrape"], "boom")])
        clock.set(T0 + 100)
        assert await claim(store, only_dealers=["d3"]) == [p3["homenet"]]
        await storeops.complete(store, "w1", [p3["homenet"]])  # d3's children ready since T0+100
        clock.set(T0 + 110)
        await pipeline(store, "d2")  # ready since T0+110
        clock.set(T0 + 120)

        before = await snapshot(store)
        f = await fairness(store)
        assert await snapshot(store) == before
        assert sorted(f) == ["d1", "d2", "d3", "d4"]
        for row in f.values():
            assert set(row) == {"share", "outcomes", "since_last_slot_s",
                                "oldest_ready_wait_s", "starved"}
        assert f["d1"]["oldest_ready_wait_s"] == 120.0 and f["d1"]["starved"] is True
        assert f["d2"]["oldest_ready_wait_s"] == 10.0 and f["d2"]["starved"] is False
        assert f["d3"]["oldest_ready_wait_s"] == 20.0 and f["d3"]["starved"] is False
        assert f["d4"]["oldest_ready_wait_s"] is None and f["d4"]["starved"] is False
        assert f["d1"]["since_last_slot_s"] is None and f["d2"]["since_last_slot_s"] is None
        assert f["d3"]["since_last_slot_s"] == 20.0
        assert f["d4"]["since_last_slot_s"] == 60.0
        assert (f["d3"]["outcomes"], f["d4"]["outcomes"]) == (1, 3)
        assert f["d1"]["share"] == 0.0 and f["d2"]["share"] == 0.0
        assert f["d3"]["share"] == 0.25 and f["d4"]["share"] == 0.75
        assert sum(r["share"] for r in f.values()) == pytest.approx(1.0, abs=1e-3)

        # a narrower window drops d4's first outcome (at T0+50)
        f = await fairness(store, window_s=65)
        assert (f["d3"]["outcomes"], f["d4"]["outcomes"]) == (1, 2)
        assert sum(r["share"] for r in f.values()) == pytest.approx(1.0, abs=1e-3)
        assert f["d3"]["share"] == pytest.approx(1 / 3, abs=1e-3)
        # a stricter threshold starves d2 too; a claim ends d1's starvation
        f = await fairness(store, starved_after_s=5)
        assert f["d2"]["starved"] is True and f["d3"]["starved"] is True
        assert await claim(store, only_dealers=["d1"], per_dealer=1) != []
        f = await fairness(store)
        assert f["d1"]["starved"] is False and f["d1"]["since_last_slot_s"] == 0.0
        # no outcomes in the window: every share is 0
        clock.advance(10_000)
        f = await fairness(store)
        assert all(r["share"] == 0.0 and r["outcomes"] == 0 for r in f.values())


async def test_fairness_does_not_blame_the_scheduler_for_work_held_on_purpose(
    db_url: str,
) -> None:
    """Ready work held back by a breaker that is not closed or by a pause is not starving."""
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2", "d3", "d4")) as op:
        store = op.store
        for d in ("d1", "d2", "d3", "d4"):
            await pipeline(store, d)  # every homenet ready since T0
        clock.set(T0 + 120)

        async def breaker(conn: Any) -> None:
            await conn.execute(insert(breakers_table).values(
                key="dealer:d1:homenet", dealer_id="d1", job_type="homenet", state="open",
                failures=3, opened_at=T0, half_open_at=T0 + 600, updated_at=T0))

        await store.db.run(breaker)
        await store.set_paused(True, dealer_id="d2")
        f = await fairness(store)
        assert (f["d1"]["starved"], f["d2"]["starved"], f["d3"]["starved"]) == (
            False, False, True)

        await store.set_paused(True, job_type="homenet")  # nobody's homenet may run now
        f = await fairness(store)
        assert not any(r["starved"] for r in f.values()), f
        await store.set_paused(False, job_type="homenet")

        async def type_breaker(conn: Any) -> None:
            await conn.execute(insert(breakers_table).values(
                key="type:homenet", job_type="homenet", state="half_open", failures=9,
                opened_at=T0, half_open_at=T0, updated_at=T0))

        await store.db.run(type_breaker)
        f = await fairness(store)
        assert not any(r["starved"] for r in f.values()), f


async def test_fairness_does_not_count_a_released_job_as_an_outcome(db_url: str) -> None:
    """A job handed back by a stopping worker (retrying, no error) is no outcome, as in
    `health`; a real retry (with an error) is one."""
    clock = Clock(T0)
    async with operator(db_url, clock, dealers=("d1", "d2")) as op:
        store = op.store
        p1 = await pipeline(store, "d1")
        p2 = await pipeline(store, "d2")
        assert await claim(store) == sorted([p1["homenet"], p2["homenet"]])
        await storeops.finish(store, "w1", release=[p1["homenet"]], release_reason="worker stopping")
        await storeops.schedule_retry(store, "w1", [JobOutcome(p2["homenet"], "HTTP 503", 1.0)])
        f = await fairness(store)
        assert (f["d1"]["outcomes"], f["d2"]["outcomes"]) == (0, 1)
        assert (f["d1"]["share"], f["d2"]["share"]) == (0.0, 1.0)


# --- CLI (SQLite) --------------------------------------------------------------------------------


def _jobs(url: str) -> list[Any]:
    return with_store(url, lambda s: s.list_jobs())


def _state_of(url: str) -> dict[str, Any]:
    """status --json without the fairness meter (its waits move with the wall clock), plus
    every job row and the audit log."""

    async def read(s: JobStore) -> dict[str, Any]:
        return {"jobs": await s.list_jobs(), "events": await event_count(s),
                "audit": await s.audit_entries(limit=10_000)}

    return with_store(url, read)


def _status(tmp_path: Path, url: str) -> dict[str, Any]:
    return json.loads(ok(cli(tmp_path, url, "status", "--json")))


def test_cli_run_once_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "dealers", "add", "d2"))
    ok(cli(tmp_path, url, "enqueue", "--all-dealers"))
    ok(cli(tmp_path, url, "pause", "--type", "url_shorten", "--reason", "quota"))
    status_before = {k: v for k, v in _status(tmp_path, url).items() if k != "fairness"}
    before = _state_of(url)

    out = ok(cli(tmp_path, url, "--run-once", "--dry-run", "--json"))
    assert len(out.strip().splitlines()) == 1, out
    plan = json.loads(out)
    assert {"dry_run", "would_run", "held", "dealers", "cycles"} <= set(plan)
    assert plan["dry_run"] is True
    assert plan["would_run"] == 6 and plan["held"] == 2 and plan["cycles"] == []
    assert [d["dealer_id"] for d in plan["dealers"]] == ["d1", "d2"]
    assert all(len(d["waves"]) == 2 for d in plan["dealers"])
    assert all(h["reason"] == "job type url_shorten is paused"
               for d in plan["dealers"] for h in d["held"])

    limited = json.loads(ok(cli(tmp_path, url, "--run-once", "--dry-run", "--json",
                                "--limit", "1", "--max-jobs-per-dealer", "1",
                                "--dealer", "d2")))
    assert limited["would_run"] == 1 and limited["max_jobs_per_dealer"] == 1
    assert [d["dealer_id"] for d in limited["dealers"]] == ["d2"]

    text = ok(cli(tmp_path, url, "--run-once", "--dry-run"))
    assert "held" in text and "job type url_shorten is paused" in text
    assert "nothing changed" in text and "no dependency cycles" in text

    after = {k: v for k, v in _status(tmp_path, url).items() if k != "fairness"}
    assert after == status_before
    assert _state_of(url) == before
    assert after["last_runs"] == [] and after["by_state"]["running"] == 0


def test_cli_dry_runs_change_nothing_then_the_actions_do(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "enqueue", "--dealer", "d1"))

    ids = {j.job_type: j.id for j in _jobs(url)}
    h = str(ids["homenet"])

    def dry(*args: str) -> str:
        before = _state_of(url)
        out = ok(cli(tmp_path, url, *args, "--dry-run"))
        assert _state_of(url) == before, args
        assert "nothing was changed" in out, out
        return out

    out = dry("cancel", "--job", h)
    assert "would change 1 job; 3 descendants would move" in out
    out = dry("skip", "--job", h, "--reason", "not needed")
    assert "would change 1 job; 2 descendants would move" in out  # dealer_com, product_scrape
    assert "product_scrape" in out and "follows" in out
    dry("reset-stuck")
    out = ok(cli(tmp_path, url, "skip", "--job", h, "--reason", "not needed"))
    assert "skipped 1 job; 2 descendants may run" in out
    assert {j.id: j.state for j in _jobs(url)}[ids["homenet"]] == "skipped"
    p = cli(tmp_path, url, "skip", "--job", h)
    assert p.returncode == 2 and "--reason" in p.stderr, show(p)

    out = dry("rerun", "--job", h)
    assert "would change 1 job; 3 descendants would move" in out
    out = dry("rerun", "--dealer", "d1")
    assert "would change 4 jobs; 0 descendants would move" in out
    out = ok(cli(tmp_path, url, "rerun", "--job", h, "--reason", "feed back"))
    assert "rerunning 1 job; 3 descendants re-armed" in out
    assert {j.job_type: j.state for j in _jobs(url)} == {
        "homenet": "ready", "dealer_com": "waiting", "product_scrape": "waiting",
        "url_shorten": "waiting",
    }
    audit = json.loads(ok(cli(tmp_path, url, "audit", "--json")))
    assert [a["action"] for a in audit[:2]] == ["rerun", "skip"]
    assert audit[0]["reason"] == "feed back" and audit[1]["reason"] == "not needed"


def test_cli_group_actions_by_fingerprint(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    for d in ("d101", "d202", "d303", "d404"):
        ok(cli(tmp_path, url, "dealers", "add", d))
    ok(cli(tmp_path, url, "enqueue", "--all-dealers"))

    async def fail_all(store: JobStore) -> None:
        for n, d in enumerate(("d101", "d202", "d303", "d404"), start=1):
            (h,) = [j for j in await store.list_jobs(dealer_id=d) if j.job_type == "homenet"]
            err = _feed_error(d, n) if d != "d404" else "XML parse error"
            await fail_homenet(store, {"homenet": h.id}, err)

    with_store(url, fail_all)
    groups = json.loads(ok(cli(tmp_path, url, "analyze-errors", "--json")))
    (g,) = [g for g in groups if g["dealers"] == 3]
    fp = g["fingerprint"]
    before = _state_of(url)
    out = ok(cli(tmp_path, url, "retry", "--fingerprint", fp, "--dry-run"))
    assert "would change 3 jobs; 9 descendants would move" in out, out
    assert _state_of(url) == before
    out = ok(cli(tmp_path, url, "retry", "--fingerprint", fp))
    assert f"retried 3 jobs of group {fp}; 9 descendants unblocked" in out
    now = {(j.dealer_id, j.job_type): j.state for j in _jobs(url)}
    assert now[("d404", "homenet")] == "failed"
    assert all(now[(d, "homenet")] == "ready" for d in ("d101", "d202", "d303"))
    out = ok(cli(tmp_path, url, "pause", "--fingerprint", fp))
    assert f"paused 3 dealers of group {fp}: d101, d202, d303" in out
    assert _status(tmp_path, url)["paused"]["dealers"] == ["d101", "d202", "d303"]
    p = cli(tmp_path, url, "retry", "--fingerprint", "0badf00d")
    assert p.returncode == 2 and "no failure group has fingerprint" in p.stderr, show(p)
    assert "Traceback" not in p.stderr


def test_cli_status_json_has_the_fairness_meter(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "dealers", "add", "d2"))
    ok(cli(tmp_path, url, "enqueue", "--all-dealers"))

    async def serve_d1(store: JobStore) -> None:
        ids = await claim(store, only_dealers=["d1"])
        await storeops.complete(store, "w1", ids)

    with_store(url, serve_d1)
    st = _status(tmp_path, url)
    assert st["by_state"]["skipped"] == 0
    fair = st["fairness"]
    assert sorted(fair) == ["d1", "d2"]
    for row in fair.values():
        assert set(row) == {"share", "outcomes", "since_last_slot_s", "oldest_ready_wait_s",
                            "starved"}
    assert fair["d1"]["share"] == 1.0 and fair["d1"]["outcomes"] == 1
    assert fair["d2"]["share"] == 0.0 and fair["d2"]["since_last_slot_s"] is None
    assert 0.0 <= fair["d1"]["since_last_slot_s"] < 60
    assert fair["d2"]["oldest_ready_wait_s"] is not None
    assert fair["d2"]["starved"] is False
    text = ok(cli(tmp_path, url, "status"))
    assert "d1" in text and "d2" in text
