"""Circuit breakers, kept in the database so every worker, cron run and console obeys one state.

Two levels (DESIGN.md, "Resilience"):
- `type:<job_type>`: shared by all dealers; opens only when failures within the window come
  from at least `min_dealers` distinct dealers (capped by how many dealers exist), so one
  dealer's broken feed cannot stop everyone;
- `dealer:<dealer_id>:<job_type>`: that dealer alone.

closed --N failures in window--> open --reset_timeout--> half_open (K trial jobs)
half_open --a trial succeeds--> closed;  half_open --a trial fails--> open.

Failures are counted from job_events (the audit trail already has every failed attempt), from
the later of `now - window_s` and the moment the breaker last closed, so a breaker that closes
starts with a clean slate. pybreaker is not used: it counts failures of one process's calls,
not of jobs across a fleet, and does not await async callables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.config import BreakerConfig
from dealertui.store.fastpath import fetch
from dealertui.store.schema import breakers, dealers

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
    succeeded: Iterable[tuple[str, str]],
    failed: Iterable[tuple[str, str]],
    now: float,
) -> list[tuple[str, str]]:
    """Update breakers after a batch of outcomes ((dealer_id, job_type) pairs); the failures
    must already be in job_events. Returns (key, new state) for every transition."""
    failed = list(failed)
    succeeded = list(succeeded)
    if not failed and not succeeded:
        return []
    types = sorted({t for _, t in (*failed, *succeeded)})
    pairs = sorted({f"{d}:{t}" for d, t in (*failed, *succeeded)})
    known = {
        r.key: r
        for r in await conn.execute(
            select(breakers).where(
                breakers.c.job_type.in_(types)
            )
        )
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
                                         **{"failures": 0, "trials": 0, **values})
            )
        changes.append((key, values.get("state", "")))

    opened = {"state": OPEN, "opened_at": now, "half_open_at": now + cfg.reset_timeout_s,
              "trials": 0}
    closed = {"state": CLOSED, "failures": 0, "window_started_at": now, "opened_at": None,
              "half_open_at": None, "trials": 0}
    # a half-open breaker decides on its trials
    for dealer_id, job_type in succeeded:
        for key, d in ((type_key(job_type), None), (dealer_key(dealer_id, job_type), dealer_id)):
            if key in known and known[key].state == HALF_OPEN:
                await put(key, d, job_type, **closed)
                known.pop(key)
    failed_keys = {(d, t) for d, t in failed}
    for dealer_id, job_type in sorted(failed_keys):
        for key, d in ((type_key(job_type), None), (dealer_key(dealer_id, job_type), dealer_id)):
            if key in known and known[key].state == HALF_OPEN:
                await put(key, d, job_type, **opened)
                known[key] = None  # type: ignore[assignment]  # decided for this batch
    if not failed_keys:
        return changes
    n_dealers = (await conn.execute(select(func.count()).select_from(dealers))).scalar() or 1
    need_dealers = max(1, min(cfg.min_dealers, n_dealers))
    for job_type in sorted({t for _, t in failed_keys}):
        tkey = type_key(job_type)
        trow = known.get(tkey)
        counts = await _failures_by_dealer(conn, job_type, _since(trow, cfg, now))
        if (trow is None or trow.state == CLOSED) and (
            sum(counts.values()) >= cfg.failure_threshold and len(counts) >= need_dealers
        ):
            await put(tkey, None, job_type, failures=sum(counts.values()), **opened)
            known[tkey] = None  # type: ignore[assignment]
        for dealer_id in sorted({d for d, t in failed_keys if t == job_type}):
            dkey = dealer_key(dealer_id, job_type)
            drow = known.get(dkey, "missing")
            if drow is None:
                continue  # decided above
            since = _since(None if drow == "missing" else drow, cfg, now)
            n = (await _failures_by_dealer(conn, job_type, since, dealer_id)).get(dealer_id, 0)
            if (drow == "missing" or drow.state == CLOSED) and n >= cfg.failure_threshold:
                await put(dkey, dealer_id, job_type, failures=n, **opened)
            elif drow != "missing" and drow.state == CLOSED:
                await conn.execute(
                    breakers.update().where(breakers.c.key == dkey).values(failures=n)
                )
    return changes


def _since(row: Any, cfg: BreakerConfig, now: float) -> float:
    start = now - cfg.window_s
    if row is not None and row.window_started_at is not None:
        start = max(start, row.window_started_at)
    return start


async def _failures_by_dealer(
    conn: AsyncConnection, job_type: str, since: float, dealer_id: str | None = None
) -> dict[str, int]:
    sql = (
        "SELECT dealer_id, count(*) AS n FROM job_events "
        "WHERE job_type = :t AND at >= :since AND to_state IN ('failed', 'retrying') "
        "AND error IS NOT NULL"
    )
    params: dict[str, Any] = {"t": job_type, "since": since}
    if dealer_id is not None:
        sql += " AND dealer_id = :d"
        params["d"] = dealer_id
    rows = await conn.execute(text(sql + " GROUP BY dealer_id"), params)
    return {r.dealer_id: r.n for r in rows}


async def snapshot(conn: AsyncConnection) -> Sequence[Any]:
    """Every breaker row, for status, health, metrics and the console."""
    return (await conn.execute(select(breakers).order_by(breakers.c.key))).all()
