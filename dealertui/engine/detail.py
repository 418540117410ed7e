"""A job as an operator asks about it: its detail (timeline, parents, children) with every
reason it is not running. Composed here once; the console's detail screen and `why` render
the same object, so they cannot disagree about a job."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dealertui.config import Config
from dealertui.engine.explain import Reason, reasons
from dealertui.model.jobs import shown_payload
from dealertui.store import JobStore
from dealertui.store.reads import JobDetail, job_detail, why_facts


@dataclass(frozen=True, slots=True)
class JobReport:
    detail: JobDetail
    reasons: list[Reason]
    now: float

    @property
    def payload(self) -> Any:
        """The job's `enqueue --payload`, decoded ({} for none): what its handler is given.
        A row that is not JSON (written by hand) is shown as its text, not hidden."""
        return shown_payload(self.detail.job.payload)

    def why_json(self) -> dict[str, Any]:
        """The `why --json` object: the job, and every reason that holds."""
        j = self.detail.job
        return {
            "job": {"id": j.id, "dealer_id": j.dealer_id, "job_type": j.job_type,
                    "state": j.state, "attempts": j.attempts, "max_attempts": j.max_attempts,
                    "payload": self.payload},
            "reasons": [asdict(r) for r in self.reasons],
        }


async def job_report(store: JobStore, config: Config, job_id: int) -> JobReport | None:
    """The job's detail and reasons, read at one moment of the store's clock; None when no
    such job exists."""
    detail = await job_detail(store, job_id)
    facts = await why_facts(store, job_id)
    if detail is None or facts is None:
        return None
    now = store.clock()
    return JobReport(detail, reasons(facts, config, now), now)


async def explain(store: JobStore, config: Config, job_id: int) -> dict[str, Any] | None:
    """`why --json` for *job_id*, or None when there is no such job."""
    report = await job_report(store, config, job_id)
    return report.why_json() if report is not None else None
