"""The console's one table of keys (tui/actions.py): the bindings, the footer, the help screen,
the command palette and the read-only refusal are all made from it, so none of them can lack a
key the others have. Driven with Textual's pilot on a SQLite database."""

from __future__ import annotations

import dataclasses
import inspect
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from dealertui.config import parse_config
from dealertui.engine.actions import Operator
from dealertui.store import Intent, open_store
from dealertui.tui.actions import ACTIONS, MUTATING, ConsoleAction
from dealertui.tui.app import DealerConsole, make_app
from dealertui.tui.screens import HelpScreen
from dealertui.tui.widgets import LanesTable

pytestmark = pytest.mark.anyio

NOOP = "dealertui.handlers.demo:noop"
REFUSED = "read-only console: that action is refused"
#: Textual's own bindings of every app (ctrl+q, ctrl+c): not ours to list
TEXTUAL_KEYS = {b.key for b in App.BINDINGS if not isinstance(b, tuple)}
#: in the footer, enter is the focused lanes' own key (the table's select, which opens the
#: detail through the app), so the app's `enter detail` is not shown there
SHADOWED = {"detail"}


@asynccontextmanager
async def console(tmp_path: Any, *, read_only: bool) -> AsyncIterator[
    tuple[DealerConsole, Pilot[Any]]
]:
    """The console on a SQLite database with two dealers and a pipeline each."""
    cfg = parse_config({
        "job_types": {"homenet": {"priority": 1, "handler": NOOP},
                      "dealer_com": {"priority": 2, "depends_on": ["homenet"],
                                     "handler": NOOP}},
        "dealers": [{"id": "d1"}, {"id": "d2"}],
    }, None)
    cfg = dataclasses.replace(cfg, database_url=f"sqlite+aiosqlite:///{tmp_path}/keys.db")
    store = await open_store(cfg, Intent.CREATE)
    try:
        await Operator(store, cfg).enqueue(["d1", "d2"])
        app = make_app(cfg, store, read_only=read_only, refresh_s=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.lanes) == 4,
                        "the first snapshot")
            yield app, pilot
            if app.is_running:
                # no store call in flight when it exits (see consolepilot.quit_when_idle)
                app._refreshing = True
                app.snapshot = None
                await until(pilot, lambda: not any(w.is_running for w in app.workers), "idle")
                app.exit()
                await until(pilot, lambda: not app.is_running, "the exit")
    finally:
        await store.close()


