"""The console's keys that act on jobs, with Pilot: r retry, x reset stuck, c cancel, R rerun,
k skip, f retry a failure group, a the audit log; the store *and* the screen checked, on
SQLite and Postgres.

The store is opened here and handed to `make_app`, so a test can set up states with store calls
(claim/finish under a fake worker id) and read back what a key did. Nothing sleeps a fixed time:
`until` polls a condition with a deadline.
"""

from __future__ import annotations

import pytest
from consolepilot import (
    TYPES,
    _d1_homenet_failed,
    _hold,
    _state_is,
    cell,
    console,
    everything,
    jobs_of,
    move_to,
    notes,
    pipelines,
    run,
    state_of,
    until,
)
from helpers import WallClock
from textual.widgets import RichLog

from dealertui.store import JobStore
from dealertui.tui.app import DealerConsole
from dealertui.tui.screens import ConfirmScreen

pytestmark = pytest.mark.anyio


def event_log(app: DealerConsole) -> str:
    log = app.query_one("#events", RichLog)
    return "\n".join("".join(seg.text for seg in strip) for strip in log.lines)


async def test_r_retries_the_selected_failed_job(db_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await run(store, "d3", [("homenet", "ok"), ("dealer_com", "fail")])

    async with console(db_url, setup) as (app, pilot, store):
        await until(pilot, lambda: cell(app, "d3", "dealer_com") == "✖ FAIL", "✖ FAIL shown")
        await move_to(pilot, app, "d3", "dealer_com")
        await pilot.press("r")
        await until(pilot, lambda: _state_is(store, "d3", "dealer_com", "ready"), "retried")
        assert not isinstance(app.screen, ConfirmScreen)  # one job, no descendants: no question
        await until(pilot, lambda: cell(app, "d3", "dealer_com") == "○ ready", "○ ready shown")
        await until(pilot, lambda: "failed→ready" in event_log(app), "the retry in the log")


async def test_r_asks_first_when_blocked_descendants_would_follow(db_url: str) -> None:
    async with console(db_url, _d1_homenet_failed) as (app, pilot, store):
        await until(pilot, lambda: cell(app, "d1", "homenet") == "✖ FAIL", "✖ FAIL shown")
        assert cell(app, "d1", "url_shorten") == "⊘ blkd"
        await move_to(pilot, app, "d1", "homenet")
        before = await everything(store)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "1 job changes and 3 descendants move" in app.screen.question
        await pilot.press("n")
        await until(pilot, lambda: "nothing changed" in notes(app), "'nothing changed'")
        assert not isinstance(app.screen, ConfirmScreen)
        assert await everything(store) == before  # the preview wrote nothing either

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")

        async def retried() -> bool:
            jobs = await jobs_of(store, "d1")
            return jobs["homenet"].state == "ready" and all(
                jobs[t].state == "waiting" for t in TYPES[1:]
            )

        await until(pilot, retried, "homenet ready, its blocked descendants waiting again")
        await until(pilot, lambda: cell(app, "d1", "homenet") == "○ ready", "○ ready shown")


async def test_r_on_the_dealer_confirms_before_retrying_many_jobs(db_url: str) -> None:
    async with console(db_url, _d1_homenet_failed) as (app, pilot, store):
        await move_to(pilot, app, "d1", None)
        before = await everything(store)

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "Retry d1's failed and blocked jobs" in app.screen.question
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the answer")
        await until(pilot, lambda: "nothing changed" in notes(app), "'nothing changed'")
        assert await everything(store) == before

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")

        async def none_failed() -> bool:
            return not await store.list_jobs(dealer_id="d1", states=["failed", "blocked"])

        await until(pilot, none_failed, "every failed/blocked job of d1 retried")
        assert await state_of(store, "d1", "homenet") == "ready"
        await until(pilot, lambda: cell(app, "d1", "homenet") == "○ ready", "○ ready shown")


async def test_r_on_the_dealer_retries_a_lone_failed_job_without_asking(db_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await run(store, "d3", [("homenet", "ok"), ("dealer_com", "fail")])

    async with console(db_url, setup) as (app, pilot, store):
        await move_to(pilot, app, "d3", None)
        await pilot.press("r")
        await until(pilot, lambda: _state_is(store, "d3", "dealer_com", "ready"), "retried")
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: cell(app, "d3", "dealer_com") == "○ ready", "○ ready shown")


async def test_r_with_nothing_to_retry_says_so(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, store):
        before = await everything(store)
        await move_to(pilot, app, "d2", None)
        await pilot.press("r")
        await until(pilot, lambda: any(n.startswith("nothing to retry") for n in notes(app)),
                    "'nothing to retry'")
        assert await everything(store) == before


async def test_x_rescues_a_stuck_job(db_url: str) -> None:
    clock = WallClock()

    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await _hold(store, ["d2"])
        clock.advance(60)  # the lease ran out a minute ago

    async with console(db_url, setup, clock=clock) as (app, pilot, store):
        assert cell(app, "d2", "homenet") == "▶ run"
        await pilot.press("x")
        await until(pilot, lambda: _state_is(store, "d2", "homenet", "ready"), "rescued")
        job = (await jobs_of(store, "d2"))["homenet"]
        assert (job.locked_by, job.last_error, job.attempts) == (None, "lease expired", 1)
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: cell(app, "d2", "homenet") == "○ ready", "○ ready shown")
        await until(pilot, lambda: "rescued 1 stuck job" in notes(app), "the notification")


