"""`dealertui worker` under faults, as fleets run it: real worker processes, real signals.

- kill -9 a worker while exec jobs run, five times in a row; the next worker finishes the work:
  every job succeeds exactly once (counted in the handler's own log), nothing is stuck and no
  job starts before its parents ended;
- SIGTERM drains (running jobs finish, nothing new starts, exit 0) and a second signal stops
  at once (running jobs released as `retrying`, attempt not charged, handlers gone);
- Postgres stopped and started again under a running worker; SQLite write-locked by another
  process for longer than busy_timeout: the worker rides both out and finishes;
- 4 workers on one Postgres, 5,000 jobs over 100 dealers: no job runs twice at once and no
  dealer ever has more than `max_concurrent_jobs_per_dealer` jobs running fleet-wide.

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` with the test's
environment minus every ``DEALERTUI_*`` variable and ``PYTHONPATH`` set to the repository root
(the fleet test's handler is "tests.fixtures.fleet:stamp"). Exec jobs run tests/fixtures/stamp.py,
which appends ``start``/``end`` lines to a log; an ``end`` line is a completed run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

try:  # tests/ is on sys.path under pytest's default "prepend" import mode
    from pg import PostgresServer, find_pg_bin
except ImportError:  # tests/ made a package, or --import-mode=importlib
    from tests.pg import PostgresServer, find_pg_bin

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / "tests" / "fixtures" / "stamp.py"
PIPELINE = {  # the default job types: name -> (priority, depends_on)
    "homenet": (1, ()),
    "dealer_com": (2, ("homenet",)),
    "product_scrape": (3, ("homenet",)),
    "url_shorten": (4, ("product_scrape",)),
}
UNFINISHED = ("waiting", "ready", "running", "retrying")
T = TypeVar("T")


# -- config ---------------------------------------------------------------------------------------


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    dealers: Sequence[str],
    job_types: dict[str, tuple[int, Sequence[str]]],
    handler: str,
    lease_s: float = 2,
    max_dealers: int = 3,
    per_dealer: int = 2,
    max_attempts: int = 10,
) -> Path:
    """A config with short leases and fast retries; *handler* is a TOML inline value."""
    lines = [
        "[concurrency]",
        f"max_concurrent_dealers = {max_dealers}",
        f"max_concurrent_jobs_per_dealer = {per_dealer}",
        f"lease_s = {lease_s}",
        "",
        "[retry]",
        f"max_attempts = {max_attempts}",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 0.5",
        "backoff_jitter_s = 0",
        "",
    ]
    for name, (priority, depends_on) in job_types.items():
        lines += [
            f"[job_types.{name}]",
            f"priority = {priority}",
            f"depends_on = [{', '.join(_q(d) for d in depends_on)}]",
            f"handler = {handler}",
            "timeout_s = 120",
            "",
        ]
    for dealer in dealers:
        lines += ["[[dealers]]", f"id = {_q(dealer)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def stamp_handler(log: Path, sleep_s: float) -> str:
    argv = [sys.executable, str(STAMP), str(log), "{dealer_id}", "{job_type}", "{job_id}",
            "{attempt}", "--sleep", str(sleep_s)]
    return "{ exec = [" + ", ".join(_q(a) for a in argv) + "] }"


# -- processes ------------------------------------------------------------------------------------


def _env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "120"
    env.pop("PYTHONWARNINGS", None)
    env.update(extra or {})
    return env


class Worker:
    """One `dealertui worker` process; stdout and stderr go to files."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.name = name
        self.out_path = cwd / f"{name}.out"
        self.err_path = cwd / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s\n{self.describe()}"
            ) from None

    def describe(self) -> str:
        return f"--- {self.name} (pid {self.pid}, exit {self.proc.poll()}) stderr:\n{self.stderr}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Rig:
    """A config, a database and the processes one test starts (all reaped at the end)."""

    def __init__(self, tmp_path: Path, cfg: Path, db_url: str,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp_path
        self.cfg = cfg
        self.db_url = db_url
        self.env = _env(tmp_path, env)
        self.workers: list[Worker] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dealertui", "--config", str(self.cfg),
                "--database-url", self.db_url, *args]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout, check=False)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (
            f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        )
        return p

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def worker(self, *args: str, name: str | None = None) -> Worker:
        w = Worker(self.argv("worker", *args), self.tmp, self.env,
                   name or f"worker{len(self.workers)}")
        self.workers.append(w)
        return w

    def wait_done(self, timeout: float, *watch: Worker) -> dict[str, Any]:
        """Poll `status --json` until no job is waiting/ready/running/retrying."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            left = {s: status["by_state"][s] for s in UNFINISHED if status["by_state"][s]}
            if not left:
                return status
            for w in watch:
                assert w.alive(), f"worker died with work left ({left})\n{w.describe()}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"work left after {timeout}s: {left}\n"
                    + "\n".join(w.describe() for w in watch)
                )
            time.sleep(0.3)

    def jobs(self) -> list[Any]:
        """Every job as the store holds it (read in-process, on a thread's own event loop)."""
        from dealertui.store import JobStore

        async def read() -> list[Any]:
            store = await JobStore.open(self.db_url, {}, create=False)
            try:
                return await store.list_jobs()
            finally:
                await store.close()

        return in_thread(lambda: asyncio.run(read()))

    def close(self) -> None:
        for w in self.workers:
            w.kill()


def in_thread(fn: Callable[[], T]) -> T:
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.close()


def wait_for(pred: Callable[[], T], timeout: float, what: str,
             *watch: Worker, poll: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        for w in watch:
            assert w.alive(), f"worker died while waiting for {what}\n{w.describe()}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n"
                + "\n".join(w.describe() for w in watch)
            )
        time.sleep(poll)


def handler_pids(marker: Path) -> set[int]:
    """Live processes whose command line mentions *marker* (the test's own stamp log)."""
    needle = str(marker).encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(entry) != os.getpid():
            found.add(int(entry))
    return found


# -- the stamp log --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    word: str  # start | end | fail
    t: float
    dealer: str
    job_type: str
    job_id: int
    attempt: int


def read_stamps(log: Path) -> list[Stamp]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line being written right now
        word, t, dealer, job_type, job_id, attempt = parts
        out.append(Stamp(word, float(t), dealer, job_type, int(job_id), int(attempt)))
    return out


def open_runs(stamps: list[Stamp], since: float = 0.0) -> list[Stamp]:
    """Starts after *since* that have no end (or fail) line for the same job and attempt yet."""
    closed = {(s.job_id, s.attempt) for s in stamps if s.word != "start"}
    return [s for s in stamps
            if s.word == "start" and s.t >= since and (s.job_id, s.attempt) not in closed]


def check_dependency_order(stamps: list[Stamp], job_types: dict[str, tuple[int, Sequence[str]]]
                           ) -> None:
    ends = {(s.dealer, s.job_type): s.t for s in stamps if s.word == "end"}
    violations = []
    for s in stamps:
        if s.word != "start":
            continue
        for parent in job_types[s.job_type][1]:
            ended = ends.get((s.dealer, parent))
            if ended is None or s.t < ended:
                violations.append(f"{s} started before its parent {parent} ended ({ended})")
    assert not violations, "\n".join(violations[:20])


def dealers(n: int) -> list[str]:
    return [f"d{i:03d}" for i in range(n)]


def assert_clean(text: str, *more: str) -> None:
    for needle in ("Traceback", *more):
        assert needle not in text, f"{needle!r} in worker output:\n{text}"


# -- 1. kill -9 --------------------------------------------------------------------------------


def test_kill9_five_times_every_job_once(db_url: str, tmp_path: Path,
                                         rigs: list[Rig]) -> None:
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(20), job_types=PIPELINE,
                       handler=stamp_handler(log, 0.4), max_dealers=3, per_dealer=2)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    total = 20 * len(PIPELINE)

    interrupted: list[Stamp] = []
    for round_ in range(5):
        w = rig.worker(name=f"victim{round_}")

        def killable(w: Worker = w) -> list[Stamp]:
            stamps = read_stamps(log)
            new = [s for s in stamps if s.word == "start" and s.t >= w.started]
            running = open_runs(stamps, since=w.started)
            return running if len(new) >= 3 and running else []

        wait_for(killable, 60, f"jobs running under {w.name}", w)
        pids = handler_pids(log)
        w.signal(signal.SIGKILL)
        w.wait(10)
        assert pids, "no handler process seen while jobs ran"
        # PDEATHSIG: the killed worker's handlers die with it and never write "end"
        wait_for(lambda p=pids: not (p & handler_pids(log)), 5,
                 f"handlers {sorted(pids)} of the killed worker to die")
        interrupted += open_runs(read_stamps(log), since=w.started)

    last = rig.worker(name="finisher")
    status = rig.wait_done(120, last)
    last.signal(signal.SIGTERM)
    assert last.wait(30) == 0, last.describe()
    assert_clean(last.stderr)

    by_state = status["by_state"]
    assert by_state["succeeded"] == status["total"] == total, status
    assert all(by_state[s] == 0 for s in by_state if s != "succeeded"), status

    stamps = read_stamps(log)
    ends = Counter(s.job_id for s in stamps if s.word == "end")
    assert len(ends) == total, f"{len(ends)} jobs ended, expected {total}"
    twice = {j: n for j, n in ends.items() if n != 1}
    assert not twice, f"jobs that completed more than once: {twice}"
    assert not [s for s in stamps if s.word == "fail"]
    # the kills did interrupt running jobs, and none of those runs ever finished
    assert interrupted, "no kill interrupted a running job"
    finished = {(s.job_id, s.attempt) for s in stamps if s.word == "end"}
    assert not [s for s in interrupted if (s.job_id, s.attempt) in finished]
    assert Counter(s.word for s in stamps)["start"] >= total + len(interrupted)
    check_dependency_order(stamps, PIPELINE)
    assert not handler_pids(log)
    jobs = rig.jobs()
    assert len(jobs) == total and {j.state for j in jobs} == {"succeeded"}
    assert not [j for j in jobs if j.locked_by is not None]


