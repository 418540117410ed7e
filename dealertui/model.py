"""Plain data shared by every layer: job states, jobs, stats. No I/O here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


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


class Intent(StrEnum):
    """What a caller will do with the store it opens: the one question every opener answers."""

    #: only reads (status, graph, why, the read-only console): nothing is written, not the
    #: schema, not the config's dealers, not SQLite's journal mode; a database that does not
    #: exist, or has no dealertui schema, is refused (StoreUnavailable) instead of created
    READ = "read"
    #: reads and writes a database that must exist with our schema (runs, workers, operator
    #: actions); an older schema is brought up to date and the config's dealers are added
    WRITE = "write"
    #: as WRITE, but a missing database and schema are created (`init-db`, `enqueue`, the demo)
    CREATE = "create"


DEALER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


DEALER_ID_HINT = "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def is_valid_dealer_id(value: object) -> bool:
    """True when *value* is a dealer id docs/design.md allows."""
    return isinstance(value, str) and DEALER_ID_RE.fullmatch(value) is not None


#: Unicode categories a dealer name must not contain: controls (ESC starts a terminal escape),
#: format characters (bidi overrides reorder what is shown), surrogates, line separators.
_UNSHOWABLE = ("Cc", "Cf", "Cs", "Zl", "Zp")


def dealer_name_problem(name: str | None) -> str | None:
    """Why *name* cannot be a dealer's name (one sentence), or None when it can."""
    if name is None or not any(unicodedata.category(c) in _UNSHOWABLE for c in name):
        return None
    return (f"invalid dealer name {name!r}: it must not contain control characters or "
            "terminal escapes.")


def shown_name(name: str | None) -> str:
    """A stored name for a terminal: every unshowable character as its Python escape
    (names stored before they were checked may carry terminal escapes)."""
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNSHOWABLE
        else c
        for c in name or ""
    )


@dataclass(frozen=True, slots=True)
class Dealer:
    id: str
    name: str | None
    created_at: float
    last_served_at: float | None = None
    #: set while the dealer is disabled: its jobs are kept and never claimed
    disabled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One run of one job type for one dealer, as the store holds it."""

    id: int
    dealer_id: str
    job_type: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_after: float
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    ready_at: float | None = None
    locked_by: str | None = None
    locked_until: float | None = None
    last_error: str | None = None
    blocked_reason: str | None = None
    payload: str | None = None
    pipeline_id: int | None = None  # the id of the first job of its enqueue for its dealer


class Claim(NamedTuple):
    """One claim of one job: the job and its fencing token (`jobs.claim_seq` as the claim
    left it). Every write of the run names it, and lands only while the job row still carries
    that token: the same job claimed again (by this worker or another) has a new one."""

    job_id: int
    token: int


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through
class ClaimedJob:       # object.__setattr__, ~3x slower, and a claim builds 1,000 at a time
    """A job moved to `running` by a claim, with the attempt it is now on."""

    id: int
    dealer_id: str
    job_type: str
    attempt: int
    max_attempts: int
    priority: int
    ready_at: float | None
    payload: str | None
    token: int  # the claim's fencing token (see Claim)

    @property
    def claim(self) -> tuple[int, int]:
        """(id, token): the claim as a plain tuple, equal to its Claim; the engine keys every
        run by it, and a NamedTuple's construction cost ~4x a tuple's on that path."""
        return (self.id, self.token)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    jobs: list[ClaimedJob]
    #: jobs that were `ready` while a parent had not succeeded; sent back to waiting
    dependency_violations: int = 0


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a worker reports for one job it ran, under the claim whose token it names."""

    job_id: int
    error: str | None = None
    #: seconds to wait before the next attempt (retry outcomes only)
    delay_s: float = 0.0
    #: the claim's fencing token; NO_TOKEN matches no claim, so an outcome that does not say
    #: which run it is from records nothing
    token: int = -1

    @property
    def claim(self) -> Claim:
        return Claim(self.job_id, self.token)


