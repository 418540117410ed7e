"""The CLI contract of docs/design.md, exercised as a user runs it: `dealertui.cli.main`
in-process, each call with the test's environment minus every ``DEALERTUI_*`` variable, XDG
directories inside ``tmp_path`` and ``cwd=tmp_path`` (tests/helpers.py), so no stray config
file or database URL is picked up. A real process only where it is the point: a reader that
leaves early (a broken pipe), the installed console script.

Every database-backed test runs on SQLite and on Postgres (``db_url``). Config-file errors
are covered by tests/test_config.py, not here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import cli_env, cli_process, job_ids, one_error, run_cli, show, write_demo_config

from dealertui.model import ALL_STATES
from dealertui.store import JobStore

TIMEOUT_S = 60
DEFAULT_TYPES = ("homenet", "dealer_com", "product_scrape", "url_shorten")
STATES = ("waiting", "ready", "running", "retrying", "succeeded", "failed", "blocked", "cancelled",
          "skipped")


def run(tmp_path: Path, *args: str, db_url: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """dealertui in-process with global options first."""
    head = ["--database-url", db_url] if db_url is not None else []
    return run_cli(tmp_path, *head, *args)


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, show(p)
    assert "Traceback" not in p.stderr, show(p)
    return p


class Cli:
    """``cli("status", "--json")`` runs ``dealertui --database-url URL status --json``."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.tmp_path, *args, db_url=self.db_url)

    def status(self) -> dict[str, Any]:
        p = ok(self("status", "--json"))
        return json.loads(p.stdout)

    def dealers(self) -> list[dict[str, Any]]:
        return json.loads(ok(self("dealers", "list", "--json")).stdout)

    def add_dealers(self, *ids: str) -> None:
        for d in ids:
            ok(self("dealers", "add", d))

    def job_id(self, dealer_id: str, job_type: str) -> int:
        """The newest job of that dealer and type, read through the store."""
        found = job_ids(self.db_url, dealer_id)
        assert job_type in found, f"no {job_type} job for {dealer_id}"
        return found[job_type]


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    return Cli(tmp_path, db_url)


def zeros() -> dict[str, int]:
    return dict.fromkeys(STATES, 0)


def counts(**kw: int) -> dict[str, int]:
    return {**zeros(), **kw}


# --- init-db -------------------------------------------------------------------------------


def test_init_db_twice(cli: Cli) -> None:
    from sqlalchemy.engine import make_url

    first = ok(cli("init-db"))
    assert "database ready" in first.stdout
    second = ok(cli("init-db"))
    assert "database ready" in second.stdout
    password = make_url(cli.db_url).password
    if password:
        assert str(password) not in first.stdout + first.stderr
    assert cli.status()["total"] == 0


# --- dealers -------------------------------------------------------------------------------


def test_dealers_add_and_list(cli: Cli) -> None:
    ok(cli("init-db"))
    assert ok(cli("dealers", "list")).stdout.strip() == ""
    assert "d1" in ok(cli("dealers", "add", "d1", "--name", "First Motors")).stdout
    ok(cli("dealers", "add", "d2"))
    listed = ok(cli("dealers", "list")).stdout
    assert "d1" in listed and "First Motors" in listed and "d2" in listed
    assert cli.dealers() == [
        {"id": "d1", "name": "First Motors", "disabled": False},
        {"id": "d2", "name": None, "disabled": False},
    ]
    # adding again renames, never duplicates
    ok(cli("dealers", "add", "d1", "--name", "Renamed"))
    assert [(d["id"], d["name"]) for d in cli.dealers()] == [("d1", "Renamed"), ("d2", None)]


def test_dealers_add_invalid_id(cli: Cli) -> None:
    ok(cli("dealers", "add", "a" * 64))  # the longest id allowed
    for args, shown in [
        (["bad id"], "'bad id'"),
        (["--", "-x"], "'-x'"),
        (["a" * 65], "'" + "a" * 65 + "'"),
        (["d1/../x"], "'d1/../x'"),
    ]:
        line = one_error(cli("dealers", "add", *args), 2, shown)
        assert "invalid dealer id" in line
    assert [d["id"] for d in cli.dealers()] == ["a" * 64]  # nothing written