# -- 2. and 3. signals ----------------------------------------------------------------------------

ONE_TYPE = {"work": (1, ())}


def test_sigterm_drains_running_jobs(db_url: str, tmp_path: Path, rigs: list[Rig]) -> None:
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(6), job_types=ONE_TYPE,
                       handler=stamp_handler(log, 2.0), max_dealers=4, per_dealer=2)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    w = rig.worker("--grace", "20s")
    running = wait_for(lambda: len(r := open_runs(read_stamps(log))) == 4 and r, 60,
                       "4 running jobs", w)
    t_signal = time.time()
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0, w.describe()
    elapsed = time.time() - t_signal
    assert_clean(w.stderr)

    stamps = read_stamps(log)
    ended = {s.job_id for s in stamps if s.word == "end"}
    assert {s.job_id for s in running} <= ended, w.describe()
    late = [s for s in stamps if s.word == "start" and s.t > t_signal]
    assert not late, f"jobs started after SIGTERM: {late}"
    last_end = max(s.t for s in stamps if s.word == "end")
    assert last_end >= t_signal and elapsed < 15, (elapsed, w.describe())

    jobs = {j.id: j for j in rig.jobs()}
    for s in running:
        assert jobs[s.job_id].state == "succeeded", jobs[s.job_id]
    states = Counter(j.state for j in jobs.values())
    assert states == {"succeeded": 4, "ready": 2}, states
    assert not [j for j in jobs.values() if j.locked_by is not None]
    assert "SIGTERM" in w.stderr


