"""Commands that list history, newest first: jobs, runs, history.

The queries live in store/reads (an HTTP endpoint will ask them too); this file only turns
arguments into a query and rows into lines or JSON."""

from __future__ import annotations

import argparse
import json

from dealertui.cli.common import out, read_store
from dealertui.config import Config
from dealertui.text import ago, span

PAYLOAD_SHOWN = 28
ERROR_SHOWN = 60


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


async def cmd_jobs(config: Config, args: argparse.Namespace) -> int:
    from dealertui.store.reads.joblist import JobQuery, job_list

    store = await read_store(config)
    try:
        now = store.clock()
        query = JobQuery.of(dealer_id=args.dealer, types=args.types or (),
                            states=args.states or (), where=args.where,
                            since=now - args.since if args.since is not None else None,
                            limit=args.limit)
        listed = await job_list(store, query)
    finally:
        await store.close()
    if args.json:
        out(json.dumps([j.as_json() for j in listed], indent=2))
        return 0
    if not listed:
        out("no jobs match")
        return 0
    width = max(len(j.dealer_id) for j in listed)
    type_width = max(len(j.job_type) for j in listed)
    out(f"{'id':>8}  {'dealer':<{width}}  {'type':<{type_width}}  {'state':<9}  try  "
        f"{'age':>6}  {'payload':<{PAYLOAD_SHOWN}}  last error")
    for j in listed:
        payload = _clip(j.payload or "", PAYLOAD_SHOWN)
        error = _clip((j.last_error or "").replace("\n", " "), ERROR_SHOWN)
        out(f"{j.id:>8}  {j.dealer_id:<{width}}  {j.job_type:<{type_width}}  {j.state:<9}  "
            f"{j.attempts:>3}  {ago(now - j.updated_at):>6}  {payload:<{PAYLOAD_SHOWN}}  "
            f"{error}".rstrip())
    if len(listed) == args.limit:
        out(f"(the {args.limit} newest; --limit N shows more)")
    return 0


async def cmd_runs(config: Config, args: argparse.Namespace) -> int:
    from dealertui.headless.runlog import run_line
    from dealertui.store.reads.runs import run_history

    store = await read_store(config)
    try:
        listed = await run_history(store, args.limit)
    finally:
        await store.close()
    if args.json:
        out(json.dumps(listed, indent=2))
        return 0
    if not listed:
        out("no runs recorded yet (a run is recorded when it ends)")
    for run in listed:
        out(run_line(run))
    return 0


async def cmd_history(config: Config, args: argparse.Namespace) -> int:
    from dealertui.headless.runlog import when
    from dealertui.store.reads.history import dealer_history, duration

    store = await read_store(config)
    try:
        past = await dealer_history(store, args.dealer, args.limit)
    finally:
        await store.close()
    if args.json:
        out(json.dumps([p.as_json() for p in past], indent=2))
        return 0
    if not past:
        out(f"{args.dealer} has no pipelines yet")
    for p in past:
        start, end = p.started_at, p.finished_at
        took = f" ({span(end - start)})" if start is not None and end is not None else ""
        ran = (f"started {when(start)}" if start is not None else "not started") + (
            f", finished {when(end)}{took}" if end is not None else "")
        who = f"schedule {p.schedule}" if p.schedule else (p.by or "the engine")
        out(f"pipeline {p.id}  {p.outcome or 'unfinished'}  enqueued {when(p.created_at)} by "
            f"{who}; {ran}")
        for j in p.jobs:
            d = duration(j)
            extra = f" in {d:.1f}s" if d is not None else ""
            tries = f" (attempt {j.attempts})" if j.attempts > 1 else ""
            error = f": {_clip(j.last_error, ERROR_SHOWN)}" if j.last_error else ""
            out(f"  {j.job_type:<16} #{j.id:<8} {j.state}{extra}{tries}{error}")
    if len(past) == args.limit:
        out(f"(the {args.limit} newest; --limit N shows more; graph --pipeline ID draws one)")
    return 0
