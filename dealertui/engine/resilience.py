"""Backoff for retried jobs, computed by tenacity's wait strategies."""

from __future__ import annotations

from tenacity import RetryCallState, wait_exponential, wait_random

from dealertui.config import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds before attempt *attempt* + 1: exponential from backoff_initial_s, capped at
    backoff_max_s, plus up to backoff_jitter_s of random jitter."""
    wait = wait_exponential(
        multiplier=policy.backoff_initial_s, min=policy.backoff_initial_s,
        max=policy.backoff_max_s,
    ) + wait_random(0, policy.backoff_jitter_s)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(attempt, 1)
    return float(wait(state))