def test_dealers_add_dash_id_without_separator(tmp_path: Path) -> None:
    # argparse takes '-x' for an option and would only say the ID is missing
    one_error(run(tmp_path, "dealers", "add", "-x", db_url=f"sqlite:///{tmp_path}/t.db"), 2, "-x")
    one_error(run(tmp_path, "dealers", "add", "--name", "X", "-x",
                   db_url=f"sqlite:///{tmp_path}/t.db"), 2, "-x")


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_named_dealers(cli: Cli) -> None:
    cli.add_dealers("d1", "d2", "d3")
    p = ok(cli("enqueue", "--dealer", "d1", "--dealer", "d2"))
    assert "8" in p.stdout
    st = cli.status()
    assert st["total"] == 8
    assert st["by_dealer"]["d1"] == counts(ready=1, waiting=3)
    assert st["by_dealer"]["d2"] == counts(ready=1, waiting=3)
    assert st["by_dealer"]["d3"] == zeros()


def test_enqueue_all_dealers(cli: Cli) -> None:
    one_error(cli("enqueue", "--all-dealers"), 2, "no dealers")
    cli.add_dealers("d1", "d2", "d3")
    ok(cli("enqueue", "--all-dealers"))
    st = cli.status()
    assert st["total"] == 12
    assert st["by_state"] == counts(ready=3, waiting=9)
    assert set(st["by_dealer"]) == {"d1", "d2", "d3"}


def test_enqueue_single_type_links_to_prerequisite_runs(cli: Cli) -> None:
    cli.add_dealers("d1", "d2")
    # d1 never ran homenet: its dealer_com is blocked, and the output says why
    p = ok(cli("enqueue", "--dealer", "d1", "--type", "dealer_com"))
    assert "blocked" in p.stdout
    assert "no successful homenet run" in p.stdout
    # d2 has a homenet job underway: its dealer_com waits for it
    ok(cli("enqueue", "--dealer", "d2", "--type", "homenet"))
    p = ok(cli("enqueue", "--dealer", "d2", "--type", "dealer_com"))
    assert "blocked" not in p.stdout
    st = cli.status()
    assert st["total"] == 3
    assert st["by_dealer"]["d1"] == counts(blocked=1)
    assert st["by_dealer"]["d2"] == counts(ready=1, waiting=1)
    assert st["by_type"]["dealer_com"] == counts(blocked=1, waiting=1)


def test_enqueue_refuses_unknown_names(cli: Cli) -> None:
    cli.add_dealers("d1")
    one_error(cli("enqueue", "--dealer", "d1", "--dealer", "ghost"), 2, "'ghost'")
    one_error(cli("enqueue", "--dealer", "bad id"), 2, "'bad id'")
    line = one_error(cli("enqueue", "--dealer", "d1", "--type", "nosuch"), 2, "'nosuch'")
    assert "homenet" in line  # names the known types
    assert cli.status()["total"] == 0  # all or nothing


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
    assert st["paused"] == {"global": False, "dealers": [], "types": []}
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
    assert st["paused"] == {"global": False, "dealers": [], "types": []}
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


# --- pause / resume ------------------------------------------------------------------------


def test_pause_and_resume(cli: Cli) -> None:
    cli.add_dealers("d1")
    one_error(cli("pause", "--dealer", "ghost"), 2, "'ghost'")
    one_error(cli("pause", "--type", "nosuch"), 2, "'nosuch'")
    assert "everything" in ok(cli("pause")).stdout
    ok(cli("pause", "--dealer", "d1"))
    ok(cli("pause", "--dealer", "d1"))  # twice is harmless
    ok(cli("pause", "--type", "homenet", "--reason", "upstream maintenance"))
    assert cli.status()["paused"] == {"global": True, "dealers": ["d1"], "types": ["homenet"]}
    assert "paused" in ok(cli("status")).stdout

    said = ok(cli("resume")).stdout  # the global pause only, and it says what still holds
    assert "resumed the global pause; still paused: dealer d1, type homenet" in said, said
    assert cli.status()["paused"] == {"global": False, "dealers": ["d1"], "types": ["homenet"]}
    ok(cli("resume", "--dealer", "d1"))
    ok(cli("resume", "--type", "homenet"))
    ok(cli("resume", "--type", "dealer_com"))  # resuming what is not paused is harmless
    assert cli.status()["paused"] == {"global": False, "dealers": [], "types": []}


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


