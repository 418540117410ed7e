"""The argument parser: every command, every option and its help line.

tests/test_cli_help.py walks this tree: an option without a help line fails it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TypeAlias

from dealertui import __version__
from dealertui.cli.argtypes import (
    json_object,
    non_negative_int,
    parse_duration,
    port_number,
    positive_int,
)

DRY_RUN_HELP = "show what it would change (jobs and descendants); change nothing"
JSON_HELP = "print JSON (the keys are listed in the README)"


class ArgumentProblem(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Formatter(argparse.HelpFormatter):
    """Usage that says an option may be given again: argparse writes `--job ID` alike for
    an option taken once and one taken many times."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        args = super()._format_args(action, default_metavar)
        if isinstance(action, argparse._AppendAction) and action.option_strings:
            return f"{args} [{action.option_strings[0]} {args} ...]"
        return args


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors come back to main(), which can word some of them better."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # subparsers are made by this class too, but argparse passes them no formatter
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ArgumentProblem(self, message)


def argument_error(exc: ArgumentProblem, argv: Sequence[str]) -> int:
    """argparse's usage line and error, except where it cannot name the value at fault."""
    from dealertui.model import DEALER_ID_HINT

    if exc.parser.prog.endswith("dealers add") and "required: ID" in exc.message:
        # `dealers add -x`: argparse takes -x for an option and says the ID is missing
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
    _global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("init-db", help="create the schema (also done on first use)")
    for add in _COMMANDS:  # in the order `dealertui --help` lists them
        add(sub)
    return p


_Sub: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=f"dealertui {__version__}")
    p.add_argument("--config", metavar="PATH", help="config file (default: search order)")
    p.add_argument("--database-url", metavar="URL", help="overrides the config's database URL")
    p.add_argument("--read-only", action="store_true", help="console: refuse every action")
    p.add_argument("--demo", action="store_true", help="console on a fresh demo database")
    p.add_argument("--run-once", action="store_true", help="process ready jobs, then exit")
    # dests of their own: a command's --limit or --max-dealers must not look like these
    p.add_argument("--limit", type=positive_int, metavar="N", dest="run_limit",
                   help="--run-once: at most N jobs")
    p.add_argument("--max-dealers", type=positive_int, metavar="N", dest="run_max_dealers",
                   help="--run-once: at most N dealers at a time (default: the config's "
                        "max_concurrent_dealers)")
    p.add_argument("--max-jobs-per-dealer", type=positive_int, metavar="N",
                   dest="run_max_jobs_per_dealer",
                   help="--run-once: at most N jobs of one dealer at a time (default: the "
                        "config's max_concurrent_jobs_per_dealer)")
    p.add_argument("--dealer", action="append", metavar="ID", dest="run_dealers",
                   help="--run-once: only this dealer's jobs (repeat for more)")
    p.add_argument("--json", action="store_true", dest="run_json", help="--run-once: JSON out")
    p.add_argument("--dry-run", action="store_true", dest="run_dry",
                   help="--run-once: print the plan (order per dealer, what is held and why)")
    p.add_argument("--metrics-textfile", metavar="PATH",
                   help="--run-once: write Prometheus metrics for node_exporter's textfile")
    p.add_argument("--create", action="store_true", dest="run_create",
                   help="--run-once: create the database if it does not exist (as init-db)")


def _dealers(sub: _Sub) -> None:
    dealers = sub.add_parser("dealers", help="add, list, disable, enable or remove dealers")
    dsub = dealers.add_subparsers(dest="dealers_command",
                                  metavar="add|list|disable|enable|remove", required=True)
    add = dsub.add_parser("add", help="add a dealer (or rename one)")
    add.add_argument("dealer_id", metavar="ID", help="the dealer's id")
    add.add_argument("--name", help="the name shown beside the id (given again, it renames)")
    dlist = dsub.add_parser("list", help="list dealers")
    dlist.add_argument("--json", action="store_true", help=JSON_HELP)
    for name, what in (("disable", "keep a dealer and its jobs, but claim none of them"),
                       ("enable", "let a disabled dealer's jobs run again")):
        dsub.add_parser(name, help=what).add_argument("dealer_id", metavar="ID",
                                                      help="the dealer's id")
    rm = dsub.add_parser("remove", help="remove a dealer with its jobs and their history")
    rm.add_argument("dealer_id", metavar="ID", help="the dealer's id")
    rm.add_argument("--cancel-pending", action="store_true",
                    help="cancel its waiting, ready and retrying jobs first")



