"""Jobs, claims, outcomes and what an engine run did: the data the store and the engine pass
each other. No I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


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
    #: the worker of its latest claim, kept once it finished (locked_by is the live lease)
    worker: str | None = None


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
        run by it, and a NamedTuple's construction costs ~4x a tuple's on that path."""
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


@dataclass(frozen=True, slots=True)
class Enqueued:
    """One pipeline an enqueue made."""

    dealer_id: str
    pipeline_id: int
    job_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A dealer an enqueue left alone: a pipeline of the same job types is still pending."""

    dealer_id: str
    pipeline_id: int
    unfinished: int

    def sentence(self) -> str:
        jobs = "job" if self.unfinished == 1 else "jobs"
        return (f"{self.dealer_id}: pipeline {self.pipeline_id} still has {self.unfinished} "
                f"unfinished {jobs}; skipped")


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What one enqueue did, per dealer: a new pipeline, or a skip naming the pending one."""

    enqueued: tuple[Enqueued, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def job_ids(self) -> list[int]:
        return [i for e in self.enqueued for i in e.job_ids]


def shown_payload(stored: str | None) -> Any:
    """A job's stored `enqueue --payload` as a reader shows it: decoded, {} for none, and a
    row that is not JSON (written by hand) as its text rather than hidden. (Its handler is
    stricter: handlers/base.payload_of.)"""
    if not stored:
        return {}
    try:
        return json.loads(stored)
    except ValueError:
        return stored
