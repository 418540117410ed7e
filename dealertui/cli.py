"""Command line: parse arguments, pick a front end, print results. No logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from dealertui import __version__
from dealertui.config import Config, load_config
from dealertui.errors import DealertuiError, UsageError
from dealertui.model import Intent
from dealertui.text import plural

if TYPE_CHECKING:
    from dealertui.store import JobStore

# A person at a prompt wants an answer soon; workers ride out longer outages.
CLI_RETRY_BUDGET_S = 3.0
DRY_RUN_HELP = "show what it would change (jobs and descendants); change nothing"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> float:
    """'15m' -> 900.0; accepts s, m, h, d or a bare number of seconds."""
    m = _DURATION.match(value)
    if not m:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use a number with s, m, h or d, such as 15m"
        )
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    if n >= 2**63:  # no job id, limit or count is this big, and SQLite's integers end here
        raise argparse.ArgumentTypeError(f"expected a positive integer below 2**63, got {value!r}")
    return n


def port_number(value: str) -> int:
    n = positive_int(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {value!r}")
    return n


class _ArgumentError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors come back to main(), which can word some of them better."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self, message)


def _argument_error(exc: _ArgumentError, argv: Sequence[str]) -> int:
    """argparse's usage line and error, except where it cannot name the value at fault."""
    from dealertui.model import DEALER_ID_HINT

    if exc.parser.prog.endswith("dealers add") and "required: ID" in exc.message:
        # `dealers add -x`: argparse took -x for an option and says the ID is missing
        known = {"-h", "--help", "--name"}
        rest = list(argv)[list(argv).index("add") + 1:] if "add" in argv else []
        for i, token in enumerate(rest):
            after_name = i > 0 and rest[i - 1] == "--name"
            if token.startswith("-") and token not in known and not token.startswith(
                "--name=") and not after_name:
                print(f"dealertui: error: invalid dealer id {token!r}: {DEALER_ID_HINT}.",
                      file=sys.stderr)
                return 2
    exc.parser.print_usage(sys.stderr)
    print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dealertui",
        description="Operations console and headless runner for per-dealer job pipelines.",
    )
    p.add_argument("--version", action="version", version=f"dealertui {__version__}")
    p.add_argument("--config", metavar="PATH", help="config file (default: search order)")
    p.add_argument("--database-url", metavar="URL", help="overrides the config's database URL")
    p.add_argument("--read-only", action="store_true", help="console: refuse every action")
    p.add_argument("--demo", action="store_true", help="console on a fresh demo database")
    p.add_argument("--run-once", action="store_true", help="process ready jobs, then exit")
    # dests of their own: a command's --limit or --max-dealers must not look like these
    p.add_argument("--limit", type=positive_int, metavar="N", dest="run_limit",
                   help="--run-once: at most N jobs")
    p.add_argument("--max-dealers", type=positive_int, metavar="N", dest="run_max_dealers")
    p.add_argument("--max-jobs-per-dealer", type=positive_int, metavar="N",
                   dest="run_max_jobs_per_dealer")
    p.add_argument("--dealer", action="append", metavar="ID", dest="run_dealers")
    p.add_argument("--json", action="store_true", dest="run_json", help="--run-once: JSON out")
    p.add_argument("--dry-run", action="store_true", dest="run_dry",
                   help="--run-once: print the plan (order per dealer, what is held and why)")
    p.add_argument("--metrics-textfile", metavar="PATH",
                   help="--run-once: write Prometheus metrics for node_exporter's textfile")
    p.add_argument("--create", action="store_true", dest="run_create",
                   help="--run-once: create the database if it does not exist (as init-db)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("init-db", help="create the schema (also done on first use)")

    dealers = sub.add_parser("dealers", help="add, list, disable, enable or remove dealers")
    dsub = dealers.add_subparsers(dest="dealers_command",
                                  metavar="add|list|disable|enable|remove", required=True)
    add = dsub.add_parser("add", help="add a dealer (or rename one)")
    add.add_argument("dealer_id", metavar="ID")
    add.add_argument("--name")
    dlist = dsub.add_parser("list", help="list dealers")
    dlist.add_argument("--json", action="store_true")
    for name, what in (("disable", "keep a dealer and its jobs, but claim none of them"),
                       ("enable", "let a disabled dealer's jobs run again")):
        dsub.add_parser(name, help=what).add_argument("dealer_id", metavar="ID")
    rm = dsub.add_parser("remove", help="remove a dealer with its jobs and their history")
    rm.add_argument("dealer_id", metavar="ID")
    rm.add_argument("--cancel-pending", action="store_true",
                    help="cancel its waiting, ready and retrying jobs first")

    enq = sub.add_parser("enqueue", help="enqueue a pipeline per dealer")
    who = enq.add_mutually_exclusive_group(required=True)
    who.add_argument("--dealer", action="append", metavar="ID", dest="dealers")
    who.add_argument("--all-dealers", action="store_true")
    enq.add_argument("--type", action="append", metavar="T", dest="types")

    st = sub.add_parser("status", help="counts by state, job type and dealer")
    st.add_argument("--json", action="store_true")

    rt = sub.add_parser("retry", help="retry failed or blocked jobs")
    rwhat = rt.add_mutually_exclusive_group(required=True)
    rwhat.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs")
    rwhat.add_argument("--dealer", metavar="ID")
    rwhat.add_argument("--type", metavar="T")
    rwhat.add_argument("--all-failed", action="store_true")
    rwhat.add_argument("--fingerprint", metavar="F",
                       help="every failed/blocked job of one analyze-errors group")
    rt.add_argument("--reason", help="recorded in the audit log")
    rt.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    cn = sub.add_parser("cancel", help="cancel a job")
    cn.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs",
                    required=True)
    cn.add_argument("--reason", help="recorded in the audit log")
    cn.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    sk = sub.add_parser("skip", help="release jobs without running them (children may run)")
    sk.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs",
                    required=True)
    sk.add_argument("--reason", required=True, help="why the job is not needed (audited)")
    sk.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    rr = sub.add_parser("rerun", help="run a job again with its descendants, or a pipeline")
    rwhich = rr.add_mutually_exclusive_group(required=True)
    rwhich.add_argument("--job", type=positive_int, metavar="ID")
    rwhich.add_argument("--dealer", metavar="ID", help="the dealer's newest pipeline")
    rwhich.add_argument("--pipeline", type=positive_int, metavar="ID",
                        help="one pipeline: the jobs one enqueue made for one dealer, named by "
                             "the id of the first of them")
    rr.add_argument("--reason", help="recorded in the audit log")
    rr.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    wy = sub.add_parser("why", help="why a job is not running, every reason that holds")
    wy.add_argument("--job", type=positive_int, required=True, metavar="ID")
    wy.add_argument("--json", action="store_true")

    au = sub.add_parser("audit", help="operator actions: who, what, which jobs, when, why")
    au.add_argument("--json", action="store_true")
    au.add_argument("--limit", type=positive_int, default=50, metavar="N")

    for name in ("pause", "resume"):
        pr = sub.add_parser(name, help=f"{name} a dealer, a job type, or everything")
        pr.add_argument("--dealer", metavar="ID")
        pr.add_argument("--type", metavar="T")
        if name == "pause":
            pr.add_argument("--reason")
            pr.add_argument("--fingerprint", metavar="F",
                            help="every dealer of one analyze-errors group")

    hl = sub.add_parser("health", help="exit 0 healthy, 1 degraded, 3 database unreachable")
    hl.add_argument("--detailed", action="store_true", help="one line per check, and why")
    hl.add_argument("--json", action="store_true")
    hl.add_argument("--heartbeat-within", type=parse_duration, default=120.0, metavar="DURATION",
                    help="a worker must have been seen this recently when work is due (120s)")

    ae = sub.add_parser("analyze-errors", help="failures grouped by class, type and message")
    ae.add_argument("--json", action="store_true")
    ae.add_argument("--since", type=parse_duration, metavar="DURATION",
                    help="only failures in this recent period (e.g. 1h)")
    ae.add_argument("--limit", type=positive_int, default=50, metavar="N")

    wk = sub.add_parser("worker", help="run jobs until stopped (SIGTERM/SIGINT drain)")
    wk.add_argument("--max-dealers", type=positive_int, metavar="N", dest="worker_max_dealers")
    wk.add_argument("--max-jobs-per-dealer", type=positive_int, metavar="N",
                    dest="worker_max_jobs")
    wk.add_argument("--grace", type=parse_duration, default=30.0, metavar="DURATION",
                    help="how long running jobs may finish after the first signal (30s)")
    wk.add_argument("--metrics-port", type=port_number, metavar="P")
    wk.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST")
    wk.add_argument("--create", action="store_true", dest="worker_create",
                    help="create the database if it does not exist (as init-db)")

    gr = sub.add_parser("graph", help="print the dependency graph")
    gr.add_argument("--dealer", metavar="ID")

    bn = sub.add_parser("bench", help="measure throughput with no-op handlers")
    bn.add_argument("--dealers", type=positive_int, default=2500, metavar="N")
    bn.add_argument("--max-dealers", type=positive_int, default=500, metavar="N")
    bn.add_argument("--max-jobs-per-dealer", type=positive_int, default=2, metavar="N")
    bn.add_argument("--database-url", dest="bench_database_url", metavar="URL",
                    help="a server to bench on (a scratch database is created and dropped)")
    bn.add_argument("--json", action="store_true")

    rs = sub.add_parser("reset-stuck", help="rescue running jobs whose worker is gone")
    rs.add_argument("--older-than", type=parse_duration, metavar="DURATION",
                    help="also rescue jobs running longer than this (e.g. 15m)")
    rs.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    return p


