"""The console app: its panes (lanes, graph, breakers, throughput, events), the refresh that
reads a snapshot and applies it to them, and the keys that only look. Every key is a row of
tui/actions.py; the ones that act are in tui/operations.py."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input

from dealertui.config import Config
from dealertui.engine.detail import job_report
from dealertui.engine.host import EngineProcess
from dealertui.errors import DealertuiError
from dealertui.store import Intent, JobStore, describe_database, open_store
from dealertui.store.reads import ConsoleSnapshot, console_snapshot
from dealertui.tui.actions import ACTIONS, bindings
from dealertui.tui.event_log import EventLog
from dealertui.tui.flow import ActionFlow
from dealertui.tui.graph_pane import GraphPane
from dealertui.tui.operations import OperatorKeys
from dealertui.tui.panels import AuditScreen, FailureGroupsScreen, HistoryScreen, SchedulesScreen
from dealertui.tui.pauses import PauseToggles
from dealertui.tui.screens import ConfirmScreen, HelpScreen, JobDetailScreen
from dealertui.tui.widgets import BreakersTable, LanesTable, ThroughputPanel

GRAPH_DEBOUNCE_S = 0.15
REFRESH_S = 0.5  # 2 Hz: live enough, and bounded whatever the event rate
FULL_READ_EVERY = 120  # refreshes; a whole read of 1,000 dealers' lanes is ~100 ms
NARROW_WIDTH, NARROW_HEIGHT = 100, 28


class DealerConsole(OperatorKeys):
    CSS_PATH = "console.tcss"
    TITLE = "dealertui"
    BINDINGS = bindings()  # tui/actions.py: every key, its footer word and help line

    def __init__(
        self,
        config: Config,
        store: JobStore | None = None,
        *,
        read_only: bool = False,
        start_engine: bool = False,
        seed: Callable[[JobStore], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self._owns_store = store is None
        self.read_only = read_only
        self.start_engine = start_engine
        self.seed = seed
        self.clock = clock
        self.refresh_s = refresh_s
        self.manager: EngineProcess | None = None
        self.snapshot: ConsoleSnapshot | None = None
        self.filter_text = ""
        self._event_cursor: int | None = None
        self._refreshing = False
        self._last_refresh = 0.0
        self._graph_timer: Timer | None = None
        self.refreshes = 0
        self.startup_error: DealertuiError | None = None
        self.flow = ActionFlow(self, self._operator, self.refresh_data)
        self.pauses = PauseToggles(self.flow, self._operator)
        self.sub_title = describe_database(config.database_url) + (
            "  [read-only]" if read_only else ""
        )

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield LanesTable(list(self.config.job_types), id="lanes")
            with Vertical(id="side"):
                yield GraphPane(id="graph", classes="pane")
                yield BreakersTable(id="breakers", classes="pane")
        yield ThroughputPanel(id="throughput", classes="pane")
        yield EventLog(id="events", classes="pane")
        yield Input(placeholder="filter dealers: id, name or state (esc clears)", id="filter")
        yield Footer(compact=True)

    def _intent(self) -> Intent:
        """The demo seeds its own database; read-only writes nothing, so it also opens a
        database it cannot write; otherwise a typo'd path is refused as `--run-once` does."""
        if self.seed is not None:
            return Intent.CREATE
        return Intent.READ if self.read_only else Intent.WRITE

    async def on_mount(self) -> None:
        self.query_one("#graph").border_title = "dependency graph"
        self.query_one("#breakers").border_title = "circuit breakers"
        self.query_one("#throughput").border_title = "throughput"
        self.query_one("#events").border_title = "events"
        self.query_one("#lanes").border_title = "dealer lanes"
        self.query_one("#filter", Input).display = False
        # the lanes take the keys at start (arrows move the selection): Textual's auto focus
        # would pick the event log, and arrows scroll it. Not App.AUTO_FOCUS = "#lanes": that
        # applies to every screen and would leave the modals' inputs and tables unfocused
        self.query_one(LanesTable).focus()
        self._apply_narrow(self.size.width, self.size.height)
        if self.store is None:
            try:
                self.store = await open_store(self.config, self._intent())
            except DealertuiError as exc:
                # said by run_console once the terminal is restored: one sentence and its
                # exit code, not a traceback
                self.startup_error = exc
                self.exit(return_code=exc.exit_code)
                return
        if self.seed is not None:
            await self.seed(self.store)
        self.set_interval(self.refresh_s, self.refresh_data)
        if not self.is_headless:
            self.set_interval(2.0, self._check_terminal)
            # SSH gone (SIGHUP), `kill`, systemd (SIGTERM): leave as `q` does, so the engine's
            # jobs are handed back and the demo's database removed (the default action ended
            # the process on the spot, leaving both)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(signum, self.exit)
        self.refresh_data()
        if self.start_engine and not self.read_only:
            self._start_engine()

    async def on_unmount(self) -> None:
        if self.manager is not None:
            # the child's running jobs are released; the console exits after the child
            await self.manager.close("console closed")
        if self._owns_store and self.store is not None:
            await self.store.close()

    def on_resize(self, event: Resize) -> None:
        self._apply_narrow(event.size.width, event.size.height)

    def _apply_narrow(self, width: int, height: int) -> None:
        # the main screen's layout, whatever is on top: under a modal, self.screen is the modal
        main = self.screen_stack[0] if self.screen_stack else self.screen
        main.set_class(width < NARROW_WIDTH or height < NARROW_HEIGHT, "narrow")

    def _check_terminal(self) -> None:
        # SSH dropped: stdin is gone; exit instead of spinning on a dead terminal
        if not sys.stdin or sys.stdin.closed or not sys.stdin.isatty():
            self.exit()

    # -- refresh --------------------------------------------------------------------------------

    @work(exit_on_error=False, group="refresh")
    async def refresh_data(self) -> None:
        """Read one snapshot (in a worker, off the key path) and apply it by key."""
        if self._refreshing or self.store is None:
            return  # the previous read is still running: skip a tick instead of piling up
        if isinstance(self.screen, (ConfirmScreen, JobDetailScreen, HelpScreen,
                                    FailureGroupsScreen, AuditScreen, SchedulesScreen)):
            return  # nothing of the main screen can be seen: save the work
        self._refreshing = True
        read_at = time.monotonic()
        try:
            # lanes and counts are reused while the fingerprint holds (console_snapshot); every
            # 120th read (a minute) is whole, should anything change a job past it
            previous = self.snapshot if self.refreshes % FULL_READ_EVERY else None
            snap = await console_snapshot(self.store, after_event_id=self._event_cursor,
                                          previous=previous)
        except DealertuiError as exc:
            self.notify(str(exc), severity="error", timeout=4)
            return
        finally:
            self._refreshing = False
        first = self._event_cursor is None
        self._event_cursor = snap.last_event_id
        now = time.monotonic()
        dt, self._last_refresh = now - self._last_refresh, now
        self.snapshot = snap
        self.pauses.seen(read_at)
        with self.batch_update():
            self.query_one(LanesTable).apply(snap, self.visible_dealers(snap))
            self.query_one(BreakersTable).apply(snap)
            self.query_one(ThroughputPanel).apply(snap, 0.0 if first else dt, self.engine_state)
            self.query_one(EventLog).write_events(snap.events)
        self.refreshes += 1
        self.update_graph()

    def visible_dealers(self, snap: ConsoleSnapshot) -> list[tuple[str, str | None]]:
        needle = self.filter_text.strip().lower()
        if not needle:
            return snap.dealers
        out = []
        types = list(self.config.job_types)
        for dealer_id, name in snap.dealers:
            # by key, not by scanning every lane per dealer (10,000 lanes x 2,500 dealers a
            # keystroke); a lane's payload text matches too ("full" finds {"feed": "full"})
            cells = [c for t in types if (c := snap.lanes.get((dealer_id, t))) is not None]
            if needle in dealer_id.lower() or needle in (name or "").lower() or any(
                c.state.startswith(needle) or needle in (c.payload or "").lower()
                for c in cells
            ):
                out.append((dealer_id, name))
        return out

    @property
    def engine_state(self) -> str:
        if self.read_only:
            return "off (read-only)"
        if self.manager is None:
            return "stopped (s starts)"
        return "paused" if self.manager.paused else f"running ({self.manager.in_flight} jobs)"

    def update_graph(self) -> None:
        """Redraw the selected dealer's graph, if its lanes or the selection changed."""
        if self.store is None or self.snapshot is None:
            return
        dealer, _ = self.query_one(LanesTable).selected()
        self.query_one(GraphPane).show(self.store, self.config, self.snapshot, dealer)

    @on(DataTable.CellHighlighted, "#lanes")
    def _selection_moved(self) -> None:
        # redraw the graph once the cursor rests: holding an arrow key over 1,000 dealers must
        # not queue a store read per row passed
        if self._graph_timer is not None:
            self._graph_timer.stop()
        self._graph_timer = self.set_timer(GRAPH_DEBOUNCE_S, self.update_graph)

    @on(DataTable.CellSelected, "#lanes")
    def _cell_chosen(self) -> None:
        # the table takes enter for itself (select cursor): open the detail from here
        self.action_detail()

    # -- keys that only read or look (the ones that act are in tui/operations.py) ------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self.snapshot is not None:
            self.query_one(LanesTable).apply(self.snapshot, self.visible_dealers(self.snapshot))

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(LanesTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one(LanesTable).focus()

    def action_detail(self) -> None:
        dealer, job_id = self._selected()
        if job_id is None and dealer is not None and self.snapshot is not None:
            cells = [c for (d, _), c in self.snapshot.lanes.items() if d == dealer]
            job_id = min((c.job_id for c in cells), default=None)
            if job_id is None:
                self.notify(f"{dealer} has no jobs yet (e enqueues a pipeline)", timeout=3)
                return
        if job_id is None:
            self._no_dealer("or a job's lane to see its detail")
            return

        async def show() -> None:
            assert self.store is not None
            report = await job_report(self.store, self.config, job_id)
            if report is None:
                self.notify(f"job {job_id} is gone", severity="warning")
                return
            self.push_screen(JobDetailScreen(report.detail, now=report.now,
                                             why=[r.text for r in report.reasons]))

        self.run_worker(show(), group="action", exit_on_error=False)

    def action_history(self) -> None:
        dealer, _ = self._selected()
        if dealer is None:
            self._no_dealer("to see its past pipelines")
            return
        assert self.store is not None
        self.push_screen(HistoryScreen(self.store, dealer))

    def action_audit(self) -> None:
        assert self.store is not None
        self.push_screen(AuditScreen(self.store))

    def action_schedules(self) -> None:
        assert self.store is not None

        def chosen(choice: tuple[str, bool] | None) -> None:
            if choice is None or self._refuse():
                return
            name, paused = choice

            async def work() -> str:
                await self._operator().set_schedule_paused(name, not paused)
                return (f"resumed schedule {name} (the ticks it missed are dropped)" if paused
                        else f"paused schedule {name}: no engine fires its ticks")

            self.flow.act(work)

        self.push_screen(SchedulesScreen(self.store, self.config, self.read_only), chosen)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in ACTIONS:
            if a.palette is None or (self.read_only and a.mutating):
                continue
            yield SystemCommand(a.palette, a.palette_help, getattr(self, f"action_{a.action}"))


def make_app(
    config: Config,
    store: JobStore | None = None,
    *,
    read_only: bool = False,
    start_engine: bool = False,
    seed: Callable[[JobStore], Awaitable[None]] | None = None,
    clock: Callable[[], float] = time.time,
    refresh_s: float = REFRESH_S,
) -> DealerConsole:
    """The console app, as `dealertui` and the tests build it."""
    return DealerConsole(config, store, read_only=read_only, start_engine=start_engine,
                         seed=seed, clock=clock, refresh_s=refresh_s)