def test_second_signal_releases_running_jobs(db_url: str, tmp_path: Path,
                                             rigs: list[Rig]) -> None:
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(4), job_types=ONE_TYPE,
                       handler=stamp_handler(log, 30.0), max_dealers=4, per_dealer=2)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    w = rig.worker("--grace", "60s")
    running = wait_for(lambda: len(r := open_runs(read_stamps(log))) == 4 and r, 60,
                       "4 running jobs", w)
    pids = handler_pids(log)
    assert len(pids) == 4, pids
    t_signal = time.monotonic()
    w.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert w.alive(), "the first signal must drain, not stop\n" + w.describe()
    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0, w.describe()
    assert time.monotonic() - t_signal < 10
    assert_clean(w.stderr)

    wait_for(lambda: not (pids & handler_pids(log)), 5, f"handlers {sorted(pids)} to be gone")
    assert not [s for s in read_stamps(log) if s.word != "start"]
    jobs = {j.id: j for j in rig.jobs()}
    for s in running:
        job = jobs[s.job_id]
        assert job.state == "retrying" and job.attempts == 0, job
        assert job.locked_by is None, job
        assert job.run_after <= time.time(), job  # due at once


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


# -- 6. a fleet of 4 on one Postgres --------------------------------------------------------------

FLEET_TYPES = {f"t{i:02d}": (i, ()) for i in range(50)}
FLEET_DEALERS = 100
PER_DEALER = 2


