"""JobStore: the one API every front end and the engine use to read and move jobs.

A thin facade: each method opens one transaction (retried as a whole on transient faults)
and runs one concept's function in it. The concepts live in their own modules, each taking
a connection: migrate (schema), registry (dealers, workers, runs), pipelines (enqueue),
claims, outcomes (finish), leases, transitions (operator actions), controls (pauses),
audit, and reads (the read model). Every transition writes a job_events row.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dealertui.config import BreakerConfig
from dealertui.errors import UsageError
from dealertui.model import (
    ActionResult,
    AuditEntry,
    BreakerRow,
    Claim,
    ClaimRequest,
    ClaimResult,
    CompletionResult,
    Dealer,
    EnqueueResult,
    Job,
    JobOutcome,
    Pause,
    StoreStatus,
)
from dealertui.store import (
    audit,
    claims,
    controls,
    leases,
    migrate,
    outcomes,
    pipelines,
    registry,
    transitions,
)
from dealertui.store.db import Database
from dealertui.store.pipelines import JobTypeRule
from dealertui.store.reads import jobs as job_reads
from dealertui.store.reads.current import open_jobs
from dealertui.store.reads.status import status as read_status

__all__ = ["JobStore", "JobTypeRule"]


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
                migrate.refuse_unwritable(store.db)
            await store.db.preflight(create)
            if create:
                await migrate.init_schema(store.db)
                await migrate.check_writable(store.db)
            else:
                await migrate.check_schema(store.db)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.dispose()

    def preview(self) -> JobStore:
        """This store, but every write transaction is rolled back at its end: an action run
        through it reports exactly what it would change, and changes nothing."""
        clone = copy.copy(self)
        clone.db = self.db.rolling_back()
        return clone

    async def check_writable(self) -> None:
        """StoreUnavailable (lasting) unless a write succeeds (see migrate.check_writable)."""
        await migrate.check_writable(self.db)

    # -- dealers, workers, runs (registry) ----------------------------------------------------

    async def add_dealers(
        self, items: Iterable[tuple[str, str | None]], *, by: str | None = None
    ) -> int:
        """Add dealers (id, name); see registry.add_dealers. Returns how many were new."""
        rows = registry.valid_dealers(items)
        if not rows:
            return 0
        now = self.clock()
        return await self.db.run(lambda c: registry.add_dealers(c, rows, by=by, now=now))

    async def register_worker(
        self, worker_id: str, *, host: str, pid: int, kind: str,
        job_types: Sequence[str] | None = None,
    ) -> None:
        now = self.clock()
        await self.db.run(lambda c: registry.register_worker(
            c, worker_id, host=host, pid=pid, kind=kind, job_types=job_types, now=now))

    async def unregister_worker(self, worker_id: str) -> None:
        now = self.clock()
        await self.db.run(lambda c: registry.unregister_worker(c, worker_id, now=now))

    async def record_run(
        self, worker_id: str, kind: str, started_at: float, stats: Mapping[str, Any], *,
        host: str | None = None, exit_code: int | None = None,
    ) -> None:
        now = self.clock()
        await self.db.run(lambda c: registry.record_run(c, worker_id, kind, started_at, stats,
                                                        now=now, host=host,
                                                        exit_code=exit_code))

    # -- enqueue (pipelines) ------------------------------------------------------------------

    async def enqueue(
        self,
        dealer_ids: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        by: str | None = None,
    ) -> list[int]:
        """Enqueue one pipeline per dealer, atomically, pending ones or not; returns the new
        job ids (see pipelines.enqueue for how prerequisites are linked)."""
        result = await self.enqueue_pipelines(dealer_ids, types, payload=payload, by=by,
                                              allow_duplicate=True)
        return result.job_ids

    async def enqueue_pipelines(
        self,
        dealer_ids: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        payload: Mapping[str, Any] | None = None,
        by: str | None = None,
        schedule: str | None = None,
        allow_duplicate: bool = False,
    ) -> EnqueueResult:
        """Enqueue one pipeline per dealer, skipping (unless *allow_duplicate*) each dealer
        that has a pipeline of the same job types still pending."""
        order = pipelines.type_order(self.rules, types)
        now = self.clock()
        return await self.db.run(lambda c: pipelines.enqueue(
            c, self.rules, order, dealer_ids, types=types, payload=payload, by=by, now=now,
            schedule=schedule, allow_duplicate=allow_duplicate))

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
        return await self.db.run(
            lambda c: claims.claim(c, worker_id, request, now, self.breaker_cfg))

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
        if not (succeeded or failed or retry or release) and then_claim is None:
            return CompletionResult([])
        return await self.db.run(lambda c: outcomes.record_then_claim(
            c, worker_id, succeeded=succeeded, failed=failed, retry=retry, release=release,
            release_reason=release_reason, then_claim=then_claim,
            breaker_cfg=self.breaker_cfg, now=now))

    async def extend_leases(
        self, worker_id: str, claims_held: Sequence[tuple[int, int]], lease_s: float
    ) -> list[Claim]:
        """Extend the leases *worker_id* still holds to now + *lease_s*; the claims it still
        holds (see leases.extend)."""
        now = self.clock()
        return await self.db.run(
            lambda c: leases.extend(c, worker_id, claims_held, until=now + lease_s, now=now))

    async def rescue_expired(
        self,
        *,
        older_than_s: float | None = None,
        worker_id: str | None = None,
        locked_by: str | None = None,
        audit_by: str | None = None,
    ) -> ActionResult:
        """Take back running jobs whose lease expired (see leases.rescue_expired)."""
        now = self.clock()
        return await self.db.run(lambda c: leases.rescue_expired(
            c, older_than_s=older_than_s, worker_id=worker_id, locked_by=locked_by,
            audit_by=audit_by, now=now))

    # -- operator actions (transitions, controls) ---------------------------------------------

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
        """Operator retry of failed and blocked jobs (see transitions.retry)."""
        if job_ids is None and dealer_id is None and job_type is None and not all_failed:
            raise UsageError("retry needs --job ID, --dealer ID, --type T or --all-failed.")
        now = self.clock()
        return await self.db.run(lambda c: transitions.retry(
            c, self.rules, job_ids=job_ids, dealer_id=dealer_id, job_type=job_type, by=by,
            reason=reason, now=now))

    async def cancel(
        self, job_ids: Sequence[int], *, by: str | None = None, reason: str | None = None
    ) -> ActionResult:
        """Cancel jobs in any state but succeeded; their waiting descendants become blocked."""
        now = self.clock()
        return await self.db.run(
            lambda c: transitions.cancel(c, job_ids, by=by, reason=reason, now=now))

    async def skip(
        self, job_ids: Sequence[int], *, reason: str, by: str | None = None
    ) -> ActionResult:
        """Mark jobs `skipped` without running them (see transitions.skip)."""
        now = self.clock()
        return await self.db.run(
            lambda c: transitions.skip(c, job_ids, reason=reason, by=by, now=now))

    async def rerun(
        self,
        *,
        job_id: int | None = None,
        dealer_id: str | None = None,
        pipeline_id: int | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> ActionResult:
        """Run a finished job again with its descendants, or a whole pipeline (see
        transitions.rerun)."""
        if (job_id is None) == (dealer_id is None and pipeline_id is None):
            raise UsageError("rerun needs exactly one of --job ID, --dealer ID or "
                             "--pipeline ID.")
        now = self.clock()
        return await self.db.run(lambda c: transitions.rerun(
            c, self.rules, job_id=job_id, dealer_id=dealer_id, pipeline_id=pipeline_id, by=by,
            reason=reason, now=now))

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
        now = self.clock()
        await self.db.run(lambda c: controls.set_paused(
            c, paused, dealer_id=dealer_id, job_type=job_type, by=by, reason=reason, now=now))

    # -- reads --------------------------------------------------------------------------------

    async def pauses(self) -> list[Pause]:
        return await self.db.run(controls.pauses, write=False)

    async def audit_entries(
        self, *, limit: int = 100, since: float | None = None
    ) -> list[AuditEntry]:
        """Operator actions, newest first."""
        return await self.db.run(lambda c: audit.entries(c, limit=limit, since=since),
                                 write=False)

    async def breaker_states(self) -> list[BreakerRow]:
        """Every breaker: key, dealer_id, job_type, state, failures, opened_at, half_open_at."""
        return await self.db.run(job_reads.breaker_states, write=False)

    async def list_dealers(self) -> list[Dealer]:
        return await self.db.run(job_reads.list_dealers, write=False)

    async def dealer_ids(self) -> list[str]:
        return await self.db.run(job_reads.dealer_ids, write=False)

    async def get_job(self, job_id: int) -> Job | None:
        return await self.db.run(lambda c: job_reads.get_job(c, job_id), write=False)

    async def list_jobs(
        self,
        *,
        dealer_id: str | None = None,
        states: Sequence[str] | None = None,
        job_ids: Sequence[int] | None = None,
    ) -> list[Job]:
        return await self.db.run(lambda c: job_reads.list_jobs(
            c, dealer_id=dealer_id, states=states, job_ids=job_ids), write=False)

    async def open_jobs(
        self, dealers: list[str] | None = None,
    ) -> tuple[list[Job], list[Job], list[tuple[int, int]]]:
        """Open jobs, the finished parents they wait on, the edges into them (current.py)."""
        return await self.db.run(lambda c: open_jobs(c, dealers), write=False)

    async def edges(self, *, dealer_id: str | None = None) -> list[tuple[int, int]]:
        """Dependency edges as (parent_id, child_id)."""
        return await self.db.run(lambda c: job_reads.edges(c, dealer_id=dealer_id), write=False)

    async def status(self) -> StoreStatus:
        """Counts by state, by job type and by dealer, pauses and workers (the JSON contract)."""
        return await self.db.run(lambda c: read_status(c, self.rules), write=False)
