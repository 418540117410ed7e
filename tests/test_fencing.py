"""Fencing tokens: a run whose claim was taken records nothing, whatever order things happen in.

Each test drives real `dealertui worker` processes with an exec handler that stamps its start
and end (tests/fixtures/stamp.py), and checks the stamps against what the database recorded:

- cancel + retry of a running job: the same worker claims the job again while the cancelled
  handler still runs. One handler at a time, one success recorded (the second run's), children
  only after it, the dealer limit held, SIGTERM still drains;
- reset-stuck of a SIGSTOPped worker's job, then SIGCONT: the old run's exit records nothing;
- a worker cut off from Postgres for longer than its lease: another worker rescues and reruns
  the job; the owner's late outcome is refused, the rescuer's run is the one recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dealertui.store import JobStore
from tests import storeops

try:  # tests/ is on sys.path under pytest's default "prepend" import mode
    from workerrig import (
        ONE_TYPE,
        PIPELINE,
        Rig,
        Worker,
        _q,
        assert_clean,
        in_thread,
        wait_for,
        write_config,
    )
except ImportError:
    from tests.workerrig import (  # type: ignore[no-redef]
        ONE_TYPE,
        PIPELINE,
        Rig,
        Worker,
        _q,
        assert_clean,
        in_thread,
        wait_for,
        write_config,
    )

pytestmark = pytest.mark.slow


def successes(db_url: str, job_id: int) -> list[Any]:
    """The job's recorded moves to succeeded: (at, worker, attempt), from its timeline (a
    success writes no job_events row: the job row records it)."""

    async def read() -> list[Any]:
        store = await JobStore.open(db_url, {}, create=False)
        try:
            return [SimpleNamespace(at=e["at"], worker=e["worker"], attempt=e["attempt"])
                    for e in await storeops.job_events(store, job_id)
                    if e["to_state"] == "succeeded"]
        finally:
            await store.close()

    return in_thread(lambda: asyncio.run(read()))


@dataclass(frozen=True)
class Run:
    """One handler process: its pid, job, attempt, dealer, start and end (None: killed)."""

    pid: int
    job_id: int
    attempt: int
    dealer: str
    start: float
    end: float | None


def pid_stamp_handler(log: Path, sleep_s: float) -> str:
    """An exec handler that stamps its start and end with its own pid, so that each line is
    told to its run even when two runs of one job and attempt overlap (the bug tested here)."""
    fields = "$$ {dealer_id} {job_type} {job_id} {attempt}"
    script = (f'printf "start %s {fields}\\n" "$(date +%s.%N)" >> {log}; sleep {sleep_s}; '
              f'printf "end %s {fields}\\n" "$(date +%s.%N)" >> {log}')
    return "{ exec = [" + ", ".join(_q(a) for a in ["sh", "-c", script]) + "] }"


def read_runs(log: Path) -> list[Run]:
    runs: dict[int, Run] = {}
    if not log.exists():
        return []
    for text in log.read_text(encoding="utf-8").splitlines():
        parts = text.split()
        if len(parts) != 7:
            continue  # a line being written right now
        word, t, pid, dealer, _type, job, attempt = parts
        if word == "start":
            runs[int(pid)] = Run(int(pid), int(job), int(attempt), dealer, float(t), None)
        elif int(pid) in runs:
            runs[int(pid)] = dataclasses.replace(runs[int(pid)], end=float(t))
    return sorted(runs.values(), key=lambda r: r.start)


def runs_of(runs: list[Run], job_id: int) -> list[tuple[float, float | None]]:
    """(start, end) of each handler run of *job_id*, in start order; end None: it never
    ended by itself (killed)."""
    return [(r.start, r.end) for r in runs if r.job_id == job_id]


def max_running_per_dealer(runs: list[Run]) -> int:
    """The most handler runs of one dealer at once; a killed run counts as running until the
    next start of its job (when the worker may start it again at the earliest)."""
    spans = []
    for r in runs:
        end = r.end
        if end is None:
            later = [o.start for o in runs if o.job_id == r.job_id and o.start > r.start]
            end = min(later) if later else time.time()
        spans.append((r.dealer, r.start, end))
    return max((sum(1 for d, a, b in spans if d == dealer and a <= t < b)
                for dealer, t, _ in spans), default=0)


def one_dealer(tmp_path: Path, rigs: list[Rig], db_url: str, job_types: dict[str, Any],
               sleep_s: float, per_dealer: int, lease_s: float) -> tuple[Rig, Path]:
    """A rig with one dealer d000 whose pipeline is enqueued; its handler stamps to the log."""
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=["d000"], job_types=job_types,
                       handler=pid_stamp_handler(log, sleep_s), max_dealers=1,
                       per_dealer=per_dealer, lease_s=lease_s)
    rig = Rig(tmp_path, cfg, db_url)
    rigs.append(rig)
    rig.cli("enqueue", "--all-dealers")
    return rig, log


def stop_cleanly(*workers: Worker) -> None:
    """SIGTERM drains each worker to exit 0, with no traceback and no KeyError logged."""
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(60) == 0, w.describe()
        assert_clean(w.stderr, "KeyError")


def test_cancel_and_retry_of_a_running_job_in_the_same_worker(
    db_url: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    # a long lease: the worker's heartbeat (lease_s / 3) must not notice the cancel before the
    # retry makes the job claimable again, so the same worker claims it while it still runs
    rig, log = one_dealer(tmp_path, rigs, db_url, PIPELINE, 4.0, per_dealer=2, lease_s=60)
    homenet = next(j.id for j in rig.jobs() if j.job_type == "homenet")
    w = rig.worker()
    wait_for(lambda: read_runs(log), 60, "homenet to start", w)
    rig.cli("cancel", "--job", str(homenet))
    rig.cli("retry", "--job", str(homenet))
    status = rig.wait_done(90, w)
    stop_cleanly(w)

    assert status["by_state"]["succeeded"] == status["total"] == 4, status
    every = read_runs(log)
    runs = runs_of(every, homenet)
    assert len(runs) == 2, runs
    (_, first_end), (second_start, second_end) = runs
    # the cancelled run was stopped, or at least over, before the second began
    assert first_end is None or first_end <= second_start, runs
    assert second_end is not None, runs
    [recorded] = successes(rig.db_url, homenet)
    assert recorded.at >= second_end, (recorded, runs)
    children = [r for r in every if r.job_id != homenet]
    assert len(children) == 3 and all(r.start >= second_end for r in children), (children, runs)
    assert max_running_per_dealer(every) <= 2


def test_reset_stuck_of_a_stopped_worker_then_sigcont(
    db_url: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    # a long lease, so the worker's heartbeat does not see the reset before it claims the
    # job again; a handler long enough to be still running when the worker wakes up
    rig, log = one_dealer(tmp_path, rigs, db_url, ONE_TYPE, 6.0, per_dealer=2, lease_s=60)
    [job] = [j.id for j in rig.jobs()]
    w = rig.worker()
    [first] = wait_for(lambda: read_runs(log), 60, "the job to start", w)
    w.signal(signal.SIGSTOP)
    try:
        rig.cli("reset-stuck", "--older-than", "0s")
    finally:
        w.signal(signal.SIGCONT)
    assert time.time() < first.start + 5, "the first run ended before the worker woke up"
    status = rig.wait_done(60, w)
    stop_cleanly(w)

    assert status["by_state"]["succeeded"] == 1, status
    runs = runs_of(read_runs(log), job)
    assert len(runs) == 2, runs
    (_, first_end), (second_start, second_end) = runs
    assert first_end is None or first_end <= second_start, runs
    assert second_end is not None, runs
    [recorded] = successes(rig.db_url, job)
    assert recorded.attempt == 2, recorded
    assert recorded.at >= second_end, (recorded, runs)


class Partition:
    """A TCP proxy to Postgres for one worker: `cut()` drops its connections and refuses new
    ones (the worker cannot reach the database while others can), `heal()` lets them in."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, up]
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.open = False
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def heal(self) -> None:
        self.open = True

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.server.close()


