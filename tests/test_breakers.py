"""Circuit breakers in the database, edge by edge, on both backends."""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import subprocess
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import storeops

from dealertui.config import BreakerConfig, ConfigError, load_config, parse_config
from dealertui.engine.explain import reasons
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.model import ClaimedJob, JobOutcome
from dealertui.store import Intent, JobStore, JobTypeRule, open_store, rules_from_config
from dealertui.store.breakers import describe
from dealertui.store.reads import why_facts
from dealertui.store.schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

RULES = {"feed": JobTypeRule(1, (), 1000), "other": JobTypeRule(2, (), 1000)}
CFG = BreakerConfig(
    window_s=60, reset_timeout_s=30, half_open_max_jobs=2, dealer_min_calls=5,
    dealer_failure_rate=0.5, type_min_dealers=2, type_failure_rate=0.25,
)


@asynccontextmanager
async def opened(
    db_url: str, clock: list[float], cfg: BreakerConfig = CFG,
    rules: dict[str, JobTypeRule] = RULES,
) -> Any:
    store = await JobStore.open(db_url, rules, clock=lambda: clock[0], breaker=cfg)
    try:
        yield store
    finally:
        await store.close()


async def fail_all(store: JobStore, dealers: list[str], *, per_dealer: int = 100) -> list[int]:
    """Claim every due job of *dealers* and report each as a transient failure."""
    result = await store.claim("w", 1000, per_dealer=per_dealer, lease_s=60,
                               only_dealers=dealers)
    ids = [j.id for j in result.jobs]
    await storeops.finish(store, "w", retry=[JobOutcome(i, "HTTP 503 from feed host", 0.0) for i in ids])
    return ids


def states(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["key"]: r["state"] for r in rows}


async def test_one_dealer_failing_50_times_opens_only_its_own_breaker(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None), ("d3", None)])
        for _ in range(50):
            await store.enqueue(["d1"], ["feed"])
        await store.enqueue(["d2", "d3"], ["feed"])
        clock[0] += 1
        failed = await fail_all(store, ["d1"])
        assert len(failed) == 50
        assert states(await store.breaker_states()) == {"dealer:d1:feed": "open"}
        # d1's feed jobs wait (ready, not charged); other dealers still run
        clock[0] += 1
        claimed = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert sorted(j.dealer_id for j in claimed.jobs) == ["d2", "d3"]
        jobs = await store.list_jobs(dealer_id="d1")
        assert {j.state for j in jobs} == {"ready"}
        assert {j.attempts for j in jobs} == {1}


async def test_failures_of_three_dealers_open_the_type_breaker(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([(f"d{i}", None) for i in range(1, 5)])
        for _ in range(2):
            await store.enqueue(["d1", "d2", "d3"], ["feed"])
        await store.enqueue(["d4"], ["feed", "other"])
        clock[0] += 1
        await fail_all(store, ["d1", "d2", "d3"])  # 6 failures from 3 dealers
        assert states(await store.breaker_states())["type:feed"] == "open"
        clock[0] += 1
        claimed = await store.claim("w", 100, per_dealer=100, lease_s=60)
        # the feed breaker holds every dealer's feed job; other types still run
        assert [(j.dealer_id, j.job_type) for j in claimed.jobs] == [("d4", "other")]
        assert (await store.list_jobs(dealer_id="d4", states=["ready"]))[0].attempts == 0


async def test_half_open_admits_exactly_k_then_success_closes(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([(f"d{i}", None) for i in range(1, 4)])
        for _ in range(3):
            await store.enqueue(["d1", "d2", "d3"], ["feed"])
        clock[0] += 1
        await fail_all(store, ["d1", "d2"])
        assert states(await store.breaker_states())["type:feed"] == "open"
        clock[0] += 10
        assert (await store.claim("w", 100, per_dealer=100, lease_s=60)).jobs == []
        clock[0] += CFG.reset_timeout_s  # past half_open_at
        trial = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(trial.jobs) == CFG.half_open_max_jobs
        assert states(await store.breaker_states())["type:feed"] == "half_open"
        assert (await store.claim("w", 100, per_dealer=100, lease_s=60)).jobs == []
        await storeops.complete(store, "w", [trial.jobs[0].id])
        assert states(await store.breaker_states())["type:feed"] == "closed"
        rest = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(rest.jobs) > 0


async def test_half_open_trial_failure_reopens(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None)])
        for _ in range(6):
            await store.enqueue(["d1"], ["feed"])
        clock[0] += 1
        await fail_all(store, ["d1"])
        assert states(await store.breaker_states()) == {"dealer:d1:feed": "open"}
        clock[0] += CFG.reset_timeout_s + 1
        trial = await store.claim("w", 100, per_dealer=100, lease_s=60)
        assert len(trial.jobs) == CFG.half_open_max_jobs
        await storeops.finish(store, "w", retry=[JobOutcome(trial.jobs[0].id, "still 503", 0.0)])
        rows = {r["key"]: r for r in await store.breaker_states()}
        assert rows["dealer:d1:feed"]["state"] == "open"
        assert rows["dealer:d1:feed"]["half_open_at"] == pytest.approx(
            clock[0] + CFG.reset_timeout_s
        )


