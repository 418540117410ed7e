"""Chaos suite: faults against the real product, judged by what the handlers did.

    python benchmarks/chaos.py [--scenario NAME ...] [--quick] [--json] [--backend sqlite|postgres]

Run it with the repository's venv (``.venv/bin/python benchmarks/chaos.py``); Postgres scenarios
start a throwaway server (tests/pg.py, PostgreSQL's server binaries needed). Every scenario has
its own temporary directory, database and config, starts ``dealertui worker`` processes (the
CLI, in subprocesses), injects its faults, waits for the work to drain, stops the workers and
prints ONE line. ``--quick`` injects fewer faults in a shorter run (~1 minute a scenario);
``--json`` prints one JSON object per scenario on stdout (the lines go to stderr).
``--backend`` picks the backend of ``operator`` and ``sigstop``. Exit status 1 if a scenario
broke a guarantee (the first seven metrics below, max_running above its limit).

Scenarios: ``kill9-sqlite`` (kill -9 the only worker 20 times, a new one started after each),
``kill9-pg`` (kill -9 one of 4 workers 20 times, a replacement started each time),
``pg-restart`` (pg_ctl restart twice, then pg_ctl stop, 40 s down, start; 4 workers),
``pg-terminate`` (pg_terminate_backend of every connection to the database every 2 s for 40 s;
4 workers), ``operator`` (cancel, cancel+retry of a running job, retry, reset-stuck --older-than
3s, pause/resume of a dealer and of everything, in a loop under load; 2 workers; at the end
everything is resumed and every cancelled job retried), ``sigstop`` (SIGSTOP a worker with
running jobs for lease_s + 3 s, so the other worker rescues them (or ``reset-stuck``), then
SIGCONT; 4 times; 2 workers).

Jobs: a four-type pipeline per dealer (feed; site and scrape after feed; links after both), exec
handler benchmarks/chaos_handler.py, which logs each run's start and end (with its pid and its
worker's pid) and sleeps 1.5 s × 0.5..1.5 (operator 8 s, sigstop 1 s); 5% of runs exit 75
(transient). Leases are short (lease_s = 3; operator 6), retries fast, attempts plenty (50),
breakers out of the way, 3 dealers per worker and 2 jobs per dealer at most, 7 dealers.
While faults are injected, new pipelines are enqueued whenever the work runs low.

A *run* is one handler process. It belongs to the latest claim (``ready -> running`` event) of
its job made by its own worker before it started; the claim lasts until the job's next event.

- ``lost``: jobs not succeeded at the end (operator: cancelled jobs are retried at the end, so
  every job must succeed). Includes jobs still unfinished when the drain timed out.
- ``succeeded_twice``: jobs with more than one ``succeeded`` event, or with two runs whose
  successes were both recorded. Nothing here re-runs a succeeded job (no ``rerun``; cancel and
  retry do not touch succeeded jobs), so any of them is a double record.
- ``stale_success``: recorded successes that no run of that claim, by the recording worker,
  backs with an exit 0 before the record: the outcome of a run that had lost its claim
  (cancelled and retried, rescued, reset) was recorded.
- ``overlapping``: pairs of runs of one job alive at the same time, where the later one started
  while the earlier still held its claim, or the earlier outlived its claim by more than the
  allowance (lease_s / 3 + 2 s: a run that loses its claim is stopped within a heartbeat).
  A killed run counts as alive until the last time the script saw it (polled every 50 ms), so
  the count never includes a run that might already have been dead.
- ``dep_violations``: runs of a job that started before each of its parents had both a run that
  ended 0 and a recorded success.
- ``max_running=N/L``: most runs of one dealer alive at once (each clipped to its claim: the
  tail of a run being stopped after a cancel is not a claimed slot) against the limit L.
- ``exit0_before_fault``: runs that ended 0 but whose success was not recorded, with a fault
  (kill -9 or SIGSTOP of their worker, a database outage, an operator command on their job or on
  every job) between their end and the end of their claim: the at-least-once window, allowed.
- then, for information: ``runs``; ``exit0_other`` (the same without such a fault: e.g. a lease
  that expired under load); ``overlap_ok`` (overlaps within the allowance); ``unclaimed``
  (runs with no claim of their worker before them); ``crashes`` (workers that died without
  being killed; they are restarted); ``tracebacks`` (worker or CLI stderr with a Traceback);
  ``op_refused`` (operator commands that exited non-zero: races the operator loses are normal).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_analysis import Facts, analyse
from chaos_rig import Rig, Worker, pg_server

SCENARIOS: dict[str, Callable[[Rig, bool], None]] = {}
BACKEND = {"kill9-sqlite": "sqlite", "kill9-pg": "postgres", "pg-restart": "postgres",
           "pg-terminate": "postgres", "operator": "sqlite", "sigstop": "postgres"}
WORKERS = {"kill9-sqlite": 1, "kill9-pg": 4, "pg-restart": 4, "pg-terminate": 4,
           "operator": 2, "sigstop": 2}
SLEEP_S = {"operator": 8.0, "sigstop": 1.0}  # handler sleep (× 0.5..1.5); default 1.5
# operator: a heartbeat (lease_s / 3) longer than the gap between a cancel and a retry, so the
# worker can claim the job again before it noticed the cancel
LEASE_S = {"operator": 6.0}  # default 3
GUARANTEES = ("lost", "succeeded_twice", "stale_success", "overlapping", "dep_violations")


class Interrupts:
    """SIGINT/SIGTERM/SIGHUP stop the run (KeyboardInterrupt) once; a signal that arrives while
    a cleanup runs waits for its end, and later signals are ignored: a cleanup is never cut
    short (a half-removed Postgres data directory, a worker left running)."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.raised = False
        self.shield = 0

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.handler)  # SIGINT too: a shell's `cmd &` ignores it

    def handler(self, signum: int, _frame: Any) -> None:
        if self.pending is None:
            self.pending = signum
            if not self.shield:
                self.raised = True
                raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        self.shield += 1
        try:
            yield
        finally:
            self.shield -= 1
        if not self.shield and self.pending is not None and not self.raised:
            self.raised = True
            raise KeyboardInterrupt(f"signal {self.pending}")


