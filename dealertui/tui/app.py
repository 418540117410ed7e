"""The console: dealer lanes, live graph, breakers, throughput, events, and keys that act."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Key, Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Static

from dealertui.config import Config
from dealertui.engine import graph as graphs
from dealertui.engine.actions import Operator
from dealertui.engine.detail import job_report
from dealertui.engine.host import EngineProcess
from dealertui.errors import DealertuiError
from dealertui.handlers.check import check_runnable
from dealertui.model import ActionResult
from dealertui.store import Intent, JobStore, describe_database, open_store
from dealertui.store.reads import ConsoleSnapshot, console_snapshot
from dealertui.text import plural
from dealertui.tui.panels import AuditScreen, FailureGroupsScreen
from dealertui.tui.screens import ConfirmScreen, HelpScreen, JobDetailScreen, ReasonScreen
from dealertui.tui.widgets import (
    STATE_STYLE,
    BreakersTable,
    LanesTable,
    ThroughputPanel,
)

#: actions that change state: hidden and refused under --read-only
MUTATING = {"start", "pause_dealer", "pause_all", "retry", "reset_stuck", "cancel", "enqueue",
            "rerun", "skip"}
GRAPH_DEBOUNCE_S = 0.15
REFRESH_S = 0.5  # 2 Hz: live enough, and bounded whatever the event rate
NARROW_WIDTH, NARROW_HEIGHT = 100, 28


class DealerConsole(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "dealertui"
    # the footer shows bindings in this order and cuts what does not fit: `?` (which lists
    # every key) comes first, and `q` (known to all, listed by `?`) is not shown, so at 100
    # columns every other key fits
    BINDINGS = [
        Binding("question_mark", "help", "help"),
        Binding("s", "start", "start"),
        Binding("p", "pause_dealer", "pause"),
        Binding("P", "pause_all", "pause all"),
        Binding("r", "retry", "retry"),
        Binding("x", "reset_stuck", "reset stuck"),
        Binding("c", "cancel", "cancel"),
        Binding("e", "enqueue", "enqueue"),
        Binding("slash", "filter", "filter"),
        Binding("enter", "detail", "detail"),
        Binding("R", "rerun", "rerun", show=False),
        Binding("k", "skip", "skip", show=False),
        Binding("f", "failures", "failure groups", show=False),
        Binding("a", "audit", "audit log", show=False),
        Binding("q", "quit", "quit", show=False),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

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
        self._graph_key: tuple[Any, ...] | None = None
        self._graph_timer: Timer | None = None
        self.refreshes = 0
        self.startup_error: DealertuiError | None = None
        #: pause flags asked for and not yet seen in a snapshot read after the write: a second
        #: p or P before the next refresh toggles from here, not from the stale snapshot
        self._pause_intent: dict[tuple[str, str], bool] = {}
        #: per flag: pause writes in flight, and when the last one finished (monotonic)
        self._pause_pending: dict[tuple[str, str], int] = {}
        self._pause_written: dict[tuple[str, str], float] = {}
        self._pause_lock = asyncio.Lock()  # FIFO: the writes land in the order of the keys
        #: guarded actions being previewed, asked about or done: a key pressed again meanwhile
        #: does not start the same action twice (nor stack two identical questions)
        self._busy: set[str] = set()
        self.sub_title = describe_database(config.database_url) + (
            "  [read-only]" if read_only else ""
        )

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield LanesTable(list(self.config.job_types), id="lanes")
            with Vertical(id="side"):
                yield Static("", id="graph", classes="pane")
                yield BreakersTable(id="breakers", classes="pane")
        yield ThroughputPanel(id="throughput", classes="pane")
        yield RichLog(id="events", classes="pane", max_lines=500, markup=False, wrap=False)
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
        # had picked the event log, so arrows scrolled the log. Not App.AUTO_FOCUS = "#lanes":
        # that applies to every screen and left the modals' inputs and tables unfocused
        self.query_one(LanesTable).focus()
        self._apply_narrow(self.size.width, self.size.height)
        if self.store is None:
            try:
                self.store = await open_store(self.config, self._intent())
            except DealertuiError as exc:
                # said by run_console once the terminal is restored: one sentence and its
                # exit code (a wrong password showed a traceback and exited 1)
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
                                    FailureGroupsScreen, AuditScreen)):
            return  # nothing of the main screen can be seen: save the work
        self._refreshing = True
        read_at = time.monotonic()
        try:
            # lanes and counts are reused while no job event was written; every 10th read
            # (5 s) is whole, should anything change a job without writing its event
            previous = self.snapshot if self.refreshes % 10 else None
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
        for key, written in list(self._pause_written.items()):
            if not self._pause_pending.get(key) and written < read_at:  # the snapshot shows it
                del self._pause_written[key]
                self._pause_intent.pop(key, None)
        with self.batch_update():
            self.query_one(LanesTable).apply(snap, self.visible_dealers(snap))
            self.query_one(BreakersTable).apply(snap)
            self.query_one(ThroughputPanel).apply(snap, 0.0 if first else dt, self.engine_state)
            self._log_events(snap.events)
        self.refreshes += 1
        self.update_graph()

    def visible_dealers(self, snap: ConsoleSnapshot) -> list[tuple[str, str | None]]:
        needle = self.filter_text.strip().lower()
        if not needle:
            return snap.dealers
        out = []
        for dealer_id, name in snap.dealers:
            states = {c.state for (d, _), c in snap.lanes.items() if d == dealer_id}
            if needle in dealer_id.lower() or needle in (name or "").lower() or any(
                s.startswith(needle) for s in states
            ):
                out.append((dealer_id, name))
        return out

    def _log_events(self, events: Iterable[dict[str, Any]]) -> None:
        log = self.query_one("#events", RichLog)
        for e in events:
            if e["to_state"] in ("ready", "waiting") and not e["error"] and e["from_state"] in (
                "waiting", None
            ):
                continue  # promotions and enqueues: too many to read, visible in the lanes
            line = Text(time.strftime("%H:%M:%S ", time.localtime(e["at"])), style="grey50")
            line.append(f"{e['dealer_id']} {e['job_type']} #{e['job_id']} ")
            line.append(f"{e['from_state'] or '·'}→{e['to_state']}",
                        style=STATE_STYLE.get(e["to_state"], ""))
            note = e["error"] or (e["message"] if e["to_state"] != "running" else None)
            if note:
                line.append(f"  {note}", style="red" if e["error"] else "grey62")
            log.write(line)

    @property
    def engine_state(self) -> str:
        if self.read_only:
            return "off (read-only)"
        if self.manager is None:
            return "stopped (s starts)"
        return "paused" if self.manager.paused else f"running ({self.manager.in_flight} jobs)"

    @work(exclusive=True, exit_on_error=False, group="graph")
    async def update_graph(self) -> None:
        """Redraw the selected dealer's graph, only when its lanes or the selection changed."""
        if self.store is None or self.snapshot is None:
            return
        dealer, _ = self.query_one(LanesTable).selected()
        lanes = tuple(
            (t, c.job_id, c.state) for (d, t), c in sorted(self.snapshot.lanes.items())
            if d == dealer
        )
        key = (dealer, lanes)
        if key == self._graph_key:
            return
        if dealer is None:
            # no dealer selected (none yet, or the filter hides them all): the job types, as
            # the README says; graphs.build(None) would list every job of every dealer
            graph = graphs.from_config(self.config)
        else:
            graph = await graphs.current_pipeline(self.store, self.config, dealer)
        text = Text()
        for line in graphs.render(graph).splitlines():
            state = line.rsplit(" ", 1)[-1]
            text.append(line + "\n", style=STATE_STYLE.get(state, ""))
        pane = self.query_one("#graph", Static)
        names = dict(self.snapshot.dealers)
        pane.border_title = (
            f"graph: {dealer} {names.get(dealer) or ''}".rstrip() if dealer else "job types"
        )
        pane.update(text)
        # only now: a run cancelled by a newer one (exclusive) during the await above must not
        # mark this key drawn, or the pane stays empty until the dealer's lanes change
        self._graph_key = key

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

    # -- actions ----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in MUTATING:
            return False  # hidden from the footer and the key does not act
        return True

    def on_key(self, event: Key) -> None:
        if self.read_only and event.character in {"s", "p", "P", "r", "x", "c", "e", "R", "k"}:
            self.notify("read-only console: that action is refused", severity="warning")

    def _refuse(self) -> bool:
        if self.read_only:
            self.notify("read-only console: that action is refused", severity="warning")
        return self.read_only

    def _operator(self) -> Operator:
        assert self.store is not None
        return Operator(self.store, self.config)

    def _act(
        self,
        work: Callable[[], Awaitable[str | None]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run an action's store calls in a worker; report the result as a notification.
        *then* runs when the work is over, whatever its outcome."""

        async def run() -> None:
            try:
                message = await work()
            except DealertuiError as exc:
                self.notify(str(exc), severity="error", timeout=5)
                return
            finally:
                if then is not None:
                    then()
            if message:
                self.notify(message, timeout=3)
            self.refresh_data()

        self.run_worker(run(), group="action", exit_on_error=False)

    def _confirm_then(
        self,
        question: str,
        details: str,
        work: Callable[[], Awaitable[str]],
        then: Callable[[], None] | None = None,
    ) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act(work, then)
                return
            self.notify("nothing changed", timeout=2)
            if then is not None:
                then()

        self.push_screen(ConfirmScreen(question, details), answered)

    def _selected(self) -> tuple[str | None, int | None]:
        dealer, job_type = self.query_one(LanesTable).selected()
        if dealer is None or job_type is None or self.snapshot is None:
            return dealer, None
        cell = self.snapshot.lanes.get((dealer, job_type))
        return dealer, cell.job_id if cell else None

    def _no_dealer(self, what: str) -> None:
        """Say why a key that needs a dealer did nothing (no row, or the filter hides all)."""
        if self.snapshot is not None and not self.snapshot.dealers:
            self.notify("no dealers yet: add one with 'dealertui dealers add ID'", timeout=3)
            return
        hidden = " (the filter hides every dealer: esc clears it)" if (
            self.filter_text.strip() and self.snapshot is not None and self.snapshot.dealers
        ) else ""
        self.notify(f"select a dealer {what}{hidden}", timeout=3)

    def _start_engine(self) -> None:
        # a child process: see dealertui/engine/host.py for why and the numbers
        self.manager = engine = EngineProcess(self.config, kind="console")

        async def run_engine() -> None:
            try:
                await engine.run()
            except DealertuiError as exc:
                self.notify(f"engine stopped: {exc}", severity="error", timeout=8)
            finally:
                if self.manager is engine:
                    self.manager = None

        self.run_worker(run_engine(), group="engine", exit_on_error=False)

    def action_start(self) -> None:
        if self._refuse():
            return
        if self.manager is None:
            try:
                check_runnable(self.config)  # in the console's sentence, not jobs failed by it
            except DealertuiError as exc:
                self.notify(f"engine not started: {exc}", severity="error", timeout=15)
                return
        lifted = self._is_paused(("global", ""))
        if lifted:
            self._toggle_pause(("global", ""))
        if self.manager is None:
            self._start_engine()
            self.notify("engine started", timeout=2)
        elif self.manager.paused:
            self.manager.resume()
            self.notify("engine resumed", timeout=2)
        elif not lifted:
            self.notify("engine already running", timeout=2)
        self.refresh_data()

    def _is_paused(self, key: tuple[str, str]) -> bool:
        """A pause flag as this console last set it, else as the last snapshot shows it."""
        if key in self._pause_intent:
            return self._pause_intent[key]
        return self.snapshot is not None and key in self.snapshot.paused

    def _toggle_pause(self, key: tuple[str, str]) -> None:
        """Pause what *key* names ("global", "") or ("dealer", id), or resume it if paused.
        The new state counts at once for the next key; the writes run in key order."""
        paused = self._is_paused(key)
        self._pause_intent[key] = not paused
        self._pause_pending[key] = self._pause_pending.get(key, 0) + 1
        dealer = key[1] if key[0] == "dealer" else None

        async def work() -> str:
            try:
                async with self._pause_lock:
                    await self._operator().set_paused(not paused, dealer_id=dealer)
            except BaseException:
                self._pause_intent[key] = paused  # not written: the flag stays as it was
                raise
            finally:
                self._pause_pending[key] -= 1
                self._pause_written[key] = time.monotonic()
            if dealer is not None:
                return f"{'resumed' if paused else 'paused'} dealer {dealer}"
            return "resumed everything" if paused else "paused everything: no worker claims"

        self._act(work)

    def action_pause_dealer(self) -> None:
        if self._refuse():
            return
        dealer, _ = self._selected()
        if dealer is None:
            self._no_dealer("to pause or resume it")
            return
        self._toggle_pause(("dealer", dealer))

    def action_pause_all(self) -> None:
        if self._refuse():
            return
        self._toggle_pause(("global", ""))

    def _guarded(
        self,
        what: str,
        act: Callable[[Operator], Awaitable[ActionResult]],
        done: Callable[[ActionResult], str],
    ) -> None:
        """Preview the action (a rolled-back run of it); act at once when it touches one job,
        else show the jobs that change and the descendants that move, and ask first.

        The same action (same *what*) is not started again while it is previewed, asked about
        or done: a key pressed twice acts once, and asks once."""
        if what in self._busy:
            return
        self._busy.add(what)

        def release() -> None:
            self._busy.discard(what)

        async def run() -> None:
            handed_on = False
            try:
                op = self._operator()
                radius = await op.blast_radius(await act(op.preview()))
                if not radius["changes"]:
                    self.notify(f"nothing to {what}", timeout=3)
                    return

                async def really() -> str:
                    result = await act(op)
                    if not result.changed:
                        # the preview saw work, but it was done meanwhile (another console)
                        return f"nothing to {what}"
                    return done(result)

                handed_on = True
                if radius["changes"] + radius["follows"] <= 1:
                    self._act(really, release)
                    return
                details = "\n".join(
                    f"{g['dealer_id']:<10} {g['job_type']:<16} {g['role']:<8} ×{g['count']}"
                    for g in radius["groups"][:14]
                )
                if len(radius["groups"]) > 14:
                    details += f"\n… and {len(radius['groups']) - 14} more groups"
                changes, follows = int(radius["changes"]), int(radius["follows"])
                self._confirm_then(
                    f"{what[0].upper()}{what[1:]}: {plural(changes, 'job')} "
                    f"{'changes' if changes == 1 else 'change'} and "
                    f"{plural(follows, 'descendant')} {'moves' if follows == 1 else 'move'}. "
                    "Go ahead?",
                    details, really, release,
                )
            except DealertuiError as exc:
                self.notify(str(exc), severity="error", timeout=5)
            finally:
                if not handed_on:
                    release()

        self.run_worker(run(), group="action", exit_on_error=False)

    def action_retry(self) -> None:
        if self._refuse():
            return
        dealer, job_id = self._selected()
        if dealer is None:
            self._no_dealer("or a job's lane to retry")
            return
        if job_id is not None and self._cell_state(dealer, job_id) in (
            "failed", "blocked", "cancelled"
        ):
            self._guarded(
                f"retry job {job_id}", lambda op: op.retry(job_ids=[job_id]),
                lambda r: f"retried job {job_id}; "
                          f"{plural(len(r.followers), 'blocked descendant')} follow"
                          f"{'s' if len(r.followers) == 1 else ''}",
            )
            return
        self._guarded(
            f"retry {dealer}'s failed and blocked jobs", lambda op: op.retry(dealer_id=dealer),
            lambda r: f"retried {plural(len(r.changed), 'job')} of {dealer}",
        )

    def _cell_state(self, dealer: str, job_id: int) -> str | None:
        if self.snapshot is None:
            return None
        for (d, _), c in self.snapshot.lanes.items():
            if d == dealer and c.job_id == job_id:
                return c.state
        return None

    def action_reset_stuck(self) -> None:
        if self._refuse():
            return
        self._guarded(
            "reset stuck jobs", lambda op: op.reset_stuck(),
            lambda r: f"rescued {plural(len(r.changed), 'stuck job')}",
        )

    def action_cancel(self) -> None:
        if self._refuse():
            return
        _, job_id = self._selected()
        if job_id is None:
            self.notify("select a job's lane to cancel it", timeout=3)
            return
        self._guarded(
            f"cancel job {job_id}", lambda op: op.cancel([job_id]),
            lambda r: f"cancelled job {job_id}; "
                      f"{plural(len(r.followers), 'descendant')} blocked",
        )

    def action_rerun(self) -> None:
        if self._refuse():
            return
        dealer, job_id = self._selected()
        if dealer is None:
            self._no_dealer("or a job's lane to rerun")
            return
        if job_id is not None:
            self._guarded(
                f"rerun job {job_id} and its descendants", lambda op: op.rerun(job_id=job_id),
                lambda r: f"rerunning job {job_id}; "
                          f"{plural(len(r.followers), 'descendant')} re-armed",
            )
            return
        self._guarded(
            f"rerun {dealer}'s whole pipeline", lambda op: op.rerun(dealer_id=dealer),
            lambda r: f"rerunning {plural(len(r.changed), 'job')} of {dealer}",
        )

    def action_skip(self) -> None:
        if self._refuse():
            return
        _, job_id = self._selected()
        if job_id is None:
            self.notify("select a job's lane to skip it", timeout=3)
            return

        def with_reason(reason: str | None) -> None:
            if reason is None:  # escape: the operator changed their mind
                self.notify("skip cancelled", timeout=2)
                return
            if not reason:
                self.notify("not skipped: a reason is required", timeout=3)
                return
            self._guarded(
                f"skip job {job_id}", lambda op: op.skip([job_id], reason),
                lambda r: f"skipped job {job_id}; "
                          f"{plural(len(r.followers), 'descendant')} move"
                          f"{'s' if len(r.followers) == 1 else ''} on",
            )

        self.push_screen(ReasonScreen(f"Skip job {job_id}: why is it not needed?"),
                         with_reason)

    def action_enqueue(self) -> None:
        if self._refuse():
            return
        dealer, _ = self._selected()
        if dealer is None:
            self._no_dealer("to enqueue a pipeline for it")
            return

        async def work() -> str:
            ids = await self._operator().enqueue([dealer])
            return f"enqueued a pipeline of {plural(len(ids), 'job')} for {dealer}"

        self._act(work)

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

    def action_failures(self) -> None:
        assert self.store is not None

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is None or self._refuse():
                return
            what, fp = choice
            op = self._operator()

            async def preview_then_confirm() -> None:
                group = await op.error_group(fp)
                if what == "retry":
                    radius = await op.blast_radius(await op.preview().retry_group(fp))
                    if not radius["changes"]:
                        self.notify(f"group {fp} has no failed or blocked job to retry",
                                    timeout=3)
                        return
                    changes, follows = int(radius["changes"]), int(radius["follows"])
                    question = (f"Retry group {fp} ({group['job_type']}: {group['signature']})? "
                                f"{plural(changes, 'job')} "
                                f"{'changes' if changes == 1 else 'change'}, "
                                f"{follows} follow{'s' if follows == 1 else ''}.")
                    details = "\n".join(f"{g['dealer_id']} {g['job_type']} {g['role']} "
                                        f"×{g['count']}" for g in radius["groups"][:12])

                    async def act() -> str:
                        res = await op.retry_group(fp)
                        return f"retried {plural(len(res.changed), 'job')} of group {fp}"
                else:
                    dealers = list(group["all_dealer_ids"])
                    question = (f"Pause the {len(dealers)} dealers of group {fp}?"
                                if len(dealers) != 1 else f"Pause the dealer of group {fp}?")
                    details = ", ".join(dealers[:40])

                    async def act() -> str:
                        paused = await op.pause_group(fp)
                        return f"paused {plural(len(paused), 'dealer')} of group {fp}"

                self._confirm_then(question, details, act)

            self.run_worker(preview_then_confirm(), group="action", exit_on_error=False)

        self.push_screen(FailureGroupsScreen(self.store, self.read_only, self.clock), chosen)

    def action_audit(self) -> None:
        assert self.store is not None
        self.push_screen(AuditScreen(self.store))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        commands = [
            ("Start engine", "start or resume the engine", self.action_start, "start"),
            ("Pause dealer", "pause or resume the selected dealer", self.action_pause_dealer,
             "pause_dealer"),
            ("Pause everything", "pause or resume every worker", self.action_pause_all,
             "pause_all"),
            ("Retry", "retry the selected job or the dealer's failed jobs", self.action_retry,
             "retry"),
            ("Reset stuck jobs", "rescue expired leases", self.action_reset_stuck,
             "reset_stuck"),
            ("Cancel job", "cancel the selected job", self.action_cancel, "cancel"),
            ("Enqueue pipeline", "enqueue a pipeline for the selected dealer",
             self.action_enqueue, "enqueue"),
            ("Rerun", "run the selected job again with its descendants (dealer: whole pipeline)",
             self.action_rerun, "rerun"),
            ("Skip job", "release the selected job without running it, with a reason",
             self.action_skip, "skip"),
            ("Filter dealers", "filter by id, name or state", self.action_filter, "filter"),
            ("Job detail", "attempts, errors, timeline", self.action_detail, "detail"),
            ("Failure groups", "failures by cause across dealers; retry or pause a group",
             self.action_failures, "failures"),
            ("Audit log", "every operator action: who, what, when, why", self.action_audit,
             "audit"),
            # not "Keys": that is Textual's own command (the key panel); this is our help screen
            ("Help", "every key of the console and what it does", self.action_help, "help"),
        ]
        for title, help_text, callback, action in commands:
            if self.read_only and action in MUTATING:
                continue
            yield SystemCommand(title, help_text, callback)


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