def test_owner_cut_off_longer_than_its_lease_cannot_record_over_the_rescuer(
    postgres_url: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    assert url.port is not None
    proxy = Partition(url.port)
    try:
        rig, log = one_dealer(tmp_path, rigs, postgres_url, ONE_TYPE, 6.0, per_dealer=1,
                              lease_s=2)
        [job] = [j.id for j in rig.jobs()]
        owner_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        owner = Rig(tmp_path, rig.cfg, owner_url)
        rigs.append(owner)
        a = owner.worker(name="owner")
        wait_for(lambda: read_runs(log), 60, "the owner's run to start", a)
        proxy.cut()
        b = rig.worker(name="rescuer")
        # the rescuer takes the expired lease and runs the job again while the owner's
        # handler is still going; the owner's run ends while it cannot reach the database
        wait_for(lambda: len(read_runs(log)) == 2, 60, "the rescuer's run to start", b)
        wait_for(lambda: read_runs(log)[0].end is not None, 30, "the owner's handler to end")
        proxy.heal()
        rig.wait_done(60, b)
        time.sleep(3)  # the owner reconnects and tries to record its late outcome
        stop_cleanly(a, b)
        runs = runs_of(read_runs(log), job)
        assert len(runs) == 2 and all(end is not None for _, end in runs), runs
        [recorded] = successes(rig.db_url, job)
        assert recorded.worker.startswith("worker:") and recorded.at >= runs[1][1], (
            recorded, runs)
        assert [j.state for j in rig.jobs()] == ["succeeded"]
        # it was the rescuer's run that landed: the owner's pid is not in the worker id
        assert f":{a.pid}:" not in recorded.worker and f":{b.pid}:" in recorded.worker, (
            recorded, a.pid, b.pid)
    finally:
        proxy.close()
