"""Console benchmark at 1,000 dealers: key→repaint latency, and engine throughput with the
console attached vs headless.

    python benchmarks/console_latency.py [--dealers 1000] [--presses 100] [--json]

- latency: the console runs headless (Textual's run_test, 100×30) over 1,000 dealers × 4 job
  types while the engine works through them; each `down`/`up` press is timed from the press
  until the app has processed it and repainted (Pilot.press + pause: the message queue is
  empty and the screen refreshed). Pilot itself waits for idle and for the next screen update
  even when a key does nothing, so the same is timed for a key bound to nothing (`f20`) and
  reported as `pilot_floor_ms`; `app_ms` is the press minus that floor: the time the console
  itself needs. p50 and p95 in ms;
- throughput: the same 4,000 no-op jobs run by MultiDealerDependencyManager headless, then on
  a fresh database by the console's EngineProcess (a child process) while the console
  refreshes at 2 Hz; jobs/s both ways and the ratio. Config and seeding: console_bench.py.
Targets (issue 5): p95 under 100 ms; attached at least 50% of headless.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from console_bench import headless_rate, seeded  # benchmarks/ is the script's directory

from dealertui.engine.host import EngineProcess
from dealertui.tui.app import make_app
from dealertui.tui.widgets import LanesTable


async def timed_presses(pilot: Any, keys: list[str]) -> list[float]:
    out = []
    for key in keys:
        t0 = time.perf_counter()
        await pilot.press(key)
        await pilot.pause()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def attached(
    tmp: Path, dealers: int, presses: int
) -> tuple[float, list[float], list[float]]:
    """Throughput of the engine inside the console, and key→repaint latencies meanwhile."""
    cfg, store = await seeded(f"sqlite+aiosqlite:///{tmp}/attached.db", dealers)
    app = make_app(cfg, store)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            while app.refreshes < 1:
                await pilot.pause(0.01)
            # the engine as the console runs it (`s`): a child process
            running = asyncio.create_task(EngineProcess(cfg, wait=False).run())
            table = app.query_one(LanesTable)
            keys = ["down" if i % 20 < 10 else "up" for i in range(presses)]
            latencies = await timed_presses(pilot, keys)
            floor = await timed_presses(pilot, ["f20"] * presses)
            stats = await running
            assert table.row_count == dealers
            rate = stats.processed_jobs / (stats.processing_time_ms / 1000)
    finally:
        await store.close()
    return rate, latencies, floor


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dealers", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dealertui-console-bench-") as tmp:
        alone, _ = await headless_rate(Path(tmp), args.dealers)
        with_console, lat, floor = await attached(Path(tmp), args.dealers, args.presses)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    base = statistics.median(floor)
    net = [max(x - base, 0.0) for x in lat]
    qn = statistics.quantiles(net, n=100, method="inclusive")
    result = {
        "dealers": args.dealers,
        "jobs": args.dealers * 4,
        "key_to_repaint_ms": {"p50": round(statistics.median(lat), 1), "p95": round(q[94], 1),
                              "max": round(max(lat), 1), "presses": len(lat)},
        "pilot_floor_ms": round(base, 1),
        "app_ms": {"p50": round(statistics.median(net), 1), "p95": round(qn[94], 1)},
        "headless_jobs_per_s": round(alone, 1),
        "attached_jobs_per_s": round(with_console, 1),
        "attached_ratio": round(with_console / alone, 3) if alone else 0.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"key→repaint p50 {result['key_to_repaint_ms']['p50']} ms, p95 "
              f"{result['key_to_repaint_ms']['p95']} ms (Pilot's own floor "
              f"{result['pilot_floor_ms']} ms; the console's share p50 "
              f"{result['app_ms']['p50']} ms, p95 {result['app_ms']['p95']} ms); engine "
              f"{result['headless_jobs_per_s']}"
              f" jobs/s headless vs {result['attached_jobs_per_s']} with the console attached "
              f"({result['attached_ratio']:.0%})")


if __name__ == "__main__":
    asyncio.run(main())
