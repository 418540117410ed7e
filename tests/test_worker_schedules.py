"""Schedules fired by real engine processes: three `dealertui worker`s on one Postgres, and a
SQLite worker beside `--run-once`s started two at a time, all firing one `every = "1s"`/`"2s"`
schedule. No tick is fired twice, and each tick made one pipeline per dealer: every pipeline
of the schedule belongs to exactly one `schedule_ticks` row (the enqueue and the row share
their transaction's time), and every row has one pipeline per dealer. Then a catch-up after a
gap, and `schedules --json` and pause/resume from the CLI.

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` (see
tests/workerrig.py); the handler is "tests.fixtures.fleet:stamp".
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from workerrig import Rig, Worker, _q, assert_clean, dealers, in_thread, wait_for, write_config

from dealertui.store.engines import create_engine

pytestmark = pytest.mark.slow

TYPES = {"homenet": (1, ()), "dealer_com": (2, ("homenet",))}
DEALERS = dealers(4)


def schedule_config(tmp_path: Path, every: str, overlap: str = "queue") -> Path:
    cfg = write_config(tmp_path / "dealertui.toml", dealers=DEALERS, job_types=TYPES,
                       handler=_q("tests.fixtures.fleet:stamp"), lease_s=30)
    cfg.write_text(cfg.read_text(encoding="utf-8") + (
        f'\n[[schedules]]\nname = "fast"\nevery = "{every}"\noverlap = "{overlap}"\n'
        'payload = { full = true }\n'), encoding="utf-8")
    return cfg


def query(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        engine = create_engine(db_url, make_dirs=False)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(text(sql))]
        finally:
            await engine.dispose()

    return in_thread(lambda: asyncio.run(read()))


def check_each_tick_fired_once(db_url: str, every_s: int) -> dict[str, Any]:
    """The proof, from the database: every tick row has one pipeline per dealer, every
    pipeline of the schedule belongs to one tick row, and the totals agree. Returns the
    numbers the test reports."""
    ticks = query(db_url, "SELECT tick, fired_at, worker, pipelines, skipped "
                          "FROM schedule_ticks WHERE schedule = 'fast' ORDER BY tick")
    made = query(db_url, "SELECT dealer_id, created_at, payload FROM pipelines "
                         "WHERE schedule = 'fast'")
    assert ticks, "no tick was fired"
    assert all(t % every_s == 0 for t, *_ in ticks), ticks
    by_firing = {}
    for dealer, created_at, payload in made:
        by_firing.setdefault(created_at, []).append(dealer)
        assert json.loads(payload) == {"full": True}
    fired_at = [f for _t, f, *_ in ticks]
    assert sorted(by_firing) == sorted(fired_at), "a pipeline of no tick, or a tick twice"
    for when, dealer_ids in by_firing.items():
        assert sorted(dealer_ids) == DEALERS, (when, dealer_ids)  # one per dealer, each once
    assert [(p, s) for *_x, p, s in ticks] == [(len(DEALERS), 0)] * len(ticks)
    [(n_ticks, n_pipelines, n_skipped)] = query(
        db_url, "SELECT ticks, pipelines, skipped FROM schedules WHERE name = 'fast'")
    assert (n_ticks, n_pipelines, n_skipped) == (len(ticks), len(made), 0)
    steps = Counter((b - a) // every_s for (a, *_), (b, *_) in itertools.pairwise(ticks))
    return {"ticks": len(ticks), "pipelines": len(made),
            "per_tick": len(made) / len(ticks), "fired_by": Counter(w for _t, _f, w, *_ in ticks),
            "gaps": {k: v for k, v in steps.items() if k != 1}}


def stop(workers: list[Worker]) -> None:
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(60) == 0, w.describe()
        assert_clean(w.stderr)


def test_three_postgres_workers_fire_each_tick_once(postgres_server: Any, tmp_path: Path,
                                                    rigs: list[Rig]) -> None:
    name = f"t_{uuid.uuid4().hex}"
    db_url = postgres_server.create_database(name)
    try:
        rig = Rig(tmp_path, schedule_config(tmp_path, "2s"), db_url,
                  env={"FLEET_LOG": str(tmp_path / "fleet.log"), "FLEET_SLEEP_MS": "1,5"})
        rigs.append(rig)
        rig.cli("init-db")
        fleet = [rig.worker(name=f"w{i}") for i in range(3)]
        wait_for(lambda: len(rig.status()["workers"]) == 3, 60, "three workers", *fleet)
        time.sleep(20)  # the schedule runs on its own: ten ticks
        stop(fleet)
        numbers = check_each_tick_fired_once(db_url, 2)
        print(f"3 Postgres workers, every 2s for 20s: {numbers}")
        assert numbers["ticks"] >= 2
    finally:
        for r in rigs:
            r.close()
        postgres_server.drop_database(name)


def test_a_sqlite_worker_and_overlapping_run_onces_fire_each_tick_once(
        tmp_path: Path, rigs: list[Rig]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    rig = Rig(tmp_path, schedule_config(tmp_path, "1s"), db_url,
              env={"FLEET_LOG": str(tmp_path / "fleet.log"), "FLEET_SLEEP_MS": "1,5"})
    rigs.append(rig)
    rig.cli("init-db")
    worker = rig.worker(name="w0")
    wait_for(lambda: len(rig.status()["workers"]) == 1, 60, "the worker", worker)
    for _round in range(6):  # two cron runs at once, again and again, beside the worker
        runs = [subprocess.Popen(rig.argv("--run-once"), cwd=tmp_path, env=rig.env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in runs:
            _out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and "Traceback" not in err, err
        assert worker.alive(), worker.describe()
    stop([worker])
    numbers = check_each_tick_fired_once(db_url, 1)
    print(f"1 SQLite worker + 6 rounds of 2 overlapping --run-once, every 1s: {numbers}")


def test_a_gap_with_no_engine_is_one_catch_up_firing(tmp_path: Path, rigs: list[Rig]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    rig = Rig(tmp_path, schedule_config(tmp_path, "1s", overlap="skip"), db_url,
              env={"FLEET_LOG": str(tmp_path / "fleet.log"), "FLEET_SLEEP_MS": "1,5"})
    rigs.append(rig)
    rig.cli("init-db")
    rig.cli("--run-once")  # first sight: the tick due now is not fired
    [seen] = json.loads(rig.cli("schedules", "--json").stdout)
    assert seen["ticks"] == 0 and seen["last_tick"] is None and seen["first_seen_at"]
    wait_for(lambda: time.time() > seen["first_seen_at"] + 4, 10, "four missed ticks")
    rig.cli("--run-once")
    [after] = json.loads(rig.cli("schedules", "--json").stdout)
    assert (after["ticks"], after["pipelines"], after["skipped"]) == (1, len(DEALERS), 0)
    assert after["last_tick"] >= seen["first_seen_at"] + 3
    print(f"catch-up: {after['last_tick'] - int(seen['first_seen_at'])} ticks missed, "
          f"{after['ticks']} fired")


def test_pause_and_resume_of_a_schedule_are_audited_and_shared(
        tmp_path: Path, rigs: list[Rig]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    rig = Rig(tmp_path, schedule_config(tmp_path, "1s"), db_url,
              env={"FLEET_LOG": str(tmp_path / "fleet.log"), "FLEET_SLEEP_MS": "1,5"})
    rigs.append(rig)
    rig.cli("init-db")
    rig.cli("pause", "--schedule", "fast", "--reason", "feed maintenance")
    worker = rig.worker(name="w0")
    wait_for(lambda: len(rig.status()["workers"]) == 1, 60, "the worker", worker)

    def info() -> dict[str, Any]:
        [one] = json.loads(rig.cli("schedules", "--json").stdout)
        return dict(one)

    # the worker sees the schedule, and fires nothing while it is paused
    wait_for(lambda: info()["first_seen_at"] is not None, 30, "the schedule seen", worker)
    seen_at = time.time()
    wait_for(lambda: time.time() > seen_at + 3, 10, "three ticks")
    paused = info()
    assert paused["paused"] and paused["ticks"] == 0, paused
    assert "PAUSED" in rig.cli("schedules").stdout
    assert rig.status()["paused"]["schedules"] == ["fast"]
    said = rig.cli("resume", "--schedule", "fast").stdout
    assert "resumed schedule fast" in said
    wait_for(lambda: info()["ticks"] >= 2, 30, "ticks after the resume", worker)
    stop([worker])
    entries = json.loads(rig.cli("audit", "--json").stdout)
    assert [(e["action"], e["target"], e["reason"]) for e in entries
            if e["action"] in ("pause", "resume")] == [
        ("resume", "schedule fast", None), ("pause", "schedule fast", "feed maintenance")]
    # what was missed while paused was dropped: the first firing is after the resume
    [(first,)] = query(db_url, "SELECT min(fired_at) FROM schedule_ticks")
    [(resumed_at,)] = query(db_url, "SELECT at FROM audit_log WHERE action = 'resume'")
    [(first_tick,)] = query(db_url, "SELECT min(tick) FROM schedule_ticks")
    assert first >= resumed_at and first_tick > resumed_at - 1


def test_schedule_cli_errors_are_one_sentence(tmp_path: Path, rigs: list[Rig]) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    rig = Rig(tmp_path, schedule_config(tmp_path, "1s"), db_url)
    for args, needle in ((["pause", "--schedule", "slow"], "unknown schedule 'slow' (known: fast)"),
                         (["pause", "--schedule", "fast", "--dealer", "d000"],
                          "without --dealer")):
        p = subprocess.run(rig.argv(*args), cwd=tmp_path, env=rig.env, capture_output=True,
                           text=True, timeout=60, check=False)
        assert p.returncode == 2 and needle in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "t.db").exists()  # refused before the database was opened