# --- unusable databases --------------------------------------------------------------------


def test_unreachable_postgres(tmp_path: Path) -> None:
    p = run(tmp_path, "status", db_url="postgresql://user:s3cretpw@127.0.0.1:1/x")
    line = one_error(p, 3, "127.0.0.1")
    assert "s3cretpw" not in p.stderr + p.stdout
    assert line.startswith("dealertui: error:")
    assert p.stdout == ""


def test_a_database_holding_another_applications_jobs_table_is_left_alone(
    tmp_path: Path, db_url: str
) -> None:
    # create_all skips a table whose name exists: dealertui wrote its other tables beside
    # the foreign `jobs` and then failed on a missing column
    from sqlalchemy import inspect, text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def tables(ddl: str | None = None) -> set[str]:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                if ddl:
                    await conn.execute(text(ddl))
                return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    assert anyio.run(tables, "CREATE TABLE jobs (x TEXT)") == {"jobs"}
    file = Path(db_url.split(":///", 1)[1]) if db_url.startswith("sqlite") else None
    before = file.read_bytes() if file else b""
    # read-only commands too: they said "run 'dealertui init-db' first", which refuses it
    for args in (["status"], ["health"], ["cancel", "--job", "1"]):
        one_error(run(tmp_path, *args, db_url=db_url), 3, "not dealertui's", "jobs")
    assert anyio.run(tables) == {"jobs"}  # nothing written
    if file:  # not a byte: our connection switched the file to WAL for good
        assert file.read_bytes() == before


def test_postgres_that_refuses_us_is_one_sentence(tmp_path: Path, postgres_server: Any) -> None:
    # not transient, so not retried: these were re-raised raw, a ~200-line traceback, exit 1
    import uuid

    from sqlalchemy.engine import make_url

    try:
        from pg import _execute, _run_async
    except ImportError:
        from tests.pg import _execute, _run_async

    missing = postgres_server.url_for(f"nosuch_{uuid.uuid4().hex[:8]}")
    one_error(run(tmp_path, "status", db_url=missing), 3, "does not exist")

    url = postgres_server.create_database()
    role = f"noperm_{uuid.uuid4().hex[:8]}"
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        ok(run(tmp_path, "init-db", db_url=url))
        write_demo_config(tmp_path)  # handlers for the run-once and worker below
        _run_async(_execute(admin, f'CREATE ROLE "{role}" LOGIN'))
        weak = make_url(url).set(username=role).render_as_string(hide_password=False)
        one_error(run(tmp_path, "status", db_url=weak), 3, "permission denied")
        # allowed to read, not to write: run-once showed an ExceptionGroup traceback, and a
        # worker reconnected for ever without a word
        _run_async(_execute(admin, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
        one_error(run(tmp_path, "--run-once", db_url=weak), 3, "permission denied")
        worker = run(tmp_path, "worker", db_url=weak)
        assert worker.returncode == 3, show(worker)
        assert "Traceback" not in worker.stderr, show(worker)
        assert worker.stderr.strip().splitlines()[-1].startswith("dealertui: error:"), show(worker)
        assert "permission denied" in worker.stderr, show(worker)
    finally:
        postgres_server.drop_database(make_url(url).database)
        _run_async(_execute(admin.rsplit("/", 1)[0] + "/postgres",
                            f'DROP ROLE IF EXISTS "{role}"'))


@pytest.mark.parametrize("path", ["/proc/nope/x.db", "/proc/x.db"], ids=["no-dir", "no-write"])
def test_unwritable_sqlite(tmp_path: Path, path: str) -> None:
    p = run(tmp_path, "status", db_url=f"sqlite:///{path}")
    one_error(p, 3, path)
    assert p.stdout == ""


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
