"""What every handler sees (JobContext) and the two error classes it may raise."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dealertui.config import DemoConfig

#: every job's default logger (looked up once: getLogger per job is measurable in the bench)
JOB_LOGGER = logging.getLogger("dealertui.job")


class TransientError(Exception):
    """The job may succeed if tried again later (timeouts, 5xx, exit code 75...)."""


class PermanentError(Exception):
    """Trying again will not help (bad input, 4xx, a handler that cannot be found...)."""


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: int
    dealer_id: str
    job_type: str
    attempt: int
    #: the pipeline's `enqueue --payload` object, decoded; {} when it was given none
    payload: dict[str, Any] = field(default_factory=dict)
    logger: logging.Logger = JOB_LOGGER
    demo: DemoConfig = field(default_factory=DemoConfig)


def payload_of(stored: str | None) -> dict[str, Any]:
    """A job's stored payload as its handler gets it: a fresh dict per run (a handler may
    change its own), {} for none. Enqueue stores only objects; a row written otherwise (by
    hand, or an older release) fails its job permanently rather than the engine."""
    if not stored:
        return {}
    try:
        value = json.loads(stored)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise PermanentError(f"its payload is not a JSON object: {stored[:80]!r}")
    return value


Handler = Callable[[JobContext], Awaitable[Any]]
