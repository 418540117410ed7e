"""How an operator action runs from the console: its store calls in a worker (off the key
path), its outcome as a notification, and, when it would touch more than one job, its blast
radius shown and a yes first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App

from dealertui.engine.actions import Operator
from dealertui.errors import DealertuiError
from dealertui.model import ActionResult
from dealertui.text import plural
from dealertui.tui.screens import ConfirmScreen

#: at most this many (dealer, type, role) groups in the question; the rest are counted
SHOWN_GROUPS = 14


class ActionFlow:
    def __init__(
        self,
        app: App[Any],
        operator: Callable[[], Operator],
        refresh: Callable[[], object],
    ) -> None:
        self.app = app
        self.operator = operator
        #: read the store again once an action is done, so its effect shows at once
        self.refresh = refresh
        #: guarded actions being previewed, asked about or done: a key pressed again meanwhile
        #: does not start the same action twice (nor stack two identical questions)
        self._busy: set[str] = set()

    def act(
        self,
        work: Callable[[], Awaitable[str | None]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Run an action's store calls in a worker; report the result as a notification.
        *then* runs when the work is over, whatever its outcome."""
        app = self.app

        async def run() -> None:
            try:
                message = await work()
            except DealertuiError as exc:
                app.notify(str(exc), severity="error", timeout=5)
                return
            finally:
                if then is not None:
                    then()
            if message:
                app.notify(message, timeout=3)
            self.refresh()

        app.run_worker(run(), group="action", exit_on_error=False)

    def confirm_then(
        self,
        question: str,
        details: str,
        work: Callable[[], Awaitable[str]],
        then: Callable[[], None] | None = None,
    ) -> None:
        """Ask *question* (with *details* to scroll); on yes, act."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.act(work, then)
                return
            self.app.notify("nothing changed", timeout=2)
            if then is not None:
                then()

        self.app.push_screen(ConfirmScreen(question, details), answered)

    def guarded(
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
                op = self.operator()
                radius = await op.blast_radius(await act(op.preview()))
                if not radius["changes"]:
                    self.app.notify(f"nothing to {what}", timeout=3)
                    return

                async def really() -> str:
                    result = await act(op)
                    if not result.changed:
                        # the preview saw work, but it was done meanwhile (another console)
                        return f"nothing to {what}"
                    return done(result)

                handed_on = True
                if radius["changes"] + radius["follows"] <= 1:
                    self.act(really, release)
                    return
                details = "\n".join(
                    f"{g['dealer_id']:<10} {g['job_type']:<16} {g['role']:<8} ×{g['count']}"
                    for g in radius["groups"][:SHOWN_GROUPS]
                )
                if len(radius["groups"]) > SHOWN_GROUPS:
                    details += f"\n… and {len(radius['groups']) - SHOWN_GROUPS} more groups"
                changes, follows = int(radius["changes"]), int(radius["follows"])
                self.confirm_then(
                    f"{what[0].upper()}{what[1:]}: {plural(changes, 'job')} "
                    f"{'changes' if changes == 1 else 'change'} and "
                    f"{plural(follows, 'descendant')} {'moves' if follows == 1 else 'move'}. "
                    "Go ahead?",
                    details, really, release,
                )
            except DealertuiError as exc:
                self.app.notify(str(exc), severity="error", timeout=5)
            finally:
                if not handed_on:
                    release()

        self.app.run_worker(run(), group="action", exit_on_error=False)
