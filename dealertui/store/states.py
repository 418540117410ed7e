"""The state lists the store's SQL needs, derived from model.STATES (never spelled out).

Each tuple is a set of state names for `.in_(...)`; `as_sql` renders one as an SQL list for
statements written as text. Both are computed once, at import: the hot statements stay
constant strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from dealertui.model import (
    ALL_STATES,
    SATISFIED_STATES,
    TERMINAL_STATES,
    UNFINISHED_STATES,
    JobState,
)

#: neither satisfying a child nor going to run: failed, cancelled, blocked
DEAD_STATES: tuple[str, ...] = tuple(
    s for s in ALL_STATES if s not in SATISFIED_STATES and s not in UNFINISHED_STATES
)
#: finished without satisfying anyone: failed, cancelled
FAILED_OR_CANCELLED: tuple[str, ...] = tuple(
    s for s in TERMINAL_STATES if s not in SATISFIED_STATES
)
#: will run, but no worker holds it: a failure above blocks these
PENDING_STATES: tuple[str, ...] = tuple(s for s in UNFINISHED_STATES if s != JobState.RUNNING)
#: a prerequisite job outside the pipeline may be linked to while in one of these
LINKABLE_STATES: tuple[str, ...] = (*UNFINISHED_STATES, *SATISFIED_STATES)
#: what an operator retry takes by filter; by id, a cancelled job too
RETRYABLE_STATES: tuple[str, ...] = tuple(s for s in DEAD_STATES if s != JobState.CANCELLED)
RETRYABLE_BY_ID: tuple[str, ...] = DEAD_STATES
#: what skip takes: anything that is neither running nor satisfied already
SKIPPABLE_STATES: tuple[str, ...] = tuple(
    s for s in ALL_STATES if s != JobState.RUNNING and s not in SATISFIED_STATES
)
#: what cancel leaves alone
UNCANCELLABLE_STATES: tuple[str, ...] = (*SATISFIED_STATES, JobState.CANCELLED.value)
#: the states of the happy path ready -> running -> succeeded and a job's birth (waiting or
#: ready): the job row's times record these, no job_events row is written (docs/design.md)
QUIET_STATES: tuple[str, ...] = (
    JobState.WAITING.value, JobState.READY.value, JobState.RUNNING.value,
    JobState.SUCCEEDED.value,
)
#: not finished: will run, or blocked until an operator acts (what status and the lanes count
#: across the whole history; the finished ones they count are the newest per dealer and type)
OPEN_STATES: tuple[str, ...] = tuple(s for s in ALL_STATES if s not in TERMINAL_STATES)
#: finished without succeeding: rare in a long history, so indexed apart (ix_jobs_unhappy)
UNHAPPY_STATES: tuple[str, ...] = tuple(s for s in TERMINAL_STATES if s not in SATISFIED_STATES
                                        or s == JobState.SKIPPED)
#: job_events.to_state values that end one attempt
OUTCOME_STATES: tuple[str, ...] = (
    JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.RETRYING.value,
)
#: job_events.to_state values of a failed attempt (with an error)
FAILURE_STATES: tuple[str, ...] = (JobState.FAILED.value, JobState.RETRYING.value)


def as_sql(states: Iterable[str]) -> str:
    """*states* as an SQL list literal, e.g. ('succeeded', 'skipped')."""
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"