async def _with_operator(config: Config, fn: Callable[..., Awaitable[int]],
                         intent: Intent = Intent.CREATE) -> int:
    from dealertui.engine.actions import Operator
    from dealertui.store import open_store

    store = await open_store(config, intent, retry_budget_s=CLI_RETRY_BUDGET_S)
    try:
        return await fn(Operator(store, config))
    finally:
        await store.close()


def _out(text: str = "") -> None:
    print(text, flush=True)


async def cmd_init_db(config: Config, args: argparse.Namespace) -> int:
    from dealertui.store import describe_database, open_store

    store = await open_store(config, Intent.CREATE, retry_budget_s=CLI_RETRY_BUDGET_S)
    await store.close()
    _out(f"database ready: {describe_database(config.database_url)}")
    return 0


async def cmd_dealers(config: Config, args: argparse.Namespace) -> int:
    from dealertui.model import DEALER_ID_HINT, dealer_name_problem, is_valid_dealer_id, shown_name

    command = args.dealers_command
    # refused before the database is opened, so nothing is created for a typo
    if command != "list" and not is_valid_dealer_id(args.dealer_id):
        raise UsageError(f"invalid dealer id {args.dealer_id!r}: {DEALER_ID_HINT}.")
    if command == "add" and (problem := dealer_name_problem(args.name)) is not None:
        raise UsageError(problem)

    async def run(op: Any) -> int:
        if command == "add":
            added = await op.add_dealers([(args.dealer_id, args.name)])
            _out(f"{'added' if added else 'updated'} dealer {args.dealer_id}")
            return 0
        if command in ("disable", "enable"):
            changed = await op.set_dealer_disabled(args.dealer_id, command == "disable")
            _out(f"{command}d dealer {args.dealer_id}" if changed
                 else f"dealer {args.dealer_id} was {command}d already")
            return 0
        if command == "remove":
            gone = await op.remove_dealer(args.dealer_id, cancel_pending=args.cancel_pending)
            cancelled = f", {len(gone.cancelled)} of them cancelled first" if gone.cancelled else ""
            _out(f"removed dealer {args.dealer_id} and {plural(len(gone.removed), 'job')}"
                 f"{cancelled}; the audit log keeps its operator actions")
            return 0
        rows = await op.store.list_dealers()
        if getattr(args, "json", False):
            _out(json.dumps([{"id": d.id, "name": d.name, "disabled": d.disabled_at is not None}
                             for d in rows], indent=2))
        else:
            for d in rows:
                off = "\tdisabled" if d.disabled_at is not None else ""
                _out(f"{d.id}\t{shown_name(d.name)}{off}")
        return 0

    # the others read or change dealers that exist: a missing database is an error; listing
    # only reads
    return await _with_operator(
        config, run, {"add": Intent.CREATE, "list": Intent.READ}.get(command, Intent.WRITE))


