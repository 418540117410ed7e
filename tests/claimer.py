"""A claiming process for tests/test_claim_races.py (run as a script, one per process).

    python tests/claimer.py race URL DIR PROC TASKS ROUNDS TYPES
        For each round r: wait for DIR/go-<r>, then TASKS asyncio tasks each call claim(limit=1)
        at the same moment; write the claimed ids to DIR/race-<r>-<PROC>.json.

    python tests/claimer.py bulk URL DIR PROC TYPES
        Wait for DIR/go, then claim batches (limit=256) and complete them until no ready job is
        left; write the claimed ids to DIR/bulk-<PROC>.json.

    python tests/claimer.py hold URL DIR PROC TYPES PER_DEALER
        Wait for DIR/go, then claim batches (limit=16, per_dealer=PER_DEALER) without completing
        anything, until three claims in a row come back empty; write DIR/hold-<PROC>.json.

TYPES is a comma-separated list of independent job types (priority = position).
Every process writes DIR/ready-<PROC> once its store is open and its connections are warm, so
the parent can release all processes together.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import anyio
import anyio.lowlevel

from dealertui.store import JobStore, JobTypeRule

GO_TIMEOUT_S = 120.0


def rules_for(types: str) -> dict[str, JobTypeRule]:
    return {t: JobTypeRule(i + 1, ()) for i, t in enumerate(types.split(","))}


def write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the parent never sees a half-written file


async def wait_for(path: Path) -> None:
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} after {GO_TIMEOUT_S}s")
        await anyio.sleep(0.0005)


async def warm(store: JobStore, n: int) -> None:
    """Open *n* pooled connections so that the race is not decided by connecting."""
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(store.status)


async def race(url: str, out: Path, proc: str, tasks: int, rounds: int, types: str) -> None:
    store = await JobStore.open(url, rules_for(types), retry_budget_s=60)
    try:
        await warm(store, tasks)
        (out / f"ready-{proc}").touch()
        for r in range(rounds):
            await wait_for(out / f"go-{r}")
            start = anyio.Event()
            claimed: dict[str, list[int]] = {}

            async def claimer(worker: str) -> None:
                await start.wait()
                result = await store.claim(worker, 1, per_dealer=100, lease_s=300)
                claimed[worker] = [c.id for c in result.jobs]

            async with anyio.create_task_group() as tg:
                for i in range(tasks):
                    tg.start_soon(claimer, f"{proc}-t{i}")
                await anyio.lowlevel.checkpoint()  # let every task reach start.wait()
                start.set()
            write_json(out / f"race-{r}-{proc}.json", claimed)
    finally:
        await store.close()


async def bulk(url: str, out: Path, proc: str, types: str) -> None:
    store = await JobStore.open(url, rules_for(types), retry_budget_s=60)
    worker = f"bulk-{proc}"
    claimed: list[int] = []
    batches = 0
    try:
        await warm(store, 2)
        (out / f"ready-{proc}").touch()
        await wait_for(out / "go")
        started = time.monotonic()
        while True:
            result = await store.claim(worker, 256, per_dealer=1_000, lease_s=300)
            assert result.dependency_violations == 0
            ids = [c.id for c in result.jobs]
            if not ids:
                # nothing claimable now; stop only when nothing is ready anywhere
                status = await store.status()
                if status["by_state"]["ready"] == 0:
                    break
                await anyio.sleep(0.01)
                continue
            batches += 1
            claimed += ids
            done = await store.finish(worker, succeeded=[c.claim for c in result.jobs])
            assert sorted(done.done) == sorted(ids), "a claimed job was not ours to complete"
        write_json(
            out / f"bulk-{proc}.json",
            {"ids": claimed, "batches": batches, "seconds": time.monotonic() - started},
        )
    finally:
        await store.close()


async def hold(url: str, out: Path, proc: str, types: str, per_dealer: int) -> None:
    store = await JobStore.open(url, rules_for(types), retry_budget_s=60)
    worker = f"hold-{proc}"
    claimed: list[int] = []
    try:
        await warm(store, 2)
        (out / f"ready-{proc}").touch()
        await wait_for(out / "go")
        empty = 0
        while empty < 3:
            result = await store.claim(worker, 16, per_dealer=per_dealer, lease_s=300)
            if result.jobs:
                empty = 0
                claimed += [c.id for c in result.jobs]
            else:
                empty += 1
                await anyio.sleep(0.02)
        write_json(out / f"hold-{proc}.json", {"ids": claimed})
    finally:
        await store.close()


def main(argv: list[str]) -> None:
    mode, url, out = argv[0], argv[1], Path(argv[2])
    if mode == "race":
        proc, tasks, rounds, types = argv[3], int(argv[4]), int(argv[5]), argv[6]
        anyio.run(race, url, out, proc, tasks, rounds, types)
    elif mode == "bulk":
        proc, types = argv[3], argv[4]
        anyio.run(bulk, url, out, proc, types)
    elif mode == "hold":
        proc, types, per_dealer = argv[3], argv[4], int(argv[5])
        anyio.run(hold, url, out, proc, types, per_dealer)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
