"""What runs jobs or the console: the console, --run-once (and its --dry-run plan), worker,
bench. The headless and console modules are imported only when one of them starts."""

from __future__ import annotations

import argparse

import anyio

from dealertui.config import Config


def run_without_command(config: Config, args: argparse.Namespace) -> int:
    """`dealertui` with no command: --run-once --dry-run, --run-once, or the console."""
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
        history=args.history,
    )