async def cmd_enqueue(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Any) -> int:
        ids = await op.enqueue(args.dealers or (), all_dealers=args.all_dealers,
                               types=args.types)
        jobs = await op.store.list_jobs(job_ids=ids) if len(ids) <= 50 else []
        blocked = [j for j in jobs if j.state == "blocked"]
        # the pipeline ids `rerun --pipeline` takes
        firsts = [(j.pipeline_id, j.dealer_id) for j in jobs if j.id == j.pipeline_id]
        named = ", ".join(f"{p} of {d}" for p, d in firsts[:5]) + (
            f" and {len(firsts) - 5} more" if len(firsts) > 5 else "")
        _out(f"enqueued {len(ids)} jobs"
             + (f" (pipeline{'s' if len(firsts) > 1 else ''} {named})" if firsts else ""))
        if args.all_dealers and (off := await op.disabled_dealers()):
            _out(f"  skipped {plural(len(off), 'disabled dealer')}: {', '.join(off)}")
        for j in blocked:
            _out(f"  job {j.id} ({j.dealer_id} {j.job_type}) is blocked: {j.blocked_reason}")
        return 0

    return await _with_operator(config, run)


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Any) -> int:
        import time

        from dealertui.engine.actions import unconfigured_dealers
        from dealertui.store.insights import fairness

        status = await op.store.status()
        status["fairness"] = await fairness(op.store)
        status["dealers_not_in_config"] = unconfigured_dealers(config, list(status["by_dealer"]))
        now = time.time()
        for w in status["workers"]:
            w["alive"] = now - w["heartbeat_at"] <= config.concurrency.lease_s
        if args.json:
            _out(json.dumps(status, indent=2, sort_keys=False))
        else:
            from dealertui.headless import print_status

            print_status(status, config)
        return 0

    # a typo'd path answered "no jobs yet", exit 0, over a new empty database: monitoring
    # saw all quiet
    return await _with_operator(config, run, Intent.READ)


