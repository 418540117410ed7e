"""Circuit breakers, kept in the database so every worker, cron run and console obeys one state.

Two levels (docs/design.md, "Resilience"), both opening on a failure *rate* over the last
`window_s`, the way resilience4j's failureRateThreshold + minimumNumberOfCalls do, so the
ordinary noise of a big fleet never adds up to a count that trips them:
- `type:<job_type>`: shared by all dealers; opens when at least `type_failure_rate` of the
  dealers that ran the type in the window had a failure, once at least `type_min_dealers`
  ran it. One dealer's broken feed is one dealer of many; a small fleet never reaches the
  minimum, and there each dealer's own breaker stops its calls;
- `dealer:<dealer_id>:<job_type>`: opens when at least `dealer_failure_rate` of that dealer's
  calls of the type failed, once it made at least `dealer_min_calls`.

closed --rate reached--> open --reset_timeout--> half_open (K trial jobs)
half_open --a trial succeeds--> closed;  half_open --a trial fails--> open.

Outcomes are counted in `breaker_calls`: per (job type, dealer) and bucket of window_s / 10,
added to once per batch of outcomes (successes by one INSERT ... SELECT over the batch's job
ids, so the hot path pays one statement, not a row in Python per job). The window is the
buckets that overlap the later of `now - window_s` and the moment the breaker last closed, so
a breaker that closes starts with a clean slate (to within a bucket). Rates are checked when
a failure is recorded: successes only lower them. pybreaker is not used: it counts failures of
one process's calls, not of jobs across a fleet, and does not await async callables.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.config import BreakerConfig
from dealertui.store.fastpath import fetch
from dealertui.store.idlists import in_list, list_value
from dealertui.store.schema import breakers

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def type_key(job_type: str) -> str:
    return f"type:{job_type}"


def dealer_key(dealer_id: str, job_type: str) -> str:
    return f"dealer:{dealer_id}:{job_type}"


@dataclass(frozen=True, slots=True)
class Gate:
    """What the claim must avoid, and the trial budget of half-open breakers."""

    blocked_types: list[str]
    blocked_pairs: list[str]  # "dealer_id:job_type"
    #: half-open breakers with trial slots left: (dealer_id or None, job_type, slots)
    trials: list[tuple[str | None, str, int]]


async def gate(conn: AsyncConnection, cfg: BreakerConfig, now: float) -> Gate:
    """Move due open breakers to half-open; return what the claim must skip."""
    # before every claim: the fast path (see fastpath.py)
    await fetch(
        conn,
        "UPDATE breakers SET state = 'half_open', trials = 0, updated_at = :now "
        "WHERE state = 'open' AND half_open_at <= :now",
        {"now": now},
    )
    rows = await fetch(
        conn, "SELECT dealer_id, job_type, state, trials FROM breakers WHERE state <> :closed",
        {"closed": CLOSED},
    )
    blocked_types: list[str] = []
    blocked_pairs: list[str] = []
    trials: list[tuple[str | None, str, int]] = []
    for dealer_id, job_type, state, n_trials in rows:
        left = cfg.half_open_max_jobs - n_trials if state == HALF_OPEN else 0
        if dealer_id is None:
            blocked_types.append(job_type)
        else:
            blocked_pairs.append(f"{dealer_id}:{job_type}")
        if left > 0:
            trials.append((dealer_id, job_type, left))
    return Gate(blocked_types, blocked_pairs, trials)


async def count_trials(
    conn: AsyncConnection, dealer_id: str | None, job_type: str, n: int, now: float
) -> None:
    key = type_key(job_type) if dealer_id is None else dealer_key(dealer_id, job_type)
    await conn.execute(
        text("UPDATE breakers SET trials = trials + :n, updated_at = :now WHERE key = :key"),
        {"n": n, "now": now, "key": key},
    )


async def record(
    conn: AsyncConnection,
    cfg: BreakerConfig,
    *,
    succeeded: Iterable[tuple[str, str]] = (),
    succeeded_ids: Sequence[int] = (),
    failed: Iterable[tuple[str, str]],
    now: float,
) -> list[tuple[str, str]]:
    """Count a batch of outcomes and update the breakers: *succeeded* and *failed* are
    (dealer_id, job_type) pairs, *succeeded_ids* jobs that just succeeded (their pairs are read
    only when a breaker is half-open). Returns (key, new state) for every transition."""
    failed = list(failed)
    succeeded = list(succeeded)
    if not failed and not succeeded and not succeeded_ids:
        return []
    await _count(conn, cfg, succeeded_ids, succeeded, failed, now)
    half_open = await fetch(conn, "SELECT 1 FROM breakers WHERE state = 'half_open' LIMIT 1")
    if not failed and not half_open:
        return []
    if succeeded_ids and half_open:
        succeeded += [
            (r[0], r[1])
            for r in await fetch(
                conn, f"SELECT dealer_id, job_type FROM jobs WHERE {in_list(conn, 'id')}",
                {"ids": list_value(conn, succeeded_ids)},
            )
        ]
    types = sorted({t for _, t in (*failed, *succeeded)})
    pairs = {f"{d}:{t}" for d, t in (*failed, *succeeded)}
    known = {
        r.key: r
        for r in await conn.execute(select(breakers).where(breakers.c.job_type.in_(types)))
        if r.dealer_id is None or f"{r.dealer_id}:{r.job_type}" in pairs
    }
    changes: list[tuple[str, str]] = []

    async def put(key: str, dealer_id: str | None, job_type: str, **values: Any) -> None:
        values["updated_at"] = now
        if key in known:
            await conn.execute(breakers.update().where(breakers.c.key == key).values(**values))
        else:
            await conn.execute(
                breakers.insert().values(key=key, dealer_id=dealer_id, job_type=job_type,
                                         **{"failures": 0, "calls": 0, "trials": 0, **values})
            )
        changes.append((key, values.get("state", "")))

    opened = {"state": OPEN, "opened_at": now, "half_open_at": now + cfg.reset_timeout_s,
              "trials": 0}
    closed = {"state": CLOSED, "failures": 0, "calls": 0, "window_started_at": now,
              "opened_at": None, "half_open_at": None, "trials": 0}
    # a half-open breaker decides on its trials
    for dealer_id, job_type in succeeded:
        for key, d in ((type_key(job_type), None), (dealer_key(dealer_id, job_type), dealer_id)):
            if key in known and known[key].state == HALF_OPEN:
                await put(key, d, job_type, **closed)
                known.pop(key)
    failed_keys = sorted({(d, t) for d, t in failed})
    decided: set[str] = set()
    for dealer_id, job_type in failed_keys:
        for key, d in ((type_key(job_type), None), (dealer_key(dealer_id, job_type), dealer_id)):
            if key in known and known[key].state == HALF_OPEN and key not in decided:
                await put(key, d, job_type, **opened)
                decided.add(key)
    for job_type in sorted({t for _, t in failed_keys}):
        tkey = type_key(job_type)
        trow = known.get(tkey)
        if tkey not in decided and (trow is None or trow.state == CLOSED):
            failing, active = await _dealers_failing(conn, cfg, job_type, _since(trow, cfg, now))
            if active >= cfg.type_min_dealers and failing / active >= cfg.type_failure_rate:
                await put(tkey, None, job_type, failures=failing, calls=active, **opened)
            elif trow is not None:
                await conn.execute(breakers.update().where(breakers.c.key == tkey)
                                   .values(failures=failing, calls=active))
        ids = sorted({d for d, t in failed_keys if t == job_type})
        since = {d: _since(known.get(dealer_key(d, job_type)), cfg, now) for d in ids}
        counts = await _calls_of(conn, cfg, job_type, since, now)
        for dealer_id in ids:
            dkey = dealer_key(dealer_id, job_type)
            drow = known.get(dkey)
            if dkey in decided or (drow is not None and drow.state != CLOSED):
                continue
            n_calls, n_failed = counts.get(dealer_id, (0, 0))
            if n_calls >= cfg.dealer_min_calls and n_failed / n_calls >= cfg.dealer_failure_rate:
                await put(dkey, dealer_id, job_type, failures=n_failed, calls=n_calls, **opened)
            elif drow is not None:
                await conn.execute(breakers.update().where(breakers.c.key == dkey)
                                   .values(failures=n_failed, calls=n_calls))
    return changes


#: a window is counted in this many buckets
BUCKETS = 10

#: per engine: the start of the bucket old rows were last deleted in (once a bucket suffices)
_pruned: WeakKeyDictionary[Any, float] = WeakKeyDictionary()


def bucket_s(cfg: BreakerConfig) -> float:
    return cfg.window_s / BUCKETS


async def _count(
    conn: AsyncConnection,
    cfg: BreakerConfig,
    succeeded_ids: Sequence[int],
    succeeded: list[tuple[str, str]],
    failed: list[tuple[str, str]],
    now: float,
) -> None:
    """Add the batch to its bucket of `breaker_calls`, and delete buckets past the window."""
    width = bucket_s(cfg)
    at = math.floor(now / width) * width
    # Pairs in one order on every worker: two batches adding to the same rows wait for each
    # other on Postgres instead of deadlocking.
    upsert = (
        "ON CONFLICT (job_type, at, dealer_id) DO UPDATE SET "
        "calls = breaker_calls.calls + excluded.calls, "
        "failures = breaker_calls.failures + excluded.failures"
    )
    if succeeded_ids:
        await fetch(
            conn,
            "INSERT INTO breaker_calls (job_type, at, dealer_id, calls, failures) "
            "SELECT job_type, CAST(:at AS DOUBLE PRECISION), dealer_id, count(*), 0 FROM jobs "
            f"WHERE {in_list(conn, 'id')} GROUP BY job_type, dealer_id "
            f"ORDER BY job_type, dealer_id {upsert}",
            {"at": at, "ids": list_value(conn, succeeded_ids)},
        )
    tally: dict[tuple[str, str], list[int]] = {}
    for pairs, failure in ((succeeded, 0), (failed, 1)):
        for dealer_id, job_type in pairs:
            n = tally.setdefault((job_type, dealer_id), [0, 0])
            n[0] += 1
            n[1] += failure
    if tally:
        await conn.execute(
            text("INSERT INTO breaker_calls (job_type, at, dealer_id, calls, failures) "
                 f"VALUES (:t, :at, :d, :calls, :failures) {upsert}"),
            [{"t": t, "at": at, "d": d, "calls": c, "failures": f}
             for (t, d), (c, f) in sorted(tally.items())],
        )
    engine = conn.sync_engine
    if _pruned.get(engine, -math.inf) < at:
        await fetch(conn, "DELETE FROM breaker_calls WHERE at < :old",
                    {"old": at - cfg.window_s - width})
        _pruned[engine] = at


def _since(row: Any, cfg: BreakerConfig, now: float) -> float:
    start = now - cfg.window_s
    if row is not None and row.window_started_at is not None:
        start = max(start, row.window_started_at)
    return start


async def _dealers_failing(
    conn: AsyncConnection, cfg: BreakerConfig, job_type: str, since: float
) -> tuple[int, int]:
    """(dealers with a failure, dealers that ran *job_type*) in the buckets since *since*."""
    rows = await fetch(
        conn,
        "SELECT count(*), coalesce(sum(CASE WHEN f > 0 THEN 1 ELSE 0 END), 0) FROM "
        "(SELECT dealer_id, sum(failures) AS f FROM breaker_calls "
        " WHERE job_type = :t AND at > :lo GROUP BY dealer_id) AS per_dealer",
        {"t": job_type, "lo": since - bucket_s(cfg)},
    )
    return int(rows[0][1]), int(rows[0][0])


async def _calls_of(
    conn: AsyncConnection, cfg: BreakerConfig, job_type: str, since: dict[str, float],
    now: float,
) -> dict[str, tuple[int, int]]:
    """(calls, failures) of *job_type* per dealer of *since*, in the buckets since its time."""
    width = bucket_s(cfg)
    rows = await fetch(
        conn,
        "SELECT dealer_id, at, calls, failures FROM breaker_calls "
        f"WHERE job_type = :t AND at > :lo AND {in_list(conn, 'dealer_id')}",
        {"t": job_type, "lo": now - cfg.window_s - width, "ids": list_value(conn, since)},
    )
    counts: dict[str, tuple[int, int]] = {}
    for dealer_id, at, calls, failures in rows:
        if at > since[dealer_id] - width:
            c, f = counts.get(dealer_id, (0, 0))
            counts[dealer_id] = (c + calls, f + failures)
    return counts


def describe(row: Any) -> str:
    """What a breaker's counts say: its dealer's calls, "5/5 failed (100%)", or the dealers
    that ran its type, "6/20 dealers failed (30%)"."""
    failures, calls = row["failures"], row["calls"]
    if not calls:  # a row from before rates were counted
        return f"{failures} failures"
    what = "" if row["dealer_id"] is not None else " dealers"
    return f"{failures}/{calls}{what} failed ({failures / calls:.0%})"


async def snapshot(conn: AsyncConnection) -> Sequence[Any]:
    """Every breaker row, for status, health, metrics and the console."""
    return (await conn.execute(select(breakers).order_by(breakers.c.key))).all()
