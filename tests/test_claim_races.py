"""Claims raced by real processes, each with its own JobStore on the same database.

tests/claimer.py is the process body; this module enqueues, releases the processes together
(a "go" file they poll for), and checks the outcome in the database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import storeops
from sqlalchemy import func, select

from dealertui.store import JobStore, JobTypeRule
from dealertui.store.schema import job_events, jobs

pytestmark = pytest.mark.anyio

CLAIMER = Path(__file__).with_name("claimer.py")
ROOT = Path(__file__).resolve().parent.parent


class Processes:
    """Claimer processes started by one test; all of them are reaped when the test ends."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        log = (self.out / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(CLAIMER), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append((name, proc))

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {p.poll()}) ---\n"
            + (self.out / f"{name}.log").read_text(errors="replace")[-3000:]
            for name, p in self.procs
        )

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() not in (None, 0):
                raise AssertionError(f"claimer {name} died\n{self.logs()}")

    async def wait_files(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all((self.out / n).exists() for n in names):
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {names}\n{self.logs()}")
            await anyio.sleep(0.01)

    async def wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for _, p in self.procs):
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"claimers did not finish in {timeout}s\n{self.logs()}")
            await anyio.sleep(0.02)
        self.check_alive()

    def kill_all(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def go(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.touch()
    tmp.rename(path)


async def test_one_ready_job_eight_claimers_one_winner(db_url: str, tmp_path: Path) -> None:
    """2 processes x 4 tasks claim the only ready job at once: exactly one wins, each round."""
    n_procs, n_tasks, rounds = 2, 4, 5
    rules = {"homenet": JobTypeRule(1, ())}
    dealers = [f"race{r}" for r in range(rounds)]
    store = await JobStore.open(db_url, rules)
    procs = Processes(tmp_path)
    try:
        await store.add_dealers([(d, None) for d in dealers])
        for p in range(n_procs):
            procs.start(
                f"p{p}", "race", db_url, str(tmp_path), f"p{p}", str(n_tasks), str(rounds),
                "homenet",
            )
        await procs.wait_files([f"ready-p{p}" for p in range(n_procs)], timeout=60)

        for r, dealer in enumerate(dealers):
            [job_id] = await store.enqueue([dealer])
            go(tmp_path / f"go-{r}")
            files = [f"race-{r}-p{p}.json" for p in range(n_procs)]
            await procs.wait_files(files, timeout=60)
            claims: dict[str, list[int]] = {}
            for f in files:
                claims.update(json.loads((tmp_path / f).read_text()))
            assert len(claims) == n_procs * n_tasks
            winners = {w: ids for w, ids in claims.items() if ids}
            assert len(winners) == 1, f"round {r}: {claims}"
            [(worker, ids)] = winners.items()
            assert ids == [job_id]
            job = await store.get_job(job_id)
            assert job is not None
            assert job.state == "running" and job.locked_by == worker and job.attempts == 1
            events = await storeops.job_events(store, job_id)
            assert [(e["from_state"], e["to_state"], e["worker"]) for e in events] == [
                (None, "ready", None), ("ready", "running", worker)
            ]
        await procs.wait_exit(timeout=60)
        assert (await store.status())["by_state"]["running"] == rounds
    finally:
        procs.kill_all()
        await store.close()


async def test_per_dealer_limit_holds_across_processes(db_url: str, tmp_path: Path) -> None:
    """max_concurrent_jobs_per_dealer is fleet-wide: 4 processes racing to fill 60 dealers'
    slots never put more than per_dealer jobs of one dealer in `running`."""
    n_procs, per_dealer = 4, 2
    types = [f"k{i}" for i in range(6)]
    rules = {t: JobTypeRule(i + 1, ()) for i, t in enumerate(types)}
    dealers = [f"fleet{i:03d}" for i in range(60)]
    store = await JobStore.open(db_url, rules)
    procs = Processes(tmp_path)
    try:
        await store.add_dealers([(d, None) for d in dealers])
        await store.enqueue(dealers)
        for p in range(n_procs):
            procs.start(
                f"h{p}", "hold", db_url, str(tmp_path), f"h{p}", ",".join(types), str(per_dealer)
            )
        await procs.wait_files([f"ready-h{p}" for p in range(n_procs)], timeout=60)
        go(tmp_path / "go")
        await procs.wait_exit(timeout=120)
        claimed = [
            i
            for p in range(n_procs)
            for i in json.loads((tmp_path / f"hold-h{p}.json").read_text())["ids"]
        ]
        assert len(claimed) == len(set(claimed))
        status = await store.status()
        running = {d: c["running"] for d, c in status["by_dealer"].items()}
        assert max(running.values()) <= per_dealer, running
        assert set(running.values()) == {per_dealer}, running  # and every slot got filled
        assert status["by_state"]["running"] == len(claimed) == per_dealer * len(dealers)
    finally:
        procs.kill_all()
        await store.close()


async def test_parents_completed_concurrently_promote_their_child(db_url: str) -> None:
    """Two transactions on two engines each complete one parent of the same child at once;
    the child must end up ready (neither may miss the other's commit)."""
    rules = {"a": JobTypeRule(1, ()), "b": JobTypeRule(2, ()), "c": JobTypeRule(3, ("a", "b"))}
    dealers = [f"pair{i:03d}" for i in range(120)]
    one = await JobStore.open(db_url, rules)
    two = await JobStore.open(db_url, rules)
    try:
        await one.add_dealers([(d, None) for d in dealers])
        await one.enqueue(dealers)
        got = await one.claim("w", 1_000, per_dealer=10, lease_s=300)
        assert len(got.jobs) == 2 * len(dealers)
        pairs: dict[str, dict[str, int]] = {}
        for c in got.jobs:
            pairs.setdefault(c.dealer_id, {})[c.job_type] = c.id

        async def finish_pair(ids: dict[str, int]) -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(storeops.complete, one, "w", [ids["a"]])
                tg.start_soon(storeops.complete, two, "w", [ids["b"]])

        async with anyio.create_task_group() as tg:
            for ids in pairs.values():
                tg.start_soon(finish_pair, ids)

        jobs = await one.list_jobs()
        stuck = [(j.dealer_id, j.id) for j in jobs if j.job_type == "c" and j.state != "ready"]
        assert stuck == []
        assert (await one.status())["by_state"] == {
            "waiting": 0, "ready": len(dealers), "running": 0, "retrying": 0,
            "succeeded": 2 * len(dealers), "failed": 0, "blocked": 0, "cancelled": 0, "skipped": 0,
        }
    finally:
        await one.close()
        await two.close()


N_DEALERS = 2_000
TYPES = [f"k{i}" for i in range(10)]


@pytest.mark.slow
async def test_twenty_thousand_jobs_four_processes(db_url: str, tmp_path: Path) -> None:
    """4 processes drain 20,000 ready jobs in batches: every job claimed once, all succeed."""
    n_procs = 4
    rules = {t: JobTypeRule(i + 1, ()) for i, t in enumerate(TYPES)}
    dealers = [f"dealer{i:05d}" for i in range(N_DEALERS)]
    store = await JobStore.open(db_url, rules)
    procs = Processes(tmp_path)
    try:
        t0 = time.monotonic()
        await store.add_dealers([(d, None) for d in dealers])
        all_ids: list[int] = []
        for i in range(0, N_DEALERS, 250):
            all_ids += await store.enqueue(dealers[i : i + 250])
        assert len(all_ids) == len(set(all_ids)) == N_DEALERS * len(TYPES)
        status = await store.status()
        assert status["by_state"]["ready"] == 20_000
        enqueue_s = time.monotonic() - t0

        for p in range(n_procs):
            procs.start(f"b{p}", "bulk", db_url, str(tmp_path), f"b{p}", ",".join(TYPES))
        await procs.wait_files([f"ready-b{p}" for p in range(n_procs)], timeout=60)
        t1 = time.monotonic()
        go(tmp_path / "go")
        await procs.wait_exit(timeout=240)
        drain_s = time.monotonic() - t1

        per_proc = {
            p: json.loads((tmp_path / f"bulk-b{p}.json").read_text()) for p in range(n_procs)
        }
        claimed = [i for r in per_proc.values() for i in r["ids"]]
        assert len(claimed) == len(set(claimed)), "a job was claimed twice"
        assert sorted(claimed) == sorted(all_ids)
        # (how the work is shared is not asserted: on SQLite one writer at a time holds the
        # lock, and a process can lose every busy-wait race on a small machine)

        async with store.db.engine.connect() as conn:
            by_state = dict((await conn.execute(
                select(jobs.c.state, func.count()).group_by(jobs.c.state))).all())
            assert by_state == {"succeeded": 20_000}
            # every job claimed exactly once: the fencing token counts claims, and a claim
            # that did not end in success would have written its own job_events row
            seqs = dict((await conn.execute(
                select(jobs.c.claim_seq, func.count()).group_by(jobs.c.claim_seq))).all())
            assert seqs == {1: 20_000}
            n_running = (
                await conn.execute(
                    select(func.count()).where(job_events.c.to_state == "running")
                )
            ).scalar_one()
            assert n_running == 0
        print(
            f"\n[{db_url.split(':')[0]}] enqueue {enqueue_s:.1f}s, drain {drain_s:.1f}s "
            + ", ".join(
                f"b{p}={len(r['ids'])} jobs/{r['batches']} batches/{r['seconds']:.1f}s"
                for p, r in per_proc.items()
            )
        )
    finally:
        procs.kill_all()
        await store.close()