async def _acting(
    config: Config,
    args: argparse.Namespace,
    act: Callable[[Any], Awaitable[Any]],
    done: Callable[[Any], str],
) -> int:
    """Run an operator action, or with --dry-run show its blast radius and change nothing."""

    async def run(op: Any) -> int:
        if not getattr(args, "dry_run", False):
            result = await act(op)
            said = done(result)
            named = list(getattr(args, "jobs", None) or ()) or (
                [args.job] if getattr(args, "job", None) else [])
            if result.held:
                # "retried 1 job" on a job that stayed blocked: say which stay, and why
                shown = list(result.held.items())[:5]
                now = {j.id: j.state for j in await op.store.list_jobs(
                    job_ids=[i for i, _ in shown])}
                said += "".join(f"; job {i} stays {now.get(i, 'as it was')}: {why}"
                                for i, why in shown)
                if len(result.held) > len(shown):
                    said += f"; {len(result.held) - len(shown)} more stay as they were"
            named = [i for i in named if i not in result.held]
            if named and not result.changed:
                # "retried 0 jobs" on a job that had succeeded did not say why
                jobs = await op.store.list_jobs(job_ids=named)
                said += " (" + ", ".join(f"job {j.id} is {j.state}" for j in jobs) + ")"
            _out(said)
            return 0
        radius = await op.blast_radius(await act(op.preview()))
        from dealertui.headless import print_blast_radius

        print_blast_radius(radius)
        return 0

    # they act on jobs that exist: a database that does not is an error, not created
    return await _with_operator(config, run, Intent.WRITE)


