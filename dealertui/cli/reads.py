"""Commands that only read: status, graph, why, audit, analyze-errors, health.

Each opens the store with the READ intent: a missing database is an error, never created,
and nothing is written (not even the config's dealers)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from dealertui.cli.common import out, read_store, with_operator
from dealertui.config import Config
from dealertui.errors import UsageError
from dealertui.model import Intent

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Operator) -> int:
        from dealertui.engine.status import status_report

        status = await status_report(op.store, config)
        if args.json:
            out(json.dumps(status, indent=2, sort_keys=False))
        else:
            from dealertui.headless import print_status

            print_status(status, config)
        return 0

    # READ, not CREATE: a typo'd path must not answer "no jobs yet", exit 0, over a new
    # empty database, which monitoring would take for all quiet
    return await with_operator(config, run, Intent.READ)


async def cmd_graph(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Operator) -> int:
        from dealertui.engine import graph

        if args.pipeline is not None:
            one = await graph.one_pipeline(op.store, args.pipeline)
            if one is None:
                raise UsageError(f"there is no pipeline {args.pipeline} (dealertui history "
                                 "--dealer ID lists a dealer's).")
            out(graph.render(one))
            return 0
        if args.dealer is not None:
            await op.check_dealers([args.dealer])
        drawing = graph.render(
            await graph.build(op.store, config) if args.dealer is None
            else await graph.current_pipeline(op.store, config, args.dealer))
        out(drawing)
        return 0

    return await with_operator(config, run, Intent.READ)


async def cmd_health(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.health import check_health, health_json

    if args.heartbeat_within <= 0:
        # within 0 s no worker is ever fresh: health would report degraded for ever
        raise UsageError("--heartbeat-within must be more than 0, such as 2m.")
    store = await read_store(config)
    try:
        code, checks = await check_health(store, config,
                                          heartbeat_within_s=args.heartbeat_within)
        if args.detailed:
            from dealertui.store.reads.storage import storage

            held = await storage(store)
    finally:
        await store.close()
    if args.json:
        report = health_json(code, checks)
        if args.detailed:
            report["storage"] = held
        out(json.dumps(report, indent=2))
    else:
        from dealertui.headless import print_health
        from dealertui.headless.insights import print_storage

        print_health(code, checks, args.detailed)
        if args.detailed:
            print_storage(held)
    return code


async def cmd_analyze_errors(config: Config, args: argparse.Namespace) -> int:
    import time

    from dealertui.store.reads import error_groups

    store = await read_store(config)
    try:
        since = time.time() - args.since if args.since is not None else None
        groups = await error_groups(store, since=since, limit=args.limit)
    finally:
        await store.close()
    if args.json:
        out(json.dumps(groups, indent=2))
    else:
        from dealertui.headless import print_error_groups

        print_error_groups(groups)
    return 0


async def cmd_why(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.detail import job_report

    store = await read_store(config)
    try:
        report = await job_report(store, config, args.job)
    finally:
        await store.close()
    if report is None:
        raise UsageError(f"there is no job {args.job}.")
    answer = report.why_json()
    if args.json:
        out(json.dumps(answer, indent=2))
        return 0
    j = answer["job"]
    out(f"job {j['id']}: {j['dealer_id']} {j['job_type']}, {j['state']} "
        f"(attempt {j['attempts']} of {j['max_attempts']})")
    if j["payload"]:
        out(f"  payload: {json.dumps(j['payload'])}")
    for r in answer["reasons"]:
        out(f"  - {r['text']}")
    return 0


async def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    import time

    store = await read_store(config)
    try:
        entries = await store.audit_entries(limit=args.limit)
    finally:
        await store.close()
    if args.json:
        out(json.dumps(entries, indent=2))
        return 0
    if not entries:
        out("no operator actions recorded yet")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
        why = f" — {e['reason']}" if e["reason"] else ""
        out(f"{when}  {e['who']}  {e['action']} {e['target']} ({e['count']} jobs){why}")
    return 0
