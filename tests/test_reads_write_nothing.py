"""A command that only reads writes nothing: not the config's dealers, not the schema, not the
journal mode. Proved on both backends by every table's rows before and after and, on SQLite,
by the bytes of every file beside the database.

The CLI runs in-process (a process is not the point here); the read-only console runs as a
process because it needs a terminal of its own.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select

from dealertui.cli import main
from dealertui.store.engines import create_engine
from dealertui.store.schema import metadata

CONFIG = """\
[[dealers]]
id = "d001"
[[dealers]]
id = "d002"
{extra}
[job_types.homenet]
priority = 1
handler = {{ exec = ["true"] }}
[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = {{ exec = ["false"] }}
max_attempts = 1
[[schedules]]
name = "yearly"
cron = "0 0 1 1 *"
[[schedules]]
name = "hourly"
every = "1h"
"""
#: a dealer the config gains after the database was filled: a read must not add it
NEW_DEALER = '[[dealers]]\nid = "d009"\n'

READS: list[list[str]] = [
    ["status"], ["status", "--json"], ["graph"], ["graph", "--dealer", "d001"],
    ["dealers", "list"], ["health"], ["health", "--detailed"], ["why", "--job", "2"],
    ["audit"], ["analyze-errors"], ["--run-once", "--dry-run"], ["schedules"],
    ["schedules", "--json"], ["prune", "--dry-run"],
    ["prune", "--dry-run", "--older-than", "0s", "--json"], ["health", "--detailed", "--json"],
    ["runs"], ["runs", "--json", "--limit", "1"], ["history", "--dealer", "d001"],
    ["history", "--dealer", "d001", "--json"], ["graph", "--pipeline", "1"], ["jobs"],
    ["jobs", "--dealer", "d001", "--state", "failed", "--where", "x=1", "--since", "1h",
     "--json"],
]


def run(tmp_path: Path, *args: str) -> int:
    return main(["--config", str(tmp_path / "dealertui.toml"), *args])


@pytest.fixture
def filled(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with a pipeline run (one success, one failure), a pause and an audit row, a
    schedule seen by that run and paused since."""
    for name in ("DEALERTUI_CONFIG", "DEALERTUI_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEALERTUI_DATABASE_URL", db_url)
    (tmp_path / "dealertui.toml").write_text(CONFIG.format(extra=""), encoding="utf-8")
    assert run(tmp_path, "init-db") == 0
    assert run(tmp_path, "enqueue", "--dealer", "d001") == 0
    assert run(tmp_path, "--run-once") == 1  # dealer_com fails
    assert run(tmp_path, "pause", "--dealer", "d002") == 0
    assert run(tmp_path, "pause", "--schedule", "yearly") == 0
    (tmp_path / "dealertui.toml").write_text(CONFIG.format(extra=NEW_DEALER), encoding="utf-8")
    return db_url


def rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    async def read() -> dict[str, list[tuple[object, ...]]]:
        # read-only on SQLite (immutable): reading the rows must not change the files
        engine = create_engine(url, make_dirs=False, read_only=True)
        try:
            async with engine.connect() as conn:
                return {
                    name: sorted((tuple(r) for r in await conn.execute(select(table))), key=repr)
                    for name, table in metadata.tables.items()
                }
        finally:
            await engine.dispose()

    return anyio.run(read)


def files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.name.startswith("t.db")}


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_a_read_changes_nothing(filled: str, tmp_path: Path, args: list[str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    sqlite = filled.startswith("sqlite")
    before_files = files(tmp_path) if sqlite else {}
    before = rows(filled)
    assert before["jobs"] and before["job_events"] and before["audit_log"]
    assert len(before["schedules"]) == 2
    # rows() itself must not write on SQLite: compare files again before the command runs
    assert not sqlite or files(tmp_path) == before_files
    code = run(tmp_path, *args)
    out = capsys.readouterr()
    assert code in (0, 1), out.err  # health says degraded (1) with no worker alive
    assert "Traceback" not in out.err
    if sqlite:
        assert files(tmp_path) == before_files, "a read changed the database's files"
    assert rows(filled) == before
    assert "d009" not in {r[0] for r in before["dealers"]}


def test_status_refuses_an_empty_file_and_leaves_it_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dealertui.toml").write_text(CONFIG.format(extra=""), encoding="utf-8")
    empty = tmp_path / "t.db"
    empty.touch()
    code = main(["--config", "dealertui.toml", "--database-url", "sqlite:///t.db", "status"])
    err = capsys.readouterr().err
    assert code == 3 and "no dealertui schema" in err and "t.db" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("t.db")] == ["t.db"]
    assert empty.stat().st_size == 0


def test_read_only_console_on_a_missing_database_exits_3_without_creating_it(
        tmp_path: Path) -> None:
    (tmp_path / "dealertui.toml").write_text(CONFIG.format(extra=""), encoding="utf-8")
    p = subprocess.run(
        [sys.executable, "-m", "dealertui", "--database-url", "sqlite:///t.db", "--read-only"],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert p.returncode == 3, p.stderr
    assert "does not exist" in p.stderr and "Traceback" not in p.stderr
    assert not any(p.name.startswith("t.db") for p in tmp_path.iterdir())
