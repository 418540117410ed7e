"""The pause keys (p: the selected dealer, P: everything) as toggles that keep up with fast
hands: a second press before the next snapshot toggles from what the first asked for, not from
the stale snapshot, and the writes land in the order of the keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from dealertui.engine.actions import Operator
from dealertui.store.reads import ConsoleSnapshot
from dealertui.tui.flow import ActionFlow

#: a pause flag: ("global", "") or ("dealer", dealer id), as ConsoleSnapshot.paused holds them
PauseKey = tuple[str, str]
EVERYTHING: PauseKey = ("global", "")


class PauseToggles:
    def __init__(self, flow: ActionFlow, operator: Callable[[], Operator]) -> None:
        self.flow = flow
        self.operator = operator
        #: pause flags asked for and not yet seen in a snapshot read after the write
        self._intent: dict[PauseKey, bool] = {}
        #: per flag: pause writes in flight, and when the last one finished (monotonic)
        self._pending: dict[PauseKey, int] = {}
        self._written: dict[PauseKey, float] = {}
        self._lock = asyncio.Lock()  # FIFO: the writes land in the order of the keys

    def is_paused(self, key: PauseKey, snapshot: ConsoleSnapshot | None) -> bool:
        """A pause flag as this console last set it, else as the last snapshot shows it."""
        if key in self._intent:
            return self._intent[key]
        return snapshot is not None and key in snapshot.paused

    def seen(self, read_at: float) -> None:
        """A snapshot whose read began at *read_at* (monotonic) is shown: the flags written
        before it are in it, and it is again the one to toggle from."""
        for key, written in list(self._written.items()):
            if not self._pending.get(key) and written < read_at:
                del self._written[key]
                self._intent.pop(key, None)

    def toggle(self, key: PauseKey, snapshot: ConsoleSnapshot | None) -> None:
        """Pause what *key* names, or resume it if paused. The new state counts at once for
        the next key; the writes run in key order."""
        paused = self.is_paused(key, snapshot)
        self._intent[key] = not paused
        self._pending[key] = self._pending.get(key, 0) + 1
        dealer = key[1] if key[0] == "dealer" else None

        async def work() -> str:
            try:
                async with self._lock:
                    await self.operator().set_paused(not paused, dealer_id=dealer)
            except BaseException:
                self._intent[key] = paused  # not written: the flag stays as it was
                raise
            finally:
                self._pending[key] -= 1
                self._written[key] = time.monotonic()
            if dealer is not None:
                return f"{'resumed' if paused else 'paused'} dealer {dealer}"
            return "resumed everything" if paused else "paused everything: no worker claims"

        self.flow.act(work)
