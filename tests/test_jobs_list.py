"""`dealertui jobs`: the jobs themselves, newest first, filtered in SQL by dealer, type, state,
payload key and enqueue time, on SQLite and Postgres; bad filters are one sentence, exit 2.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import ok, one_error, run_cli
from sqlalchemy import text

from dealertui.store.engines import create_engine

CONFIG = """\
[[dealers]]
id = "d001"
[[dealers]]
id = "d002"
[job_types.homenet]
priority = 1
handler = { exec = ["true"] }
[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = { exec = ["false"] }
max_attempts = 1
"""


class Jobs:
    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path, self.db_url = tmp_path, db_url
        (tmp_path / "dealertui.toml").write_text(CONFIG, encoding="utf-8")

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(self.tmp_path, "--config", str(self.tmp_path / "dealertui.toml"),
                       "--database-url", self.db_url, *args)

    def listed(self, *args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(ok(self("jobs", *args, "--json")))
        return rows

    def ids(self, *args: str) -> list[int]:
        return [r["id"] for r in self.listed(*args)]

    def enqueue(self, dealer: str, payload: str | None = None) -> list[int]:
        extra = ["--payload", payload] if payload is not None else []
        made = json.loads(ok(self("enqueue", "--dealer", dealer, *extra, "--json")))
        ids: list[int] = made["enqueued"][0]["jobs"]
        return ids

    def sql(self, statement: str) -> None:
        async def go() -> None:
            engine = create_engine(self.db_url, make_dirs=False)
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
            finally:
                await engine.dispose()

        anyio.run(go)


@pytest.fixture
def jobs(tmp_path: Path, db_url: str) -> Jobs:
    """Two pipelines run (each dealer_com fails), then one of d001 enqueued, not run."""
    j = Jobs(tmp_path, db_url)
    ok(j("init-db"))
    j.first = j.enqueue("d001", '{"feed": "full", "n": 2}')  # type: ignore[attr-defined]
    j.second = j.enqueue("d002")  # type: ignore[attr-defined]
    assert j("--run-once").returncode == 1  # the two dealer_com jobs failed
    j.third = j.enqueue("d001", '{"feed": "delta", "ok": true}')  # type: ignore[attr-defined]
    return j


def test_newest_first_with_what_each_job_is(jobs: Jobs) -> None:
    first, second, third = jobs.first, jobs.second, jobs.third  # type: ignore[attr-defined]
    rows = jobs.listed()
    assert [r["id"] for r in rows] == sorted(first + second + third, reverse=True)
    by_id = {r["id"]: r for r in rows}
    failed = by_id[first[1]]
    assert (failed["dealer_id"], failed["job_type"], failed["state"], failed["attempts"]) == (
        "d001", "dealer_com", "failed", 1)
    assert "exit code 1" in failed["last_error"] and failed["finished_at"] is not None
    assert failed["payload"] == {"feed": "full", "n": 2} and failed["pipeline_id"] == first[0]
    assert by_id[second[0]]["payload"] == {} and by_id[second[0]]["state"] == "succeeded"
    assert [by_id[i]["state"] for i in third] == ["ready", "waiting"]
    assert jobs.ids("--limit", "1") == [third[-1]]

    lines = ok(jobs("jobs", "--dealer", "d001", "--state", "failed")).splitlines()
    assert lines[0].split() == ["id", "dealer", "type", "state", "try", "age", "payload",
                                "last", "error"], lines
    (row,) = lines[1:]
    assert row.split()[:5] == [str(first[1]), "d001", "dealer_com", "failed", "1"], row
    assert '{"feed": "full", "n": 2}' in row and "exit code 1" in row
    assert ok(jobs("jobs", "--dealer", "d002", "--state", "ready")).strip() == "no jobs match"


def test_every_filter_is_applied(jobs: Jobs) -> None:
    first, second, third = jobs.first, jobs.second, jobs.third  # type: ignore[attr-defined]
    assert jobs.ids("--dealer", "d001") == sorted(first + third, reverse=True)
    assert jobs.ids("--dealer", "d002") == sorted(second, reverse=True)
    assert jobs.ids("--type", "homenet") == [third[0], second[0], first[0]]
    assert jobs.ids("--type", "homenet", "--dealer", "d001") == [third[0], first[0]]
    # failed alone reads ix_jobs_unhappy; with ready it walks the pipelines: same answer
    assert jobs.ids("--state", "failed") == [second[1], first[1]]
    assert jobs.ids("--state", "failed", "--state", "ready") == [third[0], second[1], first[1]]
    assert jobs.ids("--state", "waiting", "--state", "blocked") == [third[1]]
    assert jobs.ids("--state", "succeeded", "--dealer", "d001") == [first[0]]
    # payload keys: strings, numbers and booleans compare by their text
    assert jobs.ids("--where", "feed=full") == sorted(first, reverse=True)
    assert jobs.ids("--where", "n=2") == sorted(first, reverse=True)
    assert jobs.ids("--where", "ok=true") == sorted(third, reverse=True)
    assert jobs.ids("--where", "feed=full", "--where", "n=3") == []
    assert jobs.ids("--where", "missing=x") == []
    assert jobs.ids("--where", "feed=delta", "--state", "ready") == [third[0]]


def test_since_counts_from_the_enqueue(jobs: Jobs) -> None:
    first, second, third = jobs.first, jobs.second, jobs.third  # type: ignore[attr-defined]
    assert jobs.ids("--since", "1h") == sorted(first + second + third, reverse=True)
    # the first two pipelines were enqueued two days ago
    old = time.time() - 2 * 86400
    low = min(third)
    jobs.sql(f"UPDATE jobs SET created_at = {old} WHERE id < {low}")
    jobs.sql(f"UPDATE pipelines SET created_at = {old} WHERE id < {low}")
    assert jobs.ids("--since", "1d") == sorted(third, reverse=True)
    assert jobs.ids("--since", "3d", "--state", "failed") == [second[1], first[1]]
    assert jobs.ids("--since", "1d", "--state", "failed") == []
    assert jobs.ids("--since", "1s", "--dealer", "d002") == []


@pytest.mark.parametrize("args,needles", [
    (["--state", "done"], ["unknown state 'done' for --state", "succeeded"]),
    (["--where", "feed"], ["invalid --where 'feed'", "KEY=VALUE"]),
    (["--where", "a b=c"], ["invalid --where 'a b=c'"]),
    (["--since", "yesterday"], ["--since", "invalid duration 'yesterday'"]),
    (["--limit", "0"], ["--limit", "'0'"]),
    (["--type", "nope"], ["unknown job type 'nope'"]),
    (["--dealer", "bad id"], ["invalid dealer id 'bad id'"]),
])
def test_a_bad_filter_is_one_sentence(jobs: Jobs, args: list[str], needles: list[str]) -> None:
    p = jobs("jobs", *args)
    if args[0] in ("--since", "--limit"):  # argparse's: its usage, then the sentence
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert all(n in p.stderr.strip().splitlines()[-1] for n in needles), p.stderr
    else:
        one_error(p, 2, *needles)
