"""`pause` and `resume`: a dealer, a job type, a failure group's dealers, a schedule, or
everything."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dealertui.cli.common import out, with_operator
from dealertui.config import Config
from dealertui.errors import UsageError

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator


async def cmd_pause(config: Config, args: argparse.Namespace) -> int:
    paused = args.command == "pause"

    if args.schedule is not None:
        from dealertui.engine.schedules import find

        find(config, args.schedule)  # before the database is opened (and perhaps created)
        other = [flag for flag, v in (("--dealer", args.dealer), ("--type", args.type),
                                      ("--fingerprint", getattr(args, "fingerprint", None)))
                 if v is not None]
        if other:
            raise UsageError(f"--schedule pauses a schedule's ticks, not jobs: give it alone, "
                             f"without {other[0]}.")

    async def run(op: Operator) -> int:
        if args.schedule is not None:
            await op.set_schedule_paused(args.schedule, paused,
                                         reason=getattr(args, "reason", None))
            out(f"{'paused' if paused else 'resumed'} schedule {args.schedule}" + (
                "" if paused else " (the ticks missed while paused are not fired)"))
            return 0
        if paused and args.fingerprint:
            dealers = await op.pause_group(args.fingerprint, reason=args.reason)
            out(f"paused {len(dealers)} dealers of group {args.fingerprint}: "
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
                         "'dealertui resume --dealer ID', '--type T' or "
                         "'--schedule NAME')")
        out(f"{'paused' if paused else 'resumed'} {what}")
        return 0

    return await with_operator(config, run)