async def test_async_handler_failures_are_counted(db_url: str, tmp_path: Any) -> None:
    """Failures raised by an async python handler reach the breaker through the engine."""
    cfg = parse_config(
        {
            "circuit_breaker": {"dealer_min_calls": 3, "type_min_dealers": 2},
            "retry": {"max_attempts": 10, "backoff_initial_s": 30, "backoff_jitter_s": 0},
            "job_types": {"feed": {"priority": 1, "handler": "tests.fixtures.handlers:flaky"}},
            "dealers": [{"id": "d1"}, {"id": "d2"}],
        },
        None,
    )
    cfg = dataclasses.replace(cfg, database_url=db_url)
    store = await open_store(cfg, Intent.CREATE)
    try:
        for _ in range(2):
            await store.enqueue(["d1", "d2"], ["feed"])
        stats = await MultiDealerDependencyManager(store, cfg, 2, 2).process_multi_dealer_jobs()
        assert stats.retried_jobs == 4
        assert states(await store.breaker_states()) == {"type:feed": "open"}
    finally:
        await store.close()


# --- rates, not counts: the defaults on a fleet ----------------------------------------------

#: the default config's four job types (homenet -> dealer_com, product_scrape -> url_shorten)
PIPELINE = rules_from_config(parse_config({}, None))


async def run_fleet(
    store: JobStore, clock: list[float], fails: Callable[[ClaimedJob], bool], *,
    per_step: int, until: Callable[[dict[str, str]], bool] | None = None,
) -> tuple[int, float]:
    """Claim up to *per_step* due jobs a simulated second, report each failing one (by
    *fails*) as a transient failure retried after 2^attempt s, the others as successes; stop
    when nothing is left to run, or *until* the breaker states say so. Every step asserts
    that no job waits behind a breaker that *until* does not expect. Returns (jobs that ended,
    the clock when it stopped)."""
    ended = 0
    for _ in range(500):
        got = await store.claim("w", per_step, per_dealer=2, lease_s=600)
        bad = [j for j in got.jobs if fails(j)]
        done = await store.finish(
            "w", succeeded=[j.claim for j in got.jobs if j not in bad],
            retry=[JobOutcome(j.id, f"HTTP 503 from {j.job_type}", 2.0**j.attempt, j.token)
                   for j in bad],
        )
        ended += len(got.jobs) - len(bad) + len(done.failed)
        now = states(await store.breaker_states())
        if until is not None and until(now):
            return ended, clock[0]
        assert set(now.values()) <= {"closed"}, (clock[0], now)
        if not got.jobs and not (await store.list_jobs(states=["retrying", "ready"])):
            return ended, clock[0]
        clock[0] += 1
    raise AssertionError("the fleet did not finish in 500 simulated seconds")


