"""Console at 1,000 dealers: key→repaint latency (p50/p95) and engine throughput, console
attached vs headless.

    python benchmarks/console_bench.py [--dealers 1000] [--presses 100] [--refresh-s 0.5]

Latency is taken from the app's own paint, not from Pilot: a `down` key event is handed to
the headless driver exactly as Pilot does, and the clock stops at the first screen update
(`App._display` with a compositor update: what a real terminal would be sent) after the lanes'
cursor has moved. Pilot's `press` + `pause` also waits for idle and for its own next frame,
which adds a floor of its own (see benchmarks/console_latency.py, which reports that floor);
both numbers are printed here. Measured twice: with the console alone (refreshing 1,000
dealers at --refresh-s) and while the engine works through 4,000 jobs the way the console
runs it (`s`: EngineProcess, the engine in a child process).

Throughput: 4,000 no-op jobs (1,000 dealers × the four default types) run by
MultiDealerDependencyManager headless (process_multi_dealer_jobs), then on a fresh database
with the same manager run by the console's EngineProcess (the console refreshing meanwhile).
Concurrency is `dealertui bench`'s: 500 dealers × 2 jobs. Targets (issue 5): p95 < 100 ms;
attached ≥ 50% of headless. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events

from dealertui.config import Config, parse_config
from dealertui.engine.host import EngineProcess
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.store import JobStore, open_store
from dealertui.tui.app import DealerConsole, make_app
from dealertui.tui.widgets import LanesTable

NOOP = "dealertui.handlers.demo:noop"
#: pipelines per dealer enqueued for the keys-while-the-engine-runs phase (20,000 jobs: a
#: run long enough for ~100 presses)
PRESSING_PIPELINES = 5
PARENTS = {"homenet": [], "dealer_com": ["homenet"], "product_scrape": ["homenet"],
           "url_shorten": ["product_scrape"]}


def make_config(url: str) -> Config:
    cfg = parse_config(
        {
            "concurrency": {"max_concurrent_dealers": 500, "max_concurrent_jobs_per_dealer": 2},
            "job_types": {name: {"priority": i, "depends_on": deps, "handler": NOOP}
                          for i, (name, deps) in enumerate(PARENTS.items(), 1)},
        },
        None,
    )
    return dataclasses.replace(cfg, database_url=url)


async def seeded(url: str, dealers: int) -> tuple[Config, JobStore]:
    cfg = make_config(url)
    store = await open_store(cfg)
    ids = [f"d{i:04d}" for i in range(dealers)]
    await store.add_dealers([(d, f"Dealer {d}") for d in ids])
    for i in range(0, len(ids), 500):
        await store.enqueue(ids[i:i + 500])
    return cfg, store


async def _dealers(store: JobStore) -> list[tuple[str, str | None]]:
    return [(d.id, d.name) for d in await store.list_dealers()]


def pct(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(statistics.median(values), 1), "p95": round(q[94], 1),
            "max": round(max(values), 1), "n": len(values)}


class PaintClock:
    """Timestamps of the app's screen updates (headless: computed, not written)."""

    def __init__(self, app: DealerConsole) -> None:
        self.times: list[float] = []
        original: Callable[..., None] = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None and not app._batch_count:
                self.times.append(time.perf_counter())
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]


async def key_to_paint(
    app: DealerConsole, paints: PaintClock, presses: int,
    while_: Callable[[], bool] = lambda: True,
) -> list[float]:
    """Send `down` (as Pilot's driver path does) and time it to the first paint after the
    cursor moved; up to *presses* times, while *while_* holds. A random pause between
    presses, so they fall anywhere in the refresh cycle."""
    table = app.query_one(LanesTable)
    driver = app._driver
    assert driver is not None
    rng = random.Random(5)
    out = []
    for _ in range(presses):
        if not while_():
            break
        row = table.cursor_coordinate.row
        t0 = time.perf_counter()
        key = events.Key("down", None)
        key.set_sender(app)
        driver.send_message(key)
        moved_at = None
        deadline = t0 + 10
        while time.perf_counter() < deadline:
            if moved_at is None and table.cursor_coordinate.row != row:
                moved_at = time.perf_counter()
            if moved_at is not None:
                after = [t for t in paints.times if t >= t0]
                # the paint that shows the move: the first one not before the move was seen
                # (polling every 0.5 ms, a paint between the move and our look counts too)
                shown = [t for t in after if t >= moved_at - 0.0005]
                if shown:
                    out.append((shown[0] - t0) * 1000)
                    break
            await asyncio.sleep(0.0005)
        else:
            raise RuntimeError("a key press was never painted")
        await asyncio.sleep(rng.uniform(0.005, 0.03))
    return out


