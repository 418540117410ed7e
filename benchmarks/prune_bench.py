"""How long retention holds SQLite's write lock on a big history (design.md, "Retention").

Fills a new SQLite file with JOBS finished jobs of old pipelines (four jobs each, the seed
job types and dependencies, three job_events rows a job as the engine writes them today, the
newest pipeline of every dealer kept), then runs the engines' prune passes (store/retention.py)
until nothing is due, and prints the longest transaction, the rows per pass and the file's
size before and after, as JSON.

    python benchmarks/prune_bench.py [JOBS]        (default 400,000, the issue's figure)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any

from dealertui.config import RetentionConfig
from dealertui.engine.pruning import limits
from dealertui.store import JobStore, JobTypeRule
from dealertui.store.retention import Pruner, Tally

TYPES = ("homenet", "dealer_com", "product_scrape", "url_shorten")
PARENT = {"dealer_com": "homenet", "product_scrape": "homenet", "url_shorten": "product_scrape"}
RULES = {t: JobTypeRule(i, (PARENT[t],) if t in PARENT else ()) for i, t in enumerate(TYPES, 1)}
DEALERS = 1_000
DAY = 86400.0


def fill(path: str, jobs: int, now: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO dealers (id, created_at, last_served_at) VALUES (?, 0, 0)",
                     [(f"d{i:04}",) for i in range(DEALERS)])
    pipelines = jobs // len(TYPES)
    job_rows, event_rows, dep_rows, pipe_rows, newest = [], [], [], [], {}
    for p in range(pipelines):
        dealer = f"d{p % DEALERS:04}"
        first = p * len(TYPES) + 1
        # spread over the last 60 days, oldest first
        at = now - 60 * DAY + (p / pipelines) * 59 * DAY
        ids = dict(zip(TYPES, range(first, first + len(TYPES)), strict=True))
        for t, i in ids.items():
            job_rows.append((i, dealer, t, RULES[t].priority, at, at, at, at, first))
            event_rows += [(i, dealer, t, at, None, "ready", "enqueued"),
                           (i, dealer, t, at, "ready", "running", None),
                           (i, dealer, t, at, "running", "succeeded", None)]
            newest[(dealer, t)] = i
        dep_rows += [(ids[c], ids[pt]) for c, pt in PARENT.items()]
        pipe_rows.append((first, dealer, ",".join(sorted(TYPES)), first,
                          first + len(TYPES) - 1, len(TYPES), at))
        if len(job_rows) >= 50_000 or p == pipelines - 1:
            conn.executemany(
                "INSERT INTO jobs (id, dealer_id, job_type, state, priority, attempts, "
                "max_attempts, run_after, created_at, updated_at, finished_at, pipeline_id, "
                "claim_seq, worker) VALUES (?, ?, ?, 'succeeded', ?, 1, 5, ?, ?, ?, ?, ?, 1, "
                "'w1')", job_rows)
            conn.executemany(
                "INSERT INTO job_events (job_id, dealer_id, job_type, at, from_state, "
                "to_state, message) VALUES (?, ?, ?, ?, ?, ?, ?)", event_rows)
            conn.executemany("INSERT INTO job_deps (child_id, parent_id) VALUES (?, ?)",
                             dep_rows)
            conn.executemany(
                "INSERT INTO pipelines (id, dealer_id, types, first_job_id, last_job_id, jobs, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", pipe_rows)
            job_rows, event_rows, dep_rows, pipe_rows = [], [], [], []
    conn.executemany("INSERT INTO newest_jobs (dealer_id, job_type, job_id) VALUES (?, ?, ?)",
                     [(d, t, i) for (d, t), i in newest.items()])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def quantiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms) or [0.0]
    return {"p50": round(ms[len(ms) // 2], 1), "p99": round(ms[int(len(ms) * 0.99)], 1),
            "max": round(ms[-1], 1)}


def size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


async def main(jobs: int) -> None:
    directory = tempfile.mkdtemp(prefix="prune-bench-")
    path = os.path.join(directory, "history.db")
    url = f"sqlite+aiosqlite:///{path}"
    now = time.time()
    store = await JobStore.open(url, RULES)
    await store.close()
    t0 = time.perf_counter()
    fill(path, jobs, now)
    filled_s = time.perf_counter() - t0
    before = size(path)
    store = await JobStore.open(url, RULES, create=False)
    if os.environ.get("NO_AUTOCHECKPOINT"):  # to tell the WAL checkpoints' share
        from sqlalchemy import event

        await store.db.engine.dispose()
        event.listen(store.db.engine.sync_engine, "connect",
                     lambda c, _r: c.execute("PRAGMA wal_autocheckpoint=0"))
    pruner = Pruner(store.db, limits(RetentionConfig()), clock=lambda: now)
    tx_ms: list[float] = []
    run = store.db.run

    async def timed_run(fn: Any, **kw: Any) -> Any:  # every write transaction a pass makes
        t = time.perf_counter()
        try:
            return await run(fn, **kw)
        finally:
            if kw.get("write", True):
                tx_ms.append((time.perf_counter() - t) * 1000)

    store.db.run = timed_run  # type: ignore[method-assign]
    passes: list[dict[str, float]] = []
    total = Tally()
    vacuum_ms: list[float] = []
    t0 = time.perf_counter()
    while True:
        t1 = time.perf_counter()
        tally = await pruner.prune()
        pass_ms = (time.perf_counter() - t1) * 1000
        t1 = time.perf_counter()
        if tally.rows:
            await pruner.vacuum()
            vacuum_ms.append((time.perf_counter() - t1) * 1000)
        total.add(tally)
        passes.append({"rows": tally.rows, "transactions": tally.transactions,
                       "longest_tx_ms": round(tally.longest_tx_ms, 1),
                       "pass_ms": round(pass_ms, 1)})
        if tally.complete:
            break
    pruning_s = time.perf_counter() - t0
    await store.close()
    after = size(path)
    shutil.rmtree(directory)
    deleting = [p for p in passes if p["rows"]]
    print(json.dumps({
        "jobs": jobs, "fill_s": round(filled_s, 1), "size_before_mb": round(before / 1e6, 1),
        "size_after_mb": round(after / 1e6, 1), "passes": len(passes),
        "pipelines_deleted": sum(total.pipelines.values()),
        "rows_deleted": total.rows,
        "rows_per_pass_max": max((p["rows"] for p in passes), default=0),
        "write_transactions": len(tx_ms),
        "write_tx_ms": quantiles(tx_ms),
        "vacuum_ms": quantiles(vacuum_ms),
        "passes_deleting": len(deleting),
        "pruning_s": round(pruning_s, 1),
        "first_passes": passes[:3],
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 400_000))
