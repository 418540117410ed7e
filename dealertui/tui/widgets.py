"""Console panes: dealer lanes, breakers, throughput. Each is updated from a ConsoleSnapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable, Sparkline, Static

from dealertui.model import (
    ALL_STATES,
    STATE_GLYPH,
    STATE_LABEL,
    JobState,
    Role,
    styles_by_state,
)
from dealertui.store.reads import STARVED_AFTER_S, ConsoleSnapshot, LaneCell
from dealertui.text import span

#: the console's style per colour role (docs/design.md, "Job states")
ROLE_STYLE: dict[Role, str] = {
    Role.IDLE: "grey62",
    Role.QUEUED: "cyan",
    Role.ACTIVE: "bold yellow",
    Role.RETRY: "magenta",
    Role.OK: "green",
    Role.BAD: "bold red",
    Role.HELD: "red",
    Role.OFF: "grey50",
    Role.RELEASED: "blue",
}
STATE_STYLE = styles_by_state(ROLE_STYLE)
SHORT = STATE_LABEL
DEALER_COL, AGE_COL = "dealer", "age"
LANE_WIDTH = 9
MARKER_CELLS = 2  # ⏸ is one cell, ⌛ two
ROW_BUDGET = 150
#: the throughput pane's counts shown even at zero (the others only when some job is in them)
ALWAYS_COUNTED = (JobState.RUNNING, JobState.READY, JobState.WAITING, JobState.FAILED)


def _marker(glyph: str) -> str:
    """The dealer column's marker slot: *glyph* padded to MARKER_CELLS cells."""
    return glyph + " " * (MARKER_CELLS - cell_len(glyph))


def lane_text(cell: LaneCell | None) -> Text:
    """A lane cell: glyph and word (readable without colour), attempts when > 1."""
    if cell is None:
        return Text("·", style="grey37")
    label = f"{STATE_GLYPH.get(cell.state, '?')} {SHORT.get(cell.state, cell.state)}"
    if cell.attempts > 1:
        # "○ ready ×2" is one wider than the lane and would lose its digit: no space
        tries = f" ×{cell.attempts}"
        label += tries if len(label) + len(tries) <= LANE_WIDTH else tries.lstrip()
    return Text(label, style=STATE_STYLE.get(cell.state, ""))


