"""The console's S: the schedules pane lists each schedule with its totals and pause, and its
p pauses or resumes the selected one for every engine (audited); --read-only refuses it."""

from __future__ import annotations

from typing import Any

import pytest
from consolepilot import console, until

from dealertui.engine.schedules import report
from dealertui.tui.app import DealerConsole
from dealertui.tui.panels import SchedulesScreen

pytestmark = pytest.mark.anyio

SCHEDULES = [{"name": "hourly-feeds", "cron": "0 * * * *"},
             {"name": "quarterly", "every": "15m", "dealers": ["d2"]}]


def rows(app: DealerConsole) -> list[str]:
    table: Any = app.screen.query_one("#schedules")
    return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def test_s_lists_the_schedules_and_p_pauses_then_resumes_one(db_url: str) -> None:
    async with console(db_url, schedules=SCHEDULES) as (app, pilot, store):
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen), "the pane")
        await until(pilot, lambda: len(rows(app)) == 2, "two schedules listed")
        assert rows(app)[0].startswith("hourly-feeds cron 0 * * * *")
        assert "every 15m" in rows(app)[1] and rows(app)[1].endswith("active")
        await pilot.press("down", "p")  # the second one

        async def paused() -> list[bool]:
            return [s["paused"] for s in await report(store, app.config)]

        async def is_paused() -> bool:
            return await paused() == [False, True]

        await until(pilot, is_paused, "quarterly paused in the database")
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen)
                    and len(rows(app)) == 2 and rows(app)[1].endswith("paused"), "shown paused")
        await pilot.press("down", "p")

        async def resumed() -> bool:
            return await paused() == [False, False]

        await until(pilot, resumed, "quarterly resumed")
        audit = [(e["action"], e["target"]) for e in await store.audit_entries()]
        assert audit[:2] == [("resume", "schedule quarterly"), ("pause", "schedule quarterly")]


async def test_read_only_shows_the_schedules_and_refuses_p(sqlite_url: str) -> None:
    async with console(sqlite_url, read_only=True, schedules=SCHEDULES) as (app, pilot, store):
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, SchedulesScreen)
                    and len(rows(app)) == 2, "the pane")
        await pilot.press("p")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, SchedulesScreen), "closed")
        assert [s["paused"] for s in await report(store, app.config)] == [False, False]
        assert await store.audit_entries() == []
