"""The engine (MultiDealerDependencyManager) end to end with exec handlers, on SQLite and
Postgres: dependencies and limits respected, a failing dealer blocks only its descendants,
exit codes transient and permanent, timeouts killing the whole process group, and an abort
right after a claim.

Exec handlers run tests/fixtures/stamp.py, which appends "start"/"end" lines with wall-clock
times to a log; the ordering and concurrency rules of docs/design.md are checked from that log.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from enginerun import DEALERS, FIXTURE_HANDLERS, jobs_by, make_config, opened, run_all
from helpers import PARENTS, default_types

from dealertui.engine.manager import MultiDealerDependencyManager

#: repo_importable: "tests.fixtures.handlers:ok" must import however pytest was started
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]


ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / "tests" / "fixtures" / "stamp.py"


# -- helpers ------------------------------------------------------------------------------------


def stamp_handler(log: Path, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, str(STAMP), str(log), "{dealer_id}", "{job_type}", "{job_id}",
            "{attempt}", *extra]
    return {"exec": argv}


def read_log(log: Path) -> list[tuple[str, float, str, str, int, int]]:
    """(word, time, dealer, type, job id, attempt) per line, in time order."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text(encoding="utf-8").splitlines():
        word, t, dealer, job_type, job_id, attempt = line.split()
        rows.append((word, float(t), dealer, job_type, int(job_id), int(attempt)))
    return sorted(rows, key=lambda r: r[1])


def spans(log: Path) -> dict[tuple[str, str], tuple[float, float | None]]:
    """(dealer, type) -> (start, end or None); each job must have started exactly once."""
    starts: dict[tuple[str, str], float] = {}
    ends: dict[tuple[str, str], float] = {}
    for word, t, dealer, job_type, _id, _attempt in read_log(log):
        key = (dealer, job_type)
        if word == "start":
            assert key not in starts, f"{key} started twice"
            starts[key] = t
        else:
            ends[key] = t
    return {k: (s, ends.get(k)) for k, s in starts.items()}


def check_order(span: dict[tuple[str, str], tuple[float, float | None]]) -> None:
    """No child started before every parent of the same dealer had ended (successfully)."""
    for (dealer, job_type), (start, _end) in span.items():
        for parent in PARENTS.get(job_type, ()):
            assert (dealer, parent) in span, f"{dealer} {job_type} ran but {parent} never did"
            p_end = span[(dealer, parent)][1]
            assert p_end is not None, f"{dealer} {job_type} ran although {parent} did not end"
            assert start > p_end, (
                f"{dealer} {job_type} started at {start:.4f}, before its parent {parent} "
                f"ended at {p_end:.4f}"
            )


def peak_concurrency(
    span: dict[tuple[str, str], tuple[float, float | None]],
) -> tuple[int, int]:
    """(most dealers with a job running at one instant, most jobs of one dealer at once)."""
    points = []
    for (dealer, _t), (start, end) in span.items():
        assert end is not None
        points += [(start, 1, dealer), (end, -1, dealer)]
    points.sort(key=lambda p: (p[0], p[1]))  # at a tie an end comes before a start
    running: Counter[str] = Counter()
    most_dealers = most_per_dealer = 0
    for _t, delta, dealer in points:
        running[dealer] += delta
        most_per_dealer = max(most_per_dealer, running[dealer])
        most_dealers = max(most_dealers, sum(1 for n in running.values() if n > 0))
    return most_dealers, most_per_dealer


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- exec handlers ----------------------------------------------------------------------------


