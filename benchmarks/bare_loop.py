"""The bare loop the engine issue measures the SQLite target against, beside `dealertui bench`.

Issue #3 sets 25,000 jobs/s on SQLite and explains it by a bare loop that "claims 256 ready
jobs per statement, runs no-op tasks and completes them in batches with dependency promotion",
through SQLAlchemy + aiosqlite, at ~50,000 jobs/s on a 2-core machine. This is that loop, on
the bench's workload (2,500 dealers x the 4 seed job types, the seed's dependencies), so that
the target can be read against the machine at hand: run both in the same minutes, interleaved,
because this machine's speed drifts by up to 1.6x within an hour.

    python benchmarks/bare_loop.py [ROUNDS]

The bare loop has no leases, no audit trail, no per-dealer limits or round-robin, no retries
and no stats: it is the floor of the work, not a queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

DEALERS = 2_500
BATCH = 256
#: the seed's job types and what each waits for
TYPES = {
    "homenet": (),
    "dealer_com": ("homenet",),
    "product_scrape": ("homenet",),
    "url_shorten": ("product_scrape",),
}

SCHEMA = [
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, dealer_id TEXT NOT NULL, "
    "job_type TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE TABLE deps (child_id INTEGER NOT NULL, parent_id INTEGER NOT NULL, "
    "PRIMARY KEY (child_id, parent_id))",
    "CREATE INDEX ix_deps_parent ON deps (parent_id)",
    "CREATE INDEX ix_jobs_ready ON jobs (id) WHERE state = 'ready'",
]

CLAIM = """
    UPDATE jobs SET state = 'running'
    WHERE id IN (SELECT id FROM jobs WHERE state = 'ready' ORDER BY id LIMIT :n)
    RETURNING id
"""
SUCCEED = "UPDATE jobs SET state = 'succeeded' WHERE id IN (SELECT value FROM json_each(:ids))"
PROMOTE = """
    UPDATE jobs SET state = 'ready'
    WHERE state = 'waiting'
      AND id IN (SELECT child_id FROM deps WHERE parent_id IN (SELECT value FROM json_each(:ids)))
      AND NOT EXISTS (SELECT 1 FROM deps d JOIN jobs p ON p.id = d.parent_id
                      WHERE d.child_id = jobs.id AND p.state <> 'succeeded')
"""


async def _noop() -> None:
    return None


async def _seed(conn: AsyncConnection) -> int:
    rows, deps = [], []
    next_id = 1
    for d in range(DEALERS):
        ids: dict[str, int] = {}
        for job_type, parents in TYPES.items():
            ids[job_type] = next_id
            rows.append({"id": next_id, "d": f"dealer{d:05d}", "t": job_type,
                         "s": "waiting" if parents else "ready"})
            deps += [{"c": next_id, "p": ids[p]} for p in parents]
            next_id += 1
    await conn.execute(text("INSERT INTO jobs VALUES (:id, :d, :t, :s)"), rows)
    await conn.execute(text("INSERT INTO deps VALUES (:c, :p)"), deps)
    return len(rows)


async def bare_round() -> float:
    """One drain of DEALERS x 4 jobs; returns jobs/s."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{os.path.join(tmp, 'bare.db')}")

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
                dbapi_connection.execute(f"PRAGMA {pragma}")

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        async with engine.begin() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))
            total = await _seed(conn)
        done = 0
        t0 = time.perf_counter()
        while done < total:
            async with engine.begin() as conn:
                ids = (await conn.execute(text(CLAIM), {"n": BATCH})).scalars().all()
            if not ids:
                raise RuntimeError(f"nothing ready after {done} of {total} jobs")
            await asyncio.gather(*(asyncio.ensure_future(_noop()) for _ in ids))
            batch = json.dumps(ids)
            async with engine.begin() as conn:
                await conn.execute(text(SUCCEED), {"ids": batch})
                await conn.execute(text(PROMOTE), {"ids": batch})
            done += len(ids)
        seconds = time.perf_counter() - t0
        await engine.dispose()
        return total / seconds


def dealertui_round() -> float:
    out = subprocess.run(
        [sys.executable, "-m", "dealertui", "bench", "--json"],
        check=True, capture_output=True, text=True,
    )
    return float(json.loads(out.stdout)["jobs_per_s"])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bare: list[float] = []
    ours: list[float] = []
    for i in range(rounds):  # interleaved: both see the same minutes of the machine
        bare.append(asyncio.run(bare_round()))
        ours.append(dealertui_round())
        print(f"round {i + 1}: bare loop {bare[-1]:,.0f} jobs/s, "
              f"dealertui bench {ours[-1]:,.0f} jobs/s", file=sys.stderr)
    b, o = statistics.median(bare), statistics.median(ours)
    print(json.dumps({"rounds": rounds, "bare_loop_jobs_per_s": round(b),
                      "dealertui_jobs_per_s": round(o), "ratio": round(o / b, 3)}))


if __name__ == "__main__":
    main()