INTERRUPTS = Interrupts()


def scenario(name: str) -> Callable[[Callable[[Rig, bool], None]], Callable[[Rig, bool], None]]:
    def register(fn: Callable[[Rig, bool], None]) -> Callable[[Rig, bool], None]:
        SCENARIOS[name] = fn
        return fn
    return register


def pause(rig: Rig, seconds: float) -> None:
    """Sleep while keeping the work topped up and crashed workers replaced."""
    deadline = time.monotonic() + seconds
    while True:
        rig.tend()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


@scenario("kill9-sqlite")
def kill9_single(rig: Rig, quick: bool) -> None:
    kills = 5 if quick else 20
    for i in range(kills):
        w = rig.workers[0]
        if rig.wait_running(w, 30) is None:
            rig.log(f"kill {i + 1}: no run started in 30 s")
        time.sleep(random.uniform(0.2, 1.2))
        rig.kill9(w)
        rig.log(f"kill -9 {i + 1}/{kills} of pid {w.pid}")
        rig.workers[0] = rig.start_worker()
        rig.tend()


@scenario("kill9-pg")
def kill9_fleet(rig: Rig, quick: bool) -> None:
    kills = 5 if quick else 20
    for i in range(kills):
        deadline = time.monotonic() + 30
        busy: list[Worker] = []
        while not busy and time.monotonic() < deadline:
            busy = [w for w in rig.workers if rig.monitor.open_runs(w.pid)]
            if not busy:
                pause(rig, 0.2)
        victim = random.choice(busy or rig.workers)
        rig.kill9(victim)
        rig.workers[rig.workers.index(victim)] = rig.start_worker()
        rig.log(f"kill -9 {i + 1}/{kills} of pid {victim.pid}")
        pause(rig, random.uniform(0.5, 2.0))


