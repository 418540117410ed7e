"""`dealertui worker` under signals, as fleets and cron run it: real worker processes, real signals.

- kill -9 a worker while exec jobs run, five times in a row; the next worker finishes the work:
  every job succeeds exactly once (counted in the handler's own log), nothing is stuck and no
  job starts before its parents ended; kill -9 also takes its handlers' process groups;
- SIGTERM drains (running jobs finish, nothing new starts, exit 0) and a second signal stops
  at once (running jobs released as `retrying`, attempt not charged, handlers gone);
- cron's timeout: SIGTERM or SIGINT to --run-once releases jobs and kills whole handler
  groups; cancelling a running job stops its handler and frees its slot.

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` (see
tests/workerrig.py). Exec jobs run tests/fixtures/stamp.py, which appends ``start``/``end``
lines to a log; an ``end`` line is a completed run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from workerrig import (
    ONE_TYPE,
    PIPELINE,
    Rig,
    Stamp,
    Worker,
    _q,
    assert_clean,
    check_dependency_order,
    dealers,
    open_runs,
    read_stamps,
    stamp_handler,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


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
    rig.cli("enqueue", "--dealer", "d1", "--allow-duplicate")
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
