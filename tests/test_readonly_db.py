"""Databases this user can read but not write, and damaged ones: real CLI subprocesses.

- SQLite in a directory the reader cannot write (or a file it cannot write): every read
  command works and leaves the directory as it was (no -wal/-shm); every command that writes,
  the worker included, exits 3 with one sentence; health's database check fails with the
  reason. A -wal that SQLite cannot read without a -shm says what to do.
- Postgres: a role with SELECT only, and one whose sessions are read-only (ALTER ROLE ... SET
  default_transaction_read_only, a standby's stand-in): the same.
- A SQLite file with damaged pages is exit 3 with one sentence, as random bytes and a
  truncated file already were.

Root ignores file modes, so as root the reader runs as `nobody` (setpriv) on files root owns;
with CI set, a reader that cannot be had fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DEMO_CONFIG, show, without_header
from pg import _execute, _run_async
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.slow

TIMEOUT_S = 60
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
READS = [("status", "--json"), ("graph",), ("why", "--job", "1"), ("dealers", "list"),
         ("audit",), ("analyze-errors",), ("--run-once", "--dry-run")]
WRITES = [("init-db",), ("--run-once",), ("enqueue", "--all-dealers"), ("pause",),
          ("dealers", "add", "d9"), ("worker",)]


class Place:
    """A directory the test owns and the reader can enter; `cli` runs dealertui in it."""

    def __init__(self, base: Path, prefix: list[str]) -> None:
        self.base, self.prefix = base, prefix
        self.data = base / "data"
        self.data.mkdir()
        self.db = self.data / "q.db"
        # the writers must get as far as the database: with no config they refuse to run
        # the built-in job types (they have no handler), before opening anything
        self.config = base / "cfg.toml"
        self.config.write_text(DEMO_CONFIG, encoding="utf-8")

    def cli(self, url: str, *args: str, reader: bool = True,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
        env.update(HOME=str(self.base), XDG_CONFIG_HOME=str(self.base / "xdg"),
                   XDG_DATA_HOME=str(self.base / "xdg"), COLUMNS="120",
                   DEALERTUI_CONFIG=str(self.config))
        env.update(env_extra or {})
        cmd = [*(self.prefix if reader else []), sys.executable, "-m", "dealertui",
               "--database-url", url, *args]
        return subprocess.run(cmd, cwd=self.base, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.db}"

    def seed(self, url: str | None = None) -> None:
        """A database with two dealers' pipelines, written by its owner."""
        for args in (("init-db",), ("dealers", "add", "d1"), ("dealers", "add", "d2"),
                     ("enqueue", "--all-dealers")):
            p = self.cli(url or self.url, *args, reader=False)
            assert p.returncode == 0, show(p)

    def lock(self, what: str) -> None:
        """Make the data directory ("dir") or the database file ("file") unwritable for
        the reader."""
        root = os.getuid() == 0
        if what == "dir":
            self.data.chmod(0o755 if root else 0o555)
        else:
            self.data.chmod(0o777 if root else 0o755)
            self.db.chmod(0o644 if root else 0o444)

    def listing(self) -> list[str]:
        return sorted(os.listdir(self.data))


def _reader_prefix() -> list[str]:
    if os.getuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    nobody = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


