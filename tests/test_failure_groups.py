"""Failure groups on SQLite and Postgres: failures differing only in ids and numbers are one
group, and retrying or pausing a group acts on exactly its jobs and dealers.

The store runs on a controllable clock, so waits, windows and "last slot" times are exact.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from graphops import (
    DESCENDANTS,
    WHO,
    _feed_error,
    fail_homenet,
    operator,
    preview_then_act,
    snapshot,
)
from helpers import job_states as states
from helpers import pipeline

from dealertui.engine.actions import Operator
from dealertui.errors import UsageError
from dealertui.store import JobStore
from dealertui.store.reads import error_groups

pytestmark = pytest.mark.anyio


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
        assert st["paused"] == {"global": False, "dealers": paused, "types": [], "schedules": []}
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
