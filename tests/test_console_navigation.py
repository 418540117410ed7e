"""Moving around the console with Pilot: / filters, enter opens the job detail, ? lists every
key, q quits, the command palette, and --read-only hiding and refusing every action. The
purely visual keys run on SQLite.

The store is opened here and handed to `make_app`, so a test can set up states with store calls
(claim/finish under a fake worker id) and read back what a key did. Nothing sleeps a fixed time:
`until` polls a condition with a deadline.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from consolepilot import (
    _d1_homenet_failed,
    _hold,
    _state_is,
    console,
    everything,
    jobs_of,
    lanes,
    move_to,
    notes,
    pipelines,
    until,
)
from helpers import WallClock
from rich.console import Console
from textual.widgets import Input, Static
from textual.widgets._footer import FooterKey

from dealertui.store import JobStore
from dealertui.tui.actions import KEYS_HELP, MUTATING
from dealertui.tui.app import DealerConsole
from dealertui.tui.screens import ConfirmScreen, HelpScreen, JobDetailScreen

pytestmark = pytest.mark.anyio


#: the palette title of each console action
PALETTE = {
    "start": "Start engine",
    "pause_dealer": "Pause dealer",
    "pause_all": "Pause everything",
    "retry": "Retry",
    "reset_stuck": "Reset stuck jobs",
    "cancel": "Cancel job",
    "enqueue": "Enqueue pipeline",
    "rerun": "Rerun",
    "skip": "Skip job",
    "filter": "Filter dealers",
    "detail": "Job detail",
    "failures": "Failure groups",
    "audit": "Audit log",
    "schedules": "Schedules",
    "history": "Dealer history",
    "help": "Help",
}
#: the key of each action that changes state
MUTATING_KEYS = {
    "s": "start", "p": "pause_dealer", "P": "pause_all", "r": "retry", "x": "reset_stuck",
    "c": "cancel", "e": "enqueue", "R": "rerun", "k": "skip",
}


# -- /: filter ----------------------------------------------------------------------------------


async def _d2_full_feed(store: JobStore) -> None:
    """Three dealers' pipelines; d2's was enqueued with {"feed": "full"}."""
    await store.enqueue(["d1", "d3"])
    await store.enqueue(["d2"], payload={"feed": "full"})


async def test_slash_filters_by_payload_text(sqlite_url: str) -> None:
    async with console(sqlite_url, _d2_full_feed) as (app, pilot, _store):
        table = lanes(app)
        await until(pilot, lambda: table.row_count == 3, "three dealers")
        await pilot.press("slash", *"full")
        await until(pilot, lambda: table.row_count == 1 and table.selected()[0] == "d2", "d2")
        await pilot.press(*["backspace"] * 4, *'"feed"')
        await until(pilot, lambda: table.row_count == 1, "d2 by its payload key")
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 3, "every dealer back")


async def test_slash_filters_by_id_name_and_state_and_escape_clears(sqlite_url: str) -> None:
    async with console(sqlite_url, _d1_homenet_failed) as (app, pilot, _store):
        table = lanes(app)
        box = app.query_one("#filter", Input)
        assert not box.display
        await pilot.press("slash")
        await until(pilot, lambda: box.display and app.focused is box, "the filter input")

        await pilot.press("d", "2")
        await until(pilot, lambda: table.row_count == 1, "one row for 'd2'")
        assert table.get_row_at(0)[0].plain.rstrip() == "d2"

        await pilot.press("backspace", "backspace", *"canyon")  # by name
        await until(pilot, lambda: table.row_count == 1 and table.selected()[0] == "d3", "d3")

        await pilot.press(*["backspace"] * 6, *"fail")  # by state
        await until(pilot, lambda: table.row_count == 1 and table.selected()[0] == "d1", "d1")

        await pilot.press("enter")  # done typing: the lanes take the keys again
        await until(pilot, lambda: app.focused is table, "the lanes focused")
        assert table.row_count == 1

        await pilot.press("slash")
        await until(pilot, lambda: app.focused is box, "the filter input again")
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 3, "every dealer back")
        assert not box.display and box.value == "" and app.focused is table
        assert table.rebuilds == 0


# -- enter: job detail --------------------------------------------------------------------------


async def test_enter_opens_the_job_detail_with_its_timeline(db_url: str) -> None:
    async with console(db_url, _d1_homenet_failed) as (app, pilot, store):
        await move_to(pilot, app, "d1", "homenet")
        job = (await jobs_of(store, "d1"))["homenet"]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), "the detail")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        assert screen.detail.job.id == job.id
        trail = [(e["from_state"], e["to_state"]) for e in screen.detail.events]
        assert trail == [(None, "ready"), ("ready", "running"), ("running", "failed")]
        assert [c.job_type for c in screen.detail.children] == ["dealer_com", "product_scrape"]

        text = _screen_text(screen)
        assert f"d1 · homenet #{job.id}" in text
        assert "timeline (3 events, 1 errors)" in text
        for line in ("· → ready", "ready → running", "running → failed",
                     "homenet feed broke"):
            assert line in text, line
        assert "children: dealer_com" in text

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobDetailScreen), "closed")
        assert app.focused is lanes(app)


async def test_enter_on_the_dealer_column_shows_its_first_job(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, _store):
        await move_to(pilot, app, "d3", None)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), "the detail")
        assert app.screen.detail.job.job_type == "homenet"
        assert app.screen.detail.job.dealer_id == "d3"


def _screen_text(screen: Any) -> str:
    """The plain text of every Static/Label on a screen (rich renderables rendered)."""
    out = Console(width=200, record=True, file=io.StringIO())
    for widget in screen.query(Static):
        content = widget.content
        if hasattr(content, "__rich_console__") or hasattr(content, "__rich__"):
            out.print(content)
        else:
            out.print(str(content), markup=True)
    return out.export_text()


# -- ?: help ------------------------------------------------------------------------------------


async def test_question_mark_lists_every_key(sqlite_url: str) -> None:
    async with console(sqlite_url) as (app, pilot, _store):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        text = _screen_text(app.screen)
        shown = {b.key for b in DealerConsole.BINDINGS if b.show}
        names = {"slash": "/", "question_mark": "?"}
        listed = {key for key, _ in KEYS_HELP}
        for key in shown:
            assert names.get(key, key) in listed, key
        for key, what in KEYS_HELP:
            assert what in text, key
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")


# -- q: quit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_q_quits(sqlite_url: str, key: str) -> None:
    async with console(sqlite_url) as (app, pilot, _store):
        app._refreshing = True  # no read in flight when it exits: see quit_when_idle
        await until(pilot, lambda: not any(w.is_running for w in app.workers), "idle workers")
        await pilot.press(key)
        await until(pilot, lambda: not app.is_running, "the app to exit")
        assert app.return_code == 0


# -- command palette ----------------------------------------------------------------------------


async def test_every_action_is_in_the_command_palette(sqlite_url: str) -> None:
    async with console(sqlite_url) as (app, _pilot, _store):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for action, title in PALETTE.items():
            assert title in titles, action
        # no title twice (ours once read "Keys", beside Textual's own "Keys")
        assert len(titles) == len(set(titles)), sorted(titles)
        # every key binding's action has its palette entry
        bound = {b.action for b in DealerConsole.BINDINGS} - {"quit", "clear_filter"}
        assert bound == set(PALETTE)


async def test_a_palette_command_acts_like_its_key(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d1", "dealer_com")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", "palette")
        await pilot.press(*"Cancel job")
        await until(pilot, lambda: _highlighted(app) == "Cancel job", "the command found")
        await pilot.press("enter")
        await until(pilot, lambda: _state_is(store, "d1", "dealer_com", "cancelled"),
                    "d1's dealer_com cancelled from the palette")


def _highlighted(app: DealerConsole) -> str | None:
    from textual.command import CommandList

    try:
        option_list = app.screen.query_one(CommandList)
    except Exception:
        return None
    index = option_list.highlighted
    if index is None:
        return None
    prompt = option_list.get_option_at_index(index).prompt
    return str(getattr(prompt, "plain", prompt)).splitlines()[0].strip()


# -- --read-only ----------------------------------------------------------------------------------


async def test_read_only_hides_and_refuses_every_action(db_url: str) -> None:
    clock = WallClock()

    async def setup(store: JobStore) -> None:
        await _d1_homenet_failed(store)
        await _hold(store, ["d2"])
        clock.advance(60)  # d2's homenet is stuck

    async with console(db_url, setup, read_only=True, clock=clock) as (app, pilot, store):
        before = await everything(store)
        for action in MUTATING:
            assert app.check_action(action, ()) is False, action
        for action in ("filter", "detail", "help", "quit"):
            assert app.check_action(action, ()) is True, action
        footer = {k.action for k in app.query(FooterKey)}
        assert footer and not footer & MUTATING, footer
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert not titles & {PALETTE[a] for a in MUTATING}
        assert {PALETTE[a] for a in ("filter", "detail", "help")} <= titles

        await move_to(pilot, app, "d1", "homenet")  # a failed job: r and c would act on it
        for key in MUTATING_KEYS:
            # counting notes would race their expiry (an earlier note can time out while the
            # refusal arrives, leaving the count unchanged): start each key from none
            app.clear_notifications()
            await pilot.press(key)
            await until(pilot, lambda: notes(app), f"a refusal of {key!r}")
            assert "read-only console: that action is refused" in notes(app)[-1]
            assert not isinstance(app.screen, ConfirmScreen)
        await move_to(pilot, app, "d1", None)  # the dealer column: r would ask about 4 jobs
        await pilot.press("r", "x")
        for _ in range(5):  # let any (wrongly) started worker reach the store
            await pilot.pause(0.05)
        assert app.manager is None and app.engine_state == "off (read-only)"
        assert not isinstance(app.screen, ConfirmScreen)
        assert await everything(store) == before

        # the action methods themselves refuse too (a palette entry cached before, a binding)
        for action in sorted(MUTATING):
            getattr(app, f"action_{action}")()
        for _ in range(5):
            await pilot.pause(0.05)
        assert await everything(store) == before
        assert app.manager is None

        # reading still works
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), "the detail")
