"""The CLI on unusable databases, one sentence each: unreachable Postgres, a database holding
another application's jobs table (left alone), a Postgres that refuses us, an unwritable
SQLite file. Config-file errors are covered by tests/test_config_errors.py, not here.

`dealertui.cli.main` runs in-process, each call with the test's environment minus every
``DEALERTUI_*`` variable, XDG directories inside ``tmp_path`` and ``cwd=tmp_path``
(tests/helpers.py), so no stray config file or database URL is picked up. Every
database-backed test runs on SQLite and on Postgres (``db_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from clirun import ok, run
from helpers import one_error, show, write_demo_config

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
