"""Headless front end: human and machine output for cron, scripts and terminals (rich)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from dealertui.config import Config
from dealertui.model import ALL_STATES

_STATE_STYLE = {
    "waiting": "dim",
    "ready": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "blocked": "red dim",
    "cancelled": "dim",
}


def _counts_table(
    title: str, rows: dict[str, dict[str, int]], first: str, states: list[str]
) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column(first, no_wrap=True)
    for state in states:
        table.add_column(state, justify="right", style=_STATE_STYLE[state], header_style="bold")
    for name, counts in rows.items():
        table.add_row(name, *(str(counts.get(s, 0) or "·") for s in states))
    return table


def print_status(status: dict[str, Any], config: Config, *, max_dealers: int = 50) -> None:
    """`dealertui status` for people: totals, per type, per dealer (busiest first), pauses."""
    out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    by_state = status["by_state"]
    out.print(
        f"[bold]{status['total']}[/] jobs: "
        + ", ".join(f"[{_STATE_STYLE[s]}]{by_state[s]} {s}[/]" for s in ALL_STATES if by_state[s])
        if status["total"]
        else "no jobs yet: enqueue a pipeline with 'dealertui enqueue --all-dealers'"
    )
    paused = status["paused"]
    if paused["global"] or paused["dealers"] or paused["types"]:
        parts = ["everything"] if paused["global"] else []
        parts += [f"dealer {d}" for d in paused["dealers"]]
        parts += [f"type {t}" for t in paused["types"]]
        out.print(f"[bold yellow]paused:[/] {', '.join(parts)}")
    out.print()
    # Only states that occur get a column, so the tables fit an 80-column terminal.
    states = [s for s in ALL_STATES if by_state[s]] or ["waiting", "ready"]
    out.print(_counts_table("By job type", status["by_type"], "job type", states))
    dealers = status["by_dealer"]
    busiest = sorted(
        dealers.items(),
        key=lambda kv: (-(kv[1]["failed"] + kv[1]["blocked"]), -sum(kv[1].values()), kv[0]),
    )
    shown = dict(busiest[:max_dealers])
    out.print()
    title = "By dealer" + (
        f" (the {max_dealers} with most failures and jobs of {len(dealers)}; --json for all)"
        if len(dealers) > max_dealers
        else ""
    )
    out.print(_counts_table(title, shown, "dealer", states))
    workers = status["workers"]
    out.print()
    out.print(f"workers: {len(workers)}" + "".join(
        f"\n  {w['id']} ({w['kind']}, {w['host']} pid {w['pid']}): {w['running']} running"
        for w in workers
    ))
