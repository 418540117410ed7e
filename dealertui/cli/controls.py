"""`pause` and `resume`: a dealer, a job type, a failure group's dealers, or everything."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dealertui.cli.common import out, with_operator
from dealertui.config import Config

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator


async def cmd_pause(config: Config, args: argparse.Namespace) -> int:
    paused = args.command == "pause"

    async def run(op: Operator) -> int:
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
                         "'dealertui resume --dealer ID' or '--type T')")
        out(f"{'paused' if paused else 'resumed'} {what}")
        return 0

    return await with_operator(config, run)
