"""`dealertui prune`: delete finished history past [retention] now (the engines do it every
minute on their own), or with --dry-run say what would go; `--vacuum` turns incremental
auto-vacuum on for a SQLite file made before it was the default."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from dealertui.cli.common import CLI_RETRY_BUDGET_S, out, read_store
from dealertui.config import Config
from dealertui.errors import UsageError
from dealertui.model import TERMINAL_STATES, Intent
from dealertui.text import span

if TYPE_CHECKING:
    from dealertui.store import JobStore
    from dealertui.store.retention import Limits, Tally


async def cmd_prune(config: Config, args: argparse.Namespace) -> int:
    from dealertui.engine.actions import operator_identity
    from dealertui.engine.pruning import limits, prune_all
    from dealertui.store import open_store

    if args.vacuum and args.dry_run:
        raise UsageError("--vacuum rewrites the file and has no dry run; run 'dealertui prune "
                         "--dry-run' and 'dealertui health --detailed' to see what it would "
                         "free.")
    lim = limits(config.retention, args.older_than)
    store = (await read_store(config) if args.dry_run
             else await open_store(config, Intent.WRITE, retry_budget_s=CLI_RETRY_BUDGET_S))
    try:
        if args.vacuum and not store.db.is_sqlite:
            raise UsageError("--vacuum is for a SQLite file; Postgres's autovacuum reuses the "
                             "space of deleted rows by itself.")
        before = await _size(store) if args.vacuum else 0
        tally = await prune_all(store, lim, dry_run=args.dry_run, by=operator_identity(),
                                what=_limits_text(lim))
        vacuumed = await _vacuum(store, before) if args.vacuum else None
    finally:
        await store.close()
    if args.json:
        out(json.dumps(_json(tally, args.dry_run, lim, vacuumed), indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    pipelines = sum(tally.pipelines.values())
    out(f"{verb} {pipelines} pipelines ({sum(tally.jobs.values())} jobs, {tally.events} "
        f"events, {tally.deps} dependency edges) and {tally.audit} audit rows"
        + (" (dry run, nothing changed)" if args.dry_run else ""))
    for state in TERMINAL_STATES:
        limit = lim.states.get(state)
        kept = f"kept {span(limit)}" if limit is not None else "kept for ever"
        out(f"  {state:<10} {tally.pipelines[state]:>7} pipelines {tally.jobs[state]:>8} jobs"
            f"   ({kept})")
    audit_kept = f"kept {span(lim.audit_s)}" if lim.audit_s is not None else "kept for ever"
    out(f"  {'audit':<10} {tally.audit:>7} rows{'':>23}({audit_kept})")
    if not tally.complete:
        out("another process kept the pruning lock: the engines' own passes delete the rest")
    if vacuumed is not None:
        out(f"vacuumed: the file went from {_mb(vacuumed['before_bytes'])} to "
            f"{_mb(vacuumed['after_bytes'])}; incremental auto-vacuum is on")
    return 0


def _limits_text(lim: Limits) -> str:
    parts = [f"{s} {span(v) if v is not None else 'off'}" for s, v in lim.states.items()]
    audit = span(lim.audit_s) if lim.audit_s is not None else "off"
    return f"finished before: {', '.join(parts)}; audit {audit}"


def _json(tally: Tally, dry_run: bool, lim: Limits, vacuumed: dict[str, int] | None
          ) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "limits_s": {**lim.states, "audit": lim.audit_s},
        "pipelines": tally.pipelines,
        "jobs": tally.jobs,
        "events": tally.events,
        "dependencies": tally.deps,
        "audit_rows": tally.audit,
        "rows": tally.rows,
        "transactions": tally.transactions,
        "longest_transaction_ms": round(tally.longest_tx_ms, 1),
        "vacuumed": vacuumed,
    }


async def _size(store: JobStore) -> int:
    from dealertui.store.reads.storage import storage

    return (await storage(store))["size_bytes"]


async def _vacuum(store: JobStore, before: int) -> dict[str, int]:
    """Incremental auto-vacuum on, by rewriting the file (VACUUM holds the write lock for
    as long as that takes, and needs free disk up to the file's size)."""
    from dealertui.store.reads.storage import storage

    if (await storage(store)).get("auto_vacuum") != "incremental":
        await store.db.sqlite_script("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
    await store.db.sqlite_script("PRAGMA incremental_vacuum;")
    return {"before_bytes": before, "after_bytes": await _size(store)}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