async def test_x_confirms_before_rescuing_many_and_spares_live_leases(db_url: str) -> None:
    clock = WallClock()

    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await _hold(store, ["d1", "d2"])
        clock.advance(60)
        await _hold(store, ["d3"], lease_s=3600)  # a live lease: not stuck

    async with console(db_url, setup, clock=clock) as (app, pilot, store):
        before = await everything(store)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "2 jobs change and 0 descendants move" in app.screen.question
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the answer")
        assert await everything(store) == before

        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: _state_is(store, "d1", "homenet", "ready"), "d1 rescued")
        assert await state_of(store, "d2", "homenet") == "ready"
        assert await state_of(store, "d3", "homenet") == "running"


async def test_x_with_nothing_stuck_changes_nothing(sqlite_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await _hold(store, ["d1"], lease_s=3600)

    async with console(sqlite_url, setup) as (app, pilot, store):
        before = await everything(store)
        await pilot.press("x")
        await until(pilot, lambda: "nothing to reset stuck jobs" in notes(app), "the answer")
        assert await everything(store) == before


# -- c: cancel ----------------------------------------------------------------------------------


async def test_c_cancels_the_selected_job(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d2", "dealer_com")  # no descendants: acts at once
        await pilot.press("c")
        await until(pilot, lambda: _state_is(store, "d2", "dealer_com", "cancelled"),
                    "dealer_com cancelled")
        assert not isinstance(app.screen, ConfirmScreen)
        assert await state_of(store, "d2", "homenet") == "ready"  # untouched
        await until(pilot, lambda: cell(app, "d2", "dealer_com") == "− cncl", "− cncl")
        await until(pilot, lambda: "waiting→cancelled" in event_log(app), "the log line")


async def test_c_asks_first_when_descendants_would_be_blocked(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d2", "product_scrape")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "1 job changes and 1 descendant moves" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: _state_is(store, "d2", "product_scrape", "cancelled"),
                    "product_scrape cancelled")
        assert await state_of(store, "d2", "url_shorten") == "blocked"  # its child
        await until(pilot, lambda: cell(app, "d2", "product_scrape") == "− cncl", "− cncl")
        await until(pilot, lambda: cell(app, "d2", "url_shorten") == "⊘ blkd", "⊘ blkd")


async def test_c_on_the_dealer_column_asks_for_a_lane(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, store):
        before = await everything(store)
        await move_to(pilot, app, "d1", None)
        await pilot.press("c")
        await until(pilot, lambda: "select a job's lane to cancel it" in notes(app), "a hint")
        assert await everything(store) == before


# -- R: rerun, k: skip, f: failure groups, a: audit log ----------------------------------------


async def test_R_reruns_the_selected_job_and_asks_when_descendants_follow(db_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await run(store, "d3", [("homenet", "ok"), ("dealer_com", "ok")])

    async with console(db_url, setup) as (app, pilot, store):
        await move_to(pilot, app, "d3", "dealer_com")  # succeeded, no descendants
        await pilot.press("R")
        await until(pilot, lambda: _state_is(store, "d3", "dealer_com", "ready"), "rerun")
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: cell(app, "d3", "dealer_com") == "○ ready", "○ ready")

        await move_to(pilot, app, "d3", "homenet")  # its three descendants are re-armed
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "descendants move" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: _state_is(store, "d3", "homenet", "ready"), "homenet rerun")
        assert await state_of(store, "d3", "dealer_com") == "waiting"


async def test_k_skips_the_selected_job_with_a_reason(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d2", "url_shorten")
        await pilot.press("k")
        await until(pilot, lambda: type(app.screen).__name__ == "ReasonScreen", "the question")
        await pilot.press("escape")  # changed their mind: nothing happens, and no refusal
        await until(pilot, lambda: "skip cancelled" in notes(app), "'skip cancelled'")
        assert not any("reason is required" in n for n in notes(app))
        assert await state_of(store, "d2", "url_shorten") == "waiting"

        await pilot.press("k")
        await until(pilot, lambda: type(app.screen).__name__ == "ReasonScreen", "the question")
        await pilot.press("enter")  # no reason given: refused
        await until(pilot, lambda: "not skipped: a reason is required" in notes(app), "refusal")
        assert await state_of(store, "d2", "url_shorten") == "waiting"

        await pilot.press("k")
        await until(pilot, lambda: type(app.screen).__name__ == "ReasonScreen", "the question")
        await pilot.press(*"retired", "enter")
        await until(pilot, lambda: _state_is(store, "d2", "url_shorten", "skipped"), "skipped")
        await until(pilot, lambda: cell(app, "d2", "url_shorten") == "↷ skip", "↷ skip shown")


async def test_f_retries_a_failure_group(db_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await run(store, "d1", [("homenet", "fail")])
        await run(store, "d2", [("homenet", "fail")])

    async with console(db_url, setup) as (app, pilot, store):
        await pilot.press("f")
        await until(pilot, lambda: type(app.screen).__name__ == "FailureGroupsScreen", "groups")
        groups = app.screen
        await until(pilot, lambda: len(groups.groups) == 1, "one group: the same error")
        assert groups.groups[0]["dealers"] == 2
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: _state_is(store, "d2", "homenet", "ready"), "d2 retried")
        assert await state_of(store, "d1", "homenet") == "ready"


async def test_a_shows_the_audit_log(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d2", "dealer_com")
        await pilot.press("c")
        await until(pilot, lambda: _state_is(store, "d2", "dealer_com", "cancelled"), "cancel")
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "AuditScreen", "the audit log")
        table = app.screen.query_one("#audit")

        def rows() -> list[str]:
            return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]

        await until(pilot, lambda: any("cancel" in r for r in rows()), "the cancel listed")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "AuditScreen", "closed")


async def test_h_lists_the_dealers_older_pipelines(db_url: str) -> None:
    """The lanes show d2's newest pipeline; `h` lists all three, newest first, with what
    became of each; the graph pane keeps to the newest."""

    async def three(store: JobStore) -> None:
        for _ in range(3):
            await store.enqueue(["d2"])
        await store.enqueue(["d1"])

    async with console(db_url, three) as (app, pilot, store):
        d2 = sorted({j.pipeline_id for j in await store.list_jobs(dealer_id="d2")}, reverse=True)
        assert len(d2) == 3
        await move_to(pilot, app, "d2", "homenet")
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "HistoryScreen", "the history")
        screen = app.screen
        table = screen.query_one("#history")
        await until(pilot, lambda: table.row_count == 3, "three pipelines")
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(3)]
        assert [int(r[0]) for r in rows] == d2, rows
        assert all(r[3] == "unfinished" and "homenet" in r[5] for r in rows), rows
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ != "HistoryScreen", "closed")