@dataclass(frozen=True, slots=True)
class CompletionResult:
    #: ids moved to the outcome's state (others were no longer held by this worker)
    done: list[int]
    #: children promoted to ready (success) or blocked (failure)
    promoted: list[int] = field(default_factory=list)
    blocked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    #: the claims (job id, token) whose outcome was recorded
    landed: set[tuple[int, int]] = field(default_factory=set)
    #: the blocked ones' (dealer_id, job_type), for events and metrics
    blocked_as: dict[int, tuple[str, str]] = field(default_factory=dict)
    #: the claim made in the same transaction (`JobStore.finish(then_claim=…)`), if asked
    claimed: ClaimResult | None = None


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A claim's arguments (see `JobStore.claim`), so that `finish` can make one too."""

    limit: int
    per_dealer: int
    lease_s: float
    max_dealers: int | None = None
    active_dealers: tuple[str, ...] = ()
    only_dealers: tuple[str, ...] | None = None
    #: the job types this worker can run (its config's); None: any. Jobs of other types are
    #: left for a worker that knows them (a rolling deploy adds or drops types).
    job_types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an operator action changed."""

    changed: list[int]
    followers: list[int] = field(default_factory=list)
    #: jobs the action named (or a rerun's roots) that it left as they were, and why
    held: dict[int, str] = field(default_factory=dict)
    #: the pipeline a `rerun --dealer` / `--pipeline` worked on
    pipeline: int | None = None

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.followers)


@dataclass(frozen=True, slots=True)
class Pause:
    scope: str  # "global" | "dealer" | "type"
    key: str
    by: str | None
    at: float
    reason: str | None = None


def empty_state_counts() -> dict[str, int]:
    """A by-state mapping with every state present (the JSON contract needs zeros too)."""
    return dict.fromkeys(ALL_STATES, 0)


@dataclass(slots=True)
class ProcessingStats:
    """What one engine run did: the seed's fields plus retries, rates and breakdowns.

    Both front ends render this same object, so the console and `--run-once --json` agree.
    """

    total_jobs: int = 0  # jobs claimed (started) in this run
    processed_jobs: int = 0  # jobs that reached an outcome (succeeded, failed or retrying)
    successful_jobs: int = 0
    failed_jobs: int = 0
    blocked_jobs: int = 0  # descendants blocked by this run's failures
    retried_jobs: int = 0  # outcomes that were rescheduled as `retrying`
    released_jobs: int = 0  # handed back unfinished (SIGTERM, hard stop): `retrying`, due now
    processing_time_ms: float = 0.0
    dealers_processed: int = 0
    dependency_violations: int = 0
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    by_dealer: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def throughput_jobs_per_s(self) -> float:
        secs = self.processing_time_ms / 1000
        return round(self.processed_jobs / secs, 1) if secs > 0 else 0.0

    @property
    def success_rate(self) -> float:
        """Successful share of processed jobs, 0..1 (1.0 when nothing was processed)."""
        if not self.processed_jobs:
            return 1.0
        return round(self.successful_jobs / self.processed_jobs, 4)

    def count(self, dealer_id: str, job_type: str, outcome: str, n: int = 1) -> None:
        for table, key in ((self.by_type, job_type), (self.by_dealer, dealer_id)):
            row = table.setdefault(key, {})
            row[outcome] = row.get(outcome, 0) + n

    def summary(self) -> dict[str, float | int]:
        """The `--run-once --json` object of docs/design.md (flat, stable keys)."""
        return {
            "total_jobs": self.total_jobs,
            "processed_jobs": self.processed_jobs,
            "successful_jobs": self.successful_jobs,
            "failed_jobs": self.failed_jobs,
            "blocked_jobs": self.blocked_jobs,
            "retried_jobs": self.retried_jobs,
            "released_jobs": self.released_jobs,
            "processing_time_ms": round(self.processing_time_ms, 1),
            "dealers_processed": self.dealers_processed,
            "dependency_violations": self.dependency_violations,
            "throughput_jobs_per_s": self.throughput_jobs_per_s,
            "success_rate": self.success_rate,
        }

    def to_dict(self) -> dict[str, object]:
        return {**self.summary(), "by_type": self.by_type, "by_dealer": self.by_dealer}


@dataclass(frozen=True, slots=True)
class GraphNode:
    key: str  # job id as text, or the job type name for a type graph
    label: str
    state: str | None = None
    dealer_id: str | None = None
    job_type: str | None = None
    pipeline_id: int | None = None


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """Nodes, parent→child edges and any cycles (each a list of node keys)."""

    nodes: dict[str, GraphNode]
    edges: list[tuple[str, str]]
    cycles: list[list[str]]
