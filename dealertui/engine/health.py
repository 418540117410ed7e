"""`dealertui health`: is the queue being worked, and working?

Five checks over one read of the store (dealertui.store.reads.health_facts). A database
that cannot be read raises StoreUnavailable, which callers turn into exit code 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dealertui.errors import StoreUnavailable
from dealertui.model import HealthCheck, HealthFacts, HealthReport
from dealertui.store.breakers import describe
from dealertui.store.reads import health_facts
from dealertui.text import ago, plural, span

if TYPE_CHECKING:
    from dealertui.config import Config
    from dealertui.store import JobStore

HEALTHY, DEGRADED = 0, 1


@dataclass(frozen=True, slots=True)
class Check:
    """One health check: its name, whether it passed, and one sentence with the numbers."""

    name: str
    ok: bool
    detail: str


def _breakers(facts: HealthFacts, config: Config | None) -> Check:
    rows = facts["open_breakers"]
    if not rows:
        return Check("open_breakers", True, "no circuit breaker is open.")
    now = facts["now"]
    reset = config.circuit_breaker.reset_timeout_s if config is not None else None
    parts = []
    for b in rows[:5]:
        text = f"{b['key']} {b['state'].replace('_', '-')}"
        if b["opened_at"] is not None:
            text += f" since {ago(now - b['opened_at'])} ago"
            if b["state"] == "open" and reset is not None:
                left = b["opened_at"] + reset - now
                text += f", half-open in {span(left)}" if left > 0 else ", half-open due"
        text += f", {describe(b)}"
        parts.append(text)
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    verb = "is" if len(rows) == 1 else "are"
    return Check(
        "open_breakers", False,
        f"{plural(len(rows), 'circuit breaker')} {verb} not closed: {'; '.join(parts)}{more}.",
    )


def _stuck(facts: HealthFacts) -> Check:
    n = facts["stuck_jobs"]
    if not n:
        return Check("stuck_jobs", True, "no running job has an expired lease.")
    # stuck jobs have an expired lease, so there is an oldest one
    oldest = facts["oldest_expired_lease_at"] or facts["now"]
    return Check(
        "stuck_jobs", False,
        f"{plural(n, 'running job')} {'has' if n == 1 else 'have'} an expired lease "
        f"(the oldest expired {ago(facts['now'] - oldest)} ago); a running worker rescues them, "
        "or run 'dealertui reset-stuck'.",
    )


def _heartbeat(facts: HealthFacts, within_s: float) -> Check:
    now = facts["now"]
    due = facts["ready_due"] + facts["retrying_due"]
    newest, seen = facts["newest_heartbeat_at"], facts["last_seen_at"]
    last = (
        f"the newest live worker heartbeat was {ago(now - newest)} ago"
        if newest is not None
        else "no live worker is registered"
    )
    if facts["fresh_workers"]:
        return Check(
            "worker_heartbeat", True,
            f"{plural(facts['fresh_workers'], 'worker')} sent a heartbeat within "
            f"{span(within_s)} ({last}); {plural(due, 'job')} due.",
        )
    if not due:
        return Check(
            "worker_heartbeat", True,
            f"no job is due, so no heartbeat is needed ({last}).",
        )
    if facts["paused_globally"]:
        return Check(
            "worker_heartbeat", True,
            f"{plural(due, 'job')} due but everything is paused ({last}).",
        )
    if seen is not None and seen >= now - within_s:
        # a --run-once from cron that finished moments ago: work is being picked up
        return Check(
            "worker_heartbeat", True,
            f"{plural(due, 'job')} due; a worker or run was last seen {ago(now - seen)} ago, "
            f"within {span(within_s)}.",
        )
    seen_text = f", last seen {ago(now - seen)} ago" if seen is not None else ", none ever seen"
    consoles = facts.get("console_engines", 0)
    console_text = (
        f"; only {plural(consoles, 'console engine')} {'runs' if consoles == 1 else 'run'}, "
        "and a console's engine stops when its console closes" if consoles else ""
    )
    return Check(
        "worker_heartbeat", False,
        f"{plural(due, 'job')} {'is' if due == 1 else 'are'} due but no worker has sent a "
        f"heartbeat within {span(within_s)} ({last}{seen_text}{console_text}).",
    )


def _failure_rate(facts: HealthFacts, threshold: float, min_outcomes: int) -> Check:
    o = facts["outcomes"]
    bad = o["failed"] + o["retrying"]
    total = bad + o["succeeded"]
    window = span(facts["window_s"])
    if total < min_outcomes:
        return Check(
            "failure_rate", True,
            f"{plural(total, 'outcome')} in the last {window}, fewer than the "
            f"{min_outcomes} needed to judge the failure rate.",
        )
    rate = bad / total
    over = rate > threshold
    return Check(
        "failure_rate", not over,
        f"{bad} of {total} outcomes in the last {window} failed or are retrying "
        f"({rate:.0%}: {o['failed']} failed, {o['retrying']} retrying), "
        f"{'over' if over else 'within'} the {threshold:.0%} threshold.",
    )


async def _config_dealers(store: JobStore, config: Config) -> Check:
    """Dealers the config no longer names are still worked: said, not judged (ok either way:
    a config edit is no outage)."""
    from dealertui.engine.actions import unconfigured_dealers

    gone = unconfigured_dealers(config, await store.dealer_ids())
    if not gone:
        return Check("config_dealers", True, "every dealer in the database is in the config.")
    shown = ", ".join(gone[:10]) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
    return Check(
        "config_dealers", True,
        f"{plural(len(gone), 'dealer')} in the database {'is' if len(gone) == 1 else 'are'} "
        f"not in the config ({config.source}) and still worked: {shown}; 'dealertui dealers "
        "disable ID' or 'dealers remove ID'.",
    )


async def check_health(
    store: JobStore,
    config: Config | None,
    *,
    heartbeat_within_s: float = 120,
    failure_rate_threshold: float = 0.5,
    window_s: float = 900,
    min_outcomes: int = 10,
) -> tuple[int, list[Check]]:
    """Run every check: (0 healthy or 1 degraded, the checks in a fixed order).

    database (a read, and a write that is rolled back), open_breakers, stuck_jobs,
    worker_heartbeat (due work needs a worker seen within *heartbeat_within_s*; with none
    due, no heartbeat is fine), failure_rate (failed + retrying over the outcomes of the
    last *window_s*, judged from *min_outcomes* on); config_dealers, only when *config* names
    dealers, lists those it no longer names (it never fails). *config* also adds the
    breakers' time to half-open; None is allowed. StoreUnavailable propagates: the caller
    maps it to exit 3.
    """
    t0 = time.perf_counter()
    facts = await health_facts(store, heartbeat_within_s=heartbeat_within_s, window_s=window_s)
    ms = (time.perf_counter() - t0) * 1000
    answered = f"{store.db.url_description} ({store.db.dialect}) answered in {ms:.0f} ms"
    try:
        # a read-only file, role or standby answers every read, yet fails every claim and
        # outcome: only a write tells
        await store.check_writable()
        database = Check("database", True, f"{answered}; a write (rolled back) succeeded.")
    except StoreUnavailable as exc:
        database = Check("database", False, f"{answered}, but {exc}")
    checks = [
        database,
        _breakers(facts, config),
        _stuck(facts),
        _heartbeat(facts, heartbeat_within_s),
        _failure_rate(facts, failure_rate_threshold, min_outcomes),
    ]
    if config is not None and config.dealers:
        checks.append(await _config_dealers(store, config))
    return (HEALTHY if all(c.ok for c in checks) else DEGRADED), checks


def health_json(code: int, checks: list[Check]) -> HealthReport:
    """The `health --json` object: status, exit_code and every check (name, ok, detail)."""
    return {
        "status": "healthy" if code == HEALTHY else "degraded",
        "exit_code": code,
        "checks": [HealthCheck(name=c.name, ok=c.ok, detail=c.detail) for c in checks],
    }
