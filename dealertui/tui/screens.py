"""Modal screens: help, job detail, confirmation."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from dealertui.model import STATE_GLYPH, Job
from dealertui.store.reads import JobDetail
from dealertui.tui.actions import ACTIONS
from dealertui.tui.widgets import STATE_STYLE

#: every state's glyph and name, in the order of model.STATES
LEGEND = "  ".join(f"{glyph} {state}" for state, glyph in STATE_GLYPH.items())


class HelpScreen(ModalScreen[None]):
    """Every key of the console (tui/actions.py) and the lanes' glyphs."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, read_only: bool) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for action in ACTIONS:
            if action.help is None:
                continue
            what = action.help
            if self.read_only and action.mutating:
                what = f"[dim]{what} (read-only: refused)[/]"
            table.add_row(action.shown, what)
        # scrolls: at 80x24 the keys and the legend are taller than the box (arrows, pgup/pgdn,
        # home/end; it has the focus)
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Label("[b]dealertui keys[/b]")
            yield Static(table)
            # a Static wraps; a Label (width auto) cut the legend at the box's edge
            yield Static(f"[dim]lanes: {LEGEND}; ×N = attempts[/]")

    def action_dismiss(self, result: Any = None) -> Any:
        return self.dismiss(None)


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "–"


def _jobs_line(title: str, jobs: Iterable[Job]) -> Text:
    text = Text(f"{title}: ", style="bold")
    items = list(jobs)
    if not items:
        text.append("none", style="dim")
    for j in items:
        text.append(f"{j.job_type} #{j.id} ", style="")
        text.append(f"{j.state}  ", style=STATE_STYLE.get(j.state, ""))
    return text


class JobDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "close")]

    def __init__(
        self, detail: JobDetail, now: float | None = None, why: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.detail = detail
        #: "why isn't it running?": every reason that holds (engine.explain)
        self.why = list(why)
        #: the console's clock at opening ("next attempt in"): the app's, not the wall clock
        self.now = time.time() if now is None else now

    def compose(self) -> ComposeResult:
        d = self.detail
        j = d.job
        head = Text.assemble(
            (f"{j.dealer_id} · {j.job_type} #{j.id}  ", "bold"),
            (j.state, STATE_STYLE.get(j.state, "")),
            f"   attempt {j.attempts}/{j.max_attempts}   priority {j.priority}",
        )
        facts = [
            f"created {_when(j.created_at)}  updated {_when(j.updated_at)}  "
            f"started {_when(j.started_at)}  finished {_when(j.finished_at)}",
        ]
        if j.state == "retrying":
            facts.append(f"next attempt in {max(j.run_after - self.now, 0):.0f}s")
        if j.locked_by:
            facts.append(f"lease held by {j.locked_by} until {_when(j.locked_until)}")
        if j.blocked_reason:
            facts.append(f"blocked: {j.blocked_reason}")
        if j.last_error:
            facts.append(f"last error: {j.last_error}")
        if j.payload:
            facts.append(f"payload: {j.payload}")
        timeline = Table(box=None, padding=(0, 1), expand=True)
        timeline.add_column("time", no_wrap=True)
        timeline.add_column("transition", no_wrap=True)
        timeline.add_column("try", no_wrap=True)
        timeline.add_column("worker", no_wrap=True, style="dim", max_width=14)
        timeline.add_column("error / note", overflow="fold", ratio=1)
        for e in d.events:
            timeline.add_row(
                _when(e["at"]),
                Text(f"{e['from_state'] or '·'} → {e['to_state']}",
                     style=STATE_STYLE.get(e["to_state"], "")),
                str(e["attempt"] or ""),
                (e["worker"] or "").split(":")[0],
                e["error"] or e["message"] or "",
            )
        errors = [e for e in d.events if e["error"]]
        with Vertical(id="detail-box", classes="modal-box"):
            yield Static(head)
            yield Static(Text("\n".join(facts)))  # errors and payloads are not markup
            yield Static(_jobs_line("parents", d.parents))
            yield Static(_jobs_line("children", d.children))
            if self.why:
                yield Label("[b]why[/b]")
                yield Static("\n".join(f"• {w}" for w in self.why), id="why")
            yield Label(f"[b]timeline[/b] ({len(d.events)} events, {len(errors)} errors)")
            with VerticalScroll(id="timeline"):
                yield Static(timeline)

    def action_dismiss(self, result: Any = None) -> Any:
        return self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Asks before an action that touches more than one job."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]
    # enter answers yes, as before the details could scroll (tab reaches them)
    AUTO_FOCUS = "#yes"

    def __init__(self, question: str, details: str = "") -> None:
        super().__init__()
        self.question = question
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            # a Static wraps; a Label would cut the question, "Go ahead?" too, at the edge
            yield Static(self.question, id="confirm-question", markup=False)
            if self.details:
                # at most a third of the terminal (it scrolls), so the buttons stay in the box
                with VerticalScroll(id="confirm-details"):
                    yield Static(self.details, markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ReasonScreen(ModalScreen[str | None]):
    """Asks for the reason an action needs (skip); enter confirms, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-box", classes="modal-box"):
            yield Label(self.question)
            yield Input(placeholder="reason (recorded in the audit log)", id="reason")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())  # "" when empty: refused, not cancelled

    def action_cancel(self) -> None:
        self.dismiss(None)  # escape: cancelled
