"""Why isn't it running? Every reason that holds for one job, in words, with the numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dealertui.config import Config
from dealertui.engine.holds import Controls
from dealertui.model import SATISFIED_STATES, TERMINAL_STATES
from dealertui.store.reads import WhyFacts
from dealertui.text import ago


@dataclass(frozen=True, slots=True)
class Reason:
    code: str  # stable for scripts: finished, waiting_on_parents, blocked_by_ancestor, ...
    text: str
    data: dict[str, Any]


def reasons(facts: WhyFacts, config: Config, now: float) -> list[Reason]:
    """Every reason that holds, most fundamental first."""
    j = facts.job
    out: list[Reason] = []
    if j.state in TERMINAL_STATES:
        extra = f": {j.last_error}" if j.state == "failed" and j.last_error else ""
        out.append(Reason("finished", f"it finished as {j.state}{extra}; retry it to run it "
                          "again" if j.state != "succeeded" else "it already succeeded",
                          {"state": j.state}))
        return out
    if j.state == "running":
        until = (j.locked_until or now) - now
        since = ago(now - (j.started_at or now))
        if until < 0:  # its worker stopped heartbeating: say so, not "expiring in 0s"
            out.append(Reason(
                "lease_expired",
                f"its lease expired {ago(-until)} ago: {j.locked_by}, which started it "
                f"{since} ago, stopped heartbeating; a running worker takes it back, or run "
                "'dealertui reset-stuck'",
                {"locked_by": j.locked_by, "started_at": j.started_at,
                 "locked_until": j.locked_until},
            ))
            return out
        out.append(Reason(
            "running",
            f"it is running: lease held by {j.locked_by} since {since}"
            f" ago, expiring in {ago(until)} unless its worker's heartbeat extends it",
            {"locked_by": j.locked_by, "started_at": j.started_at,
             "locked_until": j.locked_until},
        ))
        return out
    if facts.dead_ancestors:
        names = ", ".join(f"{a.job_type} #{a.id} ({a.state})" for a in facts.dead_ancestors)
        out.append(Reason("blocked_by_ancestor", f"blocked by {names}: retry it and this job "
                          "follows", {"ancestors": [a.id for a in facts.dead_ancestors]}))
    elif j.state == "blocked":
        out.append(Reason("blocked", f"blocked: {j.blocked_reason or 'a prerequisite failed'}",
                          {"reason": j.blocked_reason}))
    pending = [p for p in facts.parents if p.state not in SATISFIED_STATES]
    if pending and j.state in ("waiting", "blocked"):
        names = ", ".join(f"{p.job_type} #{p.id} ({p.state})" for p in pending)
        out.append(Reason("waiting_on_parents",
                          f"waiting on {len(pending)} of {len(facts.parents)} parents: {names}",
                          {"parents": {p.id: p.state for p in pending}}))
    controls = Controls.of(facts.pauses, facts.breakers)
    for hold in controls.holds(j.dealer_id, j.job_type, now=now,
                               half_open_max_jobs=config.circuit_breaker.half_open_max_jobs):
        out.append(Reason(hold.code, hold.text, hold.data))
    if j.state == "retrying":
        wait = j.run_after - now
        text = (f"backing off after attempt {j.attempts} of {j.max_attempts}: runs in "
                f"{ago(wait)}" if wait > 0 else "its backoff is over: it becomes ready at the "
                "next claim")
        if j.last_error:
            text += f" (last error: {j.last_error})"
        out.append(Reason("backoff", text, {"run_after": j.run_after, "attempts": j.attempts}))
    if j.state in ("ready", "retrying", "waiting"):
        for worker in facts.workers_without_type:
            out.append(Reason("type_not_in_worker_config",
                              f"job type {j.job_type} is not in this worker's config "
                              f"(worker {worker}): it leaves the job for a worker that has it",
                              {"worker": worker, "job_type": j.job_type}))
    limit = config.concurrency.max_concurrent_jobs_per_dealer
    if j.state in ("ready", "retrying") and facts.dealer_running >= limit:
        out.append(Reason("dealer_slots_full", f"dealer {j.dealer_id} already runs "
                          f"{facts.dealer_running} jobs, its limit of {limit}",
                          {"running": facts.dealer_running, "limit": limit}))
    if j.state == "ready" and not out:
        out.append(Reason("ready", f"ready: nothing holds it; {facts.ready_ahead} ready jobs "
                          "come before it and no worker has claimed it yet",
                          {"ready_ahead": facts.ready_ahead}))
    return out
