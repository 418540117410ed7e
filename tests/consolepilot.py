"""Helpers for the console tests with Pilot (tests/test_console_*.py): a config and a store
opened for `make_app`, `until` (polls a condition with a deadline, never a fixed sleep),
quitting once no store call is in flight, and readers of the lanes, cells, event log and
notifications on screen.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import storeops
from helpers import PARENTS, WallClock
from textual.pilot import Pilot
from textual.widgets import Static

from dealertui.config import Config, parse_config
from dealertui.model import JobOutcome
from dealertui.store import Intent, JobStore, open_store
from dealertui.tui.app import DealerConsole, make_app
from dealertui.tui.widgets import LanesTable

NOOP = "dealertui.handlers.demo:noop"
TYPES = list(PARENTS)
DEALERS = (("d1", "Sunrise Motors"), ("d2", "Harbor Auto Group"), ("d3", "Canyon Ford"))
SIZE = (100, 30)
DEAD_WORKER = "dead-worker:1"


def make_config(db_url: str, dealers: tuple[tuple[str, str], ...] = DEALERS,
                schedules: list[dict[str, Any]] | None = None) -> Config:
    cfg = parse_config(
        {
            **({"schedules": schedules} if schedules else {}),
            "retry": {"backoff_initial_s": 30, "backoff_jitter_s": 0},
            "job_types": {
                name: {"priority": prio, "depends_on": list(PARENTS[name]), "handler": NOOP}
                for prio, name in enumerate(PARENTS, 1)
            },
            "dealers": [{"id": d, "name": n} for d, n in dealers],
        },
        None,
    )
    return dataclasses.replace(cfg, database_url=db_url)


# -- helpers ------------------------------------------------------------------------------------


async def until(
    pilot: Pilot[Any],
    cond: Callable[[], Any | Awaitable[Any]],
    what: str,
    within_s: float = 15.0,
) -> Any:
    """Poll *cond* (sync or async) until it is truthy; fail naming *what* after *within_s*."""
    deadline = time.monotonic() + within_s
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            app = pilot.app
            raise AssertionError(
                f"timed out after {within_s}s waiting for {what}; screen {app.screen!r}, "
                f"notifications {[str(n.message) for n in app._notifications]}"
            )
        await pilot.pause(0.02)


@asynccontextmanager
async def console(
    db_url: str,
    setup: Callable[[JobStore], Awaitable[None]] | None = None,
    *,
    read_only: bool = False,
    clock: WallClock | None = None,
    size: tuple[int, int] = SIZE,
    schedules: list[dict[str, Any]] | None = None,
) -> AsyncIterator[tuple[DealerConsole, Pilot[Any], JobStore]]:
    """The console on a store opened here (set up by *setup* first), once its lanes show;
    *schedules* are the config's [[schedules]] tables."""
    cfg = make_config(db_url, schedules=schedules)
    store = await open_store(cfg, Intent.CREATE)
    if clock is not None:
        store.clock = clock
    try:
        if setup is not None:
            await setup(store)
        app = make_app(cfg, store, read_only=read_only, refresh_s=0.1,
                       clock=clock or time.time)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: lanes(app).row_count == len(cfg.dealers), "the lanes")
            await until(pilot, lambda: app.snapshot is not None, "the first snapshot")
            yield app, pilot, store
            if app.is_running:
                await quit_when_idle(app, pilot)
    finally:
        await store.close()


async def quit_when_idle(app: DealerConsole, pilot: Pilot[Any]) -> None:
    """Exit, but only once no database call is in flight.

    Textual cancels running workers when the app exits. A worker cancelled inside an aiosqlite
    call leaves SQLAlchemy (2.1.9) closing the connection gracefully while also force-stopping
    its thread; aiosqlite (0.22.1) then waits for a stop that the dead thread never confirms,
    and the event loop's shutdown waits for that task forever: the test run hangs (so can
    `dealertui` at exit — reported, not fixed here). So: stop the engine, let the refresh and
    graph workers see nothing to do, wait for the running ones, then exit.
    """
    if app.manager is not None:
        app.manager.stop()
        await until(pilot, lambda: app.manager is None, "the engine to stop")
    app._refreshing = True  # refresh_data skips its ticks
    app.snapshot = None  # update_graph has nothing to draw
    await until(pilot, lambda: not any(w.is_running for w in app.workers), "idle workers")
    app.exit()  # not `q`: a modal screen may be open, and there q closes the modal
    await until(pilot, lambda: not app.is_running, "the app to exit")


