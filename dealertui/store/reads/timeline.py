"""A job's timeline: its job_events rows with the happy path put back from the job row.

The happy path (born waiting or ready, promoted to ready, claimed, succeeded) writes no
job_events row (docs/design.md, "Job states"): created_at, ready_at, started_at,
finished_at, worker and attempts on the row say when each happened. This puts those moves
back as events shaped like the stored ones (id None), so the detail and `why` show what they
showed when every move wrote a row. A retried job's earlier claims are not on the row: its
timeline shows their failures (stored) but not when each of them started.
"""

from __future__ import annotations

from typing import Any

from dealertui.model import SATISFIED_STATES, Job, JobState


def _event(job: Job, at: float, src: str | None, dst: str, **more: Any) -> dict[str, Any]:
    return {"id": None, "job_id": job.id, "dealer_id": job.dealer_id, "job_type": job.job_type,
            "at": at, "from_state": src, "to_state": dst, "worker": more.get("worker"),
            "attempt": more.get("attempt"), "error": None, "message": more.get("message")}


def _born(job: Job, parents: list[Job]) -> JobState:
    """Ready when every parent had succeeded (or was skipped) by the enqueue: a parent of
    its own pipeline never had, one of an earlier pipeline may have."""
    for p in parents:
        if p.pipeline_id == job.pipeline_id or p.state not in SATISFIED_STATES or (
            p.finished_at is None or p.finished_at > job.created_at
        ):
            return JobState.WAITING
    return JobState.READY


def timeline(job: Job, stored: list[dict[str, Any]], *, parents: list[Job]) -> list[dict[str, Any]]:
    """*stored* (oldest first) with the happy-path moves the row records, in time order."""
    seen = {(e["to_state"], e["at"]) for e in stored}
    made: list[dict[str, Any]] = []
    if not any(e["from_state"] is None for e in stored):
        born = _born(job, parents)
        made.append(_event(job, job.created_at, None, born, message="enqueued"))
        if born == JobState.WAITING and job.ready_at is not None and (
            (JobState.READY, job.ready_at) not in seen
        ):
            made.append(_event(job, job.ready_at, JobState.WAITING, JobState.READY))
    if job.started_at is not None and (JobState.RUNNING, job.started_at) not in seen:
        made.append(_event(job, job.started_at, JobState.READY, JobState.RUNNING,
                           worker=job.worker, attempt=job.attempts))
    if job.state == JobState.SUCCEEDED and job.finished_at is not None and (
        (JobState.SUCCEEDED, job.finished_at) not in seen
    ):
        made.append(_event(job, job.finished_at, JobState.RUNNING, JobState.SUCCEEDED,
                           worker=job.worker, attempt=job.attempts))
    # stored rows keep their order (ids); a made one goes before the first stored row later
    # than it, or at the same time when that row moves on from where the made one arrives
    # (born ready, then claimed); otherwise after (a due retry is promoted, then claimed)
    out = [e for e in made if e["from_state"] is None]  # nothing comes before the birth
    pending = sorted((e for e in made if e["from_state"] is not None), key=lambda e: e["at"])
    for e in stored:
        while pending and (pending[0]["at"] < e["at"] or (
            pending[0]["at"] == e["at"] and pending[0]["to_state"] == e["from_state"]
        )):
            out.append(pending.pop(0))
        out.append(e)
    return out + pending
