"""The engine and the read commands on an empty history and on a long one, side by side.

    python benchmarks/history_ratio.py [--history 1000000] [--rounds 5] [--database-url URL]

Fills two template databases once (the bench's dealers, one of them also with *history*
finished jobs of earlier pipelines, headless/history.py; then one pipeline per dealer to
run, 10,000 jobs), then, alternating between them in
the same minutes, runs the bench (enqueue one pipeline per dealer, run it all) on a fresh copy
of each template, and times `status`, `health` and `--run-once --dry-run` as processes
against the templates themselves (they only read). Prints medians and the ratios the issue
names; `dealertui bench --history N` is the one-shot form of the first number. SQLite copies
the file; Postgres clones with CREATE DATABASE ... TEMPLATE, so no round pays for the fill.
"""

# ruff: noqa: ASYNC240  (a benchmark between rounds: no loop to keep responsive)

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from dealertui.config import parse_config
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.headless.history import fill_history
from dealertui.store import Intent, open_store

DEALERS = 2500
READS = (("status", "--json"), ("health", "--json"), ("--run-once", "--dry-run", "--json"))


def _config(url: str):  # type: ignore[no-untyped-def]
    cfg = parse_config({}, None)
    types = {n: dataclasses.replace(t, handler="dealertui.handlers.demo:noop")
             for n, t in cfg.job_types.items()}
    return dataclasses.replace(cfg, database_url=url, job_types=types)


class Templates:
    """Where the templates live and how a fresh copy of one is made and thrown away."""

    def __init__(self, base: str | None, tmp: str) -> None:
        self.base, self.tmp = base, tmp
        self.pg = base is not None and make_url(base).get_backend_name() == "postgresql"

    def url(self, name: str) -> str:
        if not self.pg:
            return f"sqlite+aiosqlite:///{os.path.join(self.tmp, name + '.db')}"
        assert self.base is not None
        return make_url(self.base).set(database=name).render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        assert self.base is not None
        engine = create_async_engine(self.base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def create(self, name: str) -> str:
        if self.pg:
            await self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def copy(self, template: str, name: str) -> str:
        if self.pg:
            await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            shutil.copyfile(os.path.join(self.tmp, template + ".db"),
                            os.path.join(self.tmp, name + ".db"))
        return self.url(name)

    async def drop(self, name: str) -> None:
        if self.pg:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            for suffix in (".db", ".db-wal", ".db-shm"):
                if os.path.exists(p := os.path.join(self.tmp, name + suffix)):
                    os.remove(p)


async def make_template(t: Templates, name: str, history: int) -> float:
    store = await open_store(_config(await t.create(name)), Intent.CREATE)
    try:
        await store.add_dealers([(f"bench{i:05d}", None) for i in range(DEALERS)])
        started = time.perf_counter()
        ids = [f"bench{i:05d}" for i in range(DEALERS)]
        if history:
            await fill_history(store, ids, history)
        fill_s = time.perf_counter() - started
        # the work to do: one pipeline per dealer, what the reads see and each round runs
        for i in range(0, len(ids), 500):
            await store.enqueue(ids[i:i + 500])
        return fill_s
    finally:
        await store.close()


async def bench_round(t: Templates, template: str) -> float:
    name = f"hr_{uuid.uuid4().hex[:8]}"
    cfg = _config(await t.copy(template, name))
    try:
        store = await open_store(cfg, Intent.WRITE)
        try:
            manager = MultiDealerDependencyManager(store, cfg, 500, 2, kind="bench")
            started = time.perf_counter()
            stats = await manager.process_multi_dealer_jobs()
            seconds = time.perf_counter() - started
            assert stats.successful_jobs == stats.total_jobs, stats
            return stats.total_jobs / seconds
        finally:
            await store.close()
    finally:
        await t.drop(name)


def read_seconds(url: str, argv: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dealertui", "--database-url", url, *argv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dealertui-history-") as tmp:
        t = Templates(args.database_url, tmp)
        tag = uuid.uuid4().hex[:6]
        empty, full = f"hr_empty_{tag}", f"hr_full_{tag}"
        try:
            await make_template(t, empty, 0)
            fill_s = await make_template(t, full, args.history)
            rates: dict[str, list[float]] = {empty: [], full: []}
            reads: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for name in (empty, full) if r % 2 == 0 else (full, empty):
                    rates[name].append(await bench_round(t, name))
                    for argv in READS:
                        reads.setdefault((name, argv[0]), []).append(
                            await asyncio.to_thread(read_seconds, t.url(name), argv))
            size = (os.path.getsize(os.path.join(tmp, full + ".db"))
                    - os.path.getsize(os.path.join(tmp, empty + ".db"))) if not t.pg else None
        finally:
            await t.drop(empty)
            await t.drop(full)
    med = {k: statistics.median(v) for k, v in rates.items()}
    out = {
        "backend": "postgresql" if t.pg else "sqlite",
        "history_jobs": args.history, "history_fill_seconds": round(fill_s, 1),
        "rounds": args.rounds,
        "jobs_per_s": {"empty": round(med[empty]), "history": round(med[full]),
                       "ratio": round(med[full] / med[empty], 3)},
        "reads_s": {
            cmd: {"empty": round(statistics.median(reads[(empty, cmd)]), 3),
                  "history": round(statistics.median(reads[(full, cmd)]), 3),
                  "ratio": round(statistics.median(reads[(full, cmd)])
                                 / statistics.median(reads[(empty, cmd)]), 3)}
            for cmd in (a[0] for a in READS)
        },
        "bytes_per_history_job": round(size / args.history) if size and args.history else None,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
