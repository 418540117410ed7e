"""Retention from the command line: [retention] errors, `prune` (dry run, audit, --vacuum),
`--run-once` pruning on its own, `health --detailed`'s storage facts, and a SQLite file that
stops growing when history comes and goes at the same rate."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import Clock, one_error, run_cli, show
from jobstates import opened, run_everything
from sqlalchemy import text
from test_reads_write_nothing import files, rows

from dealertui.config import RetentionConfig
from dealertui.engine.pruning import limits
from dealertui.store.retention import Pruner

CONFIG = """\
[[dealers]]
id = "d001"
[[dealers]]
id = "d002"
[job_types.homenet]
priority = 1
handler = {{ exec = ["true"] }}
[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = {{ exec = ["true"] }}
[retention]
{retention}
"""
DAY = 86400.0


def setup(tmp_path: Path, retention: str = "") -> None:
    (tmp_path / "dealertui.toml").write_text(CONFIG.format(retention=retention),
                                             encoding="utf-8")


def ok(p: Any) -> str:
    assert p.returncode == 0 and "Traceback" not in p.stderr, show(p)
    return str(p.stdout)


def history(tmp_path: Path, url: str, runs: int = 2) -> None:
    """*runs* pipelines per dealer, each run: all but the last are prunable at once."""
    for _ in range(runs):
        ok(run_cli(tmp_path, "--database-url", url, "enqueue", "--all-dealers",
                   "--allow-duplicate"))
        ok(run_cli(tmp_path, "--database-url", url, "--run-once"))


@pytest.mark.parametrize("line,shown", [
    ('failed = "30 days"', 'retention.failed must be a duration such as "7d"'),
    ("succeeded = 7", "not 7"),
    ('audit = "0s"', 'retention.audit must be longer than 0s (or "off"), not "0s"'),
    ('blocked = "1d"', "unknown key 'retention.blocked'"),
])
def test_a_bad_retention_value_is_one_sentence_and_exit_2(tmp_path: Path, line: str,
                                                          shown: str) -> None:
    setup(tmp_path, line)
    sentence = one_error(run_cli(tmp_path, "prune", "--dry-run"), 2, shown)
    assert "dealertui.toml" in sentence and "retention." in sentence
    assert not any(p.name.endswith(".db") for p in tmp_path.iterdir())


def test_off_keeps_a_state_for_ever_and_durations_take_units(tmp_path: Path) -> None:
    from dealertui.config import load_config

    setup(tmp_path, 'succeeded = "off"\nfailed = "12h"\ncancelled = "90s"\nskipped = "15m"')
    cfg = load_config(tmp_path / "dealertui.toml", env={}, cwd=tmp_path).retention
    assert [cfg.limit_s(s) for s in ("succeeded", "failed", "cancelled", "skipped")] == [
        None, 43200.0, 90.0, 900.0]
    assert cfg.audit_s == 90 * DAY
    assert RetentionConfig().limit_s("failed") == 30 * DAY


def test_prune_dry_run_says_what_would_go_and_writes_nothing(db_url: str,
                                                             tmp_path: Path) -> None:
    setup(tmp_path)
    history(tmp_path, db_url)
    sqlite = db_url.startswith("sqlite")
    before, before_files = rows(db_url), files(tmp_path) if sqlite else {}
    out = ok(run_cli(tmp_path, "--database-url", db_url, "prune", "--dry-run",
                     "--older-than", "0s", "--json"))
    assert json.loads(out)["pipelines"]["succeeded"] == 2
    assert rows(db_url) == before
    assert not sqlite or files(tmp_path) == before_files
    text_out = ok(run_cli(tmp_path, "--database-url", db_url, "prune", "--dry-run",
                          "--older-than", "0s"))
    assert text_out.startswith("would delete 2 pipelines (4 jobs, ")
    assert rows(db_url) == before


def test_prune_deletes_per_state_and_is_audited(db_url: str, tmp_path: Path) -> None:
    setup(tmp_path)
    history(tmp_path, db_url, runs=3)
    out = json.loads(ok(run_cli(tmp_path, "--database-url", db_url, "prune",
                                "--older-than", "0s", "--json")))
    assert (out["pipelines"]["succeeded"], out["jobs"]["succeeded"]) == (4, 8)
    assert out["dry_run"] is False and out["rows"] > 12
    audit = json.loads(ok(run_cli(tmp_path, "--database-url", db_url, "audit", "--json")))
    assert audit[0]["action"] == "prune" and audit[0]["count"] == 8
    assert "4 pipelines" in audit[0]["target"]
    ok(run_cli(tmp_path, "--database-url", db_url, "prune", "--dry-run"))
    again = json.loads(ok(run_cli(tmp_path, "--database-url", db_url, "audit", "--json")))
    assert len(again) == len(audit)  # a dry run is not audited
    left = rows(db_url)
    assert len(left["pipelines"]) == 2 and len(left["jobs"]) == 4  # each dealer's newest


def test_run_once_prunes_what_is_past_the_configs_limit(db_url: str, tmp_path: Path) -> None:
    setup(tmp_path, 'succeeded = "1d"')
    history(tmp_path, db_url)

    async def age() -> None:  # the first pipelines finished two days ago
        async with opened(db_url, dealers=()) as store, store.db.engine.begin() as conn:
            first = "(SELECT min(id) FROM pipelines GROUP BY dealer_id)"
            await conn.execute(text(
                "UPDATE jobs SET finished_at = finished_at - :d, updated_at = updated_at - :d "
                f"WHERE pipeline_id IN {first}"), {"d": 2 * DAY})
            # the earlier runs' passes settled them: the mark moves back with them
            await conn.execute(text(
                f"UPDATE pipelines SET settled_at = settled_at - :d WHERE id IN {first}"),
                {"d": 2 * DAY})

    anyio.run(age)
    p = run_cli(tmp_path, "--database-url", db_url, "--run-once")
    assert p.returncode == 0, show(p)
    assert "pruned   2 pipelines (4 jobs, " in p.stderr and ": 2 succeeded" in p.stderr
    assert len(rows(db_url)["pipelines"]) == 2


def test_health_detailed_reports_size_rows_and_the_oldest_finished_job(
        db_url: str, tmp_path: Path) -> None:
    setup(tmp_path)
    history(tmp_path, db_url)
    if not db_url.startswith("sqlite"):
        async def analyse() -> None:  # Postgres's estimates come from ANALYZE
            async with opened(db_url, dealers=()) as store, store.db.engine.begin() as conn:
                await conn.execute(text("ANALYZE"))

        anyio.run(analyse)
    p = run_cli(tmp_path, "--database-url", db_url, "health", "--detailed", "--json")
    assert p.returncode in (0, 1), show(p)
    storage = json.loads(p.stdout)["storage"]
    assert storage["size_bytes"] > 0
    assert storage["rows"]["jobs"] == 8 and storage["rows"]["pipelines"] == 4
    assert storage["rows_exact"] is db_url.startswith("sqlite")
    oldest = storage["oldest_finished_job"]
    assert (oldest["id"], oldest["state"]) == (1, "succeeded")
    if db_url.startswith("sqlite"):
        assert storage["auto_vacuum"] == "incremental"  # a new file
        path = tmp_path / "t.db"
        assert storage["size_bytes"] == sum(
            os.path.getsize(f) for f in (path, Path(f"{path}-wal")) if f.exists())
    shown = run_cli(tmp_path, "--database-url", db_url, "health", "--detailed").stdout
    assert "database size: " in shown and "oldest finished job: #1 d001 homenet" in shown
    assert ("rows per table (exact): " if db_url.startswith("sqlite")
            else "rows per table (about): ") in shown


def test_prune_vacuum_turns_incremental_auto_vacuum_on_for_an_old_file(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    setup(tmp_path)
    history(tmp_path, url, runs=3)
    with sqlite3.connect(tmp_path / "t.db") as conn:  # as an earlier version made it
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
    conn.close()
    before = json.loads(run_cli(tmp_path, "--database-url", url, "health", "--detailed",
                                "--json").stdout)["storage"]
    assert before["auto_vacuum"] == "none"
    out = json.loads(ok(run_cli(tmp_path, "--database-url", url, "prune", "--older-than",
                                "0s", "--vacuum", "--json")))
    assert out["pipelines"]["succeeded"] == 4 and out["vacuumed"]["after_bytes"] > 0
    after = json.loads(run_cli(tmp_path, "--database-url", url, "health", "--detailed",
                               "--json").stdout)["storage"]
    assert (after["auto_vacuum"], after["free_pages"]) == ("incremental", 0)
    assert "no dry run" in one_error(run_cli(tmp_path, "--database-url", url, "prune",
                                             "--vacuum", "--dry-run"), 2)


def _size(path: Path) -> int:
    return sum(os.path.getsize(f) for f in (path, Path(f"{path}-wal")) if f.exists())


async def _cycles(url: str, path: Path, n: int, prune: bool) -> list[int]:
    """*n* days of 40 dealers' pipelines, run, a day passing and (with *prune*) the engines'
    pass with its vacuum; the file's size after each."""
    dealers = tuple(f"d{i:03}" for i in range(40))
    clock = Clock(1_000.0)
    sizes = []
    async with opened(url, clock=clock, dealers=dealers) as store:
        pruner = Pruner(store.db, limits(RetentionConfig(
            states=tuple((s, 3 * DAY) for s, _ in RetentionConfig().states))),
            clock=store.clock)
        for _ in range(n):
            await store.enqueue(list(dealers))
            await run_everything(store)
            clock.advance(DAY)
            if prune:
                await pruner.prune()
                await pruner.vacuum()
            sizes.append(_size(path))
    return sizes


def test_a_sqlite_file_stops_growing_when_history_goes_as_fast_as_it_comes(
        tmp_path: Path) -> None:
    pruned = anyio.run(_cycles, f"sqlite+aiosqlite:///{tmp_path}/p.db", tmp_path / "p.db",
                       40, True)
    kept = anyio.run(_cycles, f"sqlite+aiosqlite:///{tmp_path}/k.db", tmp_path / "k.db",
                     40, False)
    # without pruning the same work grows the file steadily (~50 KB a day here), so the
    # bound below can fail; with it, the file with its -wal (which SQLite keeps at ~4 MB
    # once a checkpoint has reused it) moves by a page or two
    grew = kept[-1] - kept[19]
    assert grew > 500_000, kept
    assert pruned[-1] - pruned[19] < grew / 4, pruned
    assert pruned[-1] <= 1.1 * pruned[19], pruned
