"""The job states: the one table every layer derives its state lists, styles, glyphs and
labels from (docs/design.md, "Job states")."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """The job state machine of docs/design.md ("Job states")."""

    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    #: released by an operator without running (with a reason); its children may run
    SKIPPED = "skipped"


class Role(StrEnum):
    """What a state means to the eye. Each front end maps a role to its own style (the console
    and a terminal report differ); states only name their role, so a new state reuses one."""

    IDLE = "idle"          # waiting on its parents
    QUEUED = "queued"      # ready, nothing holds it
    ACTIVE = "active"      # running now
    RETRY = "retry"        # failed transiently, will run again
    OK = "ok"
    BAD = "bad"            # failed: an operator should look
    HELD = "held"          # blocked by a failed ancestor
    OFF = "off"            # cancelled
    RELEASED = "released"  # skipped by an operator


@dataclass(frozen=True, slots=True)
class StateSpec:
    """Everything any layer knows about one job state (docs/design.md, "Job states")."""

    state: JobState
    glyph: str        # one cell, so graphs and lanes read without colour
    label: str        # at most 5 cells, for a lane cell
    #: never left without an operator
    finished: bool
    #: a child may run once every parent is in such a state
    satisfies: bool
    #: neither finished nor blocked: it will run if nothing goes wrong
    will_run: bool
    role: Role


#: The one table of job states: the SQL state lists, the console's and the reports' styles,
#: the graph's glyphs and the lanes' labels are derived from it (tests/test_vocabulary.py
#: fails when a front end's map lacks a state or a role).
STATES: dict[JobState, StateSpec] = {spec.state: spec for spec in (
    StateSpec(JobState.WAITING, "…", "wait", False, False, True, Role.IDLE),
    StateSpec(JobState.READY, "○", "ready", False, False, True, Role.QUEUED),
    StateSpec(JobState.RUNNING, "▶", "run", False, False, True, Role.ACTIVE),
    StateSpec(JobState.RETRYING, "↻", "retry", False, False, True, Role.RETRY),
    StateSpec(JobState.SUCCEEDED, "✔", "ok", True, True, False, Role.OK),
    StateSpec(JobState.FAILED, "✖", "FAIL", True, False, False, Role.BAD),
    StateSpec(JobState.BLOCKED, "⊘", "blkd", False, False, False, Role.HELD),
    StateSpec(JobState.CANCELLED, "−", "cncl", True, False, False, Role.OFF),
    StateSpec(JobState.SKIPPED, "↷", "skip", True, True, False, Role.RELEASED),
)}

ALL_STATES: tuple[str, ...] = tuple(s.value for s in STATES)
SATISFIED_STATES: tuple[str, ...] = tuple(s.value for s, v in STATES.items() if v.satisfies)
TERMINAL_STATES: tuple[str, ...] = tuple(s.value for s, v in STATES.items() if v.finished)
UNFINISHED_STATES: tuple[str, ...] = tuple(s.value for s, v in STATES.items() if v.will_run)
#: a glyph and a short label per state (str keys: rows carry the state as stored)
STATE_GLYPH: dict[str, str] = {s.value: v.glyph for s, v in STATES.items()}
STATE_LABEL: dict[str, str] = {s.value: v.label for s, v in STATES.items()}


def styles_by_state(role_style: dict[Role, str]) -> dict[str, str]:
    """A front end's style per state, from its style per role."""
    return {s.value: role_style[v.role] for s, v in STATES.items()}


def empty_state_counts() -> dict[str, int]:
    """A by-state mapping with every state present (the JSON contract needs zeros too)."""
    return dict.fromkeys(ALL_STATES, 0)