@scenario("pg-restart")
def pg_restart(rig: Rig, quick: bool) -> None:
    assert rig.pg is not None
    pause(rig, 5)
    for i in range(1 if quick else 2):
        t0 = time.time()
        rig.pg.restart()
        rig.fault("pg-restart", t0)
        rig.log(f"pg_ctl restart {i + 1} took {time.time() - t0:.1f} s")
        pause(rig, 8)
    down = 10 if quick else 40
    t0 = time.time()
    rig.pg.stop_server_only()
    rig.log(f"pg_ctl stop; down for {down} s")
    time.sleep(down)  # no tending: the database is away
    rig.pg.start_server_only()
    rig.fault("pg-stop", t0)
    pause(rig, 5)


@scenario("pg-terminate")
def pg_terminate(rig: Rig, quick: bool) -> None:
    deadline = time.monotonic() + (14 if quick else 40)
    pause(rig, 3)
    while time.monotonic() < deadline:
        t0 = time.time()
        n = rig.terminate_backends()
        rig.fault("pg-terminate", t0)
        rig.log(f"terminated {n} backends")
        pause(rig, 2)


@scenario("operator")
def operator(rig: Rig, quick: bool) -> None:
    steps, deadline = (20, 40) if quick else (80, 150)
    end = time.monotonic() + deadline
    paused: list[str] = []
    for _ in range(steps):
        if time.monotonic() > end:
            break
        roll = random.random()
        running = rig.job_ids("running")
        if roll < 0.4 and running:
            j = random.choice(running)
            t0 = time.time()
            rig.op_pair(["cancel", "--job", str(j), "--reason", "chaos"],
                        ["retry", "--job", str(j), "--reason", "chaos"],
                        delay=random.uniform(0.3, 1.0))
            rig.fault("cancel+retry", t0, job_id=j)
        elif roll < 0.5:
            live = rig.job_ids("running", "ready", "waiting", "retrying")
            if live:
                j = random.choice(live)
                t0 = time.time()
                rig.op("cancel", "--job", str(j), "--reason", "chaos")
                rig.fault("cancel", t0, job_id=j)
        elif roll < 0.62:
            dead = rig.job_ids("cancelled", "failed", "blocked")
            if dead:
                j = random.choice(dead)
                rig.op("retry", "--job", str(j), "--reason", "chaos")
                rig.fault("retry", time.time(), excuses=False)
        elif roll < 0.7:
            t0 = time.time()
            rig.op("reset-stuck", "--older-than", "3s")
            rig.fault("reset-stuck", t0)
        elif roll < 0.85 or paused:
            if paused and random.random() < 0.6:
                d = paused.pop(random.randrange(len(paused)))
                rig.op("resume", "--dealer", d)
                rig.fault("resume", time.time(), excuses=False)
            else:
                d = random.choice(rig.dealers)
                rig.op("pause", "--dealer", d, "--reason", "chaos")
                paused.append(d)
                rig.fault("pause", time.time(), excuses=False)
        else:
            rig.op("pause", "--reason", "chaos")
            time.sleep(random.uniform(0.5, 2))
            rig.op("resume")
            rig.fault("pause-all", time.time(), excuses=False)
        rig.tend()
        time.sleep(random.uniform(0.1, 0.6))
    rig.op("resume")
    for d in paused:
        rig.op("resume", "--dealer", d)
    cancelled = rig.job_ids("cancelled")
    if cancelled:
        rig.op("retry", *[a for j in cancelled for a in ("--job", str(j))], "--reason", "end")
    rig.log(f"{rig.ops} operator commands, {rig.ops_refused} refused; "
            f"{len(cancelled)} cancelled jobs retried at the end")


