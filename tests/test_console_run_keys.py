"""The console's keys that run and hold the work, with Pilot: s starts the engine or resumes,
p / P pause a dealer or everything, e enqueues a pipeline; the store *and* the screen checked,
on SQLite and Postgres.

The store is opened here and handed to `make_app`, so a test can set up states with store calls
(claim/finish under a fake worker id) and read back what a key did. Nothing sleeps a fixed time:
`until` polls a condition with a deadline.
"""

from __future__ import annotations

import pytest
from consolepilot import (
    DEALERS,
    TYPES,
    cell,
    console,
    jobs_of,
    move_to,
    notes,
    pipelines,
    static_text,
    until,
)
from textual.widgets import Static

from dealertui.store import JobStore

pytestmark = pytest.mark.anyio


# -- s: start / resume --------------------------------------------------------------------------


async def test_s_starts_the_engine_and_lifts_a_global_pause(db_url: str) -> None:
    async def setup(store: JobStore) -> None:
        await pipelines(store)
        await store.set_paused(True)

    async with console(db_url, setup) as (app, pilot, store):
        assert app.manager is None and app.engine_state.startswith("stopped")
        await until(pilot, lambda: ("global", "") in app.snapshot.paused, "the pause shown")
        assert "ALL PAUSED" in static_text(app.query_one("#numbers", Static))

        await pilot.press("s")
        await until(pilot, lambda: app.manager is not None, "the engine")
        # checked now: the note lives 2 s, and on a loaded machine the jobs took longer
        assert "engine started" in notes(app)
        await until(pilot, lambda: _no_pauses(store), "the global pause lifted")

        async def all_done() -> bool:
            return all(j.state == "succeeded" for j in await store.list_jobs())

        await until(pilot, all_done, "every job processed by the console's engine")
        await until(pilot, lambda: all(cell(app, d, t) == "✔ ok" for d, _ in DEALERS
                                       for t in TYPES), "the lanes all ✔ ok")
        assert "ALL PAUSED" not in static_text(app.query_one("#numbers", Static))
        assert app.engine_state.startswith("running")


async def _no_pauses(store: JobStore) -> bool:
    return not await store.pauses()


async def test_s_resumes_a_paused_local_engine(sqlite_url: str) -> None:
    async with console(sqlite_url, pipelines) as (app, pilot, _store):
        await pilot.press("s")
        await until(pilot, lambda: app.manager is not None, "the engine")
        assert app.manager is not None
        app.manager.pause()
        await until(pilot, lambda: app.engine_state == "paused", "engine paused")
        await pilot.press("s")
        await until(pilot, lambda: app.manager is not None and not app.manager.paused,
                    "engine resumed")
        assert "engine resumed" in notes(app)


# -- p / P: pause -------------------------------------------------------------------------------


async def test_p_pauses_the_selected_dealer_and_again_resumes_it(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        await move_to(pilot, app, "d2", None)
        await pilot.press("p")

        async def d2_paused() -> bool:
            return [(p.scope, p.key) for p in await store.pauses()] == [("dealer", "d2")]

        await until(pilot, d2_paused, "d2 paused in the store")
        await until(pilot, lambda: cell(app, "d2", "dealer") == "d2 ⏸", "d2 marked ⏸")
        assert cell(app, "d1", "dealer") == "d1"

        await pilot.press("p")
        await until(pilot, lambda: _no_pauses(store), "d2 resumed")
        await until(pilot, lambda: cell(app, "d2", "dealer") == "d2", "the ⏸ mark gone")


async def test_P_pauses_everything_and_again_resumes(db_url: str) -> None:
    async with console(db_url, pipelines) as (app, pilot, store):
        numbers = app.query_one("#numbers", Static)
        await pilot.press("P")

        async def global_paused() -> bool:
            return [(p.scope, p.key) for p in await store.pauses()] == [("global", "")]

        await until(pilot, global_paused, "a global pause in the store")
        await until(pilot, lambda: "ALL PAUSED" in static_text(numbers), "ALL PAUSED shown")

        await pilot.press("P")
        await until(pilot, lambda: _no_pauses(store), "the global pause lifted")
        await until(pilot, lambda: "ALL PAUSED" not in static_text(numbers), "banner gone")


# -- e: enqueue ---------------------------------------------------------------------------------


async def test_e_enqueues_a_pipeline_for_the_selected_dealer(db_url: str) -> None:
    async with console(db_url) as (app, pilot, store):
        assert cell(app, "d2", "homenet") == "·"  # no jobs yet
        await move_to(pilot, app, "d2", "dealer_com")
        await pilot.press("e")

        async def four_jobs() -> bool:
            return len(await store.list_jobs(dealer_id="d2")) == 4

        await until(pilot, four_jobs, "a pipeline for d2")
        assert await store.list_jobs(dealer_id="d1") == []
        await until(pilot, lambda: cell(app, "d2", "homenet") == "○ ready", "○ ready shown")
        assert cell(app, "d2", "url_shorten") == "… wait"
        assert "enqueued a pipeline of 4 jobs for d2" in notes(app)

        first = {t: j.id for t, j in (await jobs_of(store, "d2")).items()}
        await pilot.press("e")
        # the first pipeline has not run: a second e says so and enqueues nothing
        said = f"d2: pipeline {first['homenet']} still has 4 unfinished jobs; skipped"
        await until(pilot, lambda: said in notes(app), "the skip said")
        assert len(await store.list_jobs(dealer_id="d2")) == 4
