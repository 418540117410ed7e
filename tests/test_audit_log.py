"""The operator audit log, on both backends: every operator action writes one audit row naming
its targets, the engine's own rescues and no-op actions write none, and the audit CLI shows
the OS user at the host (in-process on SQLite).
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import storeops
from helpers import Clock, claim, cli, job_ids, ok, one_error, pipeline
from whycase import CONFIG, T0, opened, state

from dealertui.engine.actions import Operator
from dealertui.model import JobOutcome

WHO = "alice@host"


# --- audit log --------------------------------------------------------------------------------


@asynccontextmanager
async def operator(db_url: str, clock: Clock, dealers: Sequence[str] = ("d1", "d2")
                   ) -> AsyncIterator[Operator]:
    async with opened(db_url, clock, dealers) as store:
        yield Operator(store, CONFIG, who=WHO)


@pytest.mark.anyio
async def test_every_operator_action_writes_one_audit_row(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        assert await store.audit_entries() == []

        new = (await op.enqueue(["d1"])).job_ids
        assert len(new) == 4
        clock.advance(10)
        await op.set_paused(True, dealer_id="d1", reason="feed down")
        clock.advance(10)
        await op.set_paused(True, job_type="homenet", reason="flaky")
        clock.advance(10)
        await op.set_paused(True, reason="freeze")
        clock.advance(10)
        await op.set_paused(False)
        await op.set_paused(False, dealer_id="d1")
        await op.set_paused(False, job_type="homenet")
        ids = {j.job_type: j.id for j in await store.list_jobs(job_ids=new)}
        hn = ids["homenet"]
        clock.advance(10)
        assert await claim(store) == [hn]
        await storeops.fail(store, "w1", [JobOutcome(hn, "HTTP 503")])
        res = await op.retry(job_ids=[hn], reason="feed fixed")
        assert res.changed == [hn] and len(res.followers) == 3
        clock.advance(10)
        await op.cancel([ids["url_shorten"]], reason="not needed")
        clock.advance(10)
        assert await claim(store, lease_s=30) == [hn]
        clock.advance(60)  # the lease expired: stuck
        res = await op.reset_stuck()
        assert res.changed == [hn]

        rows = await store.audit_entries()
        got = [(r["action"], r["target"], r["job_ids"], r["count"], r["reason"]) for r in rows]
        assert got == [
            ("reset-stuck", "stuck jobs", [hn], 1, None),
            ("cancel", f"job {ids['url_shorten']}", [ids["url_shorten"]], 1, "not needed"),
            ("retry", f"job {hn}", [hn], 1, "feed fixed"),
            ("resume", "type homenet", [], 0, None),
            ("resume", "dealer d1", [], 0, None),
            ("resume", "everything", [], 0, None),
            ("pause", "everything", [], 0, "freeze"),
            ("pause", "type homenet", [], 0, "flaky"),
            ("pause", "dealer d1", [], 0, "feed down"),
            ("enqueue", "dealer d1", sorted(new), 4, None),
        ]
        assert {r["who"] for r in rows} == {WHO}
        ats = [r["at"] for r in rows]
        assert ats == sorted(ats, reverse=True)
        assert ats[-1] == T0 and ats[0] == T0 + 130
        assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
        assert set(rows[0]) == {"id", "at", "who", "action", "target", "job_ids", "count",
                                "reason"}

        # since: only actions at or after that moment, still newest first
        recent = await store.audit_entries(since=T0 + 60)  # the cancel's moment
        assert [r["action"] for r in recent] == ["reset-stuck", "cancel"]
        assert [r["action"] for r in await store.audit_entries(limit=2)] == [
            "reset-stuck", "cancel"]
        assert await store.audit_entries(since=T0 + 1000) == []


@pytest.mark.anyio
async def test_audit_targets_name_what_was_aimed_at(db_url: str) -> None:
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        store = op.store
        await op.enqueue(["d1", "d2"], types=["homenet"])
        await op.enqueue(all_dealers=True, types=["homenet", "dealer_com"])
        hn = [j.id for j in await store.list_jobs() if j.job_type == "homenet"]
        assert len(await claim(store)) == 4  # every homenet job
        await storeops.fail(store, "w1", [JobOutcome(i, "boom") for i in hn])
        await op.retry(dealer_id="d1", reason="by dealer")  # 2 homenet + 1 blocked dealer_com
        await op.retry(job_type="homenet")  # d2's two; its blocked dealer_com follows
        clock.advance(5)
        assert len(await claim(store, only_dealers=["d2"])) == 2
        clock.advance(120)
        await op.reset_stuck(older_than_s=100)
        rows = await store.audit_entries()
        assert [(r["action"], r["target"], r["count"]) for r in rows] == [
            ("reset-stuck", "stuck jobs (older than 100s)", 2),
            ("retry", "type homenet", 2),
            ("retry", "dealer d1", 3),
            ("enqueue", "dealer d1, d2; types homenet, dealer_com", 4),
            ("enqueue", "dealer d1, d2; types homenet", 2),
        ]
        # rescued jobs with attempts left are ready again: nothing failed, nothing to audit
        assert (await op.retry(all_failed=True)).changed == []
        assert len(await store.audit_entries()) == 5


@pytest.mark.anyio
async def test_engine_rescue_and_noop_actions_write_no_audit_rows(db_url: str) -> None:
    clock = Clock(T0)
    async with opened(db_url, clock) as store:
        ids = await pipeline(store)  # the engine / a script: no by, no audit row
        assert await store.audit_entries() == []
        assert await claim(store, lease_s=30) == [ids["homenet"]]
        clock.advance(60)
        res = await store.rescue_expired()  # the engine's own lease rescue
        assert res.changed == [ids["homenet"]]
        assert await store.audit_entries() == []

        op = Operator(store, CONFIG, who=WHO)
        # nothing failed or blocked: a retry that changes nothing writes nothing
        assert (await op.retry(all_failed=True)).changed == []
        assert (await op.retry(dealer_id="d1")).changed == []
        assert (await op.retry(job_ids=[ids["homenet"]], reason="x")).changed == []  # ready
        # nothing stuck: a reset that rescues nothing writes nothing
        assert (await op.reset_stuck()).changed == []
        # cancelling a job that already succeeded changes nothing
        assert await claim(store) == [ids["homenet"]]
        await storeops.complete(store, "w1", [ids["homenet"]])
        assert (await op.cancel([ids["homenet"]], reason="late")).changed == []
        assert await store.audit_entries() == []


@pytest.mark.anyio
async def test_retry_that_leaves_the_job_blocked_writes_no_audit_row(db_url: str) -> None:
    """A job blocked for lack of a prerequisite run stays blocked when retried with still
    no such run: nothing changed, so nothing should be audited."""
    clock = Clock(T0)
    async with operator(db_url, clock) as op:
        ids = await pipeline(op.store, types=["dealer_com"])
        await op.retry(all_failed=True, reason="try")
        assert await state(op.store, ids["dealer_com"]) == "blocked"
        assert await op.store.audit_entries() == []


def test_audit_cli_shows_os_user_at_host(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    # a read-only command does not create the schema
    one_error(cli(tmp_path, url, "audit"), 3, "init-db")
    ok(cli(tmp_path, url, "init-db"))
    assert ok(cli(tmp_path, url, "audit")).strip() == "no operator actions recorded yet"
    assert json.loads(ok(cli(tmp_path, url, "audit", "--json"))) == []
    ok(cli(tmp_path, url, "dealers", "add", "d1"))
    ok(cli(tmp_path, url, "enqueue", "--dealer", "d1"))
    ids = job_ids(url, "d1")
    ok(cli(tmp_path, url, "pause", "--dealer", "d1", "--reason", "feed down"))
    ok(cli(tmp_path, url, "resume", "--dealer", "d1"))
    ok(cli(tmp_path, url, "cancel", "--job", str(ids["homenet"]), "--reason", "wrong feed"))
    ok(cli(tmp_path, url, "retry", "--job", str(ids["homenet"]), "--reason", "feed fixed"))

    rows = json.loads(ok(cli(tmp_path, url, "audit", "--json")))
    assert [(r["action"], r["target"], r["count"], r["reason"]) for r in rows] == [
        ("retry", f"job {ids['homenet']}", 1, "feed fixed"),
        ("cancel", f"job {ids['homenet']}", 1, "wrong feed"),
        ("resume", "dealer d1", 0, None),
        ("pause", "dealer d1", 0, "feed down"),
        ("enqueue", "dealer d1", 4, None),
        ("add-dealer", "dealer d1", 0, None),
    ]
    assert {r["who"] for r in rows} == {who}
    assert rows[-2]["job_ids"] == sorted(ids.values())

    lines = ok(cli(tmp_path, url, "audit")).splitlines()
    assert len(lines) == 6, lines
    assert all(f"  {who}  " in line for line in lines), lines
    assert lines[0].endswith(f"retry job {ids['homenet']} (1 jobs) — feed fixed")
    assert lines[3].endswith("pause dealer d1 (0 jobs) — feed down")
    assert lines[4].endswith("enqueue dealer d1 (4 jobs)")
    assert len(ok(cli(tmp_path, url, "audit", "--limit", "2")).splitlines()) == 2
    one_error(
        cli(tmp_path, "postgresql://u:s3cret@127.0.0.1:1/x", "audit"), 3, "127.0.0.1"
    )