async def cmd_retry(config: Config, args: argparse.Namespace) -> int:
    if args.fingerprint:
        return await _acting(
            config, args,
            lambda op: op.retry_group(args.fingerprint, reason=args.reason),
            lambda r: f"retried {plural(len(r.changed), 'job')} of group {args.fingerprint}; "
                      f"{plural(len(r.followers), 'descendant')} unblocked",
        )
    return await _acting(
        config, args,
        lambda op: op.retry(job_ids=args.jobs, dealer_id=args.dealer, job_type=args.type,
                            all_failed=args.all_failed, reason=args.reason),
        lambda r: f"retried {plural(len(r.changed), 'job')}; "
                  f"{plural(len(r.followers), 'descendant')} unblocked",
    )


async def cmd_cancel(config: Config, args: argparse.Namespace) -> int:
    return await _acting(
        config, args,
        lambda op: op.cancel(args.jobs, reason=args.reason),
        lambda r: f"cancelled {plural(len(r.changed), 'job')}; "
                  f"{plural(len(r.followers), 'descendant')} blocked",
    )


async def cmd_skip(config: Config, args: argparse.Namespace) -> int:
    return await _acting(
        config, args,
        lambda op: op.skip(args.jobs, args.reason),
        lambda r: f"skipped {plural(len(r.changed), 'job')}; "
                  f"{plural(len(r.followers), 'descendant')} may run",
    )


async def cmd_rerun(config: Config, args: argparse.Namespace) -> int:
    of: list[str] = []

    async def act(op: Any) -> Any:
        r = await op.rerun(job_id=args.job, dealer_id=args.dealer, pipeline_id=args.pipeline,
                           reason=args.reason)
        if r.pipeline is not None:
            first = await op.store.get_job(r.pipeline)
            of.append(f" of pipeline {r.pipeline} (dealer {first.dealer_id})")
        return r

    return await _acting(
        config, args, act,
        lambda r: f"rerunning {plural(len(r.changed), 'job')}{''.join(of)}; "
                  f"{plural(len(r.followers), 'descendant')} re-armed",
    )


async def cmd_pause(config: Config, args: argparse.Namespace) -> int:
    paused = args.command == "pause"

    async def run(op: Any) -> int:
        if paused and args.fingerprint:
            dealers = await op.pause_group(args.fingerprint, reason=args.reason)
            _out(f"paused {len(dealers)} dealers of group {args.fingerprint}: "
                 + ", ".join(dealers))
            return 0
        await op.set_paused(paused, dealer_id=args.dealer, job_type=args.type,
                            reason=getattr(args, "reason", None))
        what = " and ".join(
            x for x in (args.dealer and f"dealer {args.dealer}",
                        args.type and f"job type {args.type}") if x
        ) or "everything"
        if not paused and what == "everything":
            # `resume` alone lifts the global pause; saying "everything" while dealer and
            # type pauses stay in force misled operators
            left = [f"{p.scope} {p.key}" for p in await op.store.pauses() if p.scope != "global"]
            what = "the global pause"
            if left:
                what += (f"; still paused: {', '.join(left)} (lift them with "
                         "'dealertui resume --dealer ID' or '--type T')")
        _out(f"{'paused' if paused else 'resumed'} {what}")
        return 0

    return await _with_operator(config, run)


