"""One pending pipeline per dealer (issue 15): enqueue skips a dealer whose pipeline of the same
job types still has a job to run, says so, and a lock decides between concurrent enqueues.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import Cli, ok
from helpers import cli_env, show


def _enqueue_json(cli: Cli, *args: str) -> dict[str, list[dict[str, object]]]:
    return json.loads(ok(cli("enqueue", *args, "--json")).stdout)


def test_a_second_enqueue_skips_and_names_the_pending_pipeline(cli: Cli) -> None:
    cli.add_dealers("d001", "d002")
    first = _enqueue_json(cli, "--dealer", "d001")
    (made,) = first["enqueued"]
    assert made["dealer"] == "d001" and len(made["jobs"]) == 4 and first["skipped"] == []

    p = ok(cli("enqueue", "--dealer", "d001"))
    assert f"d001: pipeline {made['pipeline']} still has 4 unfinished jobs; skipped" in p.stdout

    # the other dealer is not held back by d001's pipeline; d001 is skipped in the same call
    both = _enqueue_json(cli, "--dealer", "d001", "--dealer", "d002")
    assert [e["dealer"] for e in both["enqueued"]] == ["d002"]
    assert [(s["dealer"], s["pipeline"], s["unfinished"]) for s in both["skipped"]] == [
        ("d001", made["pipeline"], 4)]

    # a different set of job types is another pipeline, and --allow-duplicate enqueues anyway
    assert _enqueue_json(cli, "--dealer", "d001", "--type", "homenet")["enqueued"]
    again = _enqueue_json(cli, "--dealer", "d001", "--allow-duplicate")
    assert again["enqueued"] and not again["skipped"]


def test_a_finished_pipeline_does_not_hold_the_next(cli: Cli) -> None:
    cli.add_dealers("d001")
    first = _enqueue_json(cli, "--dealer", "d001")["enqueued"][0]
    jobs = [str(j) for j in first["jobs"]]  # type: ignore[attr-defined]
    ok(cli("cancel", *[a for j in jobs for a in ("--job", j)]))  # every job finished (cancelled)
    second = _enqueue_json(cli, "--dealer", "d001")
    assert second["skipped"] == [], second
    assert second["enqueued"][0]["pipeline"] != first["pipeline"]


def test_eight_concurrent_enqueues_make_one_pipeline(tmp_path: Path, db_url: str) -> None:
    """Eight processes started together: the per-dealer lock (Postgres) or the write lock
    (SQLite) decides, so exactly one enqueues and seven name its pipeline."""
    cli = Cli(tmp_path, db_url)
    cli.add_dealers("d001")
    argv = [sys.executable, "-m", "dealertui", "--database-url", db_url, "enqueue",
            "--dealer", "d001", "--json"]
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=cli_env(tmp_path),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        assert done.returncode == 0 and "Traceback" not in err, show(done)
        results.append(json.loads(out))
    enqueued = [e for r in results for e in r["enqueued"]]
    skipped = [s for r in results for s in r["skipped"]]
    assert len(enqueued) == 1, results
    assert len(skipped) == 7 and {s["pipeline"] for s in skipped} == {enqueued[0]["pipeline"]}
    status = cli.status()
    assert status["total"] == 4, status


@pytest.mark.parametrize("payload", ["[1, 2]", "not json", '"text"'])
def test_a_payload_must_be_a_json_object(cli: Cli, payload: str) -> None:
    cli.add_dealers("d001")
    p = cli("enqueue", "--dealer", "d001", "--payload", payload)
    assert p.returncode == 2 and "Traceback" not in p.stderr, show(p)
    last = p.stderr.strip().splitlines()[-1]  # argparse's usage line, then one sentence
    assert "argument --payload:" in last and "{\"feed\": \"full\"}" in last, show(p)
    assert cli.status()["total"] == 0


def test_the_payload_is_stored_with_every_job_and_shown_by_why(cli: Cli) -> None:
    cli.add_dealers("d001")
    made = _enqueue_json(cli, "--dealer", "d001", "--payload", '{"feed": "full", "n": 2}')
    (pipeline,) = made["enqueued"]
    for job in pipeline["jobs"]:  # type: ignore[attr-defined]
        text = ok(cli("why", "--job", str(job))).stdout.splitlines()
        assert text[1] == '  payload: {"feed": "full", "n": 2}', text
        got = json.loads(ok(cli("why", "--job", str(job), "--json")).stdout)
        assert got["job"]["payload"] == {"feed": "full", "n": 2}
