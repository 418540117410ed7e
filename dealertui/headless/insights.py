"""Headless output of `health` and `analyze-errors` for people (their --json is the CLI's)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dealertui.engine.health import Check
from dealertui.model import ErrorGroup, Storage
from dealertui.text import ago

_CLASS_STYLE = {"transient": "yellow", "permanent": "red", "timeout": "magenta"}


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def print_health(
    code: int, checks: Sequence[Check], detailed: bool, *, file: TextIO | None = None
) -> None:
    """First line "healthy" or "degraded: <failed check names>"; with *detailed*, one line
    per check marked ✔/✖ (OK/FAIL where the terminal cannot show them). Plain text."""
    out = file if file is not None else sys.stdout
    failed = [c.name for c in checks if not c.ok]
    print("healthy" if code == 0 and not failed else f"degraded: {', '.join(failed)}", file=out)
    if detailed:
        good, bad = ("✔", "✖") if _can_encode(out, "✔✖") else ("OK  ", "FAIL")
        for c in checks:
            print(f"{good if c.ok else bad} {c.name}: {c.detail}", file=out)
    out.flush()


def print_storage(facts: Storage, *, file: TextIO | None = None,
                  now: float | None = None) -> None:
    """`health --detailed`'s last lines: the database's size, rows per table (largest
    first; "about" where they are Postgres's estimates) and the oldest finished job."""
    out = file if file is not None else sys.stdout
    now = time.time() if now is None else now
    size = f"{facts['size_bytes'] / 1e6:.1f} MB"
    if facts["dialect"] == "sqlite":
        page = facts.get("page_size", 0)
        free = facts.get("free_pages", 0)
        size += (f" (the file with its -wal; {free * page / 1e6:.1f} MB of it free, "
                 f"auto-vacuum {facts.get('auto_vacuum', 'unknown')})")
    print(f"database size: {size}", file=out)
    shown = sorted(((n, t) for t, n in facts["rows"].items() if n), reverse=True)
    about = set(facts["rows_estimated"])
    what = "exact" if not about else "about" if facts["dialect"] != "sqlite" else (
        "exact, or about where marked ~")
    mark = "about " if facts["dialect"] != "sqlite" else "~"
    print(f"rows per table ({what}): " + (", ".join(
        f"{t} {mark if t in about else ''}{n:,}" for n, t in shown) or "none"), file=out)
    oldest = facts["oldest_finished_job"]
    if oldest is None:
        print("oldest finished job: none", file=out)
    else:
        when = (f", finished {ago(now - oldest['finished_at'])} ago"
                if oldest["finished_at"] is not None else "")
        print(f"oldest finished job: #{oldest['id']} {oldest['dealer_id']} "
              f"{oldest['job_type']} {oldest['state']}{when}", file=out)
    out.flush()


def _dealers(g: ErrorGroup) -> str:
    if g["dealers"] == 1:
        return f"dealer {g['dealer_ids'][0]}"
    shown = ", ".join(g["dealer_ids"][:3])
    return f"{g['dealers']} dealers ({shown}{', ...' if g['dealers'] > 3 else ''})"


def print_error_groups(
    groups: Sequence[ErrorGroup],
    *,
    file: TextIO | None = None,
    now: float | None = None,
    table: bool | None = None,
) -> None:
    """Failure groups, most frequent first (as given): a table on a terminal, else one ASCII
    line per group such as "homenet [transient] HTTP <n> from feed host homenet.example:
    37 times in 37 dealers (d001, d002, d003, ...), last 2m ago"."""
    out = file if file is not None else sys.stdout
    now = time.time() if now is None else now
    console = Console(file=out, highlight=False, soft_wrap=table is not True, emoji=False)
    if not groups:
        console.print("no failures recorded.")
        return
    if table is None:
        table = console.is_terminal
    if not table:
        for g in groups:
            print(
                f"{g['fingerprint']}  "
                f"{g['job_type']} [{g['error_class']}] {g['signature']}: {g['count']} "
                f"time{'' if g['count'] == 1 else 's'} in "
                f"{_dealers(g)}, last {ago(now - g['last_at'], compact=True)} ago",
                file=out,
            )
        out.flush()
        return
    n = len(groups)
    t = Table(show_edge=False, pad_edge=False, title_justify="left",
              title=f"Failures by cause ({n} group{'s' if n != 1 else ''}, most frequent first)")
    for name, right in (("group", False), ("count", True), ("type", False), ("class", False),
                        ("dealers", True), ("last", False)):
        t.add_column(name, justify="right" if right else "left", no_wrap=True,
                     min_width=len(name))
    t.add_column("message", overflow="fold", ratio=1)
    for g in groups:
        style = _CLASS_STYLE.get(g["error_class"], "")
        dealers = g["dealer_ids"][0] if g["dealers"] == 1 else str(g["dealers"])
        t.add_row(
            g["fingerprint"], str(g["count"]), Text(g["job_type"]),
            Text(g["error_class"], style=style),
            Text(dealers), ago(now - g["last_at"], compact=True) + " ago", Text(g["signature"]),
        )
    console.print(t)
    console.print("[dim]act on a whole group: dealertui retry --fingerprint F | "
                  "pause --fingerprint F[/]")