async def cmd_reset_stuck(config: Config, args: argparse.Namespace) -> int:
    return await _acting(
        config, args,
        lambda op: op.reset_stuck(args.older_than),
        lambda r: f"rescued {plural(len(r.changed), 'stuck job')}; "
                  f"{plural(len(r.followers), 'descendant')} blocked",
    )


async def cmd_graph(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Any) -> int:
        from dealertui.engine import graph

        if args.dealer is not None:
            await op.check_dealers([args.dealer])
        drawing = graph.render(await graph.build(op.store, config, args.dealer))
        _out(drawing)
        return 0

    return await _with_operator(config, run, Intent.READ)


async def _read_store(config: Config) -> JobStore:
    from dealertui.store import open_store

    return await open_store(config, Intent.READ, retry_budget_s=CLI_RETRY_BUDGET_S)


async def cmd_health(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.health import check_health, health_json

    if args.heartbeat_within <= 0:
        # within 0 s no worker is ever fresh: health would report degraded for ever
        raise UsageError("--heartbeat-within must be more than 0, such as 2m.")
    store = await _read_store(config)
    try:
        code, checks = await check_health(store, config,
                                          heartbeat_within_s=args.heartbeat_within)
    finally:
        await store.close()
    if args.json:
        _out(json.dumps(health_json(code, checks), indent=2))
    else:
        from dealertui.headless import print_health

        print_health(code, checks, args.detailed)
    return code


async def cmd_analyze_errors(config: Config, args: argparse.Namespace) -> int:
    import time

    from dealertui.store.insights import error_groups

    store = await _read_store(config)
    try:
        since = time.time() - args.since if args.since is not None else None
        groups = await error_groups(store, since=since, limit=args.limit)
    finally:
        await store.close()
    if args.json:
        _out(json.dumps(groups, indent=2))
    else:
        from dealertui.headless import print_error_groups

        print_error_groups(groups)
    return 0


async def cmd_why(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.explain import explain

    store = await _read_store(config)
    try:
        answer = await explain(store, config, args.job)
    finally:
        await store.close()
    if answer is None:
        raise UsageError(f"there is no job {args.job}.")
    if args.json:
        _out(json.dumps(answer, indent=2))
        return 0
    j = answer["job"]
    _out(f"job {j['id']}: {j['dealer_id']} {j['job_type']}, {j['state']} "
         f"(attempt {j['attempts']} of {j['max_attempts']})")
    for r in answer["reasons"]:
        _out(f"  - {r['text']}")
    return 0


async def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    import time

    store = await _read_store(config)
    try:
        entries = await store.audit_entries(limit=args.limit)
    finally:
        await store.close()
    if args.json:
        _out(json.dumps(entries, indent=2))
        return 0
    if not entries:
        _out("no operator actions recorded yet")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
        why = f" — {e['reason']}" if e["reason"] else ""
        _out(f"{when}  {e['who']}  {e['action']} {e['target']} ({e['count']} jobs){why}")
    return 0


async def cmd_worker(config: Config, args: argparse.Namespace) -> int:
    from dealertui.headless import run_worker

    return await run_worker(
        config,
        max_dealers=args.worker_max_dealers,
        max_jobs_per_dealer=args.worker_max_jobs,
        grace_s=args.grace,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        create=args.worker_create,
    )


async def cmd_bench(config: Config, args: argparse.Namespace) -> int:
    from dealertui.config import normalize_database_url
    from dealertui.headless import bench

    url = args.bench_database_url
    if url is not None:
        url = normalize_database_url(url, "--database-url")
    return await bench(
        config,
        dealers=args.dealers,
        max_dealers=args.max_dealers,
        max_jobs_per_dealer=args.max_jobs_per_dealer,
        database_url=url,
        json_out=args.json,
    )


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Awaitable[int]]] = {
    "init-db": cmd_init_db,
    "dealers": cmd_dealers,
    "enqueue": cmd_enqueue,
    "status": cmd_status,
    "retry": cmd_retry,
    "cancel": cmd_cancel,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "reset-stuck": cmd_reset_stuck,
    "skip": cmd_skip,
    "rerun": cmd_rerun,
    "graph": cmd_graph,
    "worker": cmd_worker,
    "health": cmd_health,
    "audit": cmd_audit,
    "why": cmd_why,
    "analyze-errors": cmd_analyze_errors,
    "bench": cmd_bench,
}


