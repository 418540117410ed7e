"""The console's engine runs in a child process (dealertui/engine/host.py): it is steered
over a pipe, reports its stats and errors, survives handlers that print, and when the console
dies — even by SIGKILL — it releases its running jobs instead of leaving them to leases."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from workerrig import (
    ROOT,
    Rig,
    Worker,
    dealers,
    read_stamps,
    stamp_handler,
    wait_for,
    write_config,
)

from dealertui.config import Config, parse_config
from dealertui.engine.host import EngineProcess
from dealertui.errors import DealertuiError
from dealertui.store import Intent, open_store

pytestmark = pytest.mark.anyio

PARENT = ROOT / "tests" / "fixtures" / "console_parent.py"


def config(db_url: str, handler: str, n_dealers: int = 3) -> Config:
    cfg = parse_config(
        {
            "job_types": {
                "homenet": {"priority": 1, "handler": handler},
                "dealer_com": {"priority": 2, "depends_on": ["homenet"], "handler": handler},
            },
            "dealers": [{"id": d} for d in dealers(n_dealers)],
        },
        None,
    )
    return dataclasses.replace(cfg, database_url=db_url)


async def test_runs_to_the_end_and_returns_its_stats_despite_a_printing_handler(
    db_url: str,
) -> None:
    cfg = config(db_url, "tests.fixtures.handlers:chatty")
    store = await open_store(cfg, Intent.CREATE)
    try:
        await store.enqueue([d.id for d in cfg.dealers])
        stats = await EngineProcess(cfg, wait=False).run()
        assert stats.successful_jobs == stats.processed_jobs == 6, stats
        assert Counter(j.state for j in await store.list_jobs()) == {"succeeded": 6}
    finally:
        await store.close()


async def test_pause_before_start_claims_nothing_until_resumed(db_url: str) -> None:
    cfg = config(db_url, "tests.fixtures.handlers:ok")
    store = await open_store(cfg, Intent.CREATE)
    try:
        await store.enqueue([d.id for d in cfg.dealers])
        engine = EngineProcess(cfg)  # wait=True, as the console runs it
        engine.pause()
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run)
            await anyio.sleep(2.0)  # time enough to have claimed everything, were it running
            assert Counter(j.state for j in await store.list_jobs()) == {"ready": 3,
                                                                          "waiting": 3}
            assert engine.paused
            engine.resume()
            with anyio.fail_after(30):
                while Counter(j.state for j in await store.list_jobs()) != {"succeeded": 6}:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            engine.stop()
    finally:
        await store.close()


async def test_close_returns_only_after_a_child_still_starting_has_exited(db_url: str) -> None:
    # the console closes its engine as it unmounts; quit within a second of opening and the
    # child is still importing: close() must not return before that child has gone
    cfg = config(db_url, "tests.fixtures.handlers:ok")
    engine = EngineProcess(cfg)
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run)
        with anyio.fail_after(30):
            while engine.pid is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        with anyio.fail_after(30):
            await engine.close()
        assert not _alive(engine.pid)
    with pytest.raises(DealertuiError, match="closed"):
        await engine.run()  # a closed engine starts no second child


async def test_close_before_run_starts_no_child(db_url: str) -> None:
    engine = EngineProcess(config(db_url, "tests.fixtures.handlers:ok"))
    await engine.close()
    with pytest.raises(DealertuiError, match="closed"):
        await engine.run()
    assert engine.pid is None


async def test_an_unusable_database_is_one_sentence_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    cfg = config(f"sqlite+aiosqlite:///{tmp_path}/file/t.db", "tests.fixtures.handlers:ok")
    with anyio.fail_after(60), pytest.raises(DealertuiError) as caught:
        await EngineProcess(cfg).run()
    message = str(caught.value)
    assert "Traceback" not in message and "\n" not in message, message
    assert str(tmp_path / "file") in message, message


def test_console_killed_with_sigkill_releases_the_running_jobs(db_url: str, tmp_path: Path
                                                               ) -> None:
    log = tmp_path / "stamps.log"
    cfg = write_config(tmp_path / "dealertui.toml", dealers=dealers(3),
                       job_types={"work": (1, ())}, handler=stamp_handler(log, 60.0),
                       max_dealers=3, per_dealer=2, lease_s=300)
    rig = Rig(tmp_path, cfg, db_url)
    rig.cli("enqueue", "--all-dealers")
    console = Worker([sys.executable, str(PARENT), str(cfg), db_url], tmp_path, rig.env,
                     "console")
    try:
        wait_for(lambda: console.out_path.read_text().strip(), 60, "the engine's pid", console)
        child = int(console.out_path.read_text())
        wait_for(lambda: len(read_stamps(log)) == 3, 60, "3 running jobs", console)
        t_kill = time.monotonic()
        os.kill(console.pid, signal.SIGKILL)
        console.proc.wait()
        # the child sees its stdin close and aborts: no lease (300 s here) has to run out
        wait_for(lambda: not _alive(child), 20, f"engine process {child} to exit")
        jobs = rig.jobs()
        assert Counter(j.state for j in jobs) == {"retrying": 3}, jobs
        assert all(j.attempts == 0 and j.locked_by is None for j in jobs), jobs
        assert time.monotonic() - t_kill < 20
        assert not [s for s in read_stamps(log) if s.word != "start"]
    finally:
        console.kill()
        if "child" in locals() and _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is missing
