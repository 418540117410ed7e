"""The CLI side of the graph operations, in-process on SQLite: dry runs change nothing and the
actions do, `--run-once --dry-run` prints the plan, group actions by fingerprint, and
`status --json` carries the fairness meter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import storeops
from graphops import _feed_error, event_count, fail_homenet
from helpers import claim, cli, ok, show, with_store

from dealertui.store import JobStore

pytestmark = pytest.mark.anyio


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
