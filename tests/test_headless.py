"""`dealertui --run-once`, `graph` and `bench` as cron and scripts run them: real subprocesses.

The subprocess gets the test's environment minus every ``DEALERTUI_*`` variable, XDG
directories inside ``tmp_path``, ``cwd=tmp_path`` and ``PYTHONPATH`` set to the repository
root, so the config's python-callable handlers ("tests.fixtures.handlers:picky") import.
Independent commands run side by side to keep the file fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import without_header

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 90
JOB_TYPES = ("homenet", "dealer_com", "product_scrape", "url_shorten")
SUMMARY_KEYS = {
    "total_jobs", "processed_jobs", "successful_jobs", "failed_jobs", "blocked_jobs",
    "retried_jobs", "processing_time_ms", "dealers_processed", "dependency_violations",
    "throughput_jobs_per_s", "success_rate",
}
UNREACHABLE = "postgresql://u:pw@127.0.0.1:1/x"

# "picky" succeeds, except for dealers whose id starts with "fail" (a permanent error).
CONFIG = """\
[concurrency]
max_concurrent_dealers = 2
max_concurrent_jobs_per_dealer = 2

[job_types.homenet]
priority = 1
handler = "tests.fixtures.handlers:picky"

[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = "tests.fixtures.handlers:picky"

[job_types.product_scrape]
priority = 3
depends_on = ["homenet"]
handler = "tests.fixtures.handlers:picky"

[job_types.url_shorten]
priority = 4
depends_on = ["product_scrape"]
handler = "tests.fixtures.handlers:picky"
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "120"
    env.pop("PYTHONWARNINGS", None)
    return env


def _start(tmp_path: Path, args: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dealertui", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {TIMEOUT_S}s:\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_all(tmp_path: Path, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands side by side; results in the same order."""
    procs = [_start(tmp_path, c) for c in commands]
    return [_finish(p) for p in procs]


def show(p: subprocess.CompletedProcess[str]) -> str:
    return f"{p.args}\nexit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def expect(p: subprocess.CompletedProcess[str], code: int) -> subprocess.CompletedProcess[str]:
    assert p.returncode == code, show(p)
    assert "Traceback" not in p.stderr + p.stdout, show(p)
    assert "\x1b[" not in p.stderr + p.stdout, "escape codes in non-TTY output\n" + show(p)
    return p


def summary(p: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """stdout must be exactly one JSON object with the keys of docs/design.md."""
    text = p.stdout.strip()
    assert text.count("\n") == 0, "more than one line on stdout\n" + show(p)
    data = json.loads(text)
    assert isinstance(data, dict), show(p)
    missing = SUMMARY_KEYS - set(data)
    assert not missing, f"missing keys {sorted(missing)}\n{show(p)}"
    for key in SUMMARY_KEYS:
        assert isinstance(data[key], int | float) and not isinstance(data[key], bool), key
    return data


def one_error_line(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    expect(p, code)
    assert p.stdout == "", show(p)
    lines = p.stderr.strip().splitlines()
    lines = without_header(lines)  # which config and database (test_no_silent_defaults.py)
    assert len(lines) == 1, show(p)
    for needle in needles:
        assert needle in lines[0], show(p)
    return lines[0]


@pytest.fixture(scope="module")
def unreachable_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    """Started first and checked last: it spends its retry budget while the others run."""
    tmp = tmp_path_factory.mktemp("unreachable")
    (tmp / "dealertui.toml").write_text(CONFIG, encoding="utf-8")  # handlers: found in cwd
    proc = _start(tmp, ["--database-url", UNREACHABLE, "--run-once", "--json"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def _start_unreachable_early(unreachable_run: subprocess.Popen[str]) -> None:
    pass


def test_run_once_exit_codes_json_and_graph(db_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "dealertui.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    common = ["--config", str(cfg), "--database-url", db_url]

    def cli(*args: str) -> list[str]:
        return [*common, *args]

    (p,) = run_all(tmp_path, cli("dealers", "add", "d1", "--name", "Sunrise Motors"))
    expect(p, 0)  # the first command creates the schema; then two at once
    for p in run_all(tmp_path, cli("dealers", "add", "d2"), cli("dealers", "add", "fail1")):
        expect(p, 0)
    (p,) = run_all(tmp_path, cli("enqueue", "--all-dealers"))
    assert "12" in expect(p, 0).stdout, show(p)

    # a --metrics-textfile that cannot be written is refused before any job runs (the counts
    # below would be off otherwise); it used to run every job, then exit 2 with no JSON
    (p,) = run_all(tmp_path, cli("--run-once", "--json", "--metrics-textfile",
                                 str(tmp_path / "nodir" / "m.prom")))
    one_error_line(p, 2, str(tmp_path / "nodir"))

    # --limit 2: two jobs, then exit 0
    (p,) = run_all(tmp_path, cli("--run-once", "--limit", "2", "--dealer", "d1", "--dealer",
                                 "d2", "--json"))
    s = summary(expect(p, 0))
    assert s["total_jobs"] == s["processed_jobs"] == s["successful_jobs"] == 2, show(p)

    # the rest of d1 and d2: everything succeeds -> exit 0, plain log lines on stderr
    (p,) = run_all(tmp_path, cli("--run-once", "--dealer", "d1", "--dealer", "d2", "--json"))
    s = summary(expect(p, 0))
    assert s["processed_jobs"] == s["successful_jobs"] == s["total_jobs"] == 6, show(p)
    assert s["failed_jobs"] == s["blocked_jobs"] == s["retried_jobs"] == 0, show(p)
    assert s["dependency_violations"] == 0
    assert s["success_rate"] == 1.0
    assert s["dealers_processed"] == 2
    assert "processed 6 jobs" in p.stderr, show(p)

    # fail1's homenet fails permanently, its 3 descendants are blocked -> exit 1
    (p,) = run_all(tmp_path, cli("--run-once", "--json"))
    s = summary(expect(p, 1))
    assert s["failed_jobs"] == 1 and s["blocked_jobs"] == 3, show(p)
    assert s["successful_jobs"] == 0 and s["processed_jobs"] == 1, show(p)
    failed_lines = [ln for ln in p.stderr.splitlines() if "fail1" in ln and "homenet" in ln]
    assert failed_lines and "malformed feed [/item] :x:" in failed_lines[0], show(p)

    # read-only checks and usage errors, side by side
    graph_d1, graph_fail, bad_id, unknown, again, status = run_all(
        tmp_path,
        cli("graph", "--dealer", "d1"),
        cli("graph", "--dealer", "fail1"),
        cli("--run-once", "--dealer", "bad id", "--json"),
        cli("--run-once", "--dealer", "nobody", "--json"),
        cli("--run-once", "--json"),
        cli("status", "--json"),
    )
    for graph, states in ((graph_d1, {"homenet": "succeeded", "url_shorten": "succeeded"}),
                          (graph_fail, {"homenet": "failed", "dealer_com": "blocked",
                                        "product_scrape": "blocked", "url_shorten": "blocked"})):
        text = expect(graph, 0).stdout
        for job_type in JOB_TYPES:
            lines = [ln for ln in text.splitlines() if job_type in ln]
            assert lines, show(graph)
            if job_type in states:
                assert states[job_type] in lines[0], show(graph)
    one_error_line(bad_id, 2, "bad id")
    one_error_line(unknown, 2, "nobody")
    # nothing left to do: exit 0, zero jobs (earlier failures are not this run's)
    s = summary(expect(again, 0))
    assert s["total_jobs"] == s["processed_jobs"] == 0, show(again)
    by_state = json.loads(expect(status, 0).stdout)["by_state"]
    assert (by_state["succeeded"], by_state["failed"], by_state["blocked"]) == (8, 1, 3)
    assert by_state["ready"] == by_state["waiting"] == by_state["running"] == 0


def test_bench_json(tmp_path: Path) -> None:
    (p,) = run_all(tmp_path, ["bench", "--dealers", "50", "--json"])
    data = json.loads(expect(p, 0).stdout)
    assert {"backend", "dealers", "jobs", "seconds", "jobs_per_s", "latency_ms",
            "peak_rss_mb"} <= set(data), show(p)
    assert data["backend"] == "sqlite"
    assert data["dealers"] == 50
    assert data["jobs"] == 200
    assert data["seconds"] > 0 and data["jobs_per_s"] > 0
    latency = data["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p99"], show(p)
    assert data["peak_rss_mb"] > 0
    assert not list(tmp_path.glob("*.db")), "bench must not leave a database in the cwd"


def test_unreachable_database_exits_3(unreachable_run: subprocess.Popen[str]) -> None:
    p = _finish(unreachable_run)
    line = one_error_line(p, 3, "127.0.0.1")
    assert "pw" not in line, "the password leaked into the error"


def test_run_once_names_the_jobs_a_pause_or_a_breaker_holds(db_url: str, tmp_path: Path) -> None:
    # the summary said "processed 3 jobs" and nothing of the 5 jobs left
    # behind; cron's reader had to guess why they did not run
    cfg = tmp_path / "dealertui.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    common = ["--config", str(cfg), "--database-url", db_url]
    for args in (["dealers", "add", "d1"], ["dealers", "add", "d2"],
                 ["enqueue", "--all-dealers"], ["pause", "--dealer", "d2"]):
        (p,) = run_all(tmp_path, [*common, *args])
        expect(p, 0)

    async def open_breaker() -> None:
        from dealertui.config import parse_config
        from dealertui.store import JobStore, rules_from_config
        from dealertui.store.schema import breakers

        store = await JobStore.open(db_url, rules_from_config(parse_config({}, None)),
                                    create=False)
        try:
            async def put(conn: Any) -> None:
                await conn.execute(breakers.insert().values(
                    key="type:url_shorten", job_type="url_shorten", state="open",
                    failures=5, opened_at=time.time(), half_open_at=time.time() + 3600,
                    updated_at=time.time()))

            await store.db.run(put)
        finally:
            await store.close()

    anyio.run(open_breaker)
    (p,) = run_all(tmp_path, [*common, "--run-once", "--json"])
    s = summary(expect(p, 0))
    assert s["successful_jobs"] == 3, show(p)  # d1's homenet, dealer_com, product_scrape
    # d2's 4 jobs (its url_shorten counts under the pause, which comes first), d1's url_shorten
    assert "5 jobs held: dealer d2 paused, breaker type:url_shorten open" in p.stderr, show(p)
    assert s["held_jobs"] == 5 and s["held"] == {"dealer d2 paused": 4,
                                                 "breaker type:url_shorten open": 1}, show(p)
