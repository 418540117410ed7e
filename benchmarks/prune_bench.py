"""How long retention holds SQLite's write lock on a big history (design.md, "Retention").

Fills a new SQLite file with JOBS finished jobs of old pipelines (four jobs each, the seed
job types and dependencies, three job_events rows a job as the engine writes them today, the
newest pipeline of every dealer kept), then runs the engines' prune passes (store/retention.py)
until nothing is due, and prints the longest transaction, the rows per pass and the file's
size before and after, as JSON.

    python benchmarks/prune_bench.py [JOBS] [POSTGRES_URL]   (default 400,000 jobs, the
                                                             issue's figure, on SQLite)

With a Postgres URL (an empty database) the same history is made there by SQL instead.
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


#: the history of `fill`, made by Postgres itself (generate_series) in a few statements
_PG_FILL = [
    "INSERT INTO dealers (id, created_at, last_served_at) SELECT 'd' || lpad(i::text, 4, '0'), "
    "0, 0 FROM generate_series(0, :dealers - 1) i",
    "INSERT INTO pipelines (id, dealer_id, types, first_job_id, last_job_id, jobs, created_at) "
    "SELECT p * 4 + 1, 'd' || lpad((p % :dealers)::text, 4, '0'), "
    "'dealer_com,homenet,product_scrape,url_shorten', p * 4 + 1, p * 4 + 4, 4, "
    ":now - 60 * 86400 + (p::float / :pipelines) * 59 * 86400 "
    "FROM generate_series(0, :pipelines - 1) p",
    "INSERT INTO jobs (id, dealer_id, job_type, state, priority, attempts, max_attempts, "
    "run_after, created_at, updated_at, finished_at, pipeline_id, claim_seq, worker) "
    "SELECT p.id + t.n, p.dealer_id, t.name, 'succeeded', t.n + 1, 1, 5, p.created_at, "
    "p.created_at, p.created_at, p.created_at, p.id, 1, 'w1' FROM pipelines p CROSS JOIN "
    "(VALUES (0, 'homenet'), (1, 'dealer_com'), (2, 'product_scrape'), (3, 'url_shorten')) "
    "AS t(n, name)",
    "INSERT INTO job_events (job_id, dealer_id, job_type, at, from_state, to_state) "
    "SELECT j.id, j.dealer_id, j.job_type, j.finished_at, e.f, e.t FROM jobs j CROSS JOIN "
    "(VALUES (NULL, 'ready'), ('ready', 'running'), ('running', 'succeeded')) AS e(f, t)",
    "INSERT INTO job_deps (child_id, parent_id) SELECT p.id + d.c, p.id + d.p FROM "
    "pipelines p CROSS JOIN (VALUES (1, 0), (2, 0), (3, 2)) AS d(c, p)",
    "INSERT INTO newest_jobs (dealer_id, job_type, job_id) SELECT dealer_id, job_type, "
    "max(id) FROM jobs GROUP BY dealer_id, job_type",
    "SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT max(id) FROM jobs))",
    "ANALYZE",
]


async def fill_postgres(store: JobStore, jobs: int, now: float) -> None:
    from sqlalchemy import text

    async with store.db.engine.begin() as conn:
        for sql in _PG_FILL:
            await conn.execute(text(sql), {"dealers": DEALERS, "pipelines": jobs // 4,
                                           "now": now})


def quantiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms) or [0.0]
    return {"p50": round(ms[len(ms) // 2], 1), "p99": round(ms[int(len(ms) * 0.99)], 1),
            "max": round(ms[-1], 1)}


def size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


async def main(jobs: int, pg_url: str | None) -> None:
    directory = tempfile.mkdtemp(prefix="prune-bench-")
    path = os.path.join(directory, "history.db")
    url = pg_url or f"sqlite+aiosqlite:///{path}"
    now = time.time()
    store = await JobStore.open(url, RULES)
    t0 = time.perf_counter()
    if pg_url:
        await fill_postgres(store, jobs, now)
    await store.close()
    if not pg_url:
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
        "jobs": jobs, "fill_s": round(filled_s, 1),
        "size_before_mb": None if pg_url else round(before / 1e6, 1),
        "size_after_mb": None if pg_url else round(after / 1e6, 1), "passes": len(passes),
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
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 400_000,
                     sys.argv[2] if len(sys.argv) > 2 else None))
