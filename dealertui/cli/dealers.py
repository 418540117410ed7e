"""`dealers add|list|disable|enable|remove`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from dealertui.cli.common import out, with_operator
from dealertui.config import Config
from dealertui.errors import UsageError
from dealertui.model import Intent
from dealertui.text import plural

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator


async def cmd_dealers(config: Config, args: argparse.Namespace) -> int:
    from dealertui.model import DEALER_ID_HINT, dealer_name_problem, is_valid_dealer_id, shown_name

    command = args.dealers_command
    # refused before the database is opened, so nothing is created for a typo
    if command != "list" and not is_valid_dealer_id(args.dealer_id):
        raise UsageError(f"invalid dealer id {args.dealer_id!r}: {DEALER_ID_HINT}.")
    if command == "add" and (problem := dealer_name_problem(args.name)) is not None:
        raise UsageError(problem)

    async def run(op: Operator) -> int:
        if command == "add":
            added = await op.add_dealers([(args.dealer_id, args.name)])
            out(f"{'added' if added else 'updated'} dealer {args.dealer_id}")
            return 0
        if command in ("disable", "enable"):
            changed = await op.set_dealer_disabled(args.dealer_id, command == "disable")
            out(f"{command}d dealer {args.dealer_id}" if changed
                else f"dealer {args.dealer_id} was {command}d already")
            return 0
        if command == "remove":
            gone = await op.remove_dealer(args.dealer_id, cancel_pending=args.cancel_pending)
            cancelled = f", {len(gone.cancelled)} of them cancelled first" if gone.cancelled else ""
            out(f"removed dealer {args.dealer_id} and {plural(len(gone.removed), 'job')}"
                f"{cancelled}; the audit log keeps its operator actions")
            return 0
        rows = await op.store.list_dealers()
        if getattr(args, "json", False):
            out(json.dumps([{"id": d.id, "name": d.name, "disabled": d.disabled_at is not None}
                            for d in rows], indent=2))
        else:
            for d in rows:
                off = "\tdisabled" if d.disabled_at is not None else ""
                out(f"{d.id}\t{shown_name(d.name)}{off}")
        return 0

    # the others read or change dealers that exist: a missing database is an error; listing
    # only reads
    return await with_operator(
        config, run, {"add": Intent.CREATE, "list": Intent.READ}.get(command, Intent.WRITE))
