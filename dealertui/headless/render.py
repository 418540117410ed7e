"""Reports for people on stdout (rich): `status`'s tables and `--dry-run`'s blast radius, in
one style per job state derived from the colour roles."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dealertui.config import Config
from dealertui.headless.runlog import run_line
from dealertui.model import (
    ALL_STATES,
    BlastRadius,
    Role,
    StatusReport,
    WorkerReport,
    styles_by_state,
)
from dealertui.text import plural, span


class _Out(Console):
    """stdout for people. A reader that leaves (`status | head -1`) is a BrokenPipeError,
    which the CLI answers with exit 0 as for `status --json | head`; rich would exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stdout_console() -> Console:
    return _Out(file=sys.stdout, highlight=False, soft_wrap=True, emoji=False)


#: a report's style per colour role (docs/design.md, "Job states")
ROLE_STYLE: dict[Role, str] = {
    Role.IDLE: "dim",
    Role.QUEUED: "cyan",
    Role.ACTIVE: "yellow",
    Role.RETRY: "magenta",
    Role.OK: "green",
    Role.BAD: "red",
    Role.HELD: "red dim",
    Role.OFF: "dim",
    Role.RELEASED: "blue",
}
STATE_STYLE = styles_by_state(ROLE_STYLE)


def _counts_table(
    title: str, rows: dict[str, dict[str, int]], first: str, states: list[str]
) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column(first, no_wrap=True)
    for state in states:
        table.add_column(state, justify="right", style=STATE_STYLE[state], header_style="bold")
    for name, counts in rows.items():
        table.add_row(name, *(str(counts.get(s, 0) or "·") for s in states))
    return table


def print_status(status: StatusReport, config: Config, *, max_dealers: int = 50) -> None:
    """`dealertui status` for people: totals, per type, per dealer (busiest first), pauses."""
    out = stdout_console()
    by_state = status["by_state"]
    out.print(
        f"[bold]{status['total']}[/] jobs: "
        + ", ".join(f"[{STATE_STYLE[s]}]{by_state[s]} {s}[/]" for s in ALL_STATES if by_state[s])
        if status["total"]
        else "no jobs yet: enqueue a pipeline with 'dealertui enqueue --all-dealers'"
    )
    paused = status["paused"]
    if paused["global"] or paused["dealers"] or paused["types"] or paused["schedules"]:
        parts = ["everything"] if paused["global"] else []
        parts += [f"dealer {d}" for d in paused["dealers"]]
        parts += [f"type {t}" for t in paused["types"]]
        parts += [f"schedule {s}" for s in paused["schedules"]]
        out.print(f"[bold yellow]paused:[/] {', '.join(parts)}")
    if status.get("disabled_dealers"):
        out.print(f"[bold yellow]disabled[/] (kept, never claimed): "
                  f"{', '.join(status['disabled_dealers'])}")
    if status.get("dealers_not_in_config"):
        gone = status["dealers_not_in_config"]
        out.print(f"[bold yellow]not in the config[/] ({escape(str(config.source))}) but still "
                  f"in the database: {', '.join(gone)} (dealertui dealers disable|remove ID)")
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
    if status["last_runs"]:
        out.print()
        out.print("[bold]Last runs[/] (newest first)")
        for run in status["last_runs"]:
            out.print(f"  {run_line(run)}", markup=False, highlight=False)
    fair = status["fairness"]
    starved = sorted(d for d, f in fair.items() if f["starved"])
    most_served = sorted(fair.items(), key=lambda kv: -kv[1]["share"])[:5]
    if any(f["outcomes"] for _, f in most_served):
        out.print()
        out.print("[bold]Fairness[/] (last 5 min): " + ", ".join(
            f"{d} {f['share']:.0%}" for d, f in most_served if f["outcomes"]
        ))
    if starved:
        out.print("[bold red]starved[/] (ready jobs waiting > 60s): " + ", ".join(
            f"{d} ({fair[d]['oldest_ready_wait_s']:.0f}s)" for d in starved
        ))
    workers = status["workers"]
    now = time.time()
    # a worker killed with -9 never unregisters: its silence, not its row, says it is gone

    def alive(w: WorkerReport) -> bool:
        return w["alive"]

    def heartbeat(w: WorkerReport) -> str:
        age = max(now - (w["heartbeat_at"] or 0), 0)
        if not alive(w):
            return f", [bold red]silent for {span(age)}[/] (gone? its leases run out)"
        return f", heartbeat {span(age)} ago"

    live = sum(1 for w in workers if alive(w))
    out.print()
    out.print(f"workers: {live} live" + (f", {len(workers) - live} silent"
                                         if live < len(workers) else "") + "".join(
        f"\n  {escape(w['id'])} ({w['kind']}, {escape(w['host'] or '')} pid {w['pid']}): "
        f"{w['running']} running{heartbeat(w)}"
        for w in workers
    ))

def print_blast_radius(radius: BlastRadius) -> None:
    """`--dry-run`: the jobs an action would change and the descendants that would move."""
    out = stdout_console()
    out.print(f"dry run: would change {plural(radius['changes'], 'job')}; "
              f"{plural(radius['follows'], 'descendant')} would move; nothing was changed")
    if not radius["groups"]:
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("dealer", "job type", "role", "jobs"):
        table.add_column(col, justify="right" if col == "jobs" else "left")
    for g in radius["groups"]:
        table.add_row(g["dealer_id"], g["job_type"], g["role"], str(g["count"]))
    out.print(table)
