"""JobStore: the one API every front end and the engine use to read and move jobs.

Each public method that changes state is one transaction (retried as a whole on transient
faults) and writes a job_events row per transition.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateColumn

from dealertui.config import BreakerConfig
from dealertui.errors import StoreUnavailable, UsageError
from dealertui.model import (
    DEALER_ID_HINT,
    SATISFIED_STATES,
    UNFINISHED_STATES,
    ActionResult,
    Claim,
    ClaimRequest,
    ClaimResult,
    CompletionResult,
    Dealer,
    Job,
    JobOutcome,
    JobState,
    Pause,
    dealer_name_problem,
    empty_state_counts,
    is_valid_dealer_id,
)
from dealertui.store import breakers, claims, dealerops, fastpath, graphops, pipelines
from dealertui.store.db import Database
from dealertui.store.graphops import Event
from dealertui.store.idlists import at_claims, claims_params, one_of
from dealertui.store.schema import (
    ADDED_COLUMNS,
    DROPPED_INDEXES,
    SCHEMA_VERSION,
    audit_log,
    controls,
    dealers,
    job_deps,
    job_events,
    jobs,
    meta,
    metadata,
    runs,
    workers,
)


@dataclass(frozen=True, slots=True)
class JobTypeRule:
    """What the store needs to know of a job type to enqueue it."""

    priority: int
    depends_on: tuple[str, ...] = ()
    max_attempts: int = 5


#: how many engine runs `status` reports, newest first
LAST_RUNS_SHOWN = 5


def _ids(name: str = "ids") -> Any:
    return bindparam(name, expanding=True)


def _target(
    *,
    job_ids: Sequence[int] | None = None,
    dealer_id: str | None = None,
    job_type: str | None = None,
    dealers_list: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    pipeline_id: int | None = None,
) -> str:
    """What an operator action was aimed at, in words, for the audit log."""
    parts = []
    if job_ids:
        parts.append(f"job {', '.join(map(str, job_ids[:10]))}" + (" …" if len(job_ids) > 10
                                                                   else ""))
    if dealers_list:
        shown = ", ".join(dealers_list[:5]) + (f" and {len(dealers_list) - 5} more"
                                               if len(dealers_list) > 5 else "")
        parts.append(f"dealer {shown}")
    if dealer_id:
        parts.append(f"dealer {dealer_id}")
    if pipeline_id is not None:
        parts.append(f"pipeline {pipeline_id}")
    if job_type:
        parts.append(f"type {job_type}")
    if types:
        parts.append(f"types {', '.join(types)}")
    return "; ".join(parts) or "everything"


def _job(row: Any) -> Job:
    return Job(**{k: getattr(row, k) for k in Job.__slots__})


class JobStore:
    """Dealers, jobs and their dependency edges on SQLite or Postgres."""

    def __init__(
        self,
        db: Database,
        rules: Mapping[str, JobTypeRule],
        *,
        clock: Callable[[], float] = time.time,
        breaker: BreakerConfig | None = None,
    ) -> None:
        self.db = db
        self.rules = dict(rules)
        self.clock = clock
        self.breaker_cfg = breaker or BreakerConfig()

    @classmethod
    async def open(
        cls,
        url: str,
        rules: Mapping[str, JobTypeRule],
        *,
        create: bool = True,
        retry_budget_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        breaker: BreakerConfig | None = None,
        read_only: bool = False,
    ) -> JobStore:
        """Connect to *url*; create the schema on first use unless *create* is False. With
        *create*, a database this user cannot write is refused here; *read_only* (for
        commands that only read; implies not *create*) opens it without writing anything."""
        create = create and not read_only
        store = cls(
            Database(url, retry_budget_s=retry_budget_s, create=create, read_only=read_only),
            rules, clock=clock, breaker=breaker,
        )
        try:
            if create:  # before any connection, which would leave a -wal and -shm behind
                store._refuse_unwritable()
            await store.db.preflight(create)
            if create:
                await store.init_schema()
                await store.check_writable()
            else:
                await store.check_schema()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.dispose()

    # -- schema -------------------------------------------------------------------------------

    async def init_schema(self) -> bool:
        """Create every table and index that is missing; True when the schema was new."""

        async def tx(conn: AsyncConnection) -> bool:
            if conn.dialect.name == "postgresql":
                # Two workers starting together must not both run CREATE TABLE.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7262001)"))
            version = await self._read_version(conn)
            if version is not None:
                self._check_version(version)
                if version < SCHEMA_VERSION:
                    # changes so far added tables and columns and dropped indexes
                    for name, dialects in DROPPED_INDEXES.items():
                        if conn.dialect.name in dialects:
                            await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
                    await self._add_missing_columns(conn)
                    await conn.run_sync(metadata.create_all)
                    await conn.execute(
                        update(meta).where(meta.c.key == "schema_version")
                        .values(value=str(SCHEMA_VERSION))
                    )
                return False
            await self._refuse_foreign_tables(conn)
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION))
            )
            return True

        return await self.db.run(tx)

    @staticmethod
    async def _add_missing_columns(conn: AsyncConnection) -> None:
        """ALTER TABLE … ADD COLUMN for each of ADDED_COLUMNS an older schema lacks."""
        def missing(sync: Any) -> list[tuple[str, str]]:
            insp = inspect(sync)
            have = {t: {c["name"] for c in insp.get_columns(t)}
                    for t in {t for t, _ in ADDED_COLUMNS} if insp.has_table(t)}
            return [(t, c) for t, c in ADDED_COLUMNS if t in have and c not in have[t]]

        for table, column in await conn.run_sync(missing):
            ddl = CreateColumn(metadata.tables[table].c[column]).compile(dialect=conn.dialect)
            await conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {ddl}"))

    async def _refuse_foreign_tables(self, conn: AsyncConnection) -> None:
        """A database without our meta table must not already hold tables we would create
        beside (create_all skips a table whose name exists, whatever its columns); a SQLite
        file is one application's, so there any table at all means it is not ours."""
        existing = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        clash = existing if conn.dialect.name == "sqlite" else existing & set(metadata.tables)
        if clash:
            raise self.db.foreign(clash)

    async def check_writable(self) -> None:
        """Raise StoreUnavailable (lasting) unless a write succeeds, in a transaction that is
        rolled back. A read-only file, a role without write privilege or a read-only standby
        answer every read, and an up-to-date schema needs no write: `init-db` said "database
        ready" and a worker started, then failed every claim."""
        self._refuse_unwritable()

        async def tx(conn: AsyncConnection) -> None:
            await conn.execute(update(meta).where(meta.c.key == "schema_version")
                               .values(value=meta.c.value))

        await self.db.rolling_back().run(tx)

    def _refuse_unwritable(self) -> None:
        refusal = self.db.write_refusal()
        if refusal is not None:
            raise StoreUnavailable(
                f"cannot write the database {self.db.url_description}: {refusal}.", lasting=True)

    async def check_schema(self) -> None:
        async def tx(conn: AsyncConnection) -> int | None:
            version = await self._read_version(conn)
            if version is None:  # not "run init-db" where init-db would refuse too
                await self._refuse_foreign_tables(conn)
            return version

        version = await self.db.run(tx, write=False)
        if version is None:
            raise StoreUnavailable(
                f"the database {self.db.url_description} has no dealertui schema; "
                "run 'dealertui init-db' first."
            )
        self._check_version(version)

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the database {self.db.url_description} has schema version {version}, newer "
                f"than this dealertui supports ({SCHEMA_VERSION}); upgrade dealertui."
            )

    async def _read_version(self, conn: AsyncConnection) -> int | None:
        has_meta = await conn.run_sync(
            lambda sync: sync.dialect.has_table(sync, "meta")
        )
        if not has_meta:
            return None
        value = (
            await conn.execute(select(meta.c.value).where(meta.c.key == "schema_version"))
        ).scalar()
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise StoreUnavailable(
                f"the database {self.db.url_description} has an unreadable schema version "
                f"{value!r} in its meta table."
            ) from None

    async def schema_version(self) -> int | None:
        return await self.db.run(self._read_version, write=False)

    # -- dealers ------------------------------------------------------------------------------

    async def add_dealers(
        self, items: Iterable[tuple[str, str | None]], *, by: str | None = None
    ) -> int:
        """Add dealers (id, name); an existing id keeps its jobs and takes the new name.
        With *by* (an operator), each dealer added and each name changed is audited."""
        rows = list(items)
        for dealer_id, name in rows:
            if not is_valid_dealer_id(dealer_id):
                raise UsageError(
                    f"invalid dealer id {dealer_id!r}: {DEALER_ID_HINT}."
                )
            if (problem := dealer_name_problem(name)) is not None:
                raise UsageError(problem)
        if not rows:
            return 0
        now = self.clock()

        async def tx(conn: AsyncConnection) -> int:
            existing = await self._existing_dealers(conn, [r[0] for r in rows])
            new = [
                {"id": i, "name": n, "created_at": now, "last_served_at": 0.0}
                for i, n in dict(rows).items()
                if i not in existing
            ]
            if new:
                await conn.execute(insert(dealers), new)
            for d in new:
                await self._audit(conn, by=by, action="add-dealer", target=f"dealer {d['id']}",
                                  job_ids=[], reason=None, at=now)
            renamed = [(i, n) for i, n in rows if i in existing and n is not None]
            old = dict((await conn.execute(
                select(dealers.c.id, dealers.c.name)
                .where(one_of(conn, "dealers.id", [i for i, _ in renamed]))
            )).all()) if renamed else {}
            for i, n in renamed:
                if old.get(i) == n:
                    continue  # the config's names, synced on every open: nothing changed
                await conn.execute(update(dealers).where(dealers.c.id == i).values(name=n))
                await self._audit(conn, by=by, action="rename-dealer",
                                  target=f"dealer {i}: {old.get(i)!r} -> {n!r}",
                                  job_ids=[], reason=None, at=now)
            return len(new)

        return await self.db.run(tx)

    @staticmethod
    async def _existing_dealers(conn: AsyncConnection, dealer_ids: Sequence[str]) -> set[str]:
        """Which of *dealer_ids* are in the dealers table (the list may be every dealer)."""
        query = select(dealers.c.id).where(one_of(conn, "dealers.id", dealer_ids))
        return set((await conn.execute(query)).scalars())

    async def list_dealers(self) -> list[Dealer]:
        async def tx(conn: AsyncConnection) -> list[Dealer]:
            rows = await conn.execute(select(dealers).order_by(dealers.c.id))
            return [Dealer(r.id, r.name, r.created_at, r.last_served_at or None, r.disabled_at)
                    for r in rows]

        return await self.db.run(tx, write=False)

    async def dealer_ids(self) -> list[str]:
        async def tx(conn: AsyncConnection) -> list[str]:
            return list((await conn.execute(select(dealers.c.id).order_by(dealers.c.id))).scalars())

        return await self.db.run(tx, write=False)

    # -- enqueue ------------------------------------------------------------------------------

    def _pipeline_types(self, types: Sequence[str] | None) -> list[str]:
        wanted = list(self.rules) if not types else list(dict.fromkeys(types))
        unknown = [t for t in wanted if t not in self.rules]
        if unknown:
            raise UsageError(
                f"unknown job type {unknown[0]!r} (known: {', '.join(sorted(self.rules))})."
            )
        # parents before children, so each job can link to its in-pipeline parents
        order: list[str] = []
        seen: set[str] = set()

        def visit(t: str) -> None:
            if t in seen:
                return
            seen.add(t)
            for p in sorted(self.rules[t].depends_on, key=lambda x: (self.rules[x].priority, x)):
                if p in wanted:
                    visit(p)
            order.append(t)

        for t in sorted(wanted, key=lambda x: (self.rules[x].priority, x)):
            visit(t)
        return order

    async def enqueue(
        self,
        dealer_ids: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        by: str | None = None,
    ) -> list[int]:
        """Enqueue one pipeline per dealer, atomically; returns the new job ids.

        Edges come from the job types' depends_on. A prerequisite type outside the pipeline
        links to the dealer's latest job of that type when it is unfinished or succeeded;
        otherwise the job is blocked with the reason "no successful <type> run".
        """
        order = self._pipeline_types(types)
        wanted_dealers = list(dict.fromkeys(dealer_ids))
        payload_text = json.dumps(payload) if payload is not None else None
        now = self.clock()

        async def tx(conn: AsyncConnection) -> list[int]:
            known = await self._existing_dealers(conn, wanted_dealers)
            missing = [d for d in wanted_dealers if d not in known]
            if missing:
                raise UsageError(
                    f"unknown dealer {missing[0]!r}; add it with 'dealertui dealers add "
                    f"{missing[0]}' or list it under [[dealers]] in the config."
                )
            external = sorted(
                {p for t in order for p in self.rules[t].depends_on if p not in order}
            )
            latest = await self._latest_jobs(conn, wanted_dealers, external)
            rows: list[dict[str, Any]] = []
            parents_of: list[list[tuple[str, int | None, str]]] = []
            for dealer_id in wanted_dealers:
                state_in_pipeline: dict[str, str] = {}
                for t in order:
                    links: list[tuple[str, int | None, str]] = []
                    state, reason = JobState.READY.value, None
                    for p in self.rules[t].depends_on:
                        if p in order:
                            links.append(("new", None, p))
                            pstate = state_in_pipeline[p]
                            if pstate == JobState.BLOCKED:
                                state, reason = JobState.BLOCKED.value, f"parent {p} is blocked"
                            elif state != JobState.BLOCKED:
                                state = JobState.WAITING.value
                            continue
                        found = latest.get((dealer_id, p))
                        if found is not None and found[1] in (
                            "waiting", "ready", "running", "retrying", "succeeded", "skipped"
                        ):
                            links.append(("old", found[0], p))
                            if found[1] not in SATISFIED_STATES and state != JobState.BLOCKED:
                                state = JobState.WAITING.value
                        else:
                            state, reason = JobState.BLOCKED.value, f"no successful {p} run"
                    state_in_pipeline[t] = state
                    rule = self.rules[t]
                    rows.append(
                        {
                            "dealer_id": dealer_id,
                            "job_type": t,
                            "state": state,
                            "priority": rule.priority,
                            "attempts": 0,
                            "max_attempts": rule.max_attempts,
                            "run_after": now,
                            "created_at": now,
                            "updated_at": now,
                            "ready_at": now if state == JobState.READY else None,
                            "blocked_reason": reason,
                            "payload": payload_text,
                        }
                    )
                    parents_of.append(links)
            if not rows:
                return []
            new_ids = await self._allocate_job_ids(conn, len(rows))
            first: dict[str, int] = {}  # a dealer's rows are together, in id order
            for row, job_id in zip(rows, new_ids, strict=True):
                row["id"] = job_id
                row["pipeline_id"] = first.setdefault(row["dealer_id"], job_id)
            await conn.execute(insert(jobs), rows)
            by_dealer_type = {
                (row["dealer_id"], row["job_type"]): job_id
                for row, job_id in zip(rows, new_ids, strict=True)
            }
            edges = []
            for row, job_id, links in zip(rows, new_ids, parents_of, strict=True):
                for kind, parent_id, ptype in links:
                    pid = by_dealer_type[(row["dealer_id"], ptype)] if kind == "new" else parent_id
                    edges.append({"child_id": job_id, "parent_id": pid})
            if edges:
                await conn.execute(insert(job_deps), edges)
            await graphops.insert_events(
                conn,
                [
                    Event(
                        job_id, row["dealer_id"], row["job_type"], None, row["state"],
                        message=row["blocked_reason"] or "enqueued",
                    )
                    for row, job_id in zip(rows, new_ids, strict=True)
                ],
                at=now,
                worker=None,
            )
            await self._audit(
                conn, by=by, action="enqueue", reason=None, at=now, job_ids=new_ids,
                target=_target(dealers_list=wanted_dealers, types=types),
            )
            return new_ids

        return await self.db.run(tx)

    async def _allocate_job_ids(self, conn: AsyncConnection, n: int) -> list[int]:
        """Ids for *n* new jobs, so the insert can be one plain executemany.

        (INSERT … RETURNING with parameter order kept falls back to a row at a time on
        SQLite: 10,000 jobs took 1.6 s that way.)
        """
        if conn.dialect.name == "postgresql":
            rows = await conn.execute(
                text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) "
                     "FROM generate_series(1, :n)"),
                {"n": n},
            )
            return [r[0] for r in rows]
        # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so max(id) is ours
        top = (await conn.execute(select(func.max(jobs.c.id)))).scalar() or 0
        return list(range(top + 1, top + 1 + n))

    async def _latest_jobs(
        self, conn: AsyncConnection, dealer_ids: Sequence[str], types: Sequence[str]
    ) -> dict[tuple[str, str], tuple[int, str]]:
        if not types or not dealer_ids:
            return {}
        newest = (
            select(func.max(jobs.c.id))
            .where(one_of(conn, "jobs.dealer_id", dealer_ids), jobs.c.job_type.in_(types))
            .group_by(jobs.c.dealer_id, jobs.c.job_type)
        )
        rows = await conn.execute(
            select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state).where(
                jobs.c.id.in_(newest)
            )
        )
        return {(r.dealer_id, r.job_type): (r.id, r.state) for r in rows}

    # -- the worker's side: claim, finish, leases ---------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        *,
        per_dealer: int,
        lease_s: float,
        max_dealers: int | None = None,
        active_dealers: Sequence[str] = (),
        only_dealers: Sequence[str] | None = None,
        job_types: Sequence[str] | None = None,
    ) -> ClaimResult:
        """Move up to *limit* due ready jobs to running under a lease held by *worker_id*.

        At most *per_dealer* jobs of one dealer run at once across every worker; at most
        *max_dealers* dealers beyond *active_dealers* (the worker's own) get new jobs.
        Paused dealers, types and a global pause are honoured; retries whose time has come are
        made ready first. With *job_types*, only jobs of those types are taken.
        """
        if limit <= 0:
            return ClaimResult([])
        request = ClaimRequest(limit, per_dealer, lease_s, max_dealers, tuple(active_dealers),
                               None if only_dealers is None else tuple(only_dealers),
                               None if job_types is None else tuple(job_types))
        now = self.clock()
        return await self.db.run(lambda conn: self._claim_in(conn, worker_id, request, now))

    async def _claim_in(
        self, conn: AsyncConnection, worker_id: str, request: ClaimRequest, now: float
    ) -> ClaimResult:
        limit, per_dealer, only_dealers = request.limit, request.per_dealer, request.only_dealers
        paused = await self._paused_keys(conn)
        due = await claims.promote_due_retries(conn, now)
        await graphops.insert_events(conn, due, at=now, worker=worker_id)
        if ("global", "") in paused:
            return ClaimResult([])
        g = await breakers.gate(conn, self.breaker_cfg, now)
        common: dict[str, Any] = {
            "worker_id": worker_id,
            "per_dealer": per_dealer,
            "lease_until": now + request.lease_s,
            "now": now,
            "max_dealers": request.max_dealers,
            "active_dealers": request.active_dealers,
            "paused_dealers": [k for s, k in paused if s == "dealer"],
            "known_types": request.job_types,
        }
        paused_types = [k for s, k in paused if s == "type"]
        claimed, violations = await claims.claim_batch(
            conn,
            limit=limit,
            only_dealers=only_dealers,
            paused_types=sorted({*paused_types, *g.blocked_types}),
            blocked_pairs=g.blocked_pairs,
            **common,
        )
        # half-open breakers: admit at most their remaining trial jobs, key by key
        for dealer_id, job_type, slots in g.trials:
            room = min(slots, limit - len(claimed))
            if room <= 0 or job_type in paused_types:
                continue
            if dealer_id is not None and job_type in g.blocked_types:
                continue  # the shared breaker of the type is not closed: no trial
            if dealer_id is not None and only_dealers is not None and (
                dealer_id not in only_dealers
            ):
                continue
            pairs = [p for p in g.blocked_pairs if p != f"{dealer_id}:{job_type}"]
            extra, more_violations = await claims.claim_batch(
                conn,
                limit=room,
                only_dealers=[dealer_id] if dealer_id is not None else only_dealers,
                paused_types=paused_types,
                blocked_pairs=pairs,
                only_type=job_type,
                **common,
            )
            if extra:
                await breakers.count_trials(conn, dealer_id, job_type, len(extra), now)
            claimed += extra
            violations += more_violations
        await graphops.insert_events_for(
            conn, [c.id for c in claimed], JobState.READY, JobState.RUNNING, at=now,
            worker=worker_id,
        )
        # the claim put violating jobs back to waiting; record both of their moves
        await graphops.insert_events_for(
            conn, violations, JobState.READY, JobState.WAITING, at=now, worker=worker_id,
            message="dependency violation: a parent had not succeeded",
        )
        return ClaimResult(claimed, len(violations))

    async def finish(
        self,
        worker_id: str,
        *,
        succeeded: Sequence[tuple[int, int]] = (),
        failed: Sequence[JobOutcome] = (),
        retry: Sequence[JobOutcome] = (),
        release: Sequence[tuple[int, int]] = (),
        release_reason: str | None = None,
        then_claim: ClaimRequest | None = None,
    ) -> CompletionResult:
        """Record a batch of outcomes in one transaction.

        *succeeded* jobs become succeeded and their children whose parents all succeeded
        become ready; *failed* ones fail permanently and block their descendants; *retry* ones
        wait as `retrying` until now + delay_s, or fail when their attempts are used up.
        *release* ones were interrupted (the worker is stopping): they wait as `retrying`, due
        at once, and the attempt is not charged.
        Each outcome names its claim (job id and fencing token); one whose job is no longer
        running under that claim (cancelled, rescued, reset, or claimed again since) records
        nothing, so a late run never writes over a newer one.
        With *then_claim*, the same transaction then claims as `claim` would (after the
        outcomes, so it sees the children they promoted); the result's `claimed` holds it.
        """
        now = self.clock()
        any_outcome = bool(succeeded or failed or retry or release)
        if not any_outcome and then_claim is None:
            return CompletionResult([])

        async def tx(conn: AsyncConnection) -> CompletionResult:
            ok: list[int] = []
            landed: set[tuple[int, int]] = set()
            if succeeded:
                # the hot path: one UPDATE … RETURNING, events built in the database
                rows = await fastpath.fetch(
                    conn,
                    f"""
                    UPDATE jobs SET state = 'succeeded', finished_at = :now,
                           updated_at = :now, locked_by = NULL, locked_until = NULL,
                           last_error = NULL
                    WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
                    RETURNING id, claim_seq
                    """,
                    {**claims_params(conn, succeeded), "now": now, "worker": worker_id},
                )
                ok = [r[0] for r in rows]
                landed.update((r[0], r[1]) for r in rows)
                await graphops.insert_events_for(
                    conn, ok, JobState.RUNNING, JobState.SUCCEEDED, at=now, worker=worker_id
                )
            handed_back: list[int] = []
            if release:
                back = await conn.execute(
                    text(
                        f"""
                        UPDATE jobs SET state = 'retrying', run_after = :now, updated_at = :now,
                               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                               locked_by = NULL, locked_until = NULL, last_error = :reason
                        WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
                        RETURNING id, claim_seq
                        """
                    ),
                    {**claims_params(conn, release), "now": now, "worker": worker_id,
                     "reason": release_reason},
                )
                handed = back.all()
                handed_back = [r.id for r in handed]
                landed.update((r.id, r.claim_seq) for r in handed)
                await graphops.insert_events_for(
                    conn, handed_back, JobState.RUNNING, JobState.RETRYING, at=now,
                    worker=worker_id, message=f"released: {release_reason or 'worker stopped'}",
                )
            others = [o.claim for o in (*failed, *retry)]
            held: dict[int, Any] = {}
            if others:
                await graphops.lock_rows(conn, [c.job_id for c in others])
                held = {
                    r.id: r
                    for r in await conn.execute(
                        text(
                            f"""
                            SELECT id, dealer_id, job_type, attempts, max_attempts, claim_seq
                            FROM jobs
                            WHERE {at_claims(conn)} AND state = 'running'
                              AND locked_by = :worker
                            """
                        ),
                        {**claims_params(conn, others), "worker": worker_id},
                    )
                }
            # (held by id, so an outcome of an older claim of a held job is told apart here)
            held_claims = {(r.id, r.claim_seq) for r in held.values()}
            events: list[Event] = []
            retrying, dead = [], list(o for o in failed if o.claim in held_claims)
            for o in retry:
                if o.claim not in held_claims:
                    continue
                if held[o.job_id].attempts < held[o.job_id].max_attempts:
                    retrying.append(o)
                else:
                    dead.append(o)
            if retrying:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == bindparam("jid"))
                    .values(
                        state=JobState.RETRYING.value,
                        run_after=bindparam("run_after"),
                        last_error=bindparam("err"),
                        updated_at=now,
                        finished_at=now,
                        locked_by=None,
                        locked_until=None,
                        ready_at=None,
                    ),
                    [
                        {"jid": o.job_id, "run_after": now + max(o.delay_s, 0.0), "err": o.error}
                        for o in retrying
                    ],
                )
                events += [
                    Event(o.job_id, held[o.job_id].dealer_id, held[o.job_id].job_type,
                          JobState.RUNNING, JobState.RETRYING, held[o.job_id].attempts, o.error,
                          f"retry in {max(o.delay_s, 0.0):.1f}s")
                    for o in retrying
                ]
            blocked: list[int] = []
            if dead:
                fail_events, blocked = await self._fail_held(
                    conn, [(o.job_id, o.error) for o in dead], held, now
                )
                events += fail_events
            promoted = await graphops.promote_children(conn, ok, now=now, worker=worker_id)
            await graphops.insert_events(conn, events, at=now, worker=worker_id)
            failures = [(held[o.job_id].dealer_id, held[o.job_id].job_type)
                        for o in (*retrying, *dead)]
            await breakers.record(
                conn, self.breaker_cfg, succeeded_ids=ok, failed=failures, now=now
            )
            landed.update(o.claim for o in (*retrying, *dead))
            return CompletionResult(
                done=[
                    *ok, *(o.job_id for o in retrying), *(o.job_id for o in dead), *handed_back
                ],
                promoted=promoted,
                blocked=blocked,
                failed=[o.job_id for o in dead],
                landed=landed,
                blocked_as={e.job_id: (e.dealer_id, e.job_type) for e in events
                            if e.to_state == JobState.BLOCKED},
            )

        async def and_claim(conn: AsyncConnection) -> CompletionResult:
            done = await tx(conn) if any_outcome else CompletionResult([])
            if then_claim is None or then_claim.limit <= 0:
                return done
            # after the outcomes, so the claim sees the children they promoted
            claimed = await self._claim_in(conn, worker_id, then_claim, now)
            return dataclasses.replace(done, claimed=claimed)

        return await self.db.run(and_claim)

    async def _fail_held(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[tuple[int, str | None]],
        held: Mapping[int, Any],
        now: float,
    ) -> tuple[list[Event], list[int]]:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("jid"))
            .values(
                state=JobState.FAILED.value,
                last_error=bindparam("err"),
                updated_at=now,
                finished_at=now,
                locked_by=None,
                locked_until=None,
                ready_at=None,
            ),
            [{"jid": jid, "err": err} for jid, err in outcomes],
        )
        events: list[Event] = []
        blocked: list[int] = []
        for jid, err in outcomes:
            h = held[jid]
            events.append(
                Event(jid, h.dealer_id, h.job_type, JobState.RUNNING, JobState.FAILED,
                      h.attempts, err)
            )
            below = await graphops.block_descendants(
                conn, jid, f"{h.job_type} #{jid} failed", now=now
            )
            events += below
            blocked += [e.job_id for e in below]
        return events, blocked

    async def breaker_states(self) -> list[dict[str, Any]]:
        """Every breaker: key, dealer_id, job_type, state, failures, opened_at, half_open_at."""

        async def tx(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in await breakers.snapshot(conn)]

        return await self.db.run(tx, write=False)

    async def extend_leases(
        self, worker_id: str, claims_held: Sequence[tuple[int, int]], lease_s: float
    ) -> list[Claim]:
        """Push the lease of each of *claims_held* that *worker_id* still runs under that claim
        to now + lease_s; heartbeat the worker. Returns those claims: one the worker runs but
        that is missing was taken from it (cancelled, rescued, skipped, or the job claimed
        again since), and its handler should stop.

        Not written to job_events: a lease extension is not a transition, and one row per job
        per heartbeat would drown the audit trail.
        """
        now = self.clock()

        async def tx(conn: AsyncConnection) -> list[Claim]:
            held: list[Claim] = []
            if claims_held:
                rows = await conn.execute(
                    text(
                        f"""
                        UPDATE jobs SET locked_until = :until
                        WHERE {at_claims(conn)} AND state = 'running' AND locked_by = :worker
                        RETURNING id, claim_seq
                        """
                    ),
                    {**claims_params(conn, claims_held), "until": now + lease_s,
                     "worker": worker_id},
                )
                held = [Claim(r[0], r[1]) for r in rows]
            await conn.execute(
                update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now)
            )
            return held

        return await self.db.run(tx)

    async def rescue_expired(
        self,
        *,
        older_than_s: float | None = None,
        worker_id: str | None = None,
        locked_by: str | None = None,
        audit_by: str | None = None,
    ) -> ActionResult:
        """Take back running jobs whose lease expired (or that started > older_than_s ago).

        The attempt they were on counts: a job with attempts left is ready again, one without
        fails and blocks its descendants. *locked_by* also takes back every running job of
        that worker id, expired or not (a worker restarting after an outage reclaims its own).
        Workers silent for a day are forgotten in the same transaction (dealerops).
        """
        now = self.clock()

        async def tx(conn: AsyncConnection) -> ActionResult:
            cond = "locked_until < :now"
            params: dict[str, Any] = {"now": now}
            if older_than_s is not None:
                cond = f"({cond} OR started_at < :cutoff)"
                params["cutoff"] = now - older_than_s
            if locked_by is not None:
                cond = f"({cond} OR locked_by = :locked_by)"
                params["locked_by"] = locked_by
            lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, dealer_id, job_type, attempts, max_attempts, locked_by "
                        f"FROM jobs WHERE state = 'running' AND {cond} ORDER BY id{lock}"
                    ),
                    params,
                )
            ).all()
            held = {r.id: r for r in rows}
            again = [r.id for r in rows if r.attempts < r.max_attempts]
            exhausted = [r.id for r in rows if r.attempts >= r.max_attempts]
            events: list[Event] = []
            if again:
                await conn.execute(
                    text(
                        """
                        UPDATE jobs SET state = 'ready', ready_at = :now, run_after = :now,
                               updated_at = :now, locked_by = NULL, locked_until = NULL,
                               last_error = 'lease expired'
                        WHERE id IN :ids
                        """
                    ).bindparams(_ids()),
                    {"ids": again, "now": now},
                )
                events += [
                    Event(i, held[i].dealer_id, held[i].job_type, JobState.RUNNING,
                          JobState.READY, held[i].attempts, "lease expired",
                          f"lease of {held[i].locked_by} expired")
                    for i in again
                ]
            followers: list[int] = []
            if exhausted:
                fail_events, followers = await self._fail_held(
                    conn,
                    [(i, "lease expired; no attempts left") for i in exhausted],
                    held,
                    now,
                )
                events += fail_events
            await graphops.insert_events(conn, events, at=now, worker=worker_id)
            await dealerops.forget_dead_workers(conn, now)
            if again or exhausted:
                await self._audit(
                    conn, by=audit_by, action="reset-stuck", reason=None, at=now,
                    job_ids=again + exhausted,
                    target="stuck jobs" + (f" (older than {older_than_s:g}s)"
                                           if older_than_s is not None else ""),
                )
            return ActionResult(changed=again + exhausted, followers=followers)

        return await self.db.run(tx)

    # -- operator actions ---------------------------------------------------------------------

    async def retry(
        self,
        *,
        job_ids: Sequence[int] | None = None,
        dealer_id: str | None = None,
        job_type: str | None = None,
        all_failed: bool = False,
        by: str | None = None,
        reason: str | None = None,
    ) -> ActionResult:
        """Operator retry: failed/blocked jobs back to ready or waiting, attempts reset.

        Explicit job ids may also be cancelled jobs. Blocked descendants of the retried jobs
        follow them. A job blocked for lack of a prerequisite run is linked again to the
        dealer's latest job of that type.
        """
        if job_ids is None and dealer_id is None and job_type is None and not all_failed:
            raise UsageError("retry needs --job ID, --dealer ID, --type T or --all-failed.")
        now = self.clock()

        async def tx(conn: AsyncConnection) -> ActionResult:
            q = select(jobs.c.id)
            if job_ids is not None:
                q = q.where(
                    jobs.c.id.in_(list(job_ids)),
                    jobs.c.state.in_(["failed", "blocked", "cancelled"]),
                )
            else:
                q = q.where(jobs.c.state.in_(["failed", "blocked"]))
            if dealer_id is not None:
                q = q.where(jobs.c.dealer_id == dealer_id)
            if job_type is not None:
                q = q.where(jobs.c.job_type == job_type)
            targets = list((await conn.execute(q.order_by(jobs.c.id))).scalars())
            if not targets:
                return ActionResult([])
            below = await graphops.descendants(conn, targets)
            target_set = set(targets)
            followers = list(
                (
                    await conn.execute(
                        select(jobs.c.id).where(
                            jobs.c.id.in_(below), jobs.c.state == JobState.BLOCKED
                        )
                    )
                ).scalars()
            ) if below else []
            followers = [f for f in followers if f not in target_set]
            moved = await self._rearm_runnable(conn, targets, followers, now=now,
                                               message="operator retry", by=by)
            if moved.changed:
                await self._audit(
                    conn, by=by, action="retry", reason=reason, at=now, job_ids=moved.changed,
                    target=_target(job_ids=job_ids, dealer_id=dealer_id, job_type=job_type),
                )
            return moved

        return await self.db.run(tx)

    async def _rearm_runnable(
        self,
        conn: AsyncConnection,
        named: Sequence[int],
        followers: Sequence[int],
        *,
        now: float,
        message: str,
        by: str | None,
    ) -> ActionResult:
        """Re-arm *named* and *followers* (see graphops.rearm), except those that would only
        block again: a named one of those is returned as held, with why. When no named job
        can run, nothing at all is changed (the transaction is rolled back)."""
        everyone = [*named, *followers]
        # a job still lacking a prerequisite run, or with a dead parent outside the set,
        # stays as it is; so do its descendants in the set
        lacking = await self._relink_prerequisites(conn, everyone)
        stuck = await graphops.hold_back(conn, everyone, lacking=lacking)
        held = {i: stuck[i] for i in named if i in stuck}
        arm = [i for i in everyone if i not in stuck]
        events = await graphops.rearm(conn, arm, now=now, message=message)
        # rearm's own check: a parent that died since hold_back read it (Postgres)
        again = {e.job_id for e in events if e.to_state == JobState.BLOCKED}
        if again:
            for j in await conn.execute(
                select(jobs.c.id, jobs.c.blocked_reason).where(jobs.c.id.in_(sorted(again)))
            ):
                if j.id in set(named):
                    held[j.id] = j.blocked_reason or "a parent cannot run"
        changed = [i for i in named if i in set(arm) - again]
        if not changed:
            await conn.rollback()  # nothing it could run: no change, no event, no audit row
            return ActionResult([], held=held)
        # a blocked job left as it is names what still holds it (it named the parent this
        # action has just re-armed)
        still = [{"jid": i, "why": why} for i, why in stuck.items() if i not in lacking]
        if still:
            await conn.execute(
                update(jobs).where(jobs.c.id == bindparam("jid"), jobs.c.state == "blocked")
                .values(blocked_reason=bindparam("why")), still,
            )
        await graphops.insert_events(conn, events, at=now, worker=by)
        return ActionResult(changed=changed, followers=[i for i in followers
                                                        if i in set(arm) - again], held=held)

    async def _relink_prerequisites(
        self, conn: AsyncConnection, job_ids: Sequence[int]
    ) -> set[int]:
        """Give jobs that were blocked for lack of a prerequisite run an edge to the dealer's
        latest unfinished or succeeded run of that type; returns the ids that still lack one."""
        rows = (
            await conn.execute(
                select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type).where(
                    jobs.c.id.in_(list(job_ids)), jobs.c.blocked_reason.like("no successful %")
                )
            )
        ).all()
        if not rows:
            return set()
        have = {
            (r.child_id, r.job_type)
            for r in await conn.execute(
                select(job_deps.c.child_id, jobs.c.job_type)
                .join(jobs, jobs.c.id == job_deps.c.parent_id)
                .where(job_deps.c.child_id.in_([r.id for r in rows]))
            )
        }
        wanted_types = sorted(
            {p for r in rows if r.job_type in self.rules for p in self.rules[r.job_type].depends_on}
        )
        latest = await self._latest_jobs(conn, sorted({r.dealer_id for r in rows}), wanted_types)
        edges = []
        unlinkable: set[int] = set()
        for r in rows:
            rule = self.rules.get(r.job_type)
            for p in rule.depends_on if rule else ():
                if (r.id, p) in have:
                    continue
                found = latest.get((r.dealer_id, p))
                if found is None or found[1] not in (*UNFINISHED_STATES, *SATISFIED_STATES):
                    unlinkable.add(r.id)
                    continue
                edges.append({"child_id": r.id, "parent_id": found[0]})
        if edges:
            await conn.execute(insert(job_deps), edges)
        return unlinkable

    async def cancel(
        self, job_ids: Sequence[int], *, by: str | None = None, reason: str | None = None
    ) -> ActionResult:
        """Cancel jobs in any state but succeeded; their waiting descendants become blocked."""
        now = self.clock()

        async def tx(conn: AsyncConnection) -> ActionResult:
            await graphops.lock_rows(conn, job_ids)
            rows = (
                await conn.execute(
                    select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state).where(
                        jobs.c.id.in_(list(job_ids)),
                        jobs.c.state.not_in(["succeeded", "cancelled", "skipped"]),
                    )
                )
            ).all()
            if not rows:
                return ActionResult([])
            ids = [r.id for r in rows]
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(ids))
                .values(
                    state=JobState.CANCELLED.value, updated_at=now, finished_at=now,
                    locked_by=None, locked_until=None, ready_at=None,
                )
            )
            events = [
                Event(r.id, r.dealer_id, r.job_type, r.state, JobState.CANCELLED,
                      message="operator cancel")
                for r in rows
            ]
            followers: list[int] = []
            for r in rows:
                below = await graphops.block_descendants(
                    conn, r.id, f"{r.job_type} #{r.id} cancelled", now=now
                )
                events += below
                followers += [e.job_id for e in below]
            await graphops.insert_events(conn, events, at=now, worker=by)
            await self._audit(conn, by=by, action="cancel", reason=reason, at=now, job_ids=ids,
                              target=_target(job_ids=ids))
            return ActionResult(changed=ids, followers=followers)

        return await self.db.run(tx)

    async def skip(
        self, job_ids: Sequence[int], *, reason: str, by: str | None = None
    ) -> ActionResult:
        """Mark jobs `skipped` without running them: their children may run (a skipped parent
        satisfies them), and descendants blocked by them come back. Running and succeeded jobs
        cannot be skipped."""
        now = self.clock()

        async def tx(conn: AsyncConnection) -> ActionResult:
            await graphops.lock_rows(conn, job_ids)
            rows = (
                await conn.execute(
                    select(jobs.c.id, jobs.c.dealer_id, jobs.c.job_type, jobs.c.state).where(
                        jobs.c.id.in_(list(job_ids)),
                        jobs.c.state.in_(
                            ["waiting", "ready", "retrying", "failed", "blocked", "cancelled"]
                        ),
                    )
                )
            ).all()
            if not rows:
                return ActionResult([])
            ids = [r.id for r in rows]
            await conn.execute(
                update(jobs).where(jobs.c.id.in_(ids)).values(
                    state=JobState.SKIPPED.value, updated_at=now, finished_at=now,
                    ready_at=None, blocked_reason=None, locked_by=None, locked_until=None,
                )
            )
            events = [
                Event(r.id, r.dealer_id, r.job_type, r.state, JobState.SKIPPED,
                      message=f"skipped: {reason}")
                for r in rows
            ]
            # descendants blocked because of these jobs come back (to ready or waiting)
            below = await graphops.descendants(conn, ids)
            revived = list(
                (await conn.execute(
                    select(jobs.c.id).where(jobs.c.id.in_(below), jobs.c.state == "blocked")
                )).scalars()
            ) if below else []
            if revived:
                events += await graphops.rearm(conn, revived, now=now,
                                               message=f"a parent was skipped: {reason}")
            promoted = await graphops.promote_children(conn, ids, now=now, worker=by)
            await graphops.insert_events(conn, events, at=now, worker=by)
            await self._audit(conn, by=by, action="skip", reason=reason, at=now, job_ids=ids,
                              target=_target(job_ids=ids))
            return ActionResult(changed=ids, followers=sorted({*revived, *promoted}))

        return await self.db.run(tx)

    async def rerun(
        self,
        *,
        job_id: int | None = None,
        dealer_id: str | None = None,
        pipeline_id: int | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> ActionResult:
        """Run a finished job again and re-arm every descendant (`retry from this job`), or
        a whole pipeline (store/pipelines.py): *pipeline_id*, or (*dealer_id* alone) the
        dealer's newest. Running jobs are left alone; attempts start again from zero."""
        if (job_id is None) == (dealer_id is None and pipeline_id is None):
            raise UsageError("rerun needs exactly one of --job ID, --dealer ID or "
                             "--pipeline ID.")
        now = self.clock()

        async def tx(conn: AsyncConnection) -> ActionResult:
            pipeline = None
            if job_id is not None:
                roots = [job_id]
            else:
                pipeline, roots = await pipelines.resolve(conn, dealer_id=dealer_id,
                                                          pipeline_id=pipeline_id)
            below = await graphops.descendants(conn, roots)
            candidates = sorted({*roots, *below})
            movable = list((await conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_(candidates), jobs.c.state != JobState.RUNNING
                ).order_by(jobs.c.id)
            )).scalars()) if candidates else []
            named = [i for i in movable if i in set(roots)]
            moved = await self._rearm_runnable(
                conn, named, [i for i in movable if i not in set(roots)], now=now,
                message="operator rerun", by=by,
            )
            if moved.changed:
                await self._audit(
                    conn, by=by, action="rerun", reason=reason, at=now,
                    job_ids=[*moved.changed, *moved.followers],
                    target=_target(job_ids=[job_id] if job_id is not None else None,
                                   dealer_id=dealer_id, pipeline_id=pipeline),
                )
            return dataclasses.replace(moved, pipeline=pipeline)

        return await self.db.run(tx)

    def preview(self) -> JobStore:
        """This store, but every write transaction is rolled back at its end: an action run
        through it reports exactly what it would change, and changes nothing."""
        clone = copy.copy(self)
        clone.db = self.db.rolling_back()
        return clone

    async def set_paused(
        self,
        paused: bool,
        *,
        dealer_id: str | None = None,
        job_type: str | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Pause or resume a dealer, a job type, both, or (neither) everything."""
        keys: list[tuple[str, str]] = []
        if dealer_id is not None:
            keys.append(("dealer", dealer_id))
        if job_type is not None:
            keys.append(("type", job_type))
        if not keys:
            keys.append(("global", ""))
        now = self.clock()

        async def tx(conn: AsyncConnection) -> None:
            for scope, key in keys:
                where = (controls.c.scope == scope, controls.c.key == key)
                held = (await conn.execute(select(controls).where(*where))).first()
                if paused and held is not None and held.paused and reason is None:
                    continue  # paused already: pausing again keeps who, since when and why
                await conn.execute(controls.delete().where(*where))
                if paused:
                    await conn.execute(
                        insert(controls).values(
                            scope=scope, key=key, paused=1, by=by, at=now, reason=reason
                        )
                    )
            await self._audit(
                conn, by=by, action="pause" if paused else "resume", reason=reason, at=now,
                job_ids=[], target=_target(dealer_id=dealer_id, job_type=job_type),
            )

        await self.db.run(tx)

    async def pauses(self) -> list[Pause]:
        async def tx(conn: AsyncConnection) -> list[Pause]:
            rows = await conn.execute(
                select(controls).where(controls.c.paused == 1).order_by(
                    controls.c.scope, controls.c.key
                )
            )
            return [Pause(r.scope, r.key, r.by, r.at, r.reason) for r in rows]

        return await self.db.run(tx, write=False)

    async def _paused_keys(self, conn: AsyncConnection) -> set[tuple[str, str]]:
        rows = await fastpath.fetch(
            conn, 'SELECT scope, "key" FROM controls WHERE paused = 1'
        )
        return {(scope, key) for scope, key in rows}

    # -- audit ----------------------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        *,
        by: str | None,
        action: str,
        target: str,
        job_ids: Sequence[int],
        reason: str | None,
        at: float,
    ) -> None:
        """One audit_log row for an operator action, in the action's own transaction."""
        if by is None:
            return  # the engine acting on its own (lease rescue, retries) is not an operator
        await conn.execute(
            insert(audit_log).values(
                at=at, who=by, action=action, target=target,
                job_ids=json.dumps(sorted(job_ids)), count=len(job_ids), reason=reason,
            )
        )

    async def audit_entries(
        self, *, limit: int = 100, since: float | None = None
    ) -> list[dict[str, Any]]:
        """Operator actions, newest first."""

        async def tx(conn: AsyncConnection) -> list[dict[str, Any]]:
            q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
            if since is not None:
                q = q.where(audit_log.c.at >= since)
            out = []
            for r in await conn.execute(q):
                row = dict(r._mapping)
                row["job_ids"] = json.loads(row["job_ids"])
                out.append(row)
            return out

        return await self.db.run(tx, write=False)

    # -- workers and runs -----------------------------------------------------------------------

    async def register_worker(
        self, worker_id: str, *, host: str, pid: int, kind: str,
        job_types: Sequence[str] | None = None,
    ) -> None:
        now = self.clock()

        async def tx(conn: AsyncConnection) -> None:
            await conn.execute(workers.delete().where(workers.c.id == worker_id))
            await conn.execute(
                insert(workers).values(
                    id=worker_id, host=host, pid=pid, kind=kind, started_at=now,
                    heartbeat_at=now,
                    job_types=None if job_types is None else json.dumps(sorted(job_types)),
                )
            )

        await self.db.run(tx)

    async def unregister_worker(self, worker_id: str) -> None:
        now = self.clock()

        async def tx(conn: AsyncConnection) -> None:
            await conn.execute(
                update(workers).where(workers.c.id == worker_id).values(stopped_at=now)
            )

        await self.db.run(tx)

    async def record_run(
        self, worker_id: str, kind: str, started_at: float, stats: Mapping[str, Any]
    ) -> None:
        now = self.clock()

        async def tx(conn: AsyncConnection) -> None:
            await conn.execute(
                insert(runs).values(
                    worker_id=worker_id, kind=kind, started_at=started_at, finished_at=now,
                    stats=json.dumps(dict(stats)),
                )
            )

        await self.db.run(tx)

    # -- reads --------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        async def tx(conn: AsyncConnection) -> Job | None:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
            return _job(row) if row else None

        return await self.db.run(tx, write=False)

    async def list_jobs(
        self,
        *,
        dealer_id: str | None = None,
        states: Sequence[str] | None = None,
        job_ids: Sequence[int] | None = None,
    ) -> list[Job]:
        async def tx(conn: AsyncConnection) -> list[Job]:
            q = select(jobs).order_by(jobs.c.id)
            if dealer_id is not None:
                q = q.where(jobs.c.dealer_id == dealer_id)
            if states is not None:
                q = q.where(jobs.c.state.in_(list(states)))
            if job_ids is not None:
                q = q.where(jobs.c.id.in_(list(job_ids)))
            return [_job(r) for r in await conn.execute(q)]

        return await self.db.run(tx, write=False)

    async def edges(self, *, dealer_id: str | None = None) -> list[tuple[int, int]]:
        """Dependency edges as (parent_id, child_id)."""

        async def tx(conn: AsyncConnection) -> list[tuple[int, int]]:
            q = select(job_deps.c.parent_id, job_deps.c.child_id)
            if dealer_id is not None:
                q = q.join(jobs, jobs.c.id == job_deps.c.child_id).where(
                    jobs.c.dealer_id == dealer_id
                )
            return [(r.parent_id, r.child_id) for r in await conn.execute(q)]

        return await self.db.run(tx, write=False)

    async def job_events(self, job_id: int) -> list[dict[str, Any]]:
        async def tx(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = await conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
            )
            return [dict(r._mapping) for r in rows]

        return await self.db.run(tx, write=False)

    async def status(self) -> dict[str, Any]:
        """Counts by state, by job type and by dealer, pauses and workers (the JSON contract)."""

        async def tx(conn: AsyncConnection) -> dict[str, Any]:
            by_state = empty_state_counts()
            by_type: dict[str, dict[str, int]] = {t: empty_state_counts() for t in self.rules}
            by_dealer: dict[str, dict[str, int]] = {
                d: empty_state_counts()
                for d in (await conn.execute(select(dealers.c.id).order_by(dealers.c.id))).scalars()
            }
            rows = await conn.execute(
                select(jobs.c.dealer_id, jobs.c.job_type, jobs.c.state, func.count()).group_by(
                    jobs.c.dealer_id, jobs.c.job_type, jobs.c.state
                )
            )
            for dealer_id, job_type, state, n in rows:
                if state not in by_state:
                    continue
                by_state[state] += n
                by_type.setdefault(job_type, empty_state_counts())[state] += n
                by_dealer.setdefault(dealer_id, empty_state_counts())[state] += n
            pauses = await conn.execute(select(controls).where(controls.c.paused == 1))
            paused: dict[str, Any] = {"global": False, "dealers": [], "types": []}
            for p in pauses:
                if p.scope == "global":
                    paused["global"] = True
                else:
                    paused["dealers" if p.scope == "dealer" else "types"].append(p.key)
            worker_rows = await conn.execute(
                select(workers).where(workers.c.stopped_at.is_(None)).order_by(workers.c.id)
            )
            running_by: dict[str | None, int] = dict(
                (
                    await conn.execute(
                        select(jobs.c.locked_by, func.count())
                        .where(jobs.c.state == JobState.RUNNING)
                        .group_by(jobs.c.locked_by)
                    )
                ).all()
            )
            last_runs = [
                {
                    "worker_id": r.worker_id,
                    "kind": r.kind,
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                    "stats": json.loads(r.stats) if r.stats else None,
                }
                for r in await conn.execute(
                    select(runs).order_by(runs.c.id.desc()).limit(LAST_RUNS_SHOWN)
                )
            ]
            disabled = (await conn.execute(
                select(dealers.c.id).where(dealers.c.disabled_at.is_not(None))
                .order_by(dealers.c.id)
            )).scalars().all()
            return {
                "last_runs": last_runs,
                "disabled_dealers": list(disabled),
                "total": sum(by_state.values()),
                "by_state": by_state,
                "by_type": by_type,
                "by_dealer": by_dealer,
                "paused": {k: sorted(v) if isinstance(v, list) else v for k, v in paused.items()},
                "workers": [
                    {
                        "id": w.id,
                        "host": w.host,
                        "pid": w.pid,
                        "kind": w.kind,
                        "started_at": w.started_at,
                        "heartbeat_at": w.heartbeat_at,
                        "running": running_by.get(w.id, 0),
                    }
                    for w in worker_rows
                ],
            }

        return await self.db.run(tx, write=False)