@pytest.fixture
def place() -> Iterator[Place]:
    # not tmp_path: pytest's base directory is private to its user (0700)
    base = Path(tempfile.mkdtemp(prefix="dealertui-ro-", dir="/tmp"))
    base.chmod(0o755)
    prefix = _reader_prefix()
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", "import dealertui.cli"],
                               cwd=base, capture_output=True, text=True, check=False)
        problem = (
            "running as root without setpriv (util-linux)" if os.getuid() == 0 and not prefix
            else f"the reader cannot run {sys.executable}: {probe.stderr.strip()[-300:]}"
            if probe.returncode else None
        )
        if problem is not None:
            if IN_CI:
                pytest.fail(f"CI is set: {problem}", pytrace=False)
            pytest.skip(problem)
        yield Place(base, prefix)
    finally:
        for d in (base / "data",):
            if d.exists():
                d.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def one_sentence(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert p.returncode == code, show(p)
    assert "Traceback" not in p.stderr + p.stdout, show(p)
    # a worker's log lines may come first ("started"); the error is one line
    lines = [ln for ln in without_header(p.stderr.strip().splitlines())
             if " dealertui worker[" not in ln]
    assert len(lines) == 1, show(p)
    for needle in needles:
        assert needle in lines[0], show(p)
    return lines[0]


def reads_work(place: Place, url: str) -> None:
    for args in READS:
        p = place.cli(url, *args)
        assert p.returncode == 0 and "Traceback" not in p.stderr, show(p)
        if args[0] == "status":
            assert json.loads(p.stdout)["total"] == 8, show(p)


def health_refuses_writes(place: Place, url: str, *needles: str) -> None:
    p = place.cli(url, "health", "--json")
    assert p.returncode == 1 and "Traceback" not in p.stderr, show(p)
    database = json.loads(p.stdout)["checks"][0]
    assert database["name"] == "database" and not database["ok"], show(p)
    for needle in needles:
        assert needle in database["detail"], show(p)


# -- SQLite ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["dir", "file"])
def test_read_commands_work_on_a_sqlite_file_the_user_cannot_write(place: Place,
                                                                   what: str) -> None:
    place.seed()
    place.lock(what)
    before = place.db.read_bytes()
    reads_work(place, place.url)
    health_refuses_writes(place, place.url, "read-only for this user")
    assert place.listing() == ["q.db"]  # no -wal or -shm left behind
    assert place.db.read_bytes() == before


@pytest.mark.parametrize("what", ["dir", "file"])
def test_every_writer_exits_3_on_a_sqlite_file_the_user_cannot_write(place: Place,
                                                                    what: str) -> None:
    place.seed()
    place.lock(what)
    before = place.db.read_bytes()
    for args in WRITES:  # the worker spun at 40% CPU here, for ever, without a word
        one_sentence(place.cli(place.url, *args), 3, "cannot write the database",
                     str(place.db), "read-only for this user")
    assert place.listing() == ["q.db"]
    assert place.db.read_bytes() == before


def _leave_wal(db: Path) -> None:
    """An owner's process that died with committed changes still in the -wal."""
    code = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('PRAGMA wal_autocheckpoint=0'); "
            "c.execute(\"INSERT INTO meta VALUES ('left', 'in the wal')\"); c.commit(); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    assert (db.parent / "q.db-wal").stat().st_size > 0


def test_a_wal_left_behind_is_read_through_its_shm_or_the_sentence_says_what_to_do(
        place: Place) -> None:
    place.seed()
    _leave_wal(place.db)
    for f in place.data.iterdir():
        f.chmod(0o644)
    place.lock("dir")
    reads_work(place, place.url)  # -wal and -shm readable: mode=ro reads both
    (place.data / "q.db-shm").unlink()
    one_sentence(place.cli(place.url, "status"), 3, "q.db-wal", "ask its owner",
                 "'dealertui status'")
    assert place.listing() == ["q.db", "q.db-wal"]
    p = place.cli(place.url, "status", reader=False)  # what the sentence tells the owner
    assert p.returncode == 0, show(p)
    assert place.listing() == ["q.db"]
    reads_work(place, place.url)


def test_the_read_only_console_opens_a_sqlite_file_the_user_cannot_write(place: Place) -> None:
    place.seed()
    place.lock("dir")
    script = (
        "import anyio, sys\n"
        "from dealertui.config import load_config\n"
        "from dealertui.tui.app import make_app\n"
        "async def main():\n"
        "    app = make_app(load_config(None, database_url=sys.argv[1]), read_only=True)\n"
        "    async with app.run_test(size=(100, 30)) as pilot:\n"
        "        await pilot.pause(0.5)\n"
        "        print(app.startup_error or 'opened', len(app.store and await"
        " app.store.list_jobs() or []))\n"
        "anyio.run(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env.update(HOME=str(place.base), XDG_CONFIG_HOME=str(place.base / "xdg"))
    p = subprocess.run([*place.prefix, sys.executable, "-c", script, place.url],
                       cwd=place.base, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT_S, check=False)
    assert p.returncode == 0 and p.stdout.split() == ["opened", "8"], show(p)
    assert place.listing() == ["q.db"]


def _damage_jobs_table(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    finally:
        conn.close()
    with db.open("r+b") as f:  # the file header and the schema pages stay intact
        f.seek((root - 1) * page_size + 8)
        f.write(os.urandom(page_size - 16))


@pytest.mark.parametrize("damage", ["pages", "random", "truncated"])
def test_a_damaged_sqlite_file_is_exit_3_with_one_sentence(place: Place, damage: str) -> None:
    place.seed()
    if damage == "pages":
        _damage_jobs_table(place.db)
    elif damage == "random":
        place.db.write_bytes(os.urandom(64 * 1024))
    else:
        place.db.write_bytes(place.db.read_bytes()[:5000])
    for args in [("status",), ("--run-once",), ("health",), ("worker",)]:
        line = one_sentence(place.cli(place.url, *args, reader=False), 3, str(place.db))
        if damage == "pages":
            assert "damaged" in line and "backup" in line


# -- Postgres -------------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server: object) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    url: str = postgres_server.create_database(name)  # type: ignore[attr-defined]
    try:
        yield url
    finally:
        postgres_server.drop_database(name)  # type: ignore[attr-defined]


def _role(url: str, kind: str) -> str:
    """A login role on *url*'s database that can only read: SELECT privilege only, or every
    privilege but read-only sessions. Returns its URL."""
    role = f"r_{uuid.uuid4().hex[:12]}"
    u = make_url(url)
    admin = u.set(drivername="postgresql").render_as_string(hide_password=False)
    sql = [f"CREATE ROLE {role} LOGIN", f"GRANT USAGE ON SCHEMA public TO {role}"]
    if kind == "select-only":
        sql.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    else:
        sql += [f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
                f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
                f"ALTER ROLE {role} SET default_transaction_read_only = on"]
    _run_async(_execute(admin, "; ".join(sql)))
    return u.set(username=role).render_as_string(hide_password=False)


@pytest.mark.parametrize("kind", ["select-only", "read-only-sessions"])
def test_a_postgres_role_that_cannot_write(place: Place, pg_url: str, kind: str) -> None:
    place.seed(pg_url)
    url = _role(pg_url, kind)
    reads_work(place, url)
    health_refuses_writes(place, url, "cannot use the database")
    for args in WRITES:
        one_sentence(place.cli(url, *args), 3, "cannot use the database")
    assert json.loads(place.cli(pg_url, "status", "--json").stdout)["by_state"]["ready"] == 2


def test_healths_write_is_rolled_back(place: Place) -> None:
    place.seed()

    def dump() -> list[str]:
        conn = sqlite3.connect(place.db)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    before = dump()
    p = place.cli(place.url, "health", "--json", reader=False)
    database = json.loads(p.stdout)["checks"][0]
    assert database["ok"] and "a write (rolled back) succeeded" in database["detail"], show(p)
    assert dump() == before


def test_a_worker_pauses_and_says_so_on_a_fault_that_is_not_retried(place: Place) -> None:
    """A fault that is neither transient nor lasting (here a table gone under the worker):
    the worker logs it and pauses before trying again. It took Database.answering (no
    retried call was failing) for "the outage is over" and tried again at once, silently."""
    import queue
    import signal
    import threading

    place.seed()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env.update(HOME=str(place.base), XDG_CONFIG_HOME=str(place.base / "xdg"),
               DEALERTUI_CONFIG=str(place.config))
    worker = subprocess.Popen(
        [sys.executable, "-m", "dealertui", "--database-url", place.url, "worker"],
        cwd=place.base, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in worker.stderr or ()],
                              daemon=True)
    reader.start()

    def wait_for(needle: str) -> str:
        while True:
            try:
                line = lines.get(timeout=TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"no {needle!r} from the worker; it said {seen}") from None
            seen.append(line)
            if needle in line:
                return line

    try:
        wait_for(" started: ")
        conn = sqlite3.connect(place.db, timeout=30)
        conn.execute("ALTER TABLE jobs RENAME TO jobs_away")
        conn.commit()
        assert "no such table" in wait_for("Retrying in")
        conn.execute("ALTER TABLE jobs_away RENAME TO jobs")
        conn.commit()
        conn.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=TIMEOUT_S) == 0, seen
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        reader.join(TIMEOUT_S)
        if worker.stderr is not None:
            worker.stderr.close()


def test_a_config_directory_the_user_cannot_enter_is_one_sentence(place: Place) -> None:
    """HOME=/root for another user: looking for ~/.config/dealertui/config.toml raised
    PermissionError, a traceback, from every command."""
    place.seed()
    private = place.base / "private"
    (private / "dealertui").mkdir(parents=True)
    (private / "dealertui" / "config.toml").write_text("", encoding="utf-8")
    private.chmod(0o700 if os.getuid() == 0 else 0o000)
    try:
        p = place.cli(place.url, "status", env_extra={"XDG_CONFIG_HOME": str(private),
                                                      "DEALERTUI_CONFIG": ""})
    finally:
        private.chmod(0o755)
    one_sentence(p, 2, "permission denied", "--config")
