"""The read model: every question the front ends ask of the store, one module per question.

Nothing here writes. jobs (jobs, edges, dealers, breakers, a job's detail), status, console
(one refresh), why (what holds a job), health (the facts `health` judges), errors (failures
grouped by cause) and fairness (shares and starvation). JobStore's read methods delegate
here; the functions taking a store run their own read transaction.
"""

from dealertui.store.reads.console import ConsoleSnapshot, LaneCell, console_snapshot
from dealertui.store.reads.errors import (
    error_class,
    error_groups,
    fingerprint,
    normalize_error,
)
from dealertui.store.reads.fairness import (
    STARVED_AFTER_S,
    fairness,
    oldest_claimable,
)
from dealertui.store.reads.health import health_facts
from dealertui.store.reads.jobs import JobDetail, job_detail
from dealertui.store.reads.why import WhyFacts, why_facts

__all__ = [
    "STARVED_AFTER_S",
    "ConsoleSnapshot",
    "JobDetail",
    "LaneCell",
    "WhyFacts",
    "console_snapshot",
    "error_class",
    "error_groups",
    "fairness",
    "fingerprint",
    "health_facts",
    "job_detail",
    "normalize_error",
    "oldest_claimable",
    "why_facts",
]
