"""A made-up history for `bench --history N` and benchmarks/history_fill.py: N finished jobs
of earlier pipelines, as the engine leaves them (succeeded rows without events; every 20th
pipeline's last job failed, with its retry and failure events), written by a few INSERT …
SELECT statements so a million jobs take seconds, not the hours running them would.

Pipelines are hourly per dealer, the newest an hour ago; newest_jobs points at the newest
of them, as after a real run.
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.store import JobStore
from dealertui.store.pipelines import type_order

#: every FAIL_EVERY-th pipeline ends failed (its last job), with a retry before the failure
FAIL_EVERY = 20


def _numbers(conn: AsyncConnection, count: str) -> str:
    """A row source `n(i)` of 0 .. count-1, as each dialect writes it."""
    if conn.dialect.name == "postgresql":
        return f"(SELECT generate_series(0, {count} - 1) AS i) n"
    return (f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
            f"WHERE i < {count} - 1) SELECT i FROM s) n")


async def fill_history(store: JobStore, dealer_ids: list[str], jobs_wanted: int) -> int:
    """Add about *jobs_wanted* finished jobs (whole pipelines over *dealer_ids*); returns the
    number of jobs added."""
    order = type_order(store.rules, None)
    per = len(order)
    n_pipes = jobs_wanted // per
    if n_pipes == 0 or not dealer_ids:
        return 0
    n_dealers = len(dealer_ids)
    rounds = -(-n_pipes // n_dealers)
    now = time.time()
    kind = "CASE k " + " ".join(f"WHEN {i} THEN '{t}'" for i, t in enumerate(order)) + " END"
    prio = "CASE k " + " ".join(
        f"WHEN {i} THEN {store.rules[t].priority}" for i, t in enumerate(order)) + " END"
    dealer = "CASE d " + " ".join(f"WHEN {i} THEN '{x}'" for i, x in enumerate(dealer_ids)) + \
        " END"
    edges = [(order.index(c), order.index(p)) for c in order for p in store.rules[c].depends_on
             if p in order]

    async def tx(conn: AsyncConnection) -> int:
        base = (await conn.execute(text("SELECT coalesce(max(id), 0) FROM jobs"))).scalar_one()
        # pipeline p = i / per, its type k = i % per, its dealer d = p % D, its round r = p / D;
        # round r was created (rounds - r) hours ago
        src = (f"(SELECT i, i / {per} AS p, i % {per} AS k, (i / {per}) % {n_dealers} "
               f"AS d, (i / {per}) / {n_dealers} AS r FROM "
               f"{_numbers(conn, str(n_pipes * per))}) g")
        created = f"({now} - ({rounds} - r) * 3600.0)"
        failed = f"(p % {FAIL_EVERY} = {FAIL_EVERY - 1} AND k = {per - 1})"
        await conn.execute(text(
            "INSERT INTO jobs (id, dealer_id, job_type, state, priority, attempts, max_attempts,"
            " run_after, created_at, updated_at, ready_at, started_at, finished_at, last_error,"
            " claim_seq, pipeline_id, worker) "
            f"SELECT {base} + i + 1, {dealer}, {kind}, "
            f"CASE WHEN {failed} THEN 'failed' ELSE 'succeeded' END, {prio}, "
            f"CASE WHEN {failed} THEN 2 ELSE 1 END, 3, {created}, {created}, "
            f"{created} + k + 1, {created} + k, {created} + k + 0.5, {created} + k + 1, "
            f"CASE WHEN {failed} THEN 'HTTPError: 503 from feed' ELSE NULL END, "
            f"CASE WHEN {failed} THEN 2 ELSE 1 END, {base} + p * {per} + 1, 'history-fill' "
            f"FROM {src}"))
        for c, p in edges:
            await conn.execute(text(
                f"INSERT INTO job_deps (child_id, parent_id) SELECT {base} + i * {per} + {c} + 1,"
                f" {base} + i * {per} + {p} + 1 FROM {_numbers(conn, str(n_pipes))}"))
        types_key = ",".join(sorted(order))
        await conn.execute(text(
            "INSERT INTO pipelines (id, dealer_id, types, first_job_id, last_job_id, jobs, by,"
            " created_at, settled_at, outcome) "
            f"SELECT {base} + p * {per} + 1, {dealer}, '{types_key}', {base} + p * {per} + 1, "
            f"{base} + p * {per} + {per}, {per}, 'history-fill', {created}, "
            f"{created} + {per}, CASE WHEN p % {FAIL_EVERY} = {FAIL_EVERY - 1} THEN 'failed' "
            f"ELSE 'succeeded' END FROM (SELECT i AS p, i % {n_dealers} AS d, i / "
            f"{n_dealers} AS r FROM {_numbers(conn, str(n_pipes))}) g"))
        for to_state, attempt, offset in (("retrying", 1, 0.2), ("failed", 2, 0.5)):
            await conn.execute(text(
                "INSERT INTO job_events (job_id, dealer_id, job_type, at, from_state, to_state,"
                " worker, attempt, error) "
                f"SELECT {base} + i + 1, {dealer}, {kind}, {created} + k + {offset}, 'running',"
                f" '{to_state}', 'history-fill', {attempt}, 'HTTPError: 503 from feed' "
                f"FROM {src} WHERE {failed}"))
        await conn.execute(text(
            "INSERT INTO newest_jobs (dealer_id, job_type, job_id) "
            f"SELECT dealer_id, job_type, max(id) FROM jobs WHERE id > {base} "
            "GROUP BY dealer_id, job_type "
            "ON CONFLICT (dealer_id, job_type) DO UPDATE SET job_id = excluded.job_id"))
        if conn.dialect.name == "postgresql":
            await conn.execute(text(
                "SELECT setval(pg_get_serial_sequence('jobs', 'id'), "
                "(SELECT max(id) FROM jobs))"))
        return n_pipes * per

    added = await store.db.run(tx)

    async def analyze(conn: AsyncConnection) -> None:
        # autovacuum would have analysed a million new rows by the time anyone looks
        await conn.execute(text("ANALYZE"))

    if store.db.engine.dialect.name == "postgresql":
        await store.db.run(analyze)
    else:
        # a year-old history was checkpointed long ago: left in the WAL, the first commits of
        # the bench would copy a million rows into the file and be timed for it
        async with store.db.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return added
