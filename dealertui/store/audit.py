"""The audit log: one row per operator action, written in the action's own transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.model import AuditEntry
from dealertui.store.schema import audit_log


def target(
    *,
    job_ids: Sequence[int] | None = None,
    dealer_id: str | None = None,
    job_type: str | None = None,
    dealers_list: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    pipeline_id: int | None = None,
    schedule: str | None = None,
) -> str:
    """What an operator action was aimed at, in words, for the audit log."""
    parts = []
    if job_ids:
        parts.append(f"job {', '.join(map(str, job_ids[:10]))}" + (" …" if len(job_ids) > 10
                                                                   else ""))
    if dealers_list:
        shown = ", ".join(dealers_list[:5]) + (f" and {len(dealers_list) - 5} more"
                                               if len(dealers_list) > 5 else "")
        parts.append(f"dealer {shown}")
    if dealer_id:
        parts.append(f"dealer {dealer_id}")
    if pipeline_id is not None:
        parts.append(f"pipeline {pipeline_id}")
    if job_type:
        parts.append(f"type {job_type}")
    if types:
        parts.append(f"types {', '.join(types)}")
    if schedule:
        parts.append(f"schedule {schedule}")
    return "; ".join(parts) or "everything"


async def record(
    conn: AsyncConnection,
    *,
    by: str | None,
    action: str,
    target: str,
    job_ids: Sequence[int],
    reason: str | None,
    at: float,
    count: int | None = None,
) -> None:
    """One audit_log row for an operator action, in the action's own transaction. *count*
    instead of the ids: an action on more jobs than a row should list (a prune)."""
    if by is None:
        return  # the engine acting on its own (lease rescue, retries) is not an operator
    await conn.execute(
        insert(audit_log).values(
            at=at, who=by, action=action, target=target, job_ids=json.dumps(sorted(job_ids)),
            count=len(job_ids) if count is None else count, reason=reason,
        )
    )


async def entries(
    conn: AsyncConnection, *, limit: int, since: float | None
) -> list[AuditEntry]:
    """Operator actions, newest first."""
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    return [
        AuditEntry(id=r.id, at=r.at, who=r.who, action=r.action, target=r.target,
                   job_ids=json.loads(r.job_ids), count=r._mapping["count"], reason=r.reason)
        for r in await conn.execute(q)
    ]