def lanes(app: DealerConsole) -> LanesTable:
    return app.query_one(LanesTable)


def cell(app: DealerConsole, dealer: str, column: str) -> str:
    """A cell's text, without the trailing space of the dealer column's empty marker slot."""
    value = lanes(app).get_cell(dealer, column)
    return getattr(value, "plain", str(value)).rstrip()


def static_text(widget: Static) -> str:
    return str(getattr(widget.content, "plain", widget.content))


def notes(app: DealerConsole) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def move_to(
    pilot: Pilot[Any], app: DealerConsole, dealer: str, job_type: str | None
) -> None:
    """Move the lanes cursor with the arrow keys, as an operator without a mouse would."""
    table = lanes(app)
    assert app.focused is table, f"the lanes should have the keys, not {app.focused}"
    target_row = table.get_row_index(dealer)
    target_col = 0 if job_type is None else 1 + TYPES.index(job_type)
    row, col = table.cursor_coordinate
    keys = (["down"] * (target_row - row) + ["up"] * (row - target_row)
            + ["right"] * (target_col - col) + ["left"] * (col - target_col))
    if keys:
        await pilot.press(*keys)
    await until(pilot, lambda: table.selected() == (dealer, job_type), f"{dealer}/{job_type}")


async def jobs_of(store: JobStore, dealer: str) -> dict[str, Any]:
    """The dealer's newest job of each type."""
    return {j.job_type: j for j in await store.list_jobs(dealer_id=dealer)}


async def state_of(store: JobStore, dealer: str, job_type: str) -> str:
    return (await jobs_of(store, dealer))[job_type].state


async def everything(store: JobStore) -> list[tuple[Any, ...]]:
    """A fingerprint of the whole store an action could change."""
    jobs = [(j.id, j.state, j.attempts, j.locked_by) for j in await store.list_jobs()]
    pauses = sorted((p.scope, p.key) for p in await store.pauses())
    return [*jobs, *pauses]


async def run(store: JobStore, dealer: str, steps: list[tuple[str, str]]) -> None:
    """Claim the dealer's jobs one at a time (priority order) and record each outcome:
    "ok", "fail" (permanent) or "hold" (left running under DEAD_WORKER)."""
    for job_type, outcome in steps:
        claimed = await store.claim(DEAD_WORKER, 1, per_dealer=10, lease_s=3600,
                                    only_dealers=[dealer])
        assert [c.job_type for c in claimed.jobs] == [job_type]
        job_id = claimed.jobs[0].id
        if outcome == "ok":
            await storeops.complete(store, DEAD_WORKER, [job_id])
        elif outcome == "fail":
            await storeops.finish(store, DEAD_WORKER, failed=[JobOutcome(job_id, f"{job_type} feed broke")])


async def pipelines(store: JobStore) -> None:
    await store.enqueue([d for d, _ in DEALERS])


# -- r: retry -----------------------------------------------------------------------------------


async def _d1_homenet_failed(store: JobStore) -> None:
    """d1: homenet failed, its three descendants blocked; d2, d3: fresh pipelines."""
    await pipelines(store)
    await run(store, "d1", [("homenet", "fail")])


async def _state_is(store: JobStore, dealer: str, job_type: str, want: str) -> bool:
    return await state_of(store, dealer, job_type) == want


# -- x: reset stuck -----------------------------------------------------------------------------


async def _hold(store: JobStore, dealers: list[str], lease_s: float = 0.01) -> None:
    """Each dealer's homenet running under a dead worker's short lease."""
    for d in dealers:
        got = await store.claim(DEAD_WORKER, 1, per_dealer=1, lease_s=lease_s, only_dealers=[d])
        assert [c.job_type for c in got.jobs] == ["homenet"]
