"""`dealertui worker` when its database goes away: Postgres stopped and started again under a
running worker (and a worker stopped during the outage exits within its grace); SQLite
write-locked by another process for longer than busy_timeout. The worker rides both out and
finishes.

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` (see
tests/workerrig.py). Exec jobs run tests/fixtures/stamp.py, which appends ``start``/``end``
lines to a log; an ``end`` line is a completed run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerrig import (
    ONE_TYPE,
    PIPELINE,
    Rig,
    assert_clean,
    check_dependency_order,
    dealers,
    open_runs,
    read_stamps,
    stamp_handler,
    wait_for,
    write_config,
)

try:  # tests/ is on sys.path under pytest's default "prepend" import mode
    from pg import PostgresServer, find_pg_bin
except ImportError:  # tests/ made a package, or --import-mode=importlib
    from tests.pg import PostgresServer, find_pg_bin

pytestmark = pytest.mark.slow


# -- 4. Postgres goes away and comes back ---------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A private server this test may stop and start without disturbing the others."""
    if os.environ.get("DEALERTUI_TEST_POSTGRES_URL") or find_pg_bin() is None:
        pytest.skip("needs PostgreSQL server binaries to start a server it may stop")
    server = PostgresServer(settings={"synchronous_commit": "on"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("outage_s", [3, 35], ids=["short", "long"])
def test_worker_survives_postgres_restart(outage_s: float, own_postgres: PostgresServer,
                                          tmp_path: Path, rigs: list[Rig]) -> None:
    """short: inside the store's 30 s retry budget, the store calls wait it out (the log says
    the database is gone and, later, back). long: past it, run() ends with StoreUnavailable
    and the worker's reconnect loop logs the outage and starts over; the outcomes it could
    not record are recorded then, so no job that ended runs again and none is charged an
    attempt for the outage (they used to come back as "lease expired", charged)."""
    db_url = own_postgres.create_database("outage")
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(10), job_types=PIPELINE,
                       handler=stamp_handler(log, 0.2), max_dealers=2, per_dealer=2,
                       lease_s=10)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    w = rig.worker()
    wait_for(lambda: Counter(s.word for s in read_stamps(log))["end"] >= 8, 60,
             "8 jobs to end", w)
    own_postgres.stop_server_only("fast")
    deadline = time.monotonic() + outage_s
    while time.monotonic() < deadline:
        assert w.alive(), "the worker died while the database was down\n" + w.describe()
        time.sleep(0.5)
    own_postgres.start_server_only()
    status = rig.wait_done(90, w)
    assert w.alive(), w.describe()
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.describe()

    err = w.stderr
    assert_clean(err, "ExceptionGroup")
    assert status["by_state"]["succeeded"] == status["total"] == 40, status
    stamps = read_stamps(log)
    ends = Counter(s.job_id for s in stamps if s.word == "end")
    assert len(ends) == 40, ends
    check_dependency_order(stamps, PIPELINE)
    assert set(ends.values()) == {1}, ends  # a job that ended never runs again
    attempts = Counter(j.attempts for j in rig.jobs())
    assert attempts == {1: 40}, attempts  # the outage cost no job an attempt
    # either way the operator learns that the database went away, that the worker retries,
    # and when it came back (a short outage used to pass in silence)
    lines = [ln for ln in err.splitlines() if "cannot use the database" in ln]
    assert lines and "Retrying" in lines[0], f"no line about the outage\n{err}"
    back = [ln for ln in err.splitlines() if "answers again" in ln]
    assert back, f"no line about the database coming back\n{err}"


def test_a_worker_stopped_during_an_outage_exits_within_its_grace_and_hard_stop(
    own_postgres: PostgresServer, tmp_path: Path, rigs: list[Rig]
) -> None:
    # the calls in flight kept retrying their whole budget (30 s, then 30 s to unregister):
    # ~58 s to exit whatever --grace said, past systemd's and Kubernetes' stop timeouts
    db_url = own_postgres.create_database("stopout")
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(4), job_types=ONE_TYPE,
                       handler=stamp_handler(log, 20.0), max_dealers=4, per_dealer=1,
                       lease_s=60)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    w = rig.worker("--grace", "2s")
    wait_for(lambda: len(open_runs(read_stamps(log))) == 4, 60, "4 running jobs", w)
    own_postgres.stop_server_only("fast")
    try:
        time.sleep(1.0)
        t_signal = time.monotonic()
        w.signal(signal.SIGTERM)
        assert w.wait(45) == 0, w.describe()
        elapsed = time.monotonic() - t_signal
        # grace 2 s, then HARD_STOP_S (5 s) for the releases, then 2 s per last call
        assert elapsed < 25, f"{elapsed:.1f}s to exit\n{w.describe()}"
        assert_clean(w.stderr)
        assert "does not answer" in w.stderr, w.describe()
    finally:
        own_postgres.start_server_only()


# -- 5. SQLite write-locked by someone else -------------------------------------------------------

LOCKER = """\
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
conn.close()
"""


def test_sqlite_write_lock_longer_than_busy_timeout(tmp_path: Path, rigs: list[Rig]) -> None:
    db = tmp_path / "t.db"
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(10), job_types=PIPELINE,
                       handler=stamp_handler(log, 0.2), max_dealers=2, per_dealer=2,
                       lease_s=30)
    rig = Rig(tmp_path, cfg, f"sqlite+aiosqlite:///{db}")
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    w = rig.worker()
    wait_for(lambda: Counter(s.word for s in read_stamps(log))["end"] >= 6, 60,
             "6 jobs to end", w)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "7"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked", locker.stderr
        t_locked = time.time()
        out, err = locker.communicate(timeout=30)
        t_unlocked = time.time()
        assert locker.returncode == 0, err
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.communicate()
    assert w.alive(), w.describe()
    assert t_unlocked - t_locked >= 6.5
    status = rig.wait_done(90, w)
    assert w.alive(), w.describe()
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.describe()
    assert_clean(w.stderr, "database is locked", "SQLITE_BUSY")
    assert status["by_state"]["succeeded"] == status["total"] == 40, status
    stamps = read_stamps(log)
    # work went on after the lock was released
    assert [s for s in stamps if s.word == "end" and s.t > t_unlocked]
    ends = Counter(s.job_id for s in stamps if s.word == "end")
    assert len(ends) == 40 and set(ends.values()) == {1}, ends