def _enqueue(sub: _Sub) -> None:
    enq = sub.add_parser("enqueue", help="enqueue a pipeline per dealer")
    who = enq.add_mutually_exclusive_group(required=True)
    who.add_argument("--dealer", action="append", metavar="ID", dest="dealers",
                     help="a pipeline for this dealer (repeat for more)")
    who.add_argument("--all-dealers", action="store_true",
                     help="a pipeline for every dealer that is not disabled")
    enq.add_argument("--type", action="append", metavar="T", dest="types",
                     help="only this job type (repeat for more; default: all); a parent type "
                          "left out links to the dealer's latest job of it")
    enq.add_argument("--payload", type=json_object, metavar="JSON",
                     help="a JSON object given to every job enqueued (ctx.payload, "
                          "$DEALERTUI_PAYLOAD, the http body)")
    enq.add_argument("--allow-duplicate", action="store_true",
                     help="enqueue even for a dealer whose pipeline of the same types is "
                          "still pending (without it such a dealer is skipped)")
    enq.add_argument("--json", action="store_true", help=JSON_HELP)



def _status(sub: _Sub) -> None:
    st = sub.add_parser("status", help="counts by state, job type and dealer")
    st.add_argument("--json", action="store_true", help=JSON_HELP)



def _retry(sub: _Sub) -> None:
    rt = sub.add_parser("retry", help="retry failed or blocked jobs")
    rwhat = rt.add_mutually_exclusive_group(required=True)
    rwhat.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs",
                       help="this failed, blocked or cancelled job (repeat for more)")
    rwhat.add_argument("--dealer", metavar="ID", help="every failed/blocked job of one dealer")
    rwhat.add_argument("--type", metavar="T", help="every failed/blocked job of one job type")
    rwhat.add_argument("--all-failed", action="store_true", help="every failed/blocked job")
    rwhat.add_argument("--fingerprint", metavar="F",
                       help="every failed/blocked job of one analyze-errors group")
    rt.add_argument("--reason", help="recorded in the audit log")
    rt.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)



def _cancel(sub: _Sub) -> None:
    cn = sub.add_parser("cancel", help="cancel a job")
    cn.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs",
                    required=True, help="the job to cancel (repeat for more)")
    cn.add_argument("--reason", help="recorded in the audit log")
    cn.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)



def _skip(sub: _Sub) -> None:
    sk = sub.add_parser("skip", help="release jobs without running them (children may run)")
    sk.add_argument("--job", type=positive_int, action="append", metavar="ID", dest="jobs",
                    required=True, help="the job to skip (repeat for more)")
    sk.add_argument("--reason", required=True, help="why the job is not needed (audited)")
    sk.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)



def _rerun(sub: _Sub) -> None:
    rr = sub.add_parser("rerun", help="run a job again with its descendants, or a pipeline")
    rwhich = rr.add_mutually_exclusive_group(required=True)
    rwhich.add_argument("--job", type=positive_int, metavar="ID",
                        help="this job, with its descendants")
    rwhich.add_argument("--dealer", metavar="ID", help="the dealer's newest pipeline")
    rwhich.add_argument("--pipeline", type=positive_int, metavar="ID",
                        help="one pipeline: the jobs one enqueue made for one dealer, named by "
                             "the id of the first of them")
    rr.add_argument("--reason", help="recorded in the audit log")
    rr.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)



