"""The CLI contract of docs/design.md for the operator's commands: pause / resume, cancel /
retry, retry --all-failed and reset-stuck with nothing to do; and what is refused before
anything opens (bad argument values, a failing command creating a database file, a metrics
port in use, global options where they do nothing).

`dealertui.cli.main` runs in-process, each call with the test's environment minus every
``DEALERTUI_*`` variable, XDG directories inside ``tmp_path`` and ``cwd=tmp_path``
(tests/helpers.py), so no stray config file or database URL is picked up. Every
database-backed test runs on SQLite and on Postgres (``db_url``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import Cli, counts, ok, run
from helpers import one_error, show, write_demo_config

# --- pause / resume ------------------------------------------------------------------------


def test_pause_and_resume(cli: Cli) -> None:
    cli.add_dealers("d1")
    one_error(cli("pause", "--dealer", "ghost"), 2, "'ghost'")
    one_error(cli("pause", "--type", "nosuch"), 2, "'nosuch'")
    assert "everything" in ok(cli("pause")).stdout
    ok(cli("pause", "--dealer", "d1"))
    ok(cli("pause", "--dealer", "d1"))  # twice is harmless
    ok(cli("pause", "--type", "homenet", "--reason", "upstream maintenance"))
    assert cli.status()["paused"] == {"global": True, "dealers": ["d1"], "types": ["homenet"],
                                     "schedules": []}
    assert "paused" in ok(cli("status")).stdout

    said = ok(cli("resume")).stdout  # the global pause only, and it says what still holds
    assert "resumed the global pause; still paused: dealer d1, type homenet" in said, said
    assert cli.status()["paused"] == {"global": False, "dealers": ["d1"], "types": ["homenet"],
                                     "schedules": []}
    ok(cli("resume", "--dealer", "d1"))
    ok(cli("resume", "--type", "homenet"))
    ok(cli("resume", "--type", "dealer_com"))  # resuming what is not paused is harmless
    assert cli.status()["paused"] == {"global": False, "dealers": [], "types": [],
                           "schedules": []}


# --- cancel / retry ------------------------------------------------------------------------


def test_cancel_then_retry(cli: Cli) -> None:
    cli.add_dealers("d1")
    ok(cli("enqueue", "--dealer", "d1"))
    homenet = cli.job_id("d1", "homenet")

    p = ok(cli("cancel", "--job", str(homenet)))
    assert "cancelled 1" in p.stdout
    st = cli.status()
    assert st["by_state"] == counts(cancelled=1, blocked=3)
    assert st["by_type"]["homenet"] == counts(cancelled=1)

    one_error(cli("cancel", "--job", "999"), 2, "999")
    one_error(cli("retry", "--job", "999"), 2, "999")

    p = ok(cli("retry", "--job", str(homenet)))
    assert "retried 1" in p.stdout
    st = cli.status()
    assert st["by_state"] == counts(ready=1, waiting=3)
    assert st["by_type"]["homenet"] == counts(ready=1)
    # nothing to do: it says why
    p = ok(cli("retry", "--job", str(homenet)))
    assert "retried 0 jobs" in p.stdout and f"(job {homenet} is ready)" in p.stdout, p.stdout


def test_cancel_leaf_leaves_the_rest(cli: Cli) -> None:
    cli.add_dealers("d1")
    ok(cli("enqueue", "--dealer", "d1"))
    ok(cli("cancel", "--job", str(cli.job_id("d1", "url_shorten"))))
    assert cli.status()["by_state"] == counts(ready=1, waiting=2, cancelled=1)


def test_retry_by_dealer_and_type(cli: Cli) -> None:
    cli.add_dealers("d1")
    ok(cli("enqueue", "--dealer", "d1"))
    ok(cli("cancel", "--job", str(cli.job_id("d1", "homenet"))))
    # --dealer/--type retry failed and blocked jobs (not cancelled ones)
    # (its parent is blocked by the cancelled homenet, so it stays blocked and says so)
    p = ok(cli("retry", "--type", "url_shorten"))
    assert p.stdout.startswith("retried 0 jobs;"), p.stdout
    assert (f"job {cli.job_id('d1', 'url_shorten')} stays blocked: parent product_scrape "
            f"#{cli.job_id('d1', 'product_scrape')} is blocked") in p.stdout
    ok(cli("retry", "--dealer", "d1"))
    st = cli.status()
    assert st["by_state"] == counts(cancelled=1, blocked=3)  # homenet is still cancelled
    one_error(cli("retry", "--dealer", "ghost"), 2, "'ghost'")
    one_error(cli("retry", "--type", "nosuch"), 2, "'nosuch'")


def test_retry_of_job_without_prerequisite_run(cli: Cli) -> None:
    cli.add_dealers("d1")
    ok(cli("enqueue", "--dealer", "d1", "--type", "dealer_com"))
    # still no homenet run to link to: the job stays blocked
    ok(cli("retry", "--all-failed"))
    assert cli.status()["by_type"]["dealer_com"] == counts(blocked=1)
    # once there is one, a retry links the job to it and the job waits for it
    ok(cli("enqueue", "--dealer", "d1", "--type", "homenet"))
    ok(cli("retry", "--all-failed"))
    st = cli.status()
    assert st["by_type"]["dealer_com"] == counts(waiting=1)
    assert st["by_type"]["homenet"] == counts(ready=1)


# --- retry --all-failed, reset-stuck: nothing to do is fine --------------------------------


def test_retry_all_failed_and_reset_stuck_with_nothing_to_do(cli: Cli) -> None:
    # no database yet (a typo in the path, say): an error, not "retried 0" over a new one
    one_error(cli("retry", "--all-failed"), 3, "init-db")
    one_error(cli("reset-stuck"), 3, "init-db")
    ok(cli("init-db"))
    assert "retried 0" in ok(cli("retry", "--all-failed")).stdout
    assert "rescued 0" in ok(cli("reset-stuck")).stdout
    assert "rescued 0" in ok(cli("reset-stuck", "--older-than", "15m")).stdout
    cli.add_dealers("d1")
    ok(cli("enqueue", "--dealer", "d1"))
    assert "retried 0" in ok(cli("retry", "--all-failed")).stdout
    assert "rescued 0" in ok(cli("reset-stuck", "--older-than", "90s")).stdout
    assert cli.status()["by_state"] == counts(ready=1, waiting=3)


@pytest.mark.parametrize(
    "args",
    [
        ["reset-stuck", "--older-than", "banana"],
        ["cancel", "--job", "banana"],
        ["retry", "--job", "0"],
        ["why", "--job", "99999999999999999999"],  # was an OverflowError traceback
        ["worker", "--metrics-port", "99999"],
    ],
    ids=["duration", "cancel-job", "retry-job", "huge-job-id", "port-range"],
)
def test_bad_argument_values(tmp_path: Path, args: list[str]) -> None:
    # argparse rejects them before any database is opened
    p = run(tmp_path, *args, db_url=f"sqlite:///{tmp_path}/never.db")
    assert p.returncode == 2, show(p)
    assert args[-1] in p.stderr.splitlines()[-1], show(p)
    assert "Traceback" not in p.stderr, show(p)
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["health"], 3, "does not exist"),  # each of these left a 4 KB file behind
        (["why", "--job", "1"], 3, "does not exist"),
        (["audit"], 3, "does not exist"),
        (["status"], 3, "does not exist"),  # these answered "no jobs yet" over a new file
        (["graph"], 3, "does not exist"),
        (["dealers", "list"], 3, "does not exist"),
        (["retry", "--job", "99"], 3, "does not exist"),  # these created a whole schema
        (["skip", "--job", "99", "--reason", "x"], 3, "does not exist"),
        (["reset-stuck"], 3, "does not exist"),
        (["enqueue", "--dealer", "d\u00e9"], 2, "invalid dealer id"),
        (["pause", "--type", "nosuch"], 2, "unknown job type 'nosuch'"),
        (["graph", "--dealer", "bad id"], 2, "invalid dealer id"),
        (["--run-once", "--dealer", "bad id"], 2, "invalid dealer id"),
    ],
    ids=["health", "why", "audit", "status", "graph", "dealers-list", "retry", "skip",
         "reset-stuck", "enqueue-bad-id",
         "pause-unknown-type", "graph-bad-id", "run-once-bad-id"],
)
def test_a_failing_command_creates_no_database_file(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    p = run(tmp_path, *args, db_url=f"sqlite:///{tmp_path}/typo/x.db")
    one_error(p, code, needle)
    assert not (tmp_path / "typo").exists(), show(p)  # not even its directory


def test_metrics_port_in_use_is_one_sentence_before_anything_opens(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_demo_config(tmp_path)
        p = run(tmp_path, "worker", "--metrics-port", str(port),
                db_url=f"sqlite:///{tmp_path}/never.db")
    one_error(p, 2, f"127.0.0.1:{port}", "in use")
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--json"], "--json"),  # a cron line missing --run-once opened the console
        (["--limit", "3"], "--limit"),
        (["--metrics-textfile", "m.prom"], "--metrics-textfile"),
        (["--json", "status"], "--json"),  # printed the table, not JSON
        (["--run-once", "status"], "--run-once"),
        (["--max-dealers", "3", "enqueue", "--all-dealers"], "--max-dealers"),
        (["--read-only", "pause"], "--read-only"),  # paused everything
        (["--read-only", "--run-once"], "--read-only"),  # ran jobs
        (["--demo", "--run-once"], "--demo"),  # ran the configured database's jobs
    ],
    ids=["json-alone", "limit-alone", "textfile-alone", "json-status", "run-once-status",
         "max-dealers-enqueue", "read-only-pause", "read-only-run-once", "demo-run-once"],
)
def test_global_options_where_they_do_nothing_are_refused(
    tmp_path: Path, args: list[str], flag: str
) -> None:
    p = run(tmp_path, *args, db_url=f"sqlite:///{tmp_path}/never.db")
    line = one_error(p, 2, flag)
    assert p.stdout == "" and "\x1b[" not in p.stderr, show(p)
    assert line.startswith("dealertui: error:"), show(p)
    assert not (tmp_path / "never.db").exists()
