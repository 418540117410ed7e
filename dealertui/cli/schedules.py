"""`dealertui schedules [--json]`: each schedule of the config with its last tick, next due
time, totals and pause. Reads only (the READ intent: nothing created, nothing written)."""

from __future__ import annotations

import argparse
import json
import time

from dealertui.cli.common import out, read_store
from dealertui.config import Config
from dealertui.text import plural


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts)) if ts is not None else "–"


async def cmd_schedules(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.schedules import report

    if not config.schedules and not args.json:
        where = config.source or "the config"
        out(f"no schedules in {where} (add a [[schedules]] table; see the README)")
        return 0
    store = await read_store(config)
    try:
        infos = await report(store, config)
    finally:
        await store.close()
    if args.json:
        out(json.dumps(infos, indent=2))
        return 0
    for s in infos:
        dealers = s["dealers"] if isinstance(s["dealers"], str) else ", ".join(s["dealers"])
        types = "types " + ", ".join(s["types"]) if s["types"] else "every job type"
        state = (f"PAUSED by {s['paused_by']} since {_when(s['paused_at'])}"
                 if s["paused"] else "active")
        out(f"{s['name']}: {s['when']}; dealers {dealers}; {types}; overlap {s['overlap']}; "
            f"{state}")
        due = "overdue since " if s["overdue"] else ""
        if s["first_seen_at"] is None:
            seen = "not seen by an engine yet (it fires from the first tick after one runs)"
        else:
            seen = f"last tick {_when(s['last_tick'])}"
        out(f"  {seen}; next due {due}{_when(s['next_due'])}")
        out(f"  {plural(s['ticks'], 'tick')} fired, {plural(s['pipelines'], 'pipeline')} "
            f"enqueued, {plural(s['skipped'], 'dealer')} skipped (its pipeline unfinished)")
    return 0
