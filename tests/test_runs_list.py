"""Runs you can tell apart: every `--run-once` and worker line carries a time and the run's id,
`dealertui runs` lists past runs (kind, host, times, counts, exit code) newest first, and
`status` shows the last ones the same way; real processes, on SQLite and Postgres.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import RUN_LINE, cli_env, ok, run_cli, show

CONFIG = """\
[[dealers]]
id = "d001"
[[dealers]]
id = "d002"
[job_types.homenet]
priority = 1
handler = {{ exec = ["{python}", "-c", "import time; time.sleep(0.3)"] }}
[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = {{ exec = ["false"] }}
max_attempts = 1
"""
LINE = re.compile(RUN_LINE.replace("(run-once|worker)", "(?P<kind>run-once|worker)")
                  .replace(r"\[[0-9a-f]{6}\]", r"\[(?P<run>[0-9a-f]{6})\]"))


def _setup(tmp_path: Path, db_url: str) -> list[str]:
    cfg = tmp_path / "dealertui.toml"
    cfg.write_text(CONFIG.format(python=sys.executable), encoding="utf-8")
    head = ["--config", str(cfg), "--database-url", db_url]
    ok(run_cli(tmp_path, *head, "init-db"))
    ok(run_cli(tmp_path, *head, "enqueue", "--dealer", "d001", "--dealer", "d002"))
    return head


def _runs(tmp_path: Path, head: list[str]) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(ok(run_cli(tmp_path, *head, "runs",
                                                            "--json")))
    return listed


def test_two_overlapping_cron_runs_in_one_log_are_told_apart(tmp_path: Path,
                                                            db_url: str) -> None:
    head = _setup(tmp_path, db_url)
    log = tmp_path / "cron.log"
    argv = [sys.executable, "-m", "dealertui", *head, "--run-once"]
    with log.open("a", encoding="utf-8") as shared:  # as `>> cron.log 2>&1` would
        procs = [subprocess.Popen(argv, cwd=tmp_path, env=cli_env(tmp_path),
                                  stdin=subprocess.DEVNULL, stdout=shared, stderr=shared)
                 for _ in range(2)]
        codes = [p.wait(timeout=120) for p in procs]
    text = log.read_text(encoding="utf-8")
    assert "Traceback" not in text, text
    lines = text.splitlines()
    matched = [LINE.match(ln) for ln in lines]
    assert all(matched), "\n".join(ln for ln, m in zip(lines, matched, strict=True) if not m)
    by_run: dict[str, list[str]] = {}
    for ln, m in zip(lines, matched, strict=True):
        assert m is not None and m["kind"] == "run-once"
        by_run.setdefault(m["run"], []).append(ln[m.end():])
    assert len(by_run) == 2, text  # two ids, one per process
    for said in by_run.values():  # each run's own header and summary, under its own id
        assert said[0].startswith("config "), said
        assert any(s.startswith("processed ") for s in said), said
    # both failures (one dealer_com each) were logged by whichever run ran them
    assert sum(s.startswith("failed   ") for said in by_run.values() for s in said) == 2

    listed = _runs(tmp_path, head)
    assert {r["run"] for r in listed} == set(by_run), listed
    assert [r["started_at"] for r in listed] == sorted(
        (r["started_at"] for r in listed), reverse=True)  # type: ignore[arg-type]
    for r in listed:
        assert r["kind"] == "run-once" and r["host"] == socket.gethostname()
        assert r["finished_at"] is not None and r["exit_code"] in codes
        assert r["worker_id"].endswith(f":{r['run']}")  # type: ignore[union-attr]
    assert sorted(r["exit_code"] for r in listed) == sorted(codes)  # type: ignore[type-var]
    assert sum(r["stats"]["failed_jobs"] for r in listed) == 2  # type: ignore[index]

    # `runs` and `status` show each run by its start, in the log's time format
    text_runs = ok(run_cli(tmp_path, *head, "runs")).splitlines()
    status = ok(run_cli(tmp_path, *head, "status")).splitlines()
    for r, shown in zip(listed, text_runs, strict=True):
        when = time.strftime("%Y-%m-%d %H:%M:%S",
                             time.localtime(r["started_at"]))  # type: ignore[arg-type]
        assert shown.startswith(f"{when} run-once[{r['run']}] on {socket.gethostname()}, ")
        assert shown.endswith(f"failed, exit {r['exit_code']}"), shown
        assert f"  {shown}" in status, (shown, status)


def test_a_worker_logs_and_records_its_run(tmp_path: Path, db_url: str) -> None:
    head = _setup(tmp_path, db_url)
    proc = subprocess.Popen([sys.executable, "-m", "dealertui", *head, "worker"],
                            cwd=tmp_path, env=cli_env(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until both dealer_com jobs failed
            state = json.loads(ok(run_cli(tmp_path, *head, "status", "--json")))
            if state["by_state"]["failed"] == 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == 0 and "Traceback" not in err, show(done)
    ids = set()
    for ln in err.splitlines():
        m = LINE.match(ln)
        assert m is not None and m["kind"] == "worker", show(done)
        ids.add(m["run"])
    assert len(ids) == 1, show(done)
    assert any(ln.endswith("SIGTERM: no new jobs; waiting up to 30s for 0 running jobs "
                           "(signal again to stop now)") for ln in err.splitlines()), err
    (run,) = _runs(tmp_path, head)
    assert (run["run"], run["kind"], run["exit_code"]) == (ids.pop(), "worker", 0)
    assert run["stats"]["failed_jobs"] == 2  # type: ignore[index]
    assert ok(run_cli(tmp_path, *head, "runs", "--limit", "1")).count("\n") == 1