async def test_pipelines_respect_dependencies_and_limits(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "stamps.log"
    cfg = make_config(db_url, default_types(stamp_handler(log, "--sleep", "0.15")))
    async with opened(cfg) as store:
        ids = await store.enqueue(list(DEALERS))
        assert len(ids) == 24
        stats = await run_all(store, cfg)
        jobs = await jobs_by(store)

    # every job, children included, ran in this one call, and succeeded
    assert {j.state for j in jobs.values()} == {"succeeded"}, jobs
    assert all(j.attempts == 1 for j in jobs.values())
    assert stats.total_jobs == 24
    assert stats.processed_jobs == 24
    assert stats.successful_jobs == 24
    assert stats.failed_jobs == stats.blocked_jobs == stats.retried_jobs == 0
    assert stats.dealers_processed == 6
    assert stats.dependency_violations == 0
    assert stats.success_rate == 1.0
    assert stats.processing_time_ms > 0

    span = spans(log)
    assert set(span) == {(d, t) for d in DEALERS for t in PARENTS}
    assert all(end is not None for _s, end in span.values())
    check_order(span)
    most_dealers, most_per_dealer = peak_concurrency(span)
    assert most_dealers <= 2, "more than max_concurrent_dealers=2 dealers ran at once"
    assert most_per_dealer <= 2, "more than max_concurrent_jobs_per_dealer=2 jobs of a dealer"
    assert most_dealers == 2, "two dealers were ready from the start but never overlapped"
    # (dealer_com and product_scrape become ready together; a per-dealer peak of 2 is
    # expected but not asserted, as process start-up jitter may keep them apart)


async def test_failing_dealer_blocks_only_its_descendants(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "stamps.log"
    handler = stamp_handler(log, "--sleep", "0.02", "--fail-for", "d3", "--exit", "3")
    cfg = make_config(db_url, default_types(handler))
    async with opened(cfg) as store:
        await store.enqueue(list(DEALERS))
        stats = await run_all(store, cfg)
        jobs = await jobs_by(store)

    bad = jobs[("d3", "homenet")]
    assert bad.state == "failed"
    assert bad.attempts == 1  # exit 3 is permanent: no retry
    assert "3" in (bad.last_error or "") and "failing on purpose" in (bad.last_error or "")
    for t in ("dealer_com", "product_scrape", "url_shorten"):
        assert jobs[("d3", t)].state == "blocked", jobs[("d3", t)]
    for d in DEALERS:
        if d != "d3":
            assert {jobs[(d, t)].state for t in PARENTS} == {"succeeded"}, d
    assert stats.failed_jobs == 1
    assert stats.blocked_jobs == 3
    assert stats.successful_jobs == 20
    assert stats.retried_jobs == 0
    assert stats.total_jobs == stats.processed_jobs == 21
    assert stats.dependency_violations == 0
    assert stats.dealers_processed == 6
    span = spans(log)
    assert [k for k in span if k[0] == "d3"] == [("d3", "homenet")]
    check_order({k: v for k, v in span.items() if k[0] != "d3"})


async def test_exit_codes_transient_and_permanent(db_url: str, tmp_path: Path) -> None:
    """75 is transient; 9 is transient only where retry_exit_codes lists it. A retry waits
    in the database (backoff 30 s): the run returns at once instead of sleeping."""
    log = tmp_path / "stamps.log"

    def failing(code: int) -> dict[str, Any]:
        return stamp_handler(log, "--sleep", "0", "--fail-for", "*", "--exit", str(code))

    job_types = {
        "tempfail": {"priority": 1, "handler": failing(75)},
        "nine_listed": {"priority": 2, "handler": failing(9), "retry_exit_codes": [9]},
        "nine": {"priority": 3, "handler": failing(9)},
        "after": {"priority": 4, "depends_on": ["tempfail"], "handler": failing(0)},
    }
    cfg = make_config(db_url, job_types, dealers=("d1",))
    async with opened(cfg) as store:
        await store.enqueue(["d1"])
        t0 = time.time()
        stats = await run_all(store, cfg)
        elapsed = time.time() - t0
        jobs = await jobs_by(store)

    assert elapsed < 15, f"the run took {elapsed:.1f}s: it waited for a 30 s backoff"
    temp = jobs[("d1", "tempfail")]
    assert temp.state == "retrying"
    assert temp.attempts == 1
    assert "75" in (temp.last_error or "")
    assert temp.run_after > t0 + 25, "backoff_initial_s=30 but run_after is not ~30 s ahead"
    listed = jobs[("d1", "nine_listed")]
    assert listed.state == "retrying" and "9" in (listed.last_error or "")
    assert listed.run_after > t0 + 25
    assert jobs[("d1", "nine")].state == "failed"
    assert jobs[("d1", "nine")].attempts == 1
    assert jobs[("d1", "after")].state == "waiting"  # its parent may still succeed
    assert stats.total_jobs == stats.processed_jobs == 3
    assert stats.retried_jobs == 2
    assert stats.failed_jobs == 1
    assert stats.successful_jobs == 0
    assert stats.blocked_jobs == 0


async def test_a_handler_is_done_when_it_exits_whatever_its_children_hold(
    db_url: str, tmp_path: Path
) -> None:
    # Its stderr was a pipe read to its end: a child left in the background (`cmd &`) held
    # it open, and a handler that had exited 0 stayed running until its timeout, then was
    # retried as "timed out". Its last stderr line is the job's error, without the colours.
    def sh(script: str) -> dict[str, Any]:
        return {"exec": ["sh", "-c", script]}

    job_types = {
        "daemonizes": {"priority": 1, "handler": sh("sleep 30 & exit 0"), "timeout_s": 20},
        "colours": {"priority": 2, "handler": sh(
            "sleep 30 & printf '\\033[31mfeed \\033[1mgone\\033[0m\\n' >&2; exit 3"),
            "timeout_s": 20},
    }
    cfg = make_config(db_url, job_types, dealers=("d1",))
    async with opened(cfg) as store:
        await store.enqueue(["d1"])
        t0 = time.monotonic()
        await run_all(store, cfg)
        elapsed = time.monotonic() - t0
        jobs = await jobs_by(store)
    assert elapsed < 10, f"the run waited {elapsed:.1f}s for the handlers' children"
    assert jobs[("d1", "daemonizes")].state == "succeeded", jobs[("d1", "daemonizes")]
    colours = jobs[("d1", "colours")]
    assert colours.state == "failed" and colours.last_error == "exit code 3: feed gone", colours


async def test_timeout_kills_the_whole_process_group(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "stamps.log"
    pid_file = tmp_path / "child.pid"
    handler = stamp_handler(log, "--sleep", "30", "--child-pid-file", str(pid_file))
    job_types = {"hang": {"priority": 1, "handler": handler, "timeout_s": 0.5}}
    cfg = make_config(db_url, job_types, dealers=("d1",))
    async with opened(cfg) as store:
        await store.enqueue(["d1"])
        t0 = time.monotonic()
        stats = await run_all(store, cfg)
        elapsed = time.monotonic() - t0
        (job,) = await store.list_jobs()

    assert elapsed < 10, f"a 0.5 s timeout took {elapsed:.1f}s"
    assert job.state == "retrying"
    assert "timed out" in (job.last_error or "")
    assert stats.retried_jobs == 1 and stats.failed_jobs == 0
    assert pid_file.exists(), "the script was killed before it spawned its child"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:  # noqa: ASYNC110 — polls /proc
        await asyncio.sleep(0.05)
    assert not alive(pid), f"the script's child {pid} survived the timeout"
    assert [r[0] for r in read_log(log)] == ["start"]  # it never reached "end"


async def test_timeouts_are_per_job_and_per_type_within_one_batch(db_url: str) -> None:
    """Jobs claimed together share one timer per type: a slow job times out at its type's
    limit while its batch-mates that finished early are unaffected, and a job of another type
    started in the same batch keeps its own, longer limit."""
    handler = "tests.fixtures.handlers:sleepy"
    job_types = {
        "quick": {"priority": 1, "handler": handler, "timeout_s": 0.5},
        "steady": {"priority": 2, "handler": handler, "timeout_s": 5},
    }
    cfg = make_config(db_url, job_types, dealers=("fast1", "fast2", "slow1"))
    async with opened(cfg) as store:
        await store.enqueue(["fast1", "fast2", "slow1"], ["quick"])
        await store.enqueue(["fast1", "fast2"], ["steady"])
        t0 = time.monotonic()
        manager = MultiDealerDependencyManager(store, cfg, 10, 2)
        stats = await manager.process_multi_dealer_jobs()
        elapsed = time.monotonic() - t0
        jobs = await jobs_by(store)

    assert stats.total_jobs == 5, "all five jobs should start in one claim"
    slow = jobs[("slow1", "quick")]
    assert slow.state == "retrying" and slow.last_error == "timed out after 0.5s", slow
    assert slow.attempts == 1, "a timeout is charged an attempt (unlike a stop)"
    for key in [("fast1", "quick"), ("fast2", "quick"), ("fast1", "steady"),
                ("fast2", "steady")]:
        assert jobs[key].state == "succeeded", jobs[key]  # steady ran 1 s > quick's 0.5 s
    assert stats.retried_jobs == 1 and stats.successful_jobs == 4
    assert elapsed < 10, f"the slow job ran {elapsed:.1f}s, past its 0.5 s timeout"


async def test_abort_right_after_a_claim_releases_jobs_that_never_started(db_url: str) -> None:
    """abort() between a claim and its tasks' first step (a worker's second signal can land
    there): those tasks never run their code, so nothing recorded their jobs and run() waited
    for them forever, the jobs left `running` until their lease ran out. They are released
    like any aborted job: `retrying`, due at once, no attempt charged."""
    from dealertui.engine.events import EventBus, JobStarted

    cfg = make_config(db_url, default_types(f"{FIXTURE_HANDLERS}:ok"), dealers=("a1", "a2", "a3"))
    async with opened(cfg) as store:
        await store.enqueue(["a1", "a2", "a3"], ["homenet"])
        bus = EventBus()
        manager = MultiDealerDependencyManager(store, cfg, 10, 2, bus=bus, kind="worker")
        seen: list[int] = []

        def on_event(event: object) -> None:
            # JobStarted is emitted as each task is created: at the third, the first two
            # tasks exist and have not run a step yet
            if isinstance(event, JobStarted):
                seen.append(event.job_id)
                if len(seen) == 3:
                    manager.abort("second signal")

        bus.subscribe(on_event)
        with anyio.fail_after(30):
            stats = await manager.run(wait=True)
        jobs = {j.dealer_id: j for j in await store.list_jobs()}

    assert len(seen) == 3
    released = [j for j in jobs.values() if j.state == "retrying"]
    assert len(released) >= 2, jobs
    for j in released:
        assert j.attempts == 0 and j.locked_by is None and j.last_error == "second signal", j
    assert all(j.state in ("retrying", "succeeded") for j in jobs.values()), jobs
    assert stats.total_jobs == 3
