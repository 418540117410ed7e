"""`dealertui bench`: no-op jobs on a fresh database, run with run-once semantics; jobs/s,
ready→started latency and peak RSS."""

from __future__ import annotations

import json
import time
from typing import Any

from dealertui.config import Config


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 < q < 1) of *values*, interpolated; 0.0 for none."""
    import statistics

    if len(values) < 2:
        return values[0] if values else 0.0
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[min(max(round(q * 100) - 1, 0), 98)]


async def bench(
    config: Config,
    *,
    dealers: int = 2500,
    max_dealers: int = 500,
    max_jobs_per_dealer: int = 2,
    database_url: str | None = None,
    json_out: bool = False,
    history: int = 0,
) -> int:
    """Enqueue *dealers* × the job types with no-op handlers on a fresh database and run them
    with run-once semantics; print jobs/s, ready→started latency and peak RSS. With
    *history*, the database first gets that many finished jobs of earlier pipelines
    (headless/history.py), so the cost of a long history shows."""
    import dataclasses
    import resource
    import tempfile

    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.headless.history import fill_history
    from dealertui.store import Intent, open_store
    from dealertui.store.scratch import scratch_database

    job_types = {
        name: dataclasses.replace(jt, handler="dealertui.handlers.demo:noop")
        for name, jt in config.job_types.items()
    }
    with tempfile.TemporaryDirectory(prefix="dealertui-bench-") as tmp:
        async with scratch_database(database_url, tmp) as url:
            cfg = dataclasses.replace(config, database_url=url, job_types=job_types)
            store = await open_store(cfg, Intent.CREATE)
            try:
                ids = [f"bench{i:05d}" for i in range(dealers)]
                await store.add_dealers([(d, None) for d in ids])
                t = time.perf_counter()
                filled = await fill_history(store, ids, history) if history else 0
                fill_s = time.perf_counter() - t
                t = time.perf_counter()
                for i in range(0, len(ids), 500):
                    await store.enqueue(ids[i : i + 500])
                enqueue_s = time.perf_counter() - t
                manager = MultiDealerDependencyManager(
                    store, cfg, max_dealers, max_jobs_per_dealer, kind="bench"
                )
                stats = await manager.process_multi_dealer_jobs()
                lat = list(manager.latencies_ms)
            finally:
                await store.close()
    seconds = stats.processing_time_ms / 1000
    result: dict[str, Any] = {
        "backend": "sqlite" if url.startswith("sqlite") else "postgresql",
        "dealers": dealers,
        "jobs": stats.processed_jobs,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(stats.processed_jobs / seconds, 1) if seconds else 0.0,
        "latency_ms": {"p50": round(_percentile(lat, 0.5), 2),
                       "p99": round(_percentile(lat, 0.99), 2)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "enqueue_seconds": round(enqueue_s, 3),
        "history_jobs": filled,
        "history_fill_seconds": round(fill_s, 3),
        "max_dealers": max_dealers,
        "max_jobs_per_dealer": max_jobs_per_dealer,
        "dependency_violations": stats.dependency_violations,
        "successful_jobs": stats.successful_jobs,
    }
    if json_out:
        print(json.dumps(result), flush=True)
    else:
        print(
            f"{result['backend']}: {result['jobs']} jobs ({dealers} dealers) in "
            f"{result['seconds']}s = {result['jobs_per_s']} jobs/s; ready→started p50 "
            f"{result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms; peak RSS "
            f"{result['peak_rss_mb']} MB; dependency violations "
            f"{result['dependency_violations']}"
            + (f"; on a history of {filled} finished jobs" if filled else "")
        )
    return 0 if stats.successful_jobs == stats.total_jobs else 1
