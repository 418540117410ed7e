"""The operator panes of the console: failure groups, audit log, and why in the job detail —
snapshots on the seeded, frozen-clock database of test_console_snapshots, and behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_console_snapshots import (  # the seeded console and its helpers
    console,
    first_refresh,
    refreshed,
    settle_graph,
    utc,
    wait_for,
)
from textual.pilot import Pilot

from dealertui.tui.app import DealerConsole
from dealertui.tui.panels import AuditScreen, FailureGroupsScreen
from dealertui.tui.screens import ConfirmScreen, JobDetailScreen
from dealertui.tui.widgets import LanesTable

__all__ = ["console", "utc"]  # fixtures, imported for pytest


async def _groups_open(pilot: Pilot[Any]) -> FailureGroupsScreen:
    await first_refresh(pilot)
    await settle_graph(pilot, "graph: d001 Sunrise Motors")
    await pilot.press("f")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, FailureGroupsScreen), "groups")
    screen = pilot.app.screen
    assert isinstance(screen, FailureGroupsScreen)
    await wait_for(pilot, lambda: bool(screen.groups), "the groups to load")
    await pilot.pause()
    return screen


def test_failure_groups_pane(snap_compare: Any, console: Callable[[], DealerConsole]) -> None:
    """Failures by cause across dealers, each with its fingerprint."""

    async def before(pilot: Pilot[Any]) -> None:
        screen = await _groups_open(pilot)
        assert {g["job_type"] for g in screen.groups} == {"homenet", "dealer_com"}

    assert snap_compare(console(), terminal_size=(100, 30), run_before=before)


def test_audit_pane(snap_compare: Any, console: Callable[[], DealerConsole]) -> None:
    """Operator actions of the seed (a cancel and a pause by ops@bastion), newest first."""

    async def before(pilot: Pilot[Any]) -> None:
        await first_refresh(pilot)
        await settle_graph(pilot, "graph: d001 Sunrise Motors")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AuditScreen), "audit")
        await pilot.pause(0.2)

    assert snap_compare(console(), terminal_size=(100, 30), run_before=before)


def test_detail_says_why(snap_compare: Any, console: Callable[[], DealerConsole]) -> None:
    """d003's dealer_com: blocked by its failed homenet — the why panel names it."""

    async def before(pilot: Pilot[Any]) -> None:
        await first_refresh(pilot)
        await pilot.press("down", "down", "right", "right")
        assert pilot.app.query_one(LanesTable).selected() == ("d003", "dealer_com")
        await settle_graph(pilot, "graph: d003 Canyon Ford")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobDetailScreen), "detail")
        screen = pilot.app.screen
        assert isinstance(screen, JobDetailScreen)
        assert any("blocked by homenet" in w for w in screen.why), screen.why
        await pilot.pause()

    assert snap_compare(console(), terminal_size=(100, 30), run_before=before)


@pytest.mark.anyio
async def test_retry_a_whole_failure_group_asks_then_acts(
    console: Callable[[], DealerConsole],
) -> None:
    app = console()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _groups_open(pilot)
        table = screen.query_one("#groups")
        # d003's homenet failed for good (404): its group has a job to retry
        homenet = next(i for i, g in enumerate(screen.groups)
                       if g["job_type"] == "homenet" and g["error_class"] == "permanent")
        table.move_cursor(row=homenet)  # type: ignore[attr-defined]
        fp = screen.groups[homenet]["fingerprint"]
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirm")
        assert fp in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        assert app.store is not None
        store = app.store

        async def retried() -> bool:
            entries = await store.audit_entries()
            return any(e["action"] == "retry" and fp in (e["reason"] or "") for e in entries)

        for _ in range(200):
            if await retried():
                break
            await pilot.pause(0.02)
        assert await retried()
        d003 = {j.job_type: j for j in await store.list_jobs(dealer_id="d003")}
        assert d003["homenet"].state == "ready" and d003["homenet"].attempts == 0
        await refreshed(pilot)


@pytest.mark.anyio
async def test_skip_asks_for_a_reason_and_releases_children(
    console: Callable[[], DealerConsole],
) -> None:
    app = console()
    async with app.run_test(size=(100, 30)) as pilot:
        await first_refresh(pilot)
        await pilot.press("down", "down", "right")  # d003 homenet: failed
        assert app.query_one(LanesTable).selected() == ("d003", "homenet")
        await pilot.press("k")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ReasonScreen", "reason")
        await pilot.press(*"feed retired", "enter")
        # the skip moves its 3 blocked descendants too: more than one job, so it asks
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirm")
        await pilot.press("y")
        assert app.store is not None
        for _ in range(200):
            jobs = {j.job_type: j for j in await app.store.list_jobs(dealer_id="d003")}
            if jobs["homenet"].state == "skipped":
                break
            await pilot.pause(0.02)
        assert jobs["homenet"].state == "skipped"
        assert jobs["dealer_com"].state == "ready"
        assert jobs["url_shorten"].state == "waiting"
        [entry] = [e for e in await app.store.audit_entries() if e["action"] == "skip"]
        assert entry["reason"] == "feed retired"


@pytest.mark.anyio
async def test_read_only_refuses_the_new_actions(console: Callable[[], DealerConsole]) -> None:
    app = console()
    app.read_only = True
    async with app.run_test(size=(100, 30)) as pilot:
        await first_refresh(pilot)
        for action in ("rerun", "skip"):
            assert app.check_action(action, ()) is False
        before = [(j.id, j.state) for j in await app.store.list_jobs()]  # type: ignore[union-attr]
        await pilot.press("down", "down", "right", "R", "k")
        await pilot.pause(0.2)
        assert not type(app.screen).__name__ == "ReasonScreen"
        after = [(j.id, j.state) for j in await app.store.list_jobs()]  # type: ignore[union-attr]
        assert before == after
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Rerun" not in titles and "Skip job" not in titles
        assert "Failure groups" in titles and "Audit log" in titles