async def until(pilot: Pilot[Any], cond: Callable[[], Any | Awaitable[Any]], what: str,
                within_s: float = 15.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


def footer_actions(app: DealerConsole) -> list[str]:
    """The footer's actions, in order. Textual docks its palette key at the right of every
    footer; it is not one of the app's bindings."""
    return [k.action for k in app.query(FooterKey) if k.action != "command_palette"]


def notes(app: DealerConsole) -> list[str]:
    return [str(n.message) for n in app._notifications]


def screen_lines(screen: Screen[Any]) -> list[str]:
    out = Console(width=200, record=True, file=io.StringIO())
    for widget in screen.query(Static):
        out.print(widget.content)
    return [line.strip() for line in out.export_text().splitlines()]


def test_the_table_has_one_row_per_key_and_per_action() -> None:
    keys = [a.key for a in ACTIONS]
    actions = [a.action for a in ACTIONS]
    assert len(keys) == len(set(keys)), keys
    assert len(actions) == len(set(actions)), actions
    titles = [a.palette for a in ACTIONS if a.palette]
    assert len(titles) == len(set(titles)), titles
    assert MUTATING == {a.action for a in ACTIONS if a.mutating}
    for a in ACTIONS:
        # every action runs something: ours, or Textual's own (quit, the palette)
        assert callable(getattr(DealerConsole, f"action_{a.action}", None)), a.action


async def test_every_entry_is_bound_and_every_binding_is_an_entry(tmp_path: Any) -> None:
    declared = [b for b in DealerConsole.BINDINGS if not isinstance(b, tuple)]
    assert len(declared) == len(DealerConsole.BINDINGS)
    by_key = {a.key: a for a in ACTIONS}
    for b in declared:
        a = by_key[b.key]  # a binding that is no entry fails here
        assert (b.action, b.description, b.show) == (a.action, a.label, a.footer), b
    assert {b.key for b in declared} == {a.key for a in ACTIONS if not a.textual}

    async with console(tmp_path, read_only=False) as (app, _pilot):
        bound = {key: [b.action for b in bs] for key, bs in app._bindings.key_to_bindings.items()}
        for a in ACTIONS:  # every entry is bound, ctrl+p by Textual itself
            assert bound.get(a.key) == [a.action], (a.key, bound.get(a.key))
        assert set(bound) - {a.key for a in ACTIONS} <= TEXTUAL_KEYS, sorted(bound)
        for a in ACTIONS:
            assert app.check_action(a.action, ()) is True, a.action


async def test_the_footer_shows_its_entries_help_first(tmp_path: Any) -> None:
    async with console(tmp_path, read_only=False) as (app, pilot):
        await pilot.pause()
        shown = footer_actions(app)
        footer = [a.action for a in ACTIONS if a.footer and a.action != "help"]
        assert shown == ["help", *(a for a in footer if a not in SHADOWED)], shown


def _palette(app: DealerConsole) -> dict[str, Any]:
    return {c.title: c.callback for c in app.get_system_commands(app.screen)}


async def test_the_palette_runs_every_entry_that_has_a_title(tmp_path: Any) -> None:
    async with console(tmp_path, read_only=False) as (app, _pilot):
        palette = _palette(app)
        for a in ACTIONS:
            if a.palette is not None:
                assert palette[a.palette] == getattr(app, f"action_{a.action}"), a.action


def _help_row(lines: list[str], a: ConsoleAction) -> str:
    rows = [line for line in lines if line.startswith(f"{a.shown} ") and a.help
            and a.help in line]
    assert len(rows) == 1, (a.key, rows)
    return rows[0]


@pytest.mark.parametrize("read_only", [False, True])
async def test_the_help_screen_lists_every_entry(tmp_path: Any, read_only: bool) -> None:
    async with console(tmp_path, read_only=read_only) as (app, pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        lines = screen_lines(app.screen)
        for a in ACTIONS:
            if a.help is None:
                continue
            refused = "(read-only: refused)" in _help_row(lines, a)
            assert refused == (read_only and a.mutating), a.key
        # the entries without a line of their own are said in another's: esc in the filter's
        assert [a.key for a in ACTIONS if a.help is None] == ["escape"]
        assert any("(esc clears)" in line for line in lines)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")


async def test_read_only_refuses_exactly_the_mutating_entries(tmp_path: Any) -> None:
    async with console(tmp_path, read_only=True) as (app, pilot):
        assert app.snapshot is not None
        before = dict(app.snapshot.lanes)
        for a in ACTIONS:
            assert app.check_action(a.action, ()) is (not a.mutating), a.action
        assert set(footer_actions(app)) == {
            a.action for a in ACTIONS if a.footer and not a.mutating and a.action not in SHADOWED
        }
        titles = set(_palette(app))
        assert titles >= {a.palette for a in ACTIONS if a.palette and not a.mutating}
        assert not titles & {a.palette for a in ACTIONS if a.mutating}

        table = app.query_one(LanesTable)
        main = app.screen
        for a in ACTIONS:
            if a.action == "quit":
                continue
            n = len(notes(app))
            await pilot.press(a.key)
            await pilot.pause(0.05)
            said = notes(app)[n:]
            assert (REFUSED in said) == a.mutating, (a.key, said)
            for _ in range(100):  # the keys that open something: close it
                if app.screen is main:
                    break
                await pilot.press("escape")
                await pilot.pause(0.02)
            assert app.screen is main, (a.key, type(app.screen).__name__, app.focused)
            if app.focused is not table:  # `/` gave the filter box the keys
                await pilot.press("escape")
            await until(pilot, lambda: app.focused is table, "the lanes with the keys")
        # and none of the refused keys changed anything
        await until(pilot, lambda: app.refreshes >= 3, "a fresh snapshot")
        refreshes = app.refreshes
        await until(pilot, lambda: app.refreshes > refreshes, "one more")
        assert app.snapshot is not None and dict(app.snapshot.lanes) == before
        assert app.manager is None and app.snapshot.paused == set()

