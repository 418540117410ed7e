"""Typed engine events and the in-process bus front ends subscribe to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from dealertui.model import ProcessingStats

log = logging.getLogger("dealertui.engine")


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: int
    dealer_id: str
    job_type: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class JobStarted(JobEvent):
    pass


@dataclass(frozen=True, slots=True)
class JobSucceeded(JobEvent):
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class JobFailed(JobEvent):
    error: str = ""


@dataclass(frozen=True, slots=True)
class JobRetrying(JobEvent):
    error: str = ""
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class JobBlocked(JobEvent):
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatsTick:
    stats: ProcessingStats
    in_flight: int
    at: float


@dataclass(frozen=True, slots=True)
class LeasesRescued:
    """Running jobs of a dead worker taken back (their lease expired)."""

    count: int
    at: float


@dataclass(frozen=True, slots=True)
class ScheduleFired:
    """This engine fired a schedule's tick (engine/schedules.py): pipelines it enqueued, and
    dealers it skipped because their pipeline of the same types was unfinished."""

    schedule: str
    tick: int
    enqueued: int
    skipped: int
    at: float


@dataclass(frozen=True, slots=True)
class HistoryPruned:
    """A retention pass deleted finished history (engine/pruning.py): what, in one phrase."""

    rows: int
    summary: str
    at: float


EngineEvent = (
    JobStarted | JobSucceeded | JobFailed | JobRetrying | JobBlocked | StatsTick | LeasesRescued
    | ScheduleFired | HistoryPruned
)
Subscriber = Callable[[EngineEvent], None]


class EventBus:
    """Synchronous fan-out: subscribers must be quick (queue the event, don't work on it)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add *fn*; returns a function that removes it again."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def emit(self, event: EngineEvent) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken view must not stop the engine
                log.exception("event subscriber %r failed", fn)
