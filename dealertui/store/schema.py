"""Tables of the job store (SQLAlchemy Core), shared by SQLite and Postgres.

Times are float seconds since the epoch, passed in from Python: both dialects compare them the
same way, and tests can freeze the clock without touching the database's own `now()`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from dealertui.store.states import UNHAPPY_STATES, as_sql

#: Bumped whenever a table changes; `meta.schema_version` lets a later release migrate.
SCHEMA_VERSION = 8  # 2: audit_log; 3: no ix_jobs_state_type, ix_jobs_dealer_type on SQLite only;
# 4: jobs.claim_seq (fencing token), dealers.disabled_at; 5: breakers.calls, breaker_calls,
# jobs.pipeline_id, workers.job_types; 6: pipelines, newest_jobs, jobs.worker, ix_jobs_held;
# 7: schedules (schedule_ticks), retention, job lists, run history (see each table's comment);
# 8: the same, again: a development build had written 7 before those tables existed, and an
# upgrade runs only from an older version (outcome_tallies, schedules, runs.host, ...)

#: Indexes a later version dropped, and from which dialects; an upgrade removes them.
DROPPED_INDEXES = {"ix_jobs_state_type": ("sqlite", "postgresql"),
                   "ix_jobs_dealer_type": ("postgresql",)}


#: Columns a later version added to an existing table, as (table, column); an upgrade adds the
#: ones missing with the column's definition below (each must be nullable or have a default).
ADDED_COLUMNS = (("jobs", "claim_seq"), ("dealers", "disabled_at"), ("breakers", "calls"),
                 ("jobs", "pipeline_id"), ("workers", "job_types"), ("jobs", "worker"),
                 ("runs", "host"), ("runs", "exit_code"))

#: Indexes a later version added to a table an older one already had; an upgrade creates the
#: ones missing (create_all makes the indexes of new tables only).
ADDED_INDEXES = ("ix_jobs_held", "ix_pipelines_unsettled", "ix_pipelines_settled",
                 "ix_jobs_unhappy", "ix_pipelines_created", "ix_runs_started")

#: ix_jobs_unhappy's predicate. SQLite uses a partial index only for a query that repeats its
#: WHERE term exactly: the jobs list (store/reads/joblist.py) reads the terms off these indexes.
UNHAPPY_SQL = f"state IN {as_sql(UNHAPPY_STATES)}"

metadata = MetaData()

# BIGINT on Postgres, but SQLite only aliases rowid for the exact type INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

dealers = Table(
    "dealers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text),
    Column("created_at", Float, nullable=False),
    # round-robin: dealers with ready jobs are served least recently served first
    Column("last_served_at", Float, nullable=False, server_default=text("0")),
    # a disabled dealer keeps its rows but is never claimed (dealers disable/enable)
    Column("disabled_at", Float),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dealer_id", String(64), ForeignKey("dealers.id"), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False),
    Column("run_after", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # when the job last became ready: ready -> started latency is measured from here
    Column("ready_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("locked_by", String(128)),
    Column("locked_until", Float),
    Column("last_error", Text),
    Column("blocked_reason", Text),
    Column("payload", Text),
    # The fencing token: +1 at every claim, never reset (attempts are, by an operator retry).
    # Every write a run makes names the (id, claim_seq) it claimed, so the outcome of a run
    # that lost its claim (cancelled and retried, rescued, reset) lands nowhere.
    Column("claim_seq", Integer, nullable=False, server_default=text("0")),
    # The pipeline: the jobs one enqueue made for one dealer share the id of the first of
    # them, so `rerun --dealer` reruns one pipeline, not the newest job of each type (which
    # may mix pipelines). NULL on jobs enqueued before schema 4 (see store/pipelines.py).
    Column("pipeline_id", Id),
    # The worker of the latest claim, kept after the job finishes (locked_by is the live
    # lease): with the times above, the row records the happy path ready -> running ->
    # succeeded, which writes no job_events row.
    Column("worker", String(128)),
    # a dealer's ready jobs in claim order: the claim ranks them per dealer without a sort
    Index(
        "ix_jobs_ready",
        "dealer_id",
        "priority",
        "id",
        sqlite_where=text("state = 'ready'"),
        postgresql_where=text("state = 'ready'"),
    ),
    # Jobs that wait for a parent or an operator: with the three partial indexes beside it,
    # every unfinished job is found without reading the finished history.
    Index(
        "ix_jobs_held",
        "dealer_id",
        "id",
        sqlite_where=text("state IN ('waiting', 'blocked')"),
        postgresql_where=text("state IN ('waiting', 'blocked')"),
    ),
    Index(
        "ix_jobs_due_retry",
        "run_after",
        sqlite_where=text("state = 'retrying'"),
        postgresql_where=text("state = 'retrying'"),
    ),
    Index(
        "ix_jobs_running_lease",
        "locked_until",
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
    Index(
        "ix_jobs_running_dealer",
        "dealer_id",
        "locked_by",
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
    # The newest job per dealer and type (lanes, enqueue). SQLite only: a Postgres UPDATE that
    # changes `state` (a column of the partial indexes' predicates) cannot be HOT, so it
    # writes a new entry into every full index of the table; this one costs 20% of the server
    # time of `dealertui bench` there (1,307 -> 1,050 ms). SQLite updates only the indexes
    # whose columns change, so it costs nothing on the hot path there.
    Index("ix_jobs_dealer_type", "dealer_id", "job_type", "id").ddl_if(dialect="sqlite"),
    # `jobs --state failed` over a long history: newest failures without reading the
    # successes. Rows enter it only when they fail, are cancelled or skipped, so the claim's
    # hot path (ready -> running -> succeeded) never writes to it, on Postgres either (a
    # partial index gets an entry only for a row version that matches it).
    Index(
        "ix_jobs_unhappy",
        "id",
        sqlite_where=text(UNHAPPY_SQL),
        postgresql_where=text(UNHAPPY_SQL),
    ),
    # No index on state alone: every transition would have to move the job in it (the
    # partial indexes above only see the few states they cover), ~10-25% of `dealertui
    # bench` on SQLite; the reads it would serve (counts by state) scan the table instead.
)

pipelines = Table(
    "pipelines",
    metadata,
    # One row per pipeline (one enqueue for one dealer); `id` is the id of its first job.
    # Its jobs are the ones with this pipeline_id, all between first_job_id and last_job_id,
    # so the primary key of jobs finds them (Postgres has no index on jobs.pipeline_id: a
    # full index costs every job update there, see ix_jobs_dealer_type).
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("dealer_id", String(64), nullable=False),
    # its job types, sorted and comma-joined: "the same pipeline" for one-pending-per-dealer
    Column("types", Text, nullable=False),
    Column("first_job_id", Id, nullable=False),
    Column("last_job_id", Id, nullable=False),
    Column("jobs", Integer, nullable=False),
    Column("by", Text),  # who enqueued it (OS user@host), None for the engine itself
    Column("schedule", String(64)),  # the schedule that enqueued it, if one did
    Column("payload", Text),
    Column("created_at", Float, nullable=False),
    # Set once no job of it will run again (finished, or blocked for an operator), with its
    # worst outcome; an operator retry clears both (graphops.rearm). Retention reads these.
    Column("settled_at", Float),
    Column("outcome", String(16)),
    Index("ix_pipelines_dealer", "dealer_id", "id"),
    # `jobs --since D`: the first pipeline enqueued since then bounds the newest-first walk
    # (a job's created_at is its pipeline's)
    Index("ix_pipelines_created", "created_at"),
    Index(
        "ix_pipelines_open",
        "dealer_id",
        "types",
        sqlite_where=text("settled_at IS NULL"),
        postgresql_where=text("settled_at IS NULL"),
    ),
    # Retention (store/retention.py) walks the pipelines not yet settled oldest first, and
    # the settled ones per outcome from the longest settled: a pass reads what is past its
    # limit, never the history it keeps.
    Index(
        "ix_pipelines_unsettled",
        "id",
        sqlite_where=text("settled_at IS NULL"),
        postgresql_where=text("settled_at IS NULL"),
    ),
    Index(
        "ix_pipelines_settled",
        "outcome",
        "settled_at",
        "id",
        sqlite_where=text("settled_at IS NOT NULL"),
        postgresql_where=text("settled_at IS NOT NULL"),
    ),
)

newest_jobs = Table(
    "newest_jobs",
    metadata,
    # The newest job of each type per dealer, written by enqueue: lanes, status and
    # prerequisite links read these rows instead of a max(id) over every job ever run.
    Column("dealer_id", String(64), primary_key=True),
    Column("job_type", String(64), primary_key=True),
    Column("job_id", Id, nullable=False),
    sqlite_with_rowid=False,
)

job_deps = Table(
    "job_deps",
    metadata,
    Column("child_id", Id, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_id", Id, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    # children of a job: the primary key covers parents of a job
    Index("ix_job_deps_parent", "parent_id", "child_id"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, nullable=False),
    Column("dealer_id", String(64), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("worker", String(128)),
    Column("attempt", Integer),
    Column("error", Text),
    Column("message", Text),
    Index("ix_job_events_job", "job_id", "id"),
    Index("ix_job_events_at", "at"),
)

controls = Table(
    "controls",
    metadata,
    # scope: 'global' (key ''), 'dealer' (key = dealer id), 'type' (key = job type) or
    # 'schedule' (key = schedule name: its ticks are not fired; claims ignore this scope)
    Column("scope", String(16), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("paused", Integer, nullable=False),
    Column("by", Text),
    Column("at", Float, nullable=False),
    Column("reason", Text),
)

breakers = Table(
    "breakers",
    metadata,
    # key: 'type:<job_type>' or 'dealer:<dealer_id>:<job_type>'
    Column("key", String(160), primary_key=True),
    Column("dealer_id", String(64)),
    Column("job_type", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # closed | open | half_open
    # when it last opened (or was last checked while closed): `failures` of `calls` in the
    # window; for a type breaker, dealers with failures of the dealers that ran the type
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("calls", Integer, nullable=False, server_default=text("0")),
    Column("window_started_at", Float),
    Column("opened_at", Float),
    Column("half_open_at", Float),
    Column("trials", Integer, nullable=False, server_default=text("0")),
    Column("updated_at", Float, nullable=False),
)

breaker_calls = Table(
    "breaker_calls",
    metadata,
    # Outcomes per (job type, dealer) in time buckets of window_s / 10 (`at`: the bucket's
    # start), the sliding window breakers open on: one row per pair and bucket, added to once
    # per batch of outcomes, so a rate costs no scan of job_events. Rows older than the
    # window are deleted.
    Column("job_type", String(64), primary_key=True),
    Column("at", Float, primary_key=True),
    Column("dealer_id", String(64), primary_key=True),
    Column("calls", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    sqlite_with_rowid=False,
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("kind", String(16), nullable=False),  # worker | run-once | console
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
    # JSON list of the job types its config has: `why` names the workers that leave a job
    # alone because they do not know its type (a rolling deploy)
    Column("job_types", Text),
)

runs = Table(
    "runs",
    metadata,
    # one row per engine run (run-once, worker, console), so `status` can show the last ones
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("worker_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("stats", Text),
    Column("host", Text),  # the machine it ran on (NULL: recorded before schema 7)
    # what the process exited with (run-once: 0, 1 some job failed, 128 + a signal); NULL
    # for the console, and for a run recorded before schema 7
    Column("exit_code", Integer),
    # `runs` and `status` list runs by when they started (a row is written when one ends)
    Index("ix_runs_started", "started_at"),
)

outcome_tallies = Table(
    "outcome_tallies",
    metadata,
    # Outcomes per 10-second bucket and worker (store/tallies.py): throughput, success rate and
    # `health` read these instead of a job_events row per finished job.
    Column("at", Float, primary_key=True),
    Column("worker", String(128), primary_key=True),
    Column("succeeded", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("retried", Integer, nullable=False),
    sqlite_with_rowid=False,
)

schedules = Table(
    "schedules",
    metadata,
    # One row per [[schedules]] name an engine has seen: the newest tick it fired (or, until
    # the first firing, the tick due when it was first seen, which never fires) and running
    # totals, so `schedules` reads one row per schedule, never the history of its ticks.
    Column("name", String(64), primary_key=True),
    Column("first_seen_at", Float, nullable=False),
    Column("last_tick", Id, nullable=False),  # whole seconds since the epoch
    Column("last_fired_at", Float),
    Column("ticks", Id, nullable=False, server_default=text("0")),
    Column("pipelines", Id, nullable=False, server_default=text("0")),
    # dealers left out of a tick because their pipeline of the same types was unfinished
    Column("skipped", Id, nullable=False, server_default=text("0")),
)

schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    # One row per (schedule, tick) fired: the engine whose INSERT made the row fires the tick,
    # in the same transaction, so no tick fires twice however many engines race for it. The
    # newest KEEP_TICKS rows of a schedule are kept (store/schedules.py).
    Column("schedule", String(64), primary_key=True),
    Column("tick", Id, primary_key=True, autoincrement=False),
    Column("fired_at", Float, nullable=False),
    Column("worker", String(128), nullable=False),
    Column("pipelines", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # every operator action: who (OS user@host), what, on which jobs, when, why
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("who", Text, nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", Text, nullable=False),  # "dealer d004", "job 17", "everything", ...
    Column("job_ids", Text, nullable=False),  # JSON list of the jobs it changed
    Column("count", Integer, nullable=False),
    Column("reason", Text),
    Index("ix_audit_log_at", "at"),
)
