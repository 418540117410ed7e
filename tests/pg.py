"""Throwaway PostgreSQL servers for the test suite.

``PostgresServer`` initialises a private cluster in a temporary directory,
starts it on a free 127.0.0.1 port with durability switched off (tests only)
and removes everything again on ``stop()``.  Postgres refuses to run as root,
so when the suite runs as root the server binaries are run as the
``postgres`` OS user (``runuser -u postgres --``) in a directory owned by it.

``ExternalPostgres`` wraps an already running server given by URL (the
``DEALERTUI_TEST_POSTGRES_URL`` environment variable) with the same
``url`` / ``create_database`` / ``drop_database`` interface.

Nothing here imports pytest; the fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

PG_USER = "postgres"

# Test-only settings: no durability, room for many pooled connections.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}


def _version_key(bin_dir: str) -> tuple[int, ...]:
    version = Path(bin_dir).parent.name  # /usr/lib/postgresql/<version>/bin
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``, or None if not installed.

    Looks on PATH first, then in Debian's ``/usr/lib/postgresql/<ver>/bin``
    (highest version wins; Debian does not put initdb on PATH).
    """
    initdb = shutil.which("initdb")
    if initdb:
        bin_dir = Path(initdb).resolve().parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        bin_dir = Path(candidate)
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion, even if called from inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg  # imported lazily so collection works without it

    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class _DatabaseFactory:
    """Create/drop databases on the server at ``self.url``."""

    url: str

    def _admin_dsn(self) -> str:
        # asyncpg wants a plain postgresql:// DSN, not the SQLAlchemy dialect+driver form.
        return make_url(self.url).set(drivername="postgresql").render_as_string(
            hide_password=False
        )

    def url_for(self, name: str) -> str:
        """SQLAlchemy (asyncpg) URL for database ``name`` on this server."""
        url: URL = make_url(self.url).set(drivername="postgresql+asyncpg", database=name)
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex}"
        _run_async(_execute(self._admin_dsn(), f'CREATE DATABASE "{name}"'))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting any leftover sessions."""
        _run_async(_execute(self._admin_dsn(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ExternalPostgres(_DatabaseFactory):
    """A server we did not start (e.g. a CI service container). Cannot be restarted."""

    managed = False

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if not parsed.database:
            parsed = parsed.set(database="postgres")
        self.url = parsed.set(drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )

    def start(self) -> None:  # symmetry with PostgresServer
        pass

    def stop(self) -> None:
        pass


class PostgresServer(_DatabaseFactory):
    """A private, throwaway PostgreSQL cluster.

    ``start()`` / ``stop()`` manage the whole lifecycle (stop removes the data
    directory).  ``stop_server_only()`` / ``start_server_only()`` / ``restart()``
    stop and start the server process while keeping data and port, for tests
    that need Postgres to go away mid-run.

    Default stop mode is ``"fast"``: every client connection is terminated
    (clients see the server vanish) but committed data is flushed.
    ``"immediate"`` is a real crash (SIGQUIT, crash recovery on next start),
    and because the server runs with ``synchronous_commit=off`` it can LOSE
    transactions committed in the last few hundred ms.  Pass
    ``settings={"synchronous_commit": "on"}`` if a test needs both.
    """

    managed = True

    def __init__(self, bin_dir: Path | None = None, settings: dict[str, str] | None = None) -> None:
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        found = bin_dir or find_pg_bin()
        if found is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb/pg_ctl) found")
        self.bin_dir = Path(found)
        self.as_root = os.geteuid() == 0
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.running = False

    # -- paths / url ---------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not initialised"
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "server not initialised"
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:  # type: ignore[override]
        if self.port is None:
            raise RuntimeError("server not started")
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    # -- process helpers -----------------------------------------------------

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        if self.as_root:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root but `runuser` is not installed (util-linux)")
            cmd = [runuser, "-u", PG_USER, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # cwd must be readable by the postgres user, otherwise initdb/pg_ctl
        # fail with "could not identify current directory" under runuser.
        env = {**os.environ, "LC_ALL": "C"}
        env.pop("PGDATA", None)
        proc = subprocess.run(
            self._cmd(tool, *args),
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "--- postgres log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _server_options(self) -> str:
        assert self.base_dir is not None and self.port is not None
        settings = {**self.settings, "unix_socket_directories": str(self.base_dir)}
        opts = [f"-p {self.port}"] + [f"-c {key}={value}" for key, value in settings.items()]
        return " ".join(opts)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """initdb a fresh cluster in a temp dir and start it on a free port."""
        if self.base_dir is not None:
            raise RuntimeError("server already started")
        # /tmp rather than $TMPDIR: the postgres user must be able to reach it
        # and the unix socket path must stay short (< 108 bytes).
        tmp_root = "/tmp" if os.path.isdir("/tmp") else None
        self.base_dir = Path(tempfile.mkdtemp(prefix="dealertui-pg-", dir=tmp_root))
        atexit.register(self.stop)
        try:
            if self.as_root:
                try:
                    pw = pwd.getpwnam(PG_USER)
                except KeyError:
                    raise RuntimeError(
                        f"running as root but there is no {PG_USER!r} OS user to run Postgres as"
                    ) from None
                os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
            self.base_dir.chmod(0o700)
            self._run(
                "initdb",
                "-D", str(self.data_dir),
                "-A", "trust",
                "-U", PG_USER,
                "--no-sync",
                "-E", "UTF8",
                "--locale=C",
                "--no-instructions",
            )
            for attempt in range(3):
                self.port = _free_port()
                try:
                    self.start_server_only()
                    break
                except RuntimeError:
                    # port race with another process: try a different one
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise

    def start_server_only(self) -> None:
        """(Re)start the server process on the existing data dir and port."""
        if self.running:
            return
        self._run(
            "pg_ctl",
            "-D", str(self.data_dir),
            "-w", "-t", "60",
            "-l", str(self.log_file),
            "-o", self._server_options(),
            "start",
        )
        self.running = True

    def stop_server_only(self, mode: str = "fast") -> None:
        """Stop the server process but keep data dir and port (mode: smart/fast/immediate)."""
        if not self.running:
            return
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop_server_only(mode)
        self.start_server_only()

    def stop(self) -> None:
        """Stop the server (immediately) and delete its directory. Idempotent."""
        if self.base_dir is None:
            return
        try:
            if self.running or (self.data_dir / "postmaster.pid").exists():
                self.running = True
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop",
                    check=False,
                )
                self.running = False
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
            self.port = None
            atexit.unregister(self.stop)
