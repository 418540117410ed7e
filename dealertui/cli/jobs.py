"""Commands that make or change jobs: enqueue, retry, cancel, skip, rerun, reset-stuck.

All but enqueue take --dry-run, which prints the blast radius and changes nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dealertui.cli.common import out, with_operator
from dealertui.config import Config
from dealertui.model import ActionResult, Intent
from dealertui.text import plural

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator


async def cmd_enqueue(config: Config, args: argparse.Namespace) -> int:
    async def run(op: Operator) -> int:
        result = await op.enqueue(args.dealers or (), all_dealers=args.all_dealers,
                                  types=args.types, payload=args.payload,
                                  allow_duplicate=args.allow_duplicate)
        off = await op.disabled_dealers() if args.all_dealers else []
        if args.json:
            out(json.dumps({
                "enqueued": [{"dealer": e.dealer_id, "pipeline": e.pipeline_id,
                              "jobs": list(e.job_ids)} for e in result.enqueued],
                "skipped": [{"dealer": s.dealer_id, "pipeline": s.pipeline_id,
                             "unfinished": s.unfinished, "reason": s.sentence()}
                            for s in result.skipped],
                "disabled": off,
            }))
            return 0
        ids = result.job_ids
        jobs = await op.store.list_jobs(job_ids=ids) if len(ids) <= 50 else []
        blocked = [j for j in jobs if j.state == "blocked"]
        # the pipeline ids `rerun --pipeline` takes
        firsts = [(e.pipeline_id, e.dealer_id) for e in result.enqueued]
        named = ", ".join(f"{p} of {d}" for p, d in firsts[:5]) + (
            f" and {len(firsts) - 5} more" if len(firsts) > 5 else "")
        out(f"enqueued {plural(len(ids), 'job')}"
            + (f" (pipeline{'s' if len(firsts) > 1 else ''} {named})" if firsts else ""))
        for s in result.skipped[:20]:
            out(f"  {s.sentence()}")
        if len(result.skipped) > 20:
            out(f"  and {len(result.skipped) - 20} more dealers skipped the same way "
                "(--allow-duplicate enqueues anyway)")
        if off:
            out(f"  skipped {plural(len(off), 'disabled dealer')}: {', '.join(off)}")
        for j in blocked:
            out(f"  job {j.id} ({j.dealer_id} {j.job_type}) is blocked: {j.blocked_reason}")
        return 0

    return await with_operator(config, run)


async def _acting(
    config: Config,
    args: argparse.Namespace,
    act: Callable[[Operator], Awaitable[ActionResult]],
    done: Callable[[ActionResult], str],
) -> int:
    """Run an operator action, or with --dry-run show its blast radius and change nothing."""

    async def run(op: Operator) -> int:
        if not getattr(args, "dry_run", False):
            result = await act(op)
            said = done(result)
            named = list(getattr(args, "jobs", None) or ()) or (
                [args.job] if getattr(args, "job", None) else [])
            if result.held:
                # "retried 1 job" alone hides the jobs that stay blocked: say which, and why
                shown = list(result.held.items())[:5]
                now = {j.id: j.state for j in await op.store.list_jobs(
                    job_ids=[i for i, _ in shown])}
                said += "".join(f"; job {i} stays {now.get(i, 'as it was')}: {why}"
                                for i, why in shown)
                if len(result.held) > len(shown):
                    said += f"; {len(result.held) - len(shown)} more stay as they were"
            named = [i for i in named if i not in result.held]
            if named and not result.changed:
                # "retried 0 jobs" alone does not say why: name each named job's state
                jobs = await op.store.list_jobs(job_ids=named)
                said += " (" + ", ".join(f"job {j.id} is {j.state}" for j in jobs) + ")"
            out(said)
            return 0
        radius = await op.blast_radius(await act(op.preview()))
        from dealertui.headless import print_blast_radius

        print_blast_radius(radius)
        return 0

    # they act on jobs that exist: a database that does not is an error, not created
    return await with_operator(config, run, Intent.WRITE)


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

    async def act(op: Operator) -> ActionResult:
        r = await op.rerun(job_id=args.job, dealer_id=args.dealer, pipeline_id=args.pipeline,
                           reason=args.reason)
        if r.pipeline is not None:
            first = await op.store.get_job(r.pipeline)
            # gone only if its dealer was removed meanwhile
            dealer = f" (dealer {first.dealer_id})" if first is not None else ""
            of.append(f" of pipeline {r.pipeline}{dealer}")
        return r

    return await _acting(
        config, args, act,
        lambda r: f"rerunning {plural(len(r.changed), 'job')}{''.join(of)}; "
                  f"{plural(len(r.followers), 'descendant')} re-armed",
    )


async def cmd_reset_stuck(config: Config, args: argparse.Namespace) -> int:
    return await _acting(
        config, args,
        lambda op: op.reset_stuck(args.older_than),
        lambda r: f"rescued {plural(len(r.changed), 'stuck job')}; "
                  f"{plural(len(r.followers), 'descendant')} blocked",
    )
