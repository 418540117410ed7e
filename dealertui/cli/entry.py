"""`dealertui`: parse, refuse what would do nothing or harm, dispatch, and map errors to exit
codes (0 ok, 2 usage or configuration, 3 database; a command's own codes pass through)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio

from dealertui.cli.controls import cmd_pause
from dealertui.cli.database import cmd_init_db
from dealertui.cli.dealers import cmd_dealers
from dealertui.cli.jobs import (
    cmd_cancel,
    cmd_enqueue,
    cmd_rerun,
    cmd_reset_stuck,
    cmd_retry,
    cmd_skip,
)
from dealertui.cli.lists import cmd_history, cmd_jobs, cmd_runs
from dealertui.cli.parser import ArgumentProblem, argument_error, build_parser
from dealertui.cli.prune import cmd_prune
from dealertui.cli.reads import (
    cmd_analyze_errors,
    cmd_audit,
    cmd_graph,
    cmd_health,
    cmd_status,
    cmd_why,
)
from dealertui.cli.runners import cmd_bench, cmd_worker, run_without_command
from dealertui.cli.schedules import cmd_schedules
from dealertui.config import Config, load_config
from dealertui.errors import DealertuiError

COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Awaitable[int]]] = {
    "init-db": cmd_init_db,
    "dealers": cmd_dealers,
    "enqueue": cmd_enqueue,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "runs": cmd_runs,
    "history": cmd_history,
    "retry": cmd_retry,
    "cancel": cmd_cancel,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "schedules": cmd_schedules,
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
    "prune": cmd_prune,
}


_RUN_ONCE_ONLY = {
    "run_limit": "--limit", "run_max_dealers": "--max-dealers",
    "run_max_jobs_per_dealer": "--max-jobs-per-dealer", "run_dealers": "--dealer",
    "run_json": "--json", "run_dry": "--dry-run", "metrics_textfile": "--metrics-textfile",
    "run_create": "--create",
}


def _misplaced_option(args: argparse.Namespace) -> str | None:
    """A global option that does nothing where it was given, as a usage error sentence.

    Ignoring one does harm: a cron line missing --run-once would open the console and write
    its escape codes into the pipe, and `--json status` would print a table."""
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
    except ArgumentProblem as exc:
        return argument_error(exc, sys.argv[1:] if argv is None else argv)
    if (problem := _misplaced_option(args)) is not None:
        print(f"dealertui: error: {problem}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, database_url=args.database_url)
        _check_names(config, args)
        if args.command is None:
            return run_without_command(config, args)
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
