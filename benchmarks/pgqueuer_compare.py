"""dealertui vs pgqueuer, no-op jobs, on the same Postgres server.

pgqueuer is not a dependency of dealertui: install it in a separate environment and point
this script at a server you may create databases on:

    python3 -m venv /tmp/pgq && /tmp/pgq/bin/pip install pgqueuer asyncpg
    /tmp/pgq/bin/python benchmarks/pgqueuer_compare.py postgresql://postgres@127.0.0.1:5432/postgres

It creates a scratch database, enqueues JOBS no-op jobs for pgqueuer (one entrypoint, no
dependencies), drains them with QueueManager(batch_size=100, mode=drain) and reports jobs/s;
then runs `dealertui bench --database-url URL --json` (10,000 jobs with dependencies enforced)
on the same server, ROUNDS times each, alternating, and prints medians.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta

JOBS = 10_000
BATCH = 100
ROUNDS = 3


async def pgqueuer_round(dsn: str) -> float:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    name = f"pgq_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base, _, _ = dsn.rpartition("/")
        conn = await asyncpg.connect(f"{base}/{name}")
        driver = AsyncpgDriver(conn)
        queries = Queries(driver)
        await queries.install()
        for i in range(0, JOBS, 1000):
            n = min(1000, JOBS - i)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        qm = QueueManager(queries)  # pgqueuer 1.x takes the repository (Queries)

        @qm.entrypoint("noop")
        async def noop(job: object) -> None:
            return None

        t0 = time.perf_counter()
        await qm.run(
            batch_size=BATCH,
            mode=QueueExecutionMode.drain,
            dequeue_timeout=timedelta(seconds=0.1),
        )
        seconds = time.perf_counter() - t0
        await conn.close()
        return JOBS / seconds
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def dealertui_round(dsn: str, dealertui: str) -> float:
    out = subprocess.run(
        [dealertui, "bench", "--database-url", dsn, "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(json.loads(out)["jobs_per_s"])


def main() -> None:
    dsn = sys.argv[1]
    dealertui = sys.argv[2] if len(sys.argv) > 2 else "dealertui"
    pgq: list[float] = []
    ours: list[float] = []
    for _ in range(ROUNDS):  # alternating: a machine's slow minute hits both alike
        pgq.append(asyncio.run(pgqueuer_round(dsn)))
        ours.append(dealertui_round(dsn, dealertui))
    print(json.dumps({
        "jobs": JOBS,
        "pgqueuer_batch": BATCH,
        "pgqueuer_jobs_per_s": [round(x) for x in pgq],
        "pgqueuer_median": round(statistics.median(pgq)),
        "dealertui_jobs_per_s": [round(x) for x in ours],
        "dealertui_median": round(statistics.median(ours)),
    }))


if __name__ == "__main__":
    main()
