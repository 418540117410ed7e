"""The console's keys that change state (the `mutating` rows of tui/actions.py): what each does
with the selection, through the engine's Operator; and their refusal under --read-only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.app import App
from textual.events import Key

from dealertui.config import Config
from dealertui.engine.actions import Operator
from dealertui.engine.host import EngineProcess
from dealertui.errors import DealertuiError
from dealertui.handlers.check import check_runnable
from dealertui.model import ActionResult, JobState
from dealertui.store import JobStore
from dealertui.store.reads import ConsoleSnapshot
from dealertui.text import plural
from dealertui.tui.actions import MUTATING, MUTATING_KEYS
from dealertui.tui.flow import ActionFlow
from dealertui.tui.panels import FailureGroupsScreen
from dealertui.tui.pauses import EVERYTHING, PauseToggles
from dealertui.tui.screens import ReasonScreen
from dealertui.tui.widgets import LanesTable

#: a job in one of these is retried by itself when its lane is selected
RETRYABLE = (JobState.FAILED, JobState.BLOCKED, JobState.CANCELLED)
REFUSED = "read-only console: that action is refused"


class OperatorKeys(App[None]):
    """The base of DealerConsole (tui/app.py), which sets these:"""

    config: Config
    store: JobStore | None
    snapshot: ConsoleSnapshot | None
    read_only: bool
    filter_text: str
    clock: Callable[[], float]
    manager: EngineProcess | None
    flow: ActionFlow
    pauses: PauseToggles

    # -- refusal and selection ------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in MUTATING:
            return False  # hidden from the footer and the key does not act
        return True

    def on_key(self, event: Key) -> None:
        if self.read_only and event.key in MUTATING_KEYS:
            self.notify(REFUSED, severity="warning")

    def _refuse(self) -> bool:
        # the actions refuse too, not only their keys: a palette entry cached before, a caller
        if self.read_only:
            self.notify(REFUSED, severity="warning")
        return self.read_only

    def _operator(self) -> Operator:
        assert self.store is not None
        return Operator(self.store, self.config)

    def _selected(self) -> tuple[str | None, int | None]:
        dealer, job_type = self.query_one(LanesTable).selected()
        if dealer is None or job_type is None or self.snapshot is None:
            return dealer, None
        cell = self.snapshot.lanes.get((dealer, job_type))
        return dealer, cell.job_id if cell else None

    def _cell_state(self, dealer: str, job_id: int) -> str | None:
        if self.snapshot is None:
            return None
        for (d, _), c in self.snapshot.lanes.items():
            if d == dealer and c.job_id == job_id:
                return c.state
        return None

    def _no_dealer(self, what: str) -> None:
        """Say why a key that needs a dealer did nothing (no row, or the filter hides all)."""
        if self.snapshot is not None and not self.snapshot.dealers:
            self.notify("no dealers yet: add one with 'dealertui dealers add ID'", timeout=3)
            return
        hidden = " (the filter hides every dealer: esc clears it)" if (
            self.filter_text.strip() and self.snapshot is not None and self.snapshot.dealers
        ) else ""
        self.notify(f"select a dealer {what}{hidden}", timeout=3)

    def _guarded(
        self,
        what: str,
        act: Callable[[Operator], Awaitable[ActionResult]],
        done: Callable[[ActionResult], str],
    ) -> None:
        self.flow.guarded(what, act, done)

    # -- s: the engine ----------------------------------------------------------------------------

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
        lifted = self.pauses.is_paused(EVERYTHING, self.snapshot)
        if lifted:
            self.pauses.toggle(EVERYTHING, self.snapshot)
        if self.manager is None:
            self._start_engine()
            self.notify("engine started", timeout=2)
        elif self.manager.paused:
            self.manager.resume()
            self.notify("engine resumed", timeout=2)
        elif not lifted:
            self.notify("engine already running", timeout=2)
        self.flow.refresh()

    # -- p, P: pauses -----------------------------------------------------------------------------

    def action_pause_dealer(self) -> None:
        if self._refuse():
            return
        dealer, _ = self._selected()
        if dealer is None:
            self._no_dealer("to pause or resume it")
            return
        self.pauses.toggle(("dealer", dealer), self.snapshot)

    def action_pause_all(self) -> None:
        if self._refuse():
            return
        self.pauses.toggle(EVERYTHING, self.snapshot)

    # -- r, x, c, R, k: guarded by a preview ------------------------------------------------------

    def action_retry(self) -> None:
        if self._refuse():
            return
        dealer, job_id = self._selected()
        if dealer is None:
            self._no_dealer("or a job's lane to retry")
            return
        if job_id is not None and self._cell_state(dealer, job_id) in RETRYABLE:
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

    # -- e: enqueue -------------------------------------------------------------------------------

    def action_enqueue(self) -> None:
        if self._refuse():
            return
        dealer, _ = self._selected()
        if dealer is None:
            self._no_dealer("to enqueue a pipeline for it")
            return

        async def work() -> str:
            result = await self._operator().enqueue([dealer])
            if result.skipped:
                return result.skipped[0].sentence()
            return f"enqueued a pipeline of {plural(len(result.job_ids), 'job')} for {dealer}"

        self.flow.act(work)

    # -- f: failure groups (the pane reads; its r and p act here, after a yes) --------------------

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

                self.flow.confirm_then(question, details, act)

            self.run_worker(preview_then_confirm(), group="action", exit_on_error=False)

        self.push_screen(FailureGroupsScreen(self.store, self.read_only, self.clock), chosen)