class LanesTable(DataTable[Any]):
    """One row per dealer, one lane per job type. Rows are keyed by dealer id and updated
    cell by cell; a row is added or removed only when the filtered dealer set changes."""

    def __init__(self, job_types: Sequence[str], **kwargs: Any) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, **kwargs)
        self.job_types = list(job_types)
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._plain: dict[str, tuple[Any, ...]] = {}
        self._ordered: list[str] = []  # dealer ids in row order (sorted by id)
        self.rebuilds = 0  # full clears: the load test asserts this stays at zero per tick
        self._seen: tuple[Any, ...] | None = None  # what the last apply was given
        self._rotate = 0  # where the idle check of off-screen rows resumes

    def on_mount(self) -> None:
        # no name column: at 100 columns the lanes must fit beside the graph; the name is in
        # the graph pane's title, the detail screen, and the filter matches it
        self.add_column("dealer", key=DEALER_COL)
        for t in self.job_types:
            self.add_column(t[:LANE_WIDTH], key=t, width=LANE_WIDTH)
        self.add_column("age", key=AGE_COL, width=3)

    def row_key(self, snap: ConsoleSnapshot, dealer_id: str) -> tuple[Any, ...]:
        """Plain data that decides a row's look: compared first, so an unchanged row (most of
        1,000) costs a tuple comparison, not six rich Text objects."""
        cells = tuple(
            (c.job_id, c.state, c.attempts) if c is not None else None
            for c in (snap.lanes.get((dealer_id, t)) for t in self.job_types)
        )
        newest = max((c.updated_at for t in self.job_types
                      if (c := snap.lanes.get((dealer_id, t))) is not None), default=None)
        oldest = snap.oldest_ready.get(dealer_id)
        return (
            cells,
            ("dealer", dealer_id) in snap.paused,
            dealer_id in snap.disabled,
            oldest is not None and snap.now - oldest > STARVED_AFTER_S,
            span(snap.now - newest, compact=True) if newest is not None else "",
        )

    def row_values(self, snap: ConsoleSnapshot, dealer_id: str) -> tuple[Any, ...]:
        cells = [snap.lanes.get((dealer_id, t)) for t in self.job_types]
        newest = max((c.updated_at for c in cells if c is not None), default=None)
        paused = ("dealer", dealer_id) in snap.paused
        oldest = snap.oldest_ready.get(dealer_id)
        # One marker slot, always there and always MARKER_CELLS wide (blank when empty), so
        # a marker appearing never widens the auto-sized dealer column and pushes the lanes
        # past a 100-column terminal. ⌛ is two cells, and update_cell keeps the column's
        # width: a narrower slot would clip it.
        dealer = Text(dealer_id + " ", style="bold" if paused else "")
        if dealer_id in snap.disabled:  # wins over paused: enabling is the first thing to do
            dealer.stylize("dim strike")
            dealer.append(_marker("⊘"), style="dim")
        elif paused:
            dealer.append(_marker("⏸"), style="bold")
        elif oldest is not None and snap.now - oldest > STARVED_AFTER_S:
            # the fairness meter: claimable work that no worker has picked up for too long
            dealer.append(_marker("⌛"), style="bold red")
        else:
            dealer.append(_marker(""))
        return (
            dealer,
            *(lane_text(c) for c in cells),
            span(snap.now - newest, compact=True) if newest is not None else "",
        )

    def apply(self, snap: ConsoleSnapshot, visible: Sequence[tuple[str, str | None]]) -> None:
        """Make the table show *visible* dealers with the snapshot's states (diff by key)."""
        keys = [d for d, _ in visible]
        wanted = set(keys)
        for gone in [k for k in self._shown if k not in wanted]:
            self.remove_row(gone)
            del self._shown[gone]
            self._plain.pop(gone, None)
        columns = [DEALER_COL, *self.job_types, AGE_COL]
        order_changed = False
        # Rows on screen first, then at most ROW_BUDGET others per refresh: update_cell costs
        # ~0.3 ms, and a burst that changes all 1,000 dealers must not hold the event loop
        # (and the keys) for a second. Rows left over are applied on the next ticks.
        top = self.scroll_offset.y
        on_screen = set(self._ordered[top:top + self.size.height + 2])
        order = sorted(visible, key=lambda v: v[0] not in on_screen)
        budget = ROW_BUDGET
        same = (snap.lanes, snap.paused, snap.oldest_ready, snap.disabled, keys)
        if self._seen is not None and all(a is b or a == b for a, b in zip(
                same, self._seen, strict=True)):
            # nothing but the clock moved (an idle console): only the ages can differ, so
            # the rows on screen and a rotating slice of the rest are checked, not all 1,000
            self._rotate = (self._rotate + ROW_BUDGET) % max(len(order), 1)
            rest = order[len(on_screen):]
            order = [*order[:len(on_screen)],
                     *(rest[self._rotate:] + rest[:self._rotate])[:ROW_BUDGET]]
        self._seen = same
        for dealer_id, _name in order:
            plain = self.row_key(snap, dealer_id)
            if self._plain.get(dealer_id) == plain and dealer_id in self._shown:
                continue
            if dealer_id in self._shown and dealer_id not in on_screen:
                if budget <= 0:
                    continue
                budget -= 1
            self._plain[dealer_id] = plain
            values = self.row_values(snap, dealer_id)
            before = self._shown.get(dealer_id)
            if before is None:
                self.add_row(*values, key=dealer_id)
                order_changed = True
            elif before != values:
                for col, old, new in zip(columns, before, values, strict=True):
                    if old != new:
                        self.update_cell(dealer_id, col, new)
            self._shown[dealer_id] = values
        if order_changed and len(self._shown) > 1:
            self.sort(DEALER_COL, key=lambda v: v.plain if isinstance(v, Text) else str(v))
        if order_changed or len(self._ordered) != len(self._shown):
            self._ordered = sorted(self._shown)

    # Textual awaits an action that returns an awaitable, so an async override is allowed; only
    # DataTable's own (sync) signature says otherwise. Binding enter to a new action instead
    # would change what a keymap or a run_action("select_cursor") reaches.
    async def action_select_cursor(self) -> None:  # type: ignore[override]
        if not self.row_count:
            # the table takes enter and, with no row, would say nothing: the app's detail
            # says why
            await self.run_action("app.detail")
            return
        super().action_select_cursor()

    def selected(self) -> tuple[str | None, str | None]:
        """(dealer id, job type) under the cursor; job type None on the dealer or age."""
        if not self.row_count:
            return None, None
        try:
            row_key, col_key = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None, None
        col = col_key.value
        return row_key.value, col if col in self.job_types else None


