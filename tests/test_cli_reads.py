"""The CLI contract of docs/design.md for reading: status (and a reader that leaves early is
not an error, a real process), the installed console script, no subcommand (the version),
health exit codes and analyze-errors.

`dealertui.cli.main` runs in-process, each call with the test's environment minus every
``DEALERTUI_*`` variable, XDG directories inside ``tmp_path`` and ``cwd=tmp_path``
(tests/helpers.py), so no stray config file or database URL is picked up. Every
database-backed test runs on SQLite and on Postgres (``db_url``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from clirun import STATES, Cli, counts, ok, run, zeros
from helpers import cli_env, cli_process, one_error, show

from dealertui.model import ALL_STATES
from dealertui.store import JobStore

TIMEOUT_S = 60
DEFAULT_TYPES = ("homenet", "dealer_com", "product_scrape", "url_shorten")


# --- status --------------------------------------------------------------------------------


def test_status(cli: Cli) -> None:
    if cli.db_url.startswith("sqlite"):  # no file yet: an error, not "no jobs yet" over a new one
        one_error(cli("status"), 3, "does not exist")
    ok(cli("init-db"))
    st = cli.status()
    assert {"total", "by_state", "by_type", "by_dealer", "paused", "workers"} <= set(st)
    assert st["total"] == 0
    assert st["by_state"] == zeros()
    assert tuple(st["by_state"]) == STATES == ALL_STATES
    assert set(st["by_type"]) == set(DEFAULT_TYPES)
    for t in DEFAULT_TYPES:
        assert st["by_type"][t] == zeros()
    assert st["by_dealer"] == {}
    assert st["paused"] == {"global": False, "dealers": [], "types": [],
                           "schedules": []}
    assert st["workers"] == []
    assert "no jobs yet" in ok(cli("status")).stdout

    cli.add_dealers("d1", "d2")
    ok(cli("enqueue", "--dealer", "d1", "--dealer", "d2"))
    st = cli.status()
    assert st["total"] == 8
    assert st["by_state"] == counts(ready=2, waiting=6)
    assert sum(st["by_state"].values()) == st["total"]
    assert st["by_type"] == {
        "homenet": counts(ready=2),
        "dealer_com": counts(waiting=2),
        "product_scrape": counts(waiting=2),
        "url_shorten": counts(waiting=2),
    }
    assert st["by_dealer"] == {
        "d1": counts(ready=1, waiting=3),
        "d2": counts(ready=1, waiting=3),
    }
    assert st["paused"] == {"global": False, "dealers": [], "types": [],
                           "schedules": []}
    assert st["workers"] == []

    out = ok(cli("status")).stdout
    assert "8 jobs" in out
    assert "6 waiting" in out and "2 ready" in out
    for name in (*DEFAULT_TYPES, "d1", "d2"):
        assert name in out
    assert "\x1b[" not in out  # not a terminal: no colour codes

    # a worker killed with -9 never unregisters: status says it has gone silent (it looked
    # live), and its id is printed as it is (":x:" of a host name x was an emoji)
    import time

    async def register(worker_id: str, host: str, ago_s: float) -> None:
        store = await JobStore.open(cli.db_url, {}, create=False,
                                    clock=lambda: time.time() - ago_s)
        try:
            await store.register_worker(worker_id, host=host, pid=41, kind="worker")
        finally:
            await store.close()

    anyio.run(register, "worker:x:41", "x", 3600.0)
    anyio.run(register, "worker:box:42", "box", 0.0)
    out = ok(cli("status")).stdout
    assert "workers: 1 live, 1 silent" in out, out
    assert "worker:x:41 (worker, x pid 41): 0 running, silent for 1h00m" in out, out
    assert "worker:box:42 (worker, box pid 41): 0 running, heartbeat " in out, out


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["graph"]],
                         ids=["status", "status-json", "graph"])
def test_a_reader_that_leaves_early_is_not_an_error(cli: Cli, args: list[str]) -> None:
    # `dealertui status | head -1`: rich exited 1 on the broken pipe, --json exited 0 (a
    # process: the pipe is the point)
    ok(cli("init-db"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dealertui", "--database-url", cli.db_url, *args],
        cwd=cli.tmp_path, env=cli_env(cli.tmp_path), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first line is written
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(TIMEOUT_S) == 0, err
    assert "Traceback" not in err and "Error" not in err, err


def test_console_script_with_global_option_first(cli: Cli) -> None:
    exe = shutil.which("dealertui", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("console script 'dealertui' is not installed next to this interpreter")
    ok(cli("init-db"))
    p = ok(cli_process(cli.tmp_path, "--database-url", cli.db_url, "status", "--json",
                       exe=[exe]))
    assert json.loads(p.stdout)["total"] == 0


# --- no subcommand -------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    from dealertui import __version__

    p = ok(run(tmp_path, "--version"))
    assert p.stdout.strip() == f"dealertui {__version__}"


# --- health and analyze-errors -------------------------------------------------------------


def test_health_exit_codes_and_analyze_errors(tmp_path: Path, db_url: str) -> None:
    ok(run(tmp_path, "init-db", db_url=db_url))
    assert ok(run(tmp_path, "health", db_url=db_url)).stdout.startswith("healthy")
    ok(run(tmp_path, "dealers", "add", "d1", db_url=db_url))
    ok(run(tmp_path, "enqueue", "--dealer", "d1", db_url=db_url))
    # work is due and no worker is alive: degraded, and --detailed says which check and why
    p = run(tmp_path, "health", "--detailed", db_url=db_url)
    assert p.returncode == 1, show(p)
    assert "worker_heartbeat" in p.stdout and "due" in p.stdout
    data = json.loads(run(tmp_path, "health", "--json", db_url=db_url).stdout)
    assert data["status"] == "degraded" and data["exit_code"] == 1
    assert {c["name"] for c in data["checks"]} >= {"database", "stuck_jobs", "worker_heartbeat"}
    groups = json.loads(ok(run(tmp_path, "analyze-errors", "--json", db_url=db_url)).stdout)
    assert groups == []


def test_health_unreachable_is_exit_3(tmp_path: Path) -> None:
    p = run(tmp_path, "health", db_url="postgresql://u:pw@127.0.0.1:1/x")
    one_error(p, 3, "127.0.0.1")
