"""Previews (dry runs) of every operator action match the real action and change nothing, on
SQLite and Postgres; and the blast radius grouped by dealer, type and role.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphops import (
    DESCENDANTS,
    T0,
    fail_homenet,
    operator,
    preview_then_act,
    run_everything,
    snapshot,
)
from helpers import Clock, claim, pipeline
from helpers import job_states as states
from sqlalchemy import update

from dealertui.errors import UsageError
from dealertui.model import ActionResult
from dealertui.store.schema import jobs as jobs_table

pytestmark = pytest.mark.anyio


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
