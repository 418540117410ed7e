"""What every handler sees (JobContext) and the two error classes it may raise."""

from __future__ import annotations

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
    payload: Any = None
    logger: logging.Logger = JOB_LOGGER
    demo: DemoConfig = field(default_factory=DemoConfig)


Handler = Callable[[JobContext], Awaitable[Any]]