async def test_1000_dealers_at_5_percent_failures_run_to_the_end_with_no_breaker_open(
    db_url: str,
) -> None:
    """The issue's demo: 1,000 dealers, the default breakers, every attempt failing with
    probability 0.05 (seeded). Counted failures opened homenet's, dealer_com's and
    product_scrape's shared breakers within 40 s; rates stay far below theirs."""
    rng = random.Random(1313)
    clock = [1000.0]
    async with opened(db_url, clock, BreakerConfig(), PIPELINE) as store:
        dealers = [f"d{i:04d}" for i in range(1000)]
        await store.add_dealers([(d, None) for d in dealers])
        await store.enqueue(dealers)
        ended, stopped = await run_fleet(store, clock, lambda j: rng.random() < 0.05,
                                         per_step=400)
        assert ended == 4000
        assert {j.state for j in await store.list_jobs()} == {"succeeded"}
        assert stopped - 1000 < BreakerConfig().window_s  # one window saw all of it
        # the window's counts were kept (closed rows say what they saw), and are not the
        # rows of every job: per (type, dealer) and tenth of the window
        async with store.db.engine.connect() as conn:
            from sqlalchemy import text
            n_rows, calls, failures = (await conn.execute(text(
                "SELECT count(*), sum(calls), sum(failures) FROM breaker_calls"))).one()
        assert calls == 4000 + failures and 150 < failures < 300, (calls, failures)
        assert n_rows <= calls
        # a window later, the next outcome deletes what fell out of it
        clock[0] += 2 * BreakerConfig().window_s
        await store.enqueue(["d0000"], ["homenet"])
        job = (await store.claim("w", 1, per_dealer=1, lease_s=60)).jobs[0]
        await store.finish("w", succeeded=[job.claim])
        async with store.db.engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM breaker_calls"))).scalar()
        assert left == 1


async def test_a_feed_failing_for_30_percent_of_dealers_opens_its_type_breaker_in_a_window(
    db_url: str,
) -> None:
    rng = random.Random(30)
    clock = [1000.0]
    async with opened(db_url, clock, BreakerConfig()) as store:
        dealers = [f"d{i:03d}" for i in range(200)]
        broken = set(rng.sample(dealers, 60))
        await store.add_dealers([(d, None) for d in dealers])
        await store.enqueue(dealers, ["feed"])
        ended, at = await run_fleet(store, clock, lambda j: j.dealer_id in broken, per_step=10,
                                    until=lambda s: s.get("type:feed") == "open")
        assert at - 1000 < BreakerConfig().window_s
        row = {r["key"]: r for r in await store.breaker_states()}["type:feed"]
        assert row["calls"] >= BreakerConfig().type_min_dealers
        assert row["failures"] / row["calls"] >= BreakerConfig().type_failure_rate
        # the other dealers' feed jobs now wait behind it
        assert (await store.claim("w", 100, per_dealer=2, lease_s=60)).jobs == []
        assert ended < 200


async def test_one_dealers_bad_feed_opens_only_its_own_breaker(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock, BreakerConfig()) as store:
        dealers = [f"d{i:02d}" for i in range(40)]
        await store.add_dealers([(d, None) for d in dealers])
        for _ in range(3):
            await store.enqueue(dealers, ["feed", "other"])
        await run_fleet(store, clock, lambda j: (j.dealer_id, j.job_type) == ("d00", "feed"),
                        per_step=20, until=lambda s: bool(s))
        assert states(await store.breaker_states()) == {"dealer:d00:feed": "open"}
        await store.enqueue(dealers, ["feed"])
        claimed = await store.claim("w", 200, per_dealer=10, lease_s=60)
        ran = {(j.dealer_id, j.job_type) for j in claimed.jobs}
        assert {(d, "feed") for d in dealers} - ran == {("d00", "feed")}


