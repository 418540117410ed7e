"""Shared fixtures: every store test runs on SQLite and on a real Postgres.

Postgres comes from ``DEALERTUI_TEST_POSTGRES_URL`` if set, otherwise the
suite starts a throwaway server itself (see ``tests/pg.py``).  With ``CI`` set
a missing Postgres fails the run; locally it is skipped with a reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

try:  # tests/ is on sys.path under pytest's default "prepend" import mode
    from pg import ExternalPostgres, PostgresServer, find_pg_bin
except ImportError:  # tests/ made a package, or --import-mode=importlib
    from tests.pg import ExternalPostgres, PostgresServer, find_pg_bin

if TYPE_CHECKING:
    from clirun import Cli
    from workerrig import Rig


ROOT = Path(__file__).resolve().parents[1]

#: tests that race real processes, terminals or throughput against a deadline: beside three
#: other xdist workers on a loaded two-core machine they missed it, so they carry the `serial`
#: marker and .ci/run runs them after the rest, in one process (`-m serial -n 0`)
SERIAL = (
    "tests/test_demo.py::test_demo_quits_and_leaves_no_database_or_process_behind",
    "tests/test_fencing.py::test_cancel_and_retry_of_a_running_job_in_the_same_worker",
    "tests/test_fencing.py::test_reset_stuck_of_a_stopped_worker_then_sigcont",
    "tests/test_worker_signals.py::test_kill9_of_a_worker_kills_its_handlers_whole_process_groups",
    "tests/test_console_refresh.py::test_load_1000_dealers_keeps_working_and_never_rebuilds_the_lanes",
    "tests/test_console_edge_cases.py::test_keys_without_a_dealer_say_why_they_do_nothing",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def repo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository root on sys.path, so a config's `handler = "tests.fixtures.handlers:…"`
    imports however pytest was started."""
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the store is asyncio-only (SQLAlchemy asyncio + asyncpg/aiosqlite)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ExternalPostgres | PostgresServer]:
    """The Postgres server for this test session (``.url``, ``.create_database()``)."""
    external = os.environ.get("DEALERTUI_TEST_POSTGRES_URL")
    if external:
        yield ExternalPostgres(external)
        return

    bin_dir = find_pg_bin()
    if bin_dir is None:
        reason = (
            "no PostgreSQL server binaries (initdb/pg_ctl) found; "
            "install postgresql to run the Postgres half of the suite"
        )
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set: {reason}", pytrace=False)
        pytest.skip(reason)

    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """SQLAlchemy async URL of an empty database; ``db_url.startswith("postgresql")``
    tells the backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/t.db"
        return

    yield request.getfixturevalue("postgres_url")


#: the console tests' SQLite database (tests/test_console_*.py; a fixture, so it lives here)
@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/console.db"


#: the worker processes a test started (tests/workerrig.py), closed after it; a fixture of the
#: worker fault tests and test_fencing, so it lives here
@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


#: the CLI contract tests' caller bound to one directory and database (tests/clirun.py); a
#: fixture of several tests/test_cli_*.py, so it lives here
@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    from clirun import Cli  # only the CLI tests need it

    return Cli(tmp_path, db_url)


#: the config tests' environment (tests/test_config_*.py, test_database_url.py); a fixture
#: several files use, so it lives here
@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment without DEALERTUI_* whose user config directory is empty."""
    (tmp_path / "xdg").mkdir()
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def postgres_url(postgres_server: ExternalPostgres | PostgresServer) -> Iterator[str]:
    """SQLAlchemy async URL of an empty database on the session's Postgres, dropped after."""
    name = f"t_{uuid.uuid4().hex}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