_RUN_ONCE_ONLY = {
    "run_limit": "--limit", "run_max_dealers": "--max-dealers",
    "run_max_jobs_per_dealer": "--max-jobs-per-dealer", "run_dealers": "--dealer",
    "run_json": "--json", "run_dry": "--dry-run", "metrics_textfile": "--metrics-textfile",
    "run_create": "--create",
}


def _misplaced_option(args: argparse.Namespace) -> str | None:
    """A global option that does nothing where it was given, as a usage error sentence.

    Silently ignored, they did harm: a cron line missing --run-once opened the console and
    wrote its escape codes into the pipe, and `--json status` printed a table."""
    given = [flag for dest, flag in _RUN_ONCE_ONLY.items() if getattr(args, dest)]
    if args.command is not None:
        modes = [flag for flag in ("--run-once", "--demo", "--read-only")
                 if getattr(args, flag[2:].replace("-", "_"))]
        if given or modes:
            flag = (given or modes)[0]
            return (f"{flag} does not apply to the {args.command} command (a command's own "
                    f"options go after it; see 'dealertui {args.command} --help').")
        return None
    if given and not args.run_once:
        return f"{given[0]} applies to --run-once only (dealertui --run-once {given[0]} ...)."
    if args.run_once and (args.demo or args.read_only):
        flag = "--demo" if args.demo else "--read-only"
        return f"{flag} applies to the console, not to --run-once."
    return None


def _check_names(config: Config, args: argparse.Namespace) -> None:
    """Dealer ids and job types named on the command line, checked before the database is
    opened: a typo must not create one."""
    from dealertui.engine.actions import check_names

    dealer_ids = list(args.run_dealers or ())
    if args.command == "enqueue":
        dealer_ids += args.dealers or ()
    types = list(getattr(args, "types", None) or ())
    for name, into in (("dealer", dealer_ids), ("type", types)):
        value = getattr(args, name, None)
        if isinstance(value, str):
            into.append(value)
    check_names(config, dealer_ids=dealer_ids, types=types)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        return _argument_error(exc, sys.argv[1:] if argv is None else argv)
    if (problem := _misplaced_option(args)) is not None:
        print(f"dealertui: error: {problem}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, database_url=args.database_url)
        _check_names(config, args)
        if args.command is None:
            if args.run_once and args.run_dry:
                from dealertui.headless import print_plan

                return anyio.run(
                    lambda: print_plan(
                        config,
                        max_jobs_per_dealer=args.run_max_jobs_per_dealer,
                        dealers=args.run_dealers,
                        limit=args.run_limit,
                        json_out=args.run_json,
                    )
                )
            if args.run_once:
                from dealertui.headless import run_once

                return anyio.run(
                    lambda: run_once(
                        config,
                        limit=args.run_limit,
                        max_dealers=args.run_max_dealers,
                        max_jobs_per_dealer=args.run_max_jobs_per_dealer,
                        dealers=args.run_dealers,
                        json_out=args.run_json,
                        metrics_textfile=args.metrics_textfile,
                        create=args.run_create,
                    )
                )
            from dealertui.tui.run import run_console

            return run_console(config, demo=args.demo, read_only=args.read_only)
        return anyio.run(COMMANDS[args.command], config, args)
    except DealertuiError as exc:
        print(f"dealertui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `dealertui status --json | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