@scenario("sigstop")
def sigstop(rig: Rig, quick: bool) -> None:
    for i in range(2 if quick else 4):
        w = rig.workers[i % len(rig.workers)]
        if rig.wait_running(w, 30) is None:
            rig.log(f"stop {i + 1}: no run started in 30 s")
        t0 = time.time()
        w.signal(signal.SIGSTOP)
        rig.log(f"SIGSTOP pid {w.pid} for {rig.lease_s + 3:.0f} s")
        time.sleep(rig.lease_s + 1)
        if i % 2:
            rig.op("reset-stuck")
        time.sleep(2)
        w.signal(signal.SIGCONT)
        rig.fault("sigstop", t0, worker_pid=w.pid)
        pause(rig, 3)


def run_scenario(name: str, quick: bool, backend: str, pg: Any, keep: bool) -> dict[str, Any]:
    started = time.monotonic()
    rig = Rig(name, backend, pg, sleep_s=SLEEP_S.get(name, 1.5), lease_s=LEASE_S.get(name, 3.0),
              quick=quick)
    try:
        rig.setup()
        rig.workers = [rig.start_worker() for _ in range(WORKERS[name])]
        SCENARIOS[name](rig, quick)
        drained = rig.drain(90 if quick else 180)
        rig.stop_workers()
        facts: Facts = rig.facts()
        result = analyse(facts)
        result.update(scenario=name, backend=backend, drained=drained,
                      seconds=round(time.monotonic() - started, 1))
        return result
    finally:
        with INTERRUPTS.shielded():
            rig.close(keep)


def line(r: dict[str, Any]) -> str:
    return (f"{r['scenario']} ({r['backend']}): jobs={r['jobs']} faults={r['faults']} "
            f"lost={r['lost']} succeeded_twice={r['succeeded_twice']} "
            f"stale_success={r['stale_success']} overlapping={r['overlapping']} "
            f"dep_violations={r['dep_violations']} max_running={r['max_running']}/{r['limit']} "
            f"exit0_before_fault={r['exit0_before_fault']} | runs={r['runs']} "
            f"exit0_other={r['exit0_unrecorded_other']} "
            f"overlap_ok={r['overlap_within_allowance']} unclaimed={r['unclaimed_runs']} "
            f"crashes={r['crashes']} tracebacks={r['tracebacks']} "
            f"op_refused={r['op_refused']} {'' if r['drained'] else 'NOT DRAINED '}"
            f"{r['seconds']}s")


def broken(r: dict[str, Any]) -> bool:
    return any(r[k] for k in GUARANTEES) or r["max_running"] > r["limit"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS), metavar="NAME",
                   help=f"one of {', '.join(SCENARIOS)} (repeatable; default: all)")
    p.add_argument("--quick", action="store_true", help="fewer faults, shorter")
    p.add_argument("--json", action="store_true", help="one JSON object per scenario on stdout")
    p.add_argument("--backend", choices=("sqlite", "postgres"),
                   help="backend of the operator and sigstop scenarios")
    p.add_argument("--keep", action="store_true",
                   help="keep each scenario's directory (config, logs, SQLite database)")
    p.add_argument("--seed", type=int, default=None, help="seed of the faults' randomness")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    names = args.scenario or list(SCENARIOS)

    INTERRUPTS.install()

    out = sys.stderr if args.json else sys.stdout
    print(f"chaos: seed {seed}, {'quick' if args.quick else 'full'}: {' '.join(names)}",
          file=sys.stderr, flush=True)
    failed = interrupted = False
    pg = None
    try:
        for name in names:
            backend = BACKEND[name]
            if args.backend and name in ("operator", "sigstop"):
                backend = args.backend
            if backend == "postgres" and pg is None:
                with INTERRUPTS.shielded():
                    pg = pg_server()
            result = run_scenario(name, args.quick, backend, pg, args.keep)
            failed |= broken(result)
            print(line(result), file=out, flush=True)
            if args.json:
                print(json.dumps(result, sort_keys=True), flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pg is not None:
            with INTERRUPTS.shielded():
                pg.stop()
    if interrupted:
        print("chaos: interrupted; processes and temporary directories cleaned up",
              file=sys.stderr)
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # a signal during the last cleanup: it was finished first
        sys.exit(130)
