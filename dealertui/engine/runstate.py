"""What the parts of a run share: its claims, its outcomes, and the state every part reads.

MultiDealerDependencyManager (manager.py) is built from one class per part of a run (runs.py,
claiming.py, outcomes.py, leases.py), each a base of the next, so that a job's path through
them is plain method calls and attribute reads on one object: no extra await, allocation or
indirection per job. RunState declares the attributes they share; the manager's __init__ sets
them.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass

import anyio

from dealertui.config import Config
from dealertui.engine.events import EventBus
from dealertui.handlers import HandlerRegistry
from dealertui.model import ClaimedJob, ProcessingStats
from dealertui.store import JobStore

#: a run's claim, (job id, fencing token): what the manager keys each run by
Claim = tuple[int, int]



@dataclass(slots=True)
class Outcome:
    job: ClaimedJob
    claim: Claim  # the run's (job id, token)
    kind: str  # ok | failed | retry | release | lost
    error: str | None
    duration_s: float


class RunState:
    """The attributes of a run, declared once for every part that reads them (manager.py's
    __init__ sets them and says what each is for)."""

    store: JobStore
    config: Config
    max_concurrent_dealers: int
    max_concurrent_jobs_per_dealer: int
    lease_s: float
    bus: EventBus
    kind: str
    worker_id: str
    only_dealers: list[str] | None
    handlers: HandlerRegistry
    _job_types: tuple[str, ...]
    latencies_ms: deque[float]
    _stats: ProcessingStats
    _dealers_seen: set[str]
    _in_flight: dict[Claim, ClaimedJob]
    _dealer_load: Counter[str]
    _pending: list[Outcome]
    _wake: anyio.Event
    _have_outcomes: anyio.Event
    _batch_ended: anyio.Event
    _idle: anyio.Event
    _flushing: bool
    _job_tasks: dict[Claim, asyncio.Task[None]]
    _job_runs: dict[int, Claim]
    _timed_out: set[Claim]
    _lost: set[Claim]
    _aborting: str | None
    _limit: int | None
    _flush_claimed_all: bool
    _claiming: bool
    _paused: bool
    _stopping: bool
    _started_at: float
    _t0: float


    @property
    def _busy(self) -> bool:
        """Jobs still running, or outcomes not yet recorded (which may promote children)."""
        return bool(self._in_flight or self._pending or self._flushing)