def _why(sub: _Sub) -> None:
    wy = sub.add_parser("why", help="why a job is not running, every reason that holds")
    wy.add_argument("--job", type=positive_int, required=True, metavar="ID",
                    help="the job to explain")
    wy.add_argument("--json", action="store_true", help=JSON_HELP)



def _audit(sub: _Sub) -> None:
    au = sub.add_parser("audit", help="operator actions: who, what, which jobs, when, why")
    au.add_argument("--json", action="store_true", help=JSON_HELP)
    au.add_argument("--limit", type=positive_int, default=50, metavar="N",
                    help="the N newest actions (50)")



def _jobs(sub: _Sub) -> None:
    jb = sub.add_parser("jobs", help="list jobs, newest first, filtered")
    jb.add_argument("--dealer", metavar="ID", help="only this dealer's jobs")
    jb.add_argument("--type", action="append", metavar="T", dest="types",
                    help="only jobs of this type (repeat for more)")
    jb.add_argument("--state", action="append", metavar="S", dest="states",
                    help="only jobs in this state (repeat for more)")
    jb.add_argument("--where", action="append", metavar="KEY=VALUE", default=[],
                    help="only jobs whose payload has KEY equal to VALUE (repeat: all of them)")
    jb.add_argument("--since", type=parse_duration, metavar="DURATION",
                    help="only jobs enqueued in this recent period (e.g. 1h)")
    jb.add_argument("--limit", type=positive_int, default=50, metavar="N",
                    help="the N newest that match (50)")
    jb.add_argument("--json", action="store_true", help=JSON_HELP)



def _runs(sub: _Sub) -> None:
    rn = sub.add_parser("runs", help="past engine runs (run-once, worker, console), newest first")
    rn.add_argument("--limit", type=positive_int, default=20, metavar="N",
                    help="the N that started last (20)")
    rn.add_argument("--json", action="store_true", help=JSON_HELP)



def _history(sub: _Sub) -> None:
    hs = sub.add_parser("history", help="a dealer's past pipelines, newest first")
    hs.add_argument("--dealer", metavar="ID", required=True, help="the dealer")
    hs.add_argument("--limit", type=positive_int, default=20, metavar="N",
                    help="the N newest pipelines (20)")
    hs.add_argument("--json", action="store_true", help=JSON_HELP)



def _pause_resume(sub: _Sub) -> None:
    for name in ("pause", "resume"):
        pr = sub.add_parser(name, help=f"{name} a dealer, a job type, a schedule, or everything")
        pr.add_argument("--dealer", metavar="ID", help=f"{name} this dealer")
        pr.add_argument("--type", metavar="T", help=f"{name} this job type")
        pr.add_argument("--schedule", metavar="NAME",
                        help=f"{name} this schedule's ticks" + (
                            " (the ticks missed while paused are dropped)"
                            if name == "resume" else ""))
        if name == "pause":
            pr.add_argument("--reason", help="recorded in the audit log")
            pr.add_argument("--fingerprint", metavar="F",
                            help="every dealer of one analyze-errors group")



def _schedules(sub: _Sub) -> None:
    sc = sub.add_parser("schedules", help="each schedule: last tick, next due, pipelines, skips")
    sc.add_argument("--json", action="store_true", help=JSON_HELP)



def _health(sub: _Sub) -> None:
    hl = sub.add_parser("health", help="exit 0 healthy, 1 degraded, 3 database unreachable")
    hl.add_argument("--detailed", action="store_true", help="one line per check, and why")
    hl.add_argument("--json", action="store_true", help=JSON_HELP)
    hl.add_argument("--heartbeat-within", type=parse_duration, default=120.0, metavar="DURATION",
                    help="a worker must have been seen this recently when work is due (120s)")



def _analyze_errors(sub: _Sub) -> None:
    ae = sub.add_parser("analyze-errors", help="failures grouped by class, type and message")
    ae.add_argument("--json", action="store_true", help=JSON_HELP)
    ae.add_argument("--since", type=parse_duration, metavar="DURATION",
                    help="only failures in this recent period (e.g. 1h)")
    ae.add_argument("--limit", type=positive_int, default=50, metavar="N",
                    help="at most N groups, the largest first (50)")