def test_fleet_of_four_respects_dealer_limit(postgres_server: Any, tmp_path: Path,
                                             rigs: list[Rig]) -> None:
    name = f"t_{uuid.uuid4().hex}"
    db_url = postgres_server.create_database(name)
    log = tmp_path / "fleet.log"
    try:
        cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(FLEET_DEALERS),
                           job_types=FLEET_TYPES, handler=_q("tests.fixtures.fleet:stamp"),
                           max_dealers=10, per_dealer=PER_DEALER, lease_s=30)
        rig = Rig(tmp_path, cfg, db_url, env={"FLEET_LOG": str(log), "FLEET_SLEEP_MS": "5,20"})
        rigs.append(rig)
        rig.cli("enqueue", "--all-dealers")
        total = len(FLEET_TYPES) * FLEET_DEALERS
        fleet = [rig.worker(name=f"fleet{i}") for i in range(4)]
        status = rig.wait_done(150, *fleet)
        for w in fleet:
            w.signal(signal.SIGTERM)
        for w in fleet:
            assert w.wait(30) == 0, w.describe()
            assert_clean(w.stderr)
        assert status["by_state"]["succeeded"] == status["total"] == total, status
        check_fleet_log(log, total)
    finally:
        for rig in rigs:
            rig.close()
        postgres_server.drop_database(name)


def check_fleet_log(log: Path, total: int) -> None:
    runs: dict[tuple[int, int], list[float]] = {}  # (job id, attempt) -> [start, end]
    dealer_of: dict[int, str] = {}
    pids: set[str] = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        word, t, pid, dealer, _job_type, job_id, attempt = line.split()
        key = (int(job_id), int(attempt))
        dealer_of[int(job_id)] = dealer
        pids.add(pid)
        run = runs.setdefault(key, [float("nan"), float("nan")])
        run[0 if word == "start" else 1] = float(t)
    assert len(pids) == 4, f"expected all 4 workers to run jobs, saw pids {pids}"
    unfinished = [k for k, (s, e) in runs.items() if not s <= e]
    assert not unfinished, f"runs without a matching start/end: {unfinished[:10]}"

    # no job runs twice at once (and, with no faults, it runs exactly once)
    by_job: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for (job_id, _attempt), (s, e) in runs.items():
        by_job[job_id].append((s, e))
    assert len(by_job) == total
    overlapping = []
    for job_id, intervals in by_job.items():
        intervals.sort()
        for (_s1, e1), (s2, _e2) in zip(intervals, intervals[1:]):
            if s2 < e1:
                overlapping.append(job_id)
    assert not overlapping, f"jobs that ran twice at once: {overlapping[:10]}"
    more = {j: len(v) for j, v in by_job.items() if len(v) != 1}
    assert not more, f"jobs run more than once: {list(more.items())[:10]}"

    # sweep each dealer's start/end events: never more than PER_DEALER at once, fleet-wide
    events: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (job_id, _attempt), (s, e) in runs.items():
        events[dealer_of[job_id]] += [(s, 1), (e, -1)]
    peaks = {}
    for dealer, evs in events.items():
        evs.sort(key=lambda ev: (ev[0], ev[1]))  # an end at the same instant comes first
        running = peak = 0
        for _t, delta in evs:
            running += delta
            peak = max(peak, running)
        peaks[dealer] = peak
    over = {d: p for d, p in peaks.items() if p > PER_DEALER}
    assert not over, f"dealers with more than {PER_DEALER} jobs running at once: {over}"
    assert max(peaks.values()) == PER_DEALER  # the limit was actually reached


# -- 6. cron's timeout: SIGTERM or SIGINT to --run-once ----------------------------------------


