"""Console panes that open over the main screen: failure groups (act on a whole group), the
audit log and the schedules. Each reads in a worker when it opens and on `R`."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from dealertui.config import Config
from dealertui.engine.schedules import ScheduleInfo, report
from dealertui.model import STATE_GLYPH, ErrorGroup
from dealertui.store import JobStore
from dealertui.store.reads import error_groups
from dealertui.store.reads.history import PastPipeline, dealer_history, duration
from dealertui.text import ago, span


class FailureGroupsScreen(ModalScreen[tuple[str, str] | None]):
    """Failures grouped by normalised signature across dealers. `r` retries the selected
    group, `p` pauses its dealers; the app confirms and acts (dismiss with the choice)."""

    BINDINGS = [
        Binding("escape,q,f", "close", "close"),
        Binding("r", "choose('retry')", "retry group"),
        Binding("p", "choose('pause')", "pause group's dealers"),
        Binding("R", "reload", "reload"),
    ]

    def __init__(self, store: JobStore, read_only: bool, clock: Any = time.time) -> None:
        super().__init__()
        self.store = store
        self.read_only = read_only
        self.clock = clock
        self.groups: list[ErrorGroup] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="groups-box"):
            yield Label("[b]failures by cause[/b] (across dealers, most frequent first)")
            yield DataTable(id="groups", cursor_type="row")
            yield Label("[dim]r retry the whole group · p pause its dealers · R reload · "
                        "esc close[/]" if not self.read_only else "[dim]read-only · esc close[/]")

    def on_mount(self) -> None:
        table = self.query_one("#groups", DataTable)
        table.add_columns("group", "count", "type", "class", "dealers", "last", "signature")
        self.action_reload()

    @work(exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        self.groups = await error_groups(self.store, limit=200)
        table = self.query_one("#groups", DataTable)
        table.clear()
        now = self.clock()
        for g in self.groups:
            dealers = g["dealer_ids"][0] if g["dealers"] == 1 else f"{g['dealers']} dealers"
            table.add_row(g["fingerprint"], str(g["count"]), g["job_type"], g["error_class"],
                          dealers, ago(now - g["last_at"], compact=True), Text(g["signature"]),
                          key=g["fingerprint"])
        if not self.groups:
            table.add_row("", "", "", "", "", "", Text("no failures recorded", style="green"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and self.read_only:
            return False
        return True

    def action_choose(self, what: str) -> None:
        table = self.query_one("#groups", DataTable)
        if not self.groups or table.cursor_row >= len(self.groups):
            return
        self.dismiss((what, self.groups[table.cursor_row]["fingerprint"]))

    def action_close(self) -> None:
        self.dismiss(None)


class AuditScreen(ModalScreen[None]):
    """Every operator action: who, what, which jobs, when, why (newest first)."""

    BINDINGS = [Binding("escape,q,a", "close", "close"), Binding("R", "reload", "reload")]

    def __init__(self, store: JobStore) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="audit-box"):
            yield Label("[b]audit log[/b] (operator actions, newest first)")
            yield DataTable(id="audit", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#audit", DataTable).add_columns(
            "when", "who", "action", "target", "jobs", "reason"
        )
        self.action_reload()

    @work(exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        entries = await self.store.audit_entries(limit=200)
        table = self.query_one("#audit", DataTable)
        table.clear()
        for e in entries:
            table.add_row(time.strftime("%m-%d %H:%M:%S", time.localtime(e["at"])), e["who"],
                          e["action"], e["target"], str(e["count"]), e["reason"] or "")
        if not entries:
            table.add_row("", "", "", Text("no operator actions yet", style="dim"), "", "")

    def action_close(self) -> None:
        self.dismiss(None)


def _at(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts is not None else "–"


class SchedulesScreen(ModalScreen[tuple[str, bool] | None]):
    """Each schedule: its clock, last tick, next due time, totals, pause. `p` pauses or
    resumes the selected one (the app acts: dismiss with (name, paused now))."""

    BINDINGS = [
        Binding("escape,q,S", "close", "close"),
        Binding("p", "pause_resume", "pause/resume"),
        Binding("R", "reload", "reload"),
    ]

    def __init__(self, store: JobStore, config: Config, read_only: bool) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.read_only = read_only
        self.infos: list[ScheduleInfo] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="schedules-box"):
            yield Label("[b]schedules[/b] (fired by every engine; each tick once)")
            yield DataTable(id="schedules", cursor_type="row")
            yield Label("[dim]p pause or resume the schedule · R reload · esc close[/]"
                        if not self.read_only else "[dim]read-only · esc close[/]")

    def on_mount(self) -> None:
        self.query_one("#schedules", DataTable).add_columns(
            "schedule", "when", "last tick", "next due", "ticks", "pipelines", "skipped",
            "state")
        self.action_reload()

    @work(exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        self.infos = await report(self.store, self.config)
        table = self.query_one("#schedules", DataTable)
        table.clear()
        for s in self.infos:
            state = Text("paused", style="bold yellow") if s["paused"] else Text("active")
            due = _at(s["next_due"]) + (" (overdue)" if s["overdue"] else "")
            table.add_row(s["name"], s["when"], _at(s["last_tick"]), due, str(s["ticks"]),
                          str(s["pipelines"]), str(s["skipped"]), state, key=s["name"])
        if not self.infos:
            table.add_row("", Text("no [[schedules]] in the config", style="dim"),
                          "", "", "", "", "", "")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pause_resume" and self.read_only:
            return False
        return True

    def action_pause_resume(self) -> None:
        table = self.query_one("#schedules", DataTable)
        if not self.infos or table.cursor_row >= len(self.infos):
            return
        chosen = self.infos[table.cursor_row]
        self.dismiss((chosen["name"], chosen["paused"]))

    def action_close(self) -> None:
        self.dismiss(None)


class HistoryScreen(ModalScreen[None]):
    """One dealer's past pipelines, newest first: when, who, outcome, each job's state and
    time (the lanes and the graph show only the newest; `graph --pipeline ID` draws one)."""

    BINDINGS = [Binding("escape,q,h", "close", "close")]
    SHOWN = 100

    def __init__(self, store: JobStore, dealer_id: str) -> None:
        super().__init__()
        self.store = store
        self.dealer_id = dealer_id
        self.past: list[PastPipeline] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="history-box"):
            yield Label(f"[b]history of {self.dealer_id}[/b] (pipelines, newest first)",
                        markup=True)
            yield DataTable(id="history", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#history", DataTable).add_columns(
            "pipeline", "enqueued", "by", "outcome", "took", "jobs")
        self.reload()

    @work(exclusive=True, exit_on_error=False)
    async def reload(self) -> None:
        self.past = await dealer_history(self.store, self.dealer_id, self.SHOWN)
        table = self.query_one("#history", DataTable)
        table.clear()
        for p in self.past:
            start, end = p.started_at, p.finished_at
            took = span(end - start) if start is not None and end is not None else ""
            jobs = " · ".join(
                f"{j.job_type} {STATE_GLYPH.get(j.state, '')}"
                + (f" {d:.1f}s" if (d := duration(j)) is not None else "") for j in p.jobs)
            table.add_row(str(p.id), time.strftime("%m-%d %H:%M:%S", time.localtime(
                p.created_at)), p.schedule or p.by or "", p.outcome or "unfinished", took,
                Text(jobs))
        if not self.past:
            table.add_row("", "", "", Text("no pipelines yet", style="dim"), "", "")

    def action_close(self) -> None:
        self.dismiss(None)