async def pilot_presses(pilot: Any, presses: int) -> list[float]:
    """The same through Pilot: press + pause (includes Pilot's own waiting)."""
    out = []
    for _ in range(presses):
        t0 = time.perf_counter()
        await pilot.press("down")
        await pilot.pause()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def headless_rate(tmp: Path, dealers: int) -> tuple[float, int]:
    cfg, store = await seeded(f"sqlite+aiosqlite:///{tmp}/headless.db", dealers)
    try:
        stats = await MultiDealerDependencyManager(store, cfg).process_multi_dealer_jobs()
        return stats.processed_jobs / (stats.processing_time_ms / 1000), stats.processed_jobs
    finally:
        await store.close()


async def console_run(tmp: Path, dealers: int, presses: int, refresh_s: float) -> dict[str, Any]:
    cfg, store = await seeded(f"sqlite+aiosqlite:///{tmp}/attached.db", dealers)
    app = make_app(cfg, store, refresh_s=refresh_s)
    result: dict[str, Any] = {}
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            paints = PaintClock(app)
            table = app.query_one(LanesTable)
            while table.row_count < dealers or app.refreshes < 2:
                await pilot.pause(0.05)
            result["idle_ms"] = pct(await key_to_paint(app, paints, presses))
            result["idle_pilot_ms"] = pct(await pilot_presses(pilot, presses))

            # throughput: the engine in the console, nobody pressing keys
            # as the console runs it (`s`): EngineProcess, a child process
            refreshes0 = app.refreshes
            stats = await EngineProcess(cfg, wait=False).run()
            result["attached_jobs_per_s"] = stats.processed_jobs / (
                stats.processing_time_ms / 1000)
            result["attached_jobs"] = stats.processed_jobs
            result["refreshes_during_run"] = app.refreshes - refreshes0

            # latency while the engine works: PRESSING_PIPELINES more pipelines for every
            # dealer, keys pressed until the engine is done (so n is what fits in the run)
            ids = [d for d, _ in await _dealers(store)]
            for _ in range(PRESSING_PIPELINES):
                for i in range(0, len(ids), 500):
                    await store.enqueue(ids[i:i + 500])
            running = asyncio.create_task(EngineProcess(cfg, wait=False).run())
            result["engine_running_ms"] = pct(await key_to_paint(
                app, paints, presses, while_=lambda: not running.done()))
            stats = await running
            result["attached_pressing_jobs_per_s"] = stats.processed_jobs / (
                stats.processing_time_ms / 1000)
            # leave with no database call in flight (see tests/consolepilot.py quit_when_idle)
            app._refreshing = True
            app.snapshot = None
            while any(w.is_running for w in app.workers):
                await pilot.pause(0.02)
            app.exit()
    finally:
        await store.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dealers", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--refresh-s", type=float, default=0.5, help="the console's default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dealertui-console-bench-") as tmp:
        headless, jobs = await headless_rate(Path(tmp), args.dealers)
        attached = await console_run(Path(tmp), args.dealers, args.presses, args.refresh_s)
    print(json.dumps({
        "dealers": args.dealers,
        "jobs": jobs,
        "refresh_s": args.refresh_s,
        "key_to_repaint_ms": {
            "console_idle": attached["idle_ms"],
            "engine_running": attached["engine_running_ms"],
            "pilot_press_pause_idle": attached["idle_pilot_ms"],
        },
        "headless_jobs_per_s": round(headless, 1),
        "attached_jobs_per_s": round(attached["attached_jobs_per_s"], 1),
        "attached_ratio": round(attached["attached_jobs_per_s"] / headless, 3),
        "attached_while_pressing_jobs_per_s": round(attached["attached_pressing_jobs_per_s"], 1),
        "refreshes_during_attached_run": attached["refreshes_during_run"],
    }, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