def _grandchild_rig(db_url: str, tmp_path: Path, rigs: list[Rig]) -> tuple[Rig, Path, Path]:
    """3 dealers, one job each, run at once; each handler appends its job id to *started*
    and forks a child that would append it to *late* after 1.5 s (out of PDEATHSIG's reach:
    only a kill of the whole process group stops it). Leases of 300 s: nothing here may
    wait for one to run out."""
    started, late = tmp_path / "started.log", tmp_path / "late.log"
    script = f"echo {{job_id}} >> {started}; (sleep 1.5; echo {{job_id}} >> {late}) & wait"
    handler = "{ exec = [" + ", ".join(_q(a) for a in ["sh", "-c", script]) + "] }"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(3), job_types=ONE_TYPE,
                       handler=handler, max_dealers=3, per_dealer=1, lease_s=300)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    return rig, started, late


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_once_signal_releases_jobs_and_kills_whole_handler_groups(
    db_url: str, tmp_path: Path, rigs: list[Rig], signum: int
) -> None:
    # Python's default SIGTERM killed dealertui on the spot: the jobs stayed `running` until
    # their 300 s leases ran out, and the grandchildren did their work anyway.
    rig, started, late = _grandchild_rig(db_url, tmp_path, rigs)
    run = Worker(rig.argv("--run-once", "--json"), tmp_path, rig.env, "run-once")
    rig.workers.append(run)
    wait_for(lambda: started.exists() and len(started.read_text().split()) == 3, 60,
             "3 running jobs", run)
    run.signal(signum)
    assert run.wait(20) == 128 + signum, run.describe()
    assert_clean(run.stderr)
    assert signal.Signals(signum).name in run.stderr
    summary = json.loads(run.out_path.read_text())  # still one JSON object on stdout
    assert summary["processed_jobs"] == 0 and summary["failed_jobs"] == 0, summary
    # handed back as retrying, and counted so (the summary said "0 retrying")
    assert summary["released_jobs"] == 3, summary
    assert "3 retrying (3 handed back unfinished)" in run.stderr, run.describe()

    jobs = rig.jobs()
    assert len(jobs) == 3
    for job in jobs:  # released for the next run, not charged, not left to the lease
        assert job.state == "retrying" and job.attempts == 0 and job.locked_by is None, job
    time.sleep(2.5)
    assert not late.exists(), f"a handler's child outlived the run: {late.read_text()}"


def test_kill9_of_a_worker_kills_its_handlers_whole_process_groups(
    db_url: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    # PDEATHSIG kills the handler's own process only: its children (a wrapper script's curl)
    # used to finish the job after the worker's death, and the next worker ran it again
    rig, started, late = _grandchild_rig(db_url, tmp_path, rigs)
    w = rig.worker()
    wait_for(lambda: started.exists() and len(started.read_text().split()) == 3, 60,
             "3 running jobs", w)
    w.signal(signal.SIGKILL)
    w.wait(10)
    time.sleep(2.5)
    assert not late.exists(), f"a handler's child outlived its worker: {late.read_text()}"


def test_cancelling_a_running_job_stops_its_handler_and_frees_its_slot(
    db_url: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    # the worker learns at its next heartbeat (lease_s / 3) that the job is no longer its
    # own; the handler used to run to its end (30 s here) and hold the dealer's one slot
    started = tmp_path / "started.log"
    script = f"echo {{job_id}} >> {started}; sleep 30"
    handler = "{ exec = [" + ", ".join(_q(a) for a in ["sh", "-c", script]) + "] }"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=["d1"], job_types=ONE_TYPE,
                       handler=handler, max_dealers=1, per_dealer=1, lease_s=1.5)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--dealer", "d1")
    rig.cli("enqueue", "--dealer", "d1")
    w = rig.worker()

    def ids() -> list[str]:
        return started.read_text().split() if started.exists() else []

    first = wait_for(lambda: ids() and ids()[0], 60, "the first job to start", w)
    pids = handler_pids(started)
    assert pids, "no handler process found"
    rig.cli("cancel", "--job", first)
    second = wait_for(lambda: len(ids()) > 1 and ids()[1], 15,
                      "the second job to start in the freed slot", w)
    assert second != first
    wait_for(lambda: not (pids & handler_pids(started)), 10,
             "the cancelled job's handler to be gone")
    jobs = {str(j.id): j for j in rig.jobs()}
    assert jobs[first].state == "cancelled", jobs[first]
    assert jobs[second].state == "running", jobs[second]
    assert w.alive(), w.describe()
    assert_clean(w.stderr)
