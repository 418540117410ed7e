"""A fleet of 4 `dealertui worker` processes on one Postgres, 5,000 jobs over 100 dealers: no
job runs twice at once and no dealer ever has more than `max_concurrent_jobs_per_dealer` jobs
running fleet-wide.

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` (see
tests/workerrig.py). Exec jobs run tests/fixtures/stamp.py, which appends ``start``/``end``
lines to a log; an ``end`` line is a completed run.
"""

from __future__ import annotations

import signal
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from workerrig import Rig, _q, assert_clean, dealers, write_config

pytestmark = pytest.mark.slow


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
