"""The console's QA round, with Pilot: keys pressed twice act once, hints when a key has
nothing to act on, modals and help at 80x24, resizing under a modal, the starved marker.

The store is opened here and handed to `make_app`, so a test can set up states with store calls
(claim/finish under a fake worker id) and read back what a key did. Nothing sleeps a fixed time:
`until` polls a condition with a deadline.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from consolepilot import (
    DEALERS,
    _d1_homenet_failed,
    _state_is,
    cell,
    console,
    everything,
    jobs_of,
    lanes,
    move_to,
    notes,
    pipelines,
    run,
    state_of,
    static_text,
    until,
)
from helpers import WallClock
from rich.cells import cell_len
from textual.widgets import Static
from textual.widgets.data_table import ColumnKey

from dealertui.engine.actions import Operator
from dealertui.model import ActionResult
from dealertui.store import JobStore
from dealertui.store.reads import STARVED_AFTER_S
from dealertui.tui.app import DealerConsole
from dealertui.tui.screens import ConfirmScreen, HelpScreen, JobDetailScreen
from dealertui.tui.widgets import DEALER_COL

pytestmark = pytest.mark.anyio


# -- QA round: keys pressed twice, hints, modals at 80x24, resize under a modal ------------------


def _action_workers_idle(app: DealerConsole) -> bool:
    return not any(w.is_running for w in app.workers if w.group == "action")


@pytest.mark.parametrize(
    ("key", "dealer", "paused", "resumed"),
    [("P", None, "paused everything", "resumed everything"),
     ("p", "d2", "paused dealer d2", "resumed dealer d2")],
)
async def test_a_pause_key_pressed_twice_fast_pauses_then_resumes(
    db_url: str, key: str, dealer: str | None, paused: str, resumed: str
) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        if dealer is not None:
            await move_to(pilot, app, dealer, None)
        await until(pilot, lambda: not app._refreshing, "no refresh in flight")
        # the snapshot stays as it was (a slow store, a busy refresh): the second key comes
        # before any refresh could show the first one's pause
        app._refreshing = True
        await pilot.press(key, key)

        def answers() -> list[str]:
            return [n for n in notes(app) if n.startswith((paused, resumed))]

        await until(pilot, lambda: len(answers()) == 2, "an answer to each key")
        await until(pilot, lambda: _action_workers_idle(app), "both actions done")
        assert [a.split(":")[0] for a in answers()] == [paused, resumed]
        assert not await store.pauses()  # paused, then resumed: in that order
        app._refreshing = False


async def test_c_pressed_twice_asks_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blast_radius = Operator.blast_radius

    async def slow_preview(self: Operator, result: ActionResult) -> dict[str, object]:
        await anyio.sleep(0.3)  # a slow store: the second key comes while the first previews
        return await blast_radius(self, result)

    async with console(sqlite_url, pipelines) as (app, pilot, store):
        monkeypatch.setattr(Operator, "blast_radius", slow_preview)
        await move_to(pilot, app, "d2", "product_scrape")  # a child: c asks first
        await pilot.press("c", "c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await until(pilot, lambda: _action_workers_idle(app), "every preview done")
        await pilot.press("c")  # and again, with the question open
        await until(pilot, lambda: _action_workers_idle(app), "every preview done")
        assert sum(isinstance(s, ConfirmScreen) for s in app.screen_stack) == 1
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "answered")
        assert await state_of(store, "d2", "product_scrape") == "waiting"
        await pilot.press("c")  # answered: the key asks again
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "asked again")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "answered")


async def test_r_pressed_twice_retries_once_and_says_so_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await run(store, "d3", [("homenet", "ok"), ("dealer_com", "fail")])

    async with console(db_url, setup) as (app, pilot, store):
        retry = Operator.retry

        async def slow_retry(self: Operator, *args: Any, **kwargs: Any) -> ActionResult:
            if self.store is store:  # the real one, not a preview: a slow store
                await anyio.sleep(0.3)
            return await retry(self, *args, **kwargs)

        monkeypatch.setattr(Operator, "retry", slow_retry)
        await move_to(pilot, app, "d3", "dealer_com")
        await pilot.press("r", "r")
        await until(pilot, lambda: _state_is(store, "d3", "dealer_com", "ready"), "retried")
        await until(pilot, lambda: _action_workers_idle(app), "both keys answered")
        retried = [n for n in notes(app) if n.startswith("retried job")]
        assert len(retried) == 1, notes(app)
        audit = [e["action"] for e in await store.audit_entries()]
        assert audit.count("retry") == 1, audit


async def test_an_action_that_changed_nothing_says_nothing_to_do(sqlite_url: str) -> None:
    """The preview saw a job to retry; by the time the operator's action ran, another console
    had retried it: the toast says so instead of "retried"."""
    async with console(sqlite_url, pipelines) as (app, pilot, store):
        job_id = (await jobs_of(store, "d1"))["homenet"].id

        async def act(op: Any) -> ActionResult:
            return ActionResult([] if op.store is store else [job_id])

        app._guarded(f"retry job {job_id}", act, lambda r: f"retried job {job_id}")
        await until(pilot, lambda: f"nothing to retry job {job_id}" in notes(app), "the answer")
        assert not any(n.startswith("retried") for n in notes(app))


async def test_resizing_under_a_modal_lays_out_the_main_screen(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, _store):
        main = app.screen
        side = app.query_one("#side")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: app.size == (80, 24), "the small terminal")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main, "help closed")
        await pilot.pause()
        assert main.has_class("narrow") and not side.region
        assert lanes(app).region.width == 80

        await move_to(pilot, app, "d2", "product_scrape")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.resize_terminal(100, 30)
        await until(pilot, lambda: app.size == (100, 30), "the wide terminal")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is main, "the confirmation answered")
        await pilot.pause()
        assert not main.has_class("narrow") and side.region.width == 40


async def test_help_scrolls_to_its_last_line_at_80x24(sqlite_url: str) -> None:
    async with console(sqlite_url, size=(80, 24)) as (app, pilot, _store):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await pilot.pause()
        box = app.screen.query_one("#help-box")
        legend = list(app.screen.query(Static))[-1]
        assert "skipped" in static_text(legend)
        await pilot.press("end")
        await pilot.pause()
        await until(pilot, lambda: legend.region.height > 0
                    and box.content_region.contains_region(legend.region), "the legend shown")
        await pilot.press("home")
        await until(pilot, lambda: box.scroll_y == 0, "the top again")


async def test_confirm_wraps_its_question_at_80x24(sqlite_url: str) -> None:
    async with console(sqlite_url, _d1_homenet_failed, size=(80, 24)) as (app, pilot, _store):
        await until(pilot, lambda: cell(app, "d1", "homenet") == "✖ FAIL", "✖ FAIL shown")
        await move_to(pilot, app, "d1", None)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        assert screen.question.endswith("4 jobs change and 0 descendants move. Go ahead?")
        box = screen.query_one("#confirm-box")
        question = box.children[0]
        assert question.size.height >= 2  # wrapped, not cut at the box's edge
        assert box.content_region.contains_region(question.region)
        for button in screen.query("#confirm-buttons Button"):
            assert button.region.height and box.region.contains_region(button.region)
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "answered")


async def test_the_graph_pane_shows_the_job_types_when_no_dealer_is_selected(
    sqlite_url: str,
) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, _store):
        pane = app.query_one("#graph", Static)
        await until(pilot, lambda: pane.border_title == "graph: d1 Sunrise Motors", "d1's graph")
        await pilot.press("slash", "z", "z")
        await until(pilot, lambda: lanes(app).row_count == 0, "no dealer matches")
        await until(pilot, lambda: pane.border_title == "job types", "the job types' title")
        await until(pilot, lambda: "homenet (priority 1)" in static_text(pane), "the types")
        assert "#" not in static_text(pane), static_text(pane)  # no job listed


async def test_keys_without_a_dealer_say_why_they_do_nothing(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, store):
        before = await everything(store)
        await pilot.press("slash", "z", "z", "enter")
        await until(pilot, lambda: lanes(app).row_count == 0 and app.focused is lanes(app),
                    "no dealer, the lanes focused")
        for key, hint in [("p", "to pause"), ("r", "to retry"), ("e", "to enqueue"),
                          ("R", "to rerun"), ("enter", "detail"), ("c", "to cancel"),
                          ("k", "to skip")]:
            app.clear_notifications()  # a count of notes would race their expiry
            await pilot.press(key)
            await until(pilot, lambda: notes(app), f"a hint for {key!r}")
            assert notes(app)[-1].startswith("select a") and hint in notes(app)[-1], notes(app)
        assert not isinstance(app.screen, (ConfirmScreen, JobDetailScreen))
        assert await everything(store) == before


async def test_s_on_a_running_engine_says_so(sqlite_url: str) -> None:
    async with console(sqlite_url) as (app, pilot, _store):
        await pilot.press("s")
        await until(pilot, lambda: app.manager is not None, "the engine")
        await pilot.press("s")
        await until(pilot, lambda: "engine already running" in notes(app), "the answer")


async def test_the_starved_marker_fits_its_column(sqlite_url: str) -> None:
    """⌛ is two cells wide: the marker slot is two cells always, so a marker appearing on a
    row (update_cell keeps the column's width) is not clipped, and the column never widens."""
    clock = WallClock()
    async with console(sqlite_url, pipelines, clock=clock) as (app, pilot, _store):
        table = lanes(app)
        column = table.columns[ColumnKey(DEALER_COL)]
        width = column.content_width
        await move_to(pilot, app, "d2", None)
        await pilot.press("p")
        await until(pilot, lambda: cell(app, "d2", "dealer") == "d2 ⏸", "d2 marked ⏸")
        clock.advance(STARVED_AFTER_S + 60)  # d1's and d3's ready homenet: nobody claims it
        await until(pilot, lambda: cell(app, "d1", "dealer") == "d1 ⌛", "d1 marked ⌛")
        cells = [table.get_cell(d, DEALER_COL).plain for d, _ in DEALERS]
        assert len({cell_len(c) for c in cells}) == 1, cells  # one width, marker or not
        assert cell_len(cells[0]) <= width, (cells, width)  # not clipped
        assert column.content_width == width  # and the column did not widen
