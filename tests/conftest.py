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

import pytest

try:  # tests/ is on sys.path under pytest's default "prepend" import mode
    from pg import ExternalPostgres, PostgresServer, find_pg_bin
except ImportError:  # tests/ made a package, or --import-mode=importlib
    from tests.pg import ExternalPostgres, PostgresServer, find_pg_bin


ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def postgres_url(postgres_server: ExternalPostgres | PostgresServer) -> Iterator[str]:
    """SQLAlchemy async URL of an empty database on the session's Postgres, dropped after."""
    name = f"t_{uuid.uuid4().hex}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