def _worker(sub: _Sub) -> None:
    wk = sub.add_parser("worker", help="run jobs until stopped (SIGTERM/SIGINT drain)")
    wk.add_argument("--max-dealers", type=positive_int, metavar="N", dest="worker_max_dealers",
                    help="at most N dealers at a time (default: the config's "
                         "max_concurrent_dealers)")
    wk.add_argument("--max-jobs-per-dealer", type=positive_int, metavar="N",
                    dest="worker_max_jobs",
                    help="at most N jobs of one dealer at a time, across all workers (default: "
                         "the config's max_concurrent_jobs_per_dealer)")
    wk.add_argument("--grace", type=parse_duration, default=30.0, metavar="DURATION",
                    help="how long running jobs may finish after the first signal (30s)")
    wk.add_argument("--metrics-port", type=port_number, metavar="P",
                    help="serve Prometheus metrics on this port (default: none)")
    wk.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                    help="the address --metrics-port listens on (127.0.0.1)")
    wk.add_argument("--create", action="store_true", dest="worker_create",
                    help="create the database if it does not exist (as init-db)")



def _graph(sub: _Sub) -> None:
    gr = sub.add_parser("graph", help="print the dependency graph")
    which = gr.add_mutually_exclusive_group()
    which.add_argument("--dealer", metavar="ID",
                       help="this dealer's current (newest) pipeline")
    which.add_argument("--pipeline", type=positive_int, metavar="ID",
                       help="one pipeline, older ones too (ids: dealertui history)")



def _bench(sub: _Sub) -> None:
    bn = sub.add_parser("bench", help="measure throughput with no-op handlers")
    bn.add_argument("--dealers", type=positive_int, default=2500, metavar="N",
                    help="enqueue a pipeline for N new dealers (2500)")
    bn.add_argument("--max-dealers", type=positive_int, default=500, metavar="N",
                    help="at most N dealers at a time (500)")
    bn.add_argument("--max-jobs-per-dealer", type=positive_int, default=2, metavar="N",
                    help="at most N jobs of one dealer at a time (2)")
    bn.add_argument("--database-url", dest="bench_database_url", metavar="URL",
                    help="a server to bench on (a scratch database is created and dropped)")
    bn.add_argument("--history", type=non_negative_int, default=0, metavar="N",
                    help="first fill the database with N finished jobs of earlier pipelines")
    bn.add_argument("--json", action="store_true", help=JSON_HELP)



def _reset_stuck(sub: _Sub) -> None:
    rs = sub.add_parser("reset-stuck", help="rescue running jobs whose worker is gone")
    rs.add_argument("--older-than", type=parse_duration, metavar="DURATION",
                    help="also rescue jobs running longer than this (e.g. 15m)")
    rs.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)


def _prune(sub: _Sub) -> None:
    pr = sub.add_parser("prune", help="delete finished pipelines and audit rows past [retention]")
    pr.add_argument("--older-than", type=parse_duration, metavar="DURATION",
                    help="finished pipelines older than this, whatever their outcome (instead "
                         "of each outcome's [retention] limit)")
    pr.add_argument("--dry-run", action="store_true",
                    help="say what it would delete, per outcome; change nothing")
    pr.add_argument("--vacuum", action="store_true",
                    help="SQLite: turn on incremental auto-vacuum for a file made without it "
                         "(rewrites the file; writers wait until it is done)")
    pr.add_argument("--json", action="store_true", help=JSON_HELP)


_COMMANDS = (_dealers, _enqueue, _status, _jobs, _runs, _history, _retry, _cancel, _skip,
             _rerun, _why, _audit, _pause_resume, _schedules, _health, _analyze_errors,
             _worker, _graph, _bench, _reset_stuck, _prune)