class BreakersTable(DataTable[Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="none", **kwargs)

    def on_mount(self) -> None:
        # the time to half-open rides in the state cell ("open 4m"): a fourth column does
        # not fit the 40-column side pane
        self.add_columns("breaker", "state", "fails")

    def apply(self, snap: ConsoleSnapshot) -> None:
        # a handful of rows at most: rebuilding is cheaper than diffing here
        self.clear()
        for b in snap.breakers:
            state = b["state"]
            style = {"open": "bold red", "half_open": "yellow"}.get(state, "green")
            due = b.get("half_open_at")
            left = span(due - snap.now, compact=True) if due else ""
            label = f"open {left}" if state == "open" and due else state
            # of its dealer's calls, or of the dealers that ran its type, in the window
            failed = f"{b['failures']}/{b['calls']}" if b.get("calls") else str(b["failures"])
            self.add_row(b["key"], Text(label, style=style), failed, key=b["key"])
        if not snap.breakers:
            self.add_row(Text("all closed", style="green"), "", "")


class ThroughputPanel(Static):
    """Outcomes per 10 s over the last 10 min (sparkline), jobs/s and success over the last
    60 s, counts, workers, engine: read from outcome_tallies, so every console on one database
    shows the same numbers."""

    _shown: tuple[str, list[Any]] | None = None

    def compose(self) -> Any:
        yield Sparkline([0.0], id="spark")
        yield Static(id="numbers")

    def apply(self, snap: ConsoleSnapshot, dt: float, engine_state: str) -> None:
        t = snap.throughput
        rate = t.rate
        spark = self.query_one("#spark", Sparkline)
        data = [float(n) for n in snap.spark] or [0.0]
        if spark.data != data:
            spark.data = data
        success = f"{100 * t.succeeded / t.outcomes:.0f}%" if t.outcomes else "–"
        items = [
            Text.assemble((f"{rate:.1f} jobs/s", "bold"), f" ({t.window_s:.0f} s)"),
            Text(f"success {success}"),
            # before the counts: on a narrow screen what is cut is the end
            Text.assemble(("engine ", "grey62"), (engine_state, "bold")),
        ]
        for state in ALL_STATES:
            n = snap.by_state.get(state, 0)
            if n or state in ALWAYS_COUNTED:
                items.append(Text(f"{SHORT[state]} {n}", style=STATE_STYLE[state]))
        items.append(Text(f"workers {len(snap.workers)}"))
        if ("global", "") in snap.paused:
            items.append(Text("⏸ ALL PAUSED", style="bold yellow"))
        numbers = self.query_one("#numbers", Static)
        line = keep_together(items, numbers.content_size.width)
        # Static.update lays the whole screen out again: an idle console repainted every
        # pane twice a second for a line that had not changed
        if (line.plain, line.spans) != self._shown:
            self._shown = (line.plain, line.spans)
            numbers.update(line)


def keep_together(items: list[Text], width: int) -> Text:
    """*items* two spaces apart, broken into lines between items only, never inside one: a
    label wrapped away from its number (`FAIL │ 21`) reads as two facts. Hand-written: rich
    wraps at every space (a no-break space included)."""
    out, used = Text(), 0
    for item in items:
        n = item.cell_len
        if used and width and used + 2 + n > width:
            out.append("\n")
            used = 0
        elif used:
            out.append("  ")
            used += 2
        out.append_text(item)
        used += n
    return out
