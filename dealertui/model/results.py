"""The shapes of what the read model and the engine answer: status, plans, blast radii, error
groups, audit entries, breakers, health facts. TypedDicts, because each is also a JSON
contract (README, "Machine-readable output"): `--json` prints them as they are, and mypy
checks every front end that reads them."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# `global` is a keyword: the functional form names the key as the JSON has it
Paused = TypedDict("Paused", {"global": bool, "dealers": list[str], "types": list[str],
                               "schedules": list[str]})


class WorkerStatus(TypedDict):
    id: str
    host: str
    pid: int
    kind: str  # worker | run-once | console | embedded
    started_at: float
    heartbeat_at: float
    running: int


class WorkerReport(WorkerStatus):
    #: its heartbeat is within a lease: one that is not has let its leases run out
    alive: bool


class RunSummary(TypedDict):
    run: str  # the run's id, as its log lines show it (the worker id's last part)
    worker_id: str
    kind: str
    host: str | None
    started_at: float
    finished_at: float | None
    exit_code: int | None
    stats: dict[str, Any] | None  # ProcessingStats as JSON


class StoreStatus(TypedDict):
    """What the store counts: every state by type and by dealer, pauses, workers, runs."""

    last_runs: list[RunSummary]
    disabled_dealers: list[str]
    total: int
    by_state: dict[str, int]
    by_type: dict[str, dict[str, int]]
    by_dealer: dict[str, dict[str, int]]
    paused: Paused
    workers: list[WorkerStatus]


class Fairness(TypedDict):
    share: float  # of the outcomes recorded in the window, 0..1
    outcomes: int
    since_last_slot_s: float | None
    oldest_ready_wait_s: float | None
    starved: bool


class StatusReport(TypedDict):
    """`status --json`: the store's counts with the fairness meter and the config's view."""

    last_runs: list[RunSummary]
    disabled_dealers: list[str]
    total: int
    by_state: dict[str, int]
    by_type: dict[str, dict[str, int]]
    by_dealer: dict[str, dict[str, int]]
    paused: Paused
    workers: list[WorkerReport]
    fairness: dict[str, Fairness]
    dealers_not_in_config: list[str]


class BreakerRow(TypedDict):
    key: str  # type:<job_type> or dealer:<dealer_id>:<job_type>
    dealer_id: str | None
    job_type: str
    state: str  # closed | open | half_open
    failures: int
    calls: int
    window_started_at: float | None
    opened_at: float | None
    half_open_at: float | None
    trials: int
    updated_at: float


class AuditEntry(TypedDict):
    id: int
    at: float
    who: str
    action: str
    target: str
    job_ids: list[int]
    count: int
    reason: str | None


class ErrorGroup(TypedDict):
    """One `analyze-errors` group: failures alike by class, job type and message."""

    signature: str
    error_class: str  # transient | permanent | timeout
    job_type: str
    count: int  # events
    first_at: float
    last_at: float
    example: str  # the newest raw message, secrets masked
    jobs: int
    job_ids: list[int]
    all_dealer_ids: list[str]
    fingerprint: str
    dealers: int
    dealer_ids: list[str]  # up to DEALER_IDS_SHOWN
    top_dealers: list[list[str | int]]  # up to 5 [dealer_id, failures], most first (JSON pairs)


class BlastJob(TypedDict):
    id: int
    dealer_id: str
    job_type: str
    state: str
    role: str  # changes | follows


class BlastGroup(TypedDict):
    dealer_id: str
    job_type: str
    role: str
    count: int


class BlastRadius(TypedDict):
    """What an action touches (usually measured on a preview), for its confirmation."""

    changes: int
    follows: int
    jobs: list[BlastJob]
    groups: list[BlastGroup]


class PlanJob(TypedDict):
    id: int
    job_type: str
    state: str


class HeldJob(PlanJob):
    reason: str


class PlanDealer(TypedDict):
    dealer_id: str
    waves: list[list[PlanJob]]
    held: list[HeldJob]


class Plan(TypedDict):
    """`--run-once --dry-run --json`."""

    dry_run: bool
    would_run: int
    held: int
    max_jobs_per_dealer: int
    dealers: list[PlanDealer]
    cycles: list[list[int]]


class HealthFacts(TypedDict):
    """What `health` judges, read in one transaction (store/insights.health_facts)."""

    now: float
    stuck_jobs: int
    oldest_expired_lease_at: float | None
    workers: list[dict[str, Any]]  # workers rows: live ones, then the newest stopped
    live_workers: int
    newest_heartbeat_at: float | None
    last_seen_at: float | None
    fresh_workers: int
    console_engines: int
    open_breakers: list[dict[str, Any]]
    outcomes: dict[str, int]
    window_s: float
    ready_due: int
    retrying_due: int
    ready_total: int
    paused_globally: bool


class HealthCheck(TypedDict):
    name: str
    ok: bool
    detail: str


class OldestFinished(TypedDict):
    id: int
    dealer_id: str
    job_type: str
    state: str
    finished_at: float | None


class Storage(TypedDict):
    """`health --detailed`: how big the history is (store/reads/storage.py)."""

    dialect: str
    size_bytes: int  # SQLite: the file with its -wal; Postgres: pg_database_size
    #: table -> rows: exact on SQLite up to 100,000 rows, else estimates (Postgres:
    #: pg_class.reltuples; SQLite: the span of the rowids), named in rows_estimated
    rows: dict[str, int]
    rows_exact: bool
    rows_estimated: list[str]
    oldest_finished_job: OldestFinished | None
    #: SQLite: pages free inside the file, and whether incremental auto-vacuum hands them back
    free_pages: NotRequired[int]
    page_size: NotRequired[int]
    auto_vacuum: NotRequired[str]  # none | full | incremental


class HealthReport(TypedDict):
    """`health --json`."""

    status: str  # healthy | degraded
    exit_code: int
    checks: list[HealthCheck]
    storage: NotRequired[Storage]  # with --detailed