async def test_a_dealer_failing_below_the_rate_keeps_its_breaker_closed(db_url: str) -> None:
    """8 failures in a minute used to open d1's breaker (5 did); 8 of 40 calls is 20%."""
    clock = [1000.0]
    async with opened(db_url, clock, BreakerConfig()) as store:
        await store.add_dealers([("d1", None)])
        for _ in range(40):
            await store.enqueue(["d1"], ["feed"])
        count, failed = itertools.count(), []
        await run_fleet(store, clock, lambda j: next(count) % 5 == 0 and not failed.append(j),
                        per_step=4)
        assert len(failed) >= 8 and clock[0] - 1000 < BreakerConfig().window_s
        assert set(states(await store.breaker_states()).values()) <= {"closed"}


async def test_explain_and_pane_text_say_the_rate(db_url: str) -> None:
    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None)])
        for _ in range(6):
            await store.enqueue(["d1"], ["feed"])
        clock[0] += 1
        await fail_all(store, ["d1"])
        [row] = await store.breaker_states()
        assert describe(row) == "6/6 failed (100%)"
        config = dataclasses.replace(parse_config({}, None), circuit_breaker=CFG)
        job_id = (await store.list_jobs(dealer_id="d1"))[0].id
        clock[0] += 10
        facts = await why_facts(store, job_id)
        assert facts is not None
        [reason] = [r for r in reasons(facts, config, clock[0]) if r.code == "breaker_open"]
        assert reason.text == ("circuit breaker dealer:d1:feed is open: 6/6 failed (100%); "
                               "half-open in 20s")


# --- the keys that counted failures ----------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [
    ("failure_threshold", "circuit_breaker.dealer_failure_rate and dealer_min_calls"),
    ("min_dealers", "circuit_breaker.type_failure_rate and type_min_dealers"),
])
def test_old_count_keys_are_refused_naming_their_replacement(
    tmp_path: Path, old: str, new: str
) -> None:
    bad = tmp_path / "dealertui.toml"
    bad.write_text(f"[circuit_breaker]\nwindow_s = 60\n{old} = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, env={})
    assert str(info.value) == (
        f"{bad}, line 3: circuit_breaker.{old} = 5 is no longer read: breakers open on a "
        f"failure rate now, so set {new} instead."
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "dealertui", "--config", str(bad), "status"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(info.value) in proc.stderr
    assert not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize("key", ["dealer_failure_rate", "type_failure_rate"])
def test_a_rate_above_one_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"circuit_breaker\.{key} must be a share between 0 "
                       r"and 1, not 1\.5\."):
        parse_config({"circuit_breaker": {key: 1.5}}, None)


async def test_a_version_4_database_gets_the_counts_on_first_use(db_url: str) -> None:
    """Schema 5 added breakers.calls and breaker_calls; an older database gets both, and its
    breakers (counted, not rated, when they opened) still say what they saw."""
    from sqlalchemy import text

    clock = [1000.0]
    async with opened(db_url, clock) as store:
        await store.add_dealers([("d1", None), ("d2", None)])
        async with store.db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE breaker_calls"))
            await conn.execute(text("ALTER TABLE breakers DROP COLUMN calls"))
            await conn.execute(text(
                "INSERT INTO breakers (key, dealer_id, job_type, state, failures, trials, "
                "updated_at) VALUES ('dealer:d2:feed', 'd2', 'feed', 'closed', 3, 0, 1000)"))
            await conn.execute(text("UPDATE meta SET value = '4' WHERE key = 'schema_version'"))
    async with opened(db_url, clock) as store:
        assert await storeops.schema_version(store) == SCHEMA_VERSION
        assert [describe(r) for r in await store.breaker_states()] == ["3 failures"]
        for _ in range(5):
            await store.enqueue(["d1"], ["feed"])
        await fail_all(store, ["d1"])
        assert states(await store.breaker_states())["dealer:d1:feed"] == "open"
