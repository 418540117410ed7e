"""`dealertui history --dealer ID`: the dealer's past pipelines, newest first, with who
enqueued each, when it ran and each job's outcome and time; `graph --dealer` draws only the
newest and `graph --pipeline ID` an older one; on SQLite and Postgres.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import ok, one_error, run_cli
from test_jobs_list import CONFIG


def _cli(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    (tmp_path / "dealertui.toml").write_text(CONFIG, encoding="utf-8")

    def cli(*args: str) -> Any:
        return run_cli(tmp_path, "--config", str(tmp_path / "dealertui.toml"),
                       "--database-url", db_url, *args)

    return cli


def test_history_newest_first_and_the_graph_of_one_pipeline(tmp_path: Path,
                                                            db_url: str) -> None:
    cli = _cli(tmp_path, db_url)
    ok(cli("init-db"))
    made = []
    for _ in range(3):  # two run (dealer_com fails), the third waits
        made.append(json.loads(ok(cli("enqueue", "--dealer", "d001", "--json")))
                    ["enqueued"][0]["pipeline"])
        if len(made) < 3:
            assert cli("--run-once").returncode == 1
    ok(cli("enqueue", "--dealer", "d002"))  # another dealer's: not in d001's history

    past = json.loads(ok(cli("history", "--dealer", "d001", "--json")))
    assert [p["pipeline"] for p in past] == made[::-1]
    newest, older = past[0], past[1]
    assert newest["outcome"] is None and newest["started_at"] is None
    assert [(j["job_type"], j["state"]) for j in newest["jobs"]] == [
        ("homenet", "ready"), ("dealer_com", "waiting")]
    assert older["outcome"] == "failed" and "@" in older["by"]
    assert older["started_at"] <= older["finished_at"]
    jobs = {j["job_type"]: j for j in older["jobs"]}
    assert jobs["homenet"]["state"] == "succeeded" and jobs["homenet"]["duration_s"] >= 0
    assert jobs["dealer_com"]["state"] == "failed"
    assert "exit code 1" in jobs["dealer_com"]["last_error"]
    assert [p["pipeline"] for p in json.loads(ok(cli("history", "--dealer", "d001",
                                                     "--limit", "1", "--json")))] == [made[2]]

    text = ok(cli("history", "--dealer", "d001")).splitlines()
    assert text[0].startswith(f"pipeline {made[2]}  unfinished  enqueued "), text
    assert any(ln.startswith(f"pipeline {made[1]}  failed  enqueued ") and "finished" in ln
               for ln in text), text
    assert any("dealer_com" in ln and "failed in " in ln and "exit code 1" in ln
               for ln in text), text
    assert ok(cli("history", "--dealer", "d009")).strip() == "d009 has no pipelines yet"

    # graph --dealer: the current pipeline only; --pipeline: the one named
    drawing = ok(cli("graph", "--dealer", "d001"))
    assert f"homenet #{made[2]} ready" in drawing and f"#{made[1]}" not in drawing, drawing
    assert len(drawing.strip().splitlines()) == 2, drawing
    old = ok(cli("graph", "--pipeline", str(made[0])))
    assert f"homenet #{made[0]} succeeded" in old and "failed" in old
    assert f"#{made[2]}" not in old, old
    one_error(cli("graph", "--pipeline", "999"), 2, "there is no pipeline 999")
    p = cli("graph", "--pipeline", "1", "--dealer", "d001")
    assert p.returncode == 2 and "not allowed with argument" in p.stderr
