"""MultiDealerDependencyManager: claims ready jobs, runs them, records outcomes — in batches.

Three loops share one anyio task group:
- the claimer fills free slots with one claim per batch (the store enforces the per-dealer
  limit across every worker; this process enforces its own dealer limit);
- every claimed job runs as its own task, under its job type's timeout;
- the completer gathers outcomes for a few milliseconds and records them with one
  `store.finish` call, which also promotes children, so jobs that become ready mid-run are
  claimed in the same run (on SQLite that call makes the next claim too, in the same
  transaction; at most one claim is in flight at a time).
Side tasks (lease heartbeat, lease rescuer, stats tick) live in the same group and stop with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from dealertui.config import Config
from dealertui.engine import graph as graphs
from dealertui.engine.events import (
    EventBus,
    JobBlocked,
    JobFailed,
    JobRetrying,
    JobStarted,
    JobSucceeded,
    LeasesRescued,
    StatsTick,
)
from dealertui.engine.resilience import backoff_delay
from dealertui.errors import StoreUnavailable
from dealertui.handlers import HandlerRegistry, JobContext, PermanentError, TransientError
from dealertui.model import (
    ClaimedJob,
    ClaimRequest,
    ClaimResult,
    DependencyGraph,
    Job,
    JobOutcome,
    ProcessingStats,
)
from dealertui.store import JobStore

#: a run's claim, (job id, fencing token): what the manager keys each run by
_Claim = tuple[int, int]

CLAIM_BATCH = 1024
DEFAULT_TIMEOUT_S = 300.0  # a job type missing from the config (its handler fails anyway)
FLUSH_INTERVAL_S = 0.004
IDLE_POLL_S = 0.5
STATS_TICK_S = 0.5


@dataclass(slots=True)
class _Outcome:
    job: ClaimedJob
    claim: _Claim  # the run's (job id, token)
    kind: str  # ok | failed | retry | release | lost
    error: str | None
    duration_s: float


class _Deadline:
    """The timeout shared by the jobs of one type started in one batch."""

    __slots__ = ("handle", "tasks", "timed_out", "timeout_s")

    def __init__(self, timed_out: set[_Claim], timeout_s: float) -> None:
        self.timed_out = timed_out  # the manager's: _run_job tells a timeout from a stop by it
        self.timeout_s = timeout_s
        self.tasks: dict[_Claim, asyncio.Task[None]] = {}
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.tasks:
            self.handle = loop.call_later(self.timeout_s, self._expire)

    def done(self, claim: _Claim) -> None:
        """Called by the job's task as it ends."""
        self.tasks.pop(claim, None)
        if not self.tasks and self.handle is not None:
            self.handle.cancel()  # everyone finished in time: drop the timer (and us)
            self.handle = None

    def _expire(self) -> None:
        self.handle = None
        for claim, task in list(self.tasks.items()):
            if not task.done():
                self.timed_out.add(claim)
                task.cancel()


def _lone_store_error(group: BaseExceptionGroup) -> StoreUnavailable | None:
    """The StoreUnavailable in *group* if that is all it holds, else None."""
    matched, rest = group.split(StoreUnavailable)
    if matched is None or rest is not None:
        return None
    exc: BaseException = matched
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc if isinstance(exc, StoreUnavailable) else None


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Take every object alive now (modules, SQLAlchemy's and Textual's caches, the config)
    out of the cyclic garbage collector's view, once per process. They live as long as the
    process, yet each full collection scanned them all: ~30 ms once per 10,000 bench jobs,
    the event loop stalled meanwhile. Garbage is collected first, so none is kept forever."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def make_worker_id(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MultiDealerDependencyManager:
    """The seed's manager: per-dealer dependency-ordered processing with bounded concurrency."""

    def __init__(
        self,
        store: JobStore,
        config: Config,
        max_concurrent_dealers: int | None = None,
        max_concurrent_jobs_per_dealer: int | None = None,
        *,
        bus: EventBus | None = None,
        kind: str = "run-once",
        worker_id: str | None = None,
        only_dealers: list[str] | None = None,
        handlers: HandlerRegistry | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.max_concurrent_dealers = (
            max_concurrent_dealers or config.concurrency.max_concurrent_dealers
        )
        self.max_concurrent_jobs_per_dealer = (
            max_concurrent_jobs_per_dealer or config.concurrency.max_concurrent_jobs_per_dealer
        )
        self.lease_s = config.concurrency.lease_s
        self.bus = bus or EventBus()
        self.kind = kind
        self.worker_id = worker_id or make_worker_id(kind)
        self.only_dealers = only_dealers
        self.handlers = handlers or HandlerRegistry(dict(config.job_types))
        # Only the job types of this worker's config are claimed: a job of a type it does not
        # know waits for a worker that does (a rolling deploy adds or drops types), instead
        # of failing for good and blocking its children.
        self._job_types = tuple(sorted(config.job_types))
        #: ready -> started latency of every job claimed in this run, in milliseconds
        self.latencies_ms: deque[float] = deque(maxlen=200_000)
        self._stats = ProcessingStats()
        self._dealers_seen: set[str] = set()
        # Everything held for a run is keyed by its claim, not its job id: after a cancel and
        # a retry this worker can hold the same job under a new claim while the old run's task
        # is still ending.
        self._in_flight: dict[_Claim, ClaimedJob] = {}
        self._dealer_load: Counter[str] = Counter()
        self._pending: list[_Outcome] = []
        self._wake = anyio.Event()
        self._have_outcomes = anyio.Event()
        # set when the last running job ends, or the last of one claim's jobs: the completer
        # stops gathering then (nothing else of that claim can join the batch)
        self._batch_ended = anyio.Event()
        self._idle = anyio.Event()
        self._flushing = False
        self._job_tasks: dict[_Claim, asyncio.Task[None]] = {}
        #: the newest run's claim of each job id, so that a new claim of a job waits for the
        #: old run to end: never two handlers of one job at once in this worker
        self._job_runs: dict[int, _Claim] = {}
        self._timed_out: set[_Claim] = set()  # runs cancelled by their type's timeout
        self._lost: set[_Claim] = set()  # runs whose claim was taken (cancelled, rescued)
        self._aborting: str | None = None
        self._limit: int | None = None  # of this run's jobs
        # the last flush claimed in its own transaction (SQLite) and took every job it could
        self._flush_claimed_all = False
        self._claiming = False  # a claim is in flight (at most one at a time)
        self._paused = False
        self._stopping = False
        self._started_at = 0.0
        self._t0 = 0.0

    # -- the seed's API ---------------------------------------------------------------------

    async def process_multi_dealer_jobs(self, limit: int | None = None) -> ProcessingStats:
        """Run ready jobs (and those that become ready meanwhile) until none is left or
        *limit* jobs were started; returns this run's stats."""
        return await self.run(wait=False, limit=limit)

    async def build_dependency_graph(self, dealer_id: str | None = None) -> DependencyGraph:
        """The jobs and edges in the store (one dealer's, or all), or the job-type graph."""
        return await graphs.build(self.store, self.config, dealer_id)

    async def get_ready_jobs_for_dealer(self, dealer_id: str) -> list[Job]:
        """The dealer's jobs that are ready now, in the order a claim would take them."""
        now = time.time()
        jobs = await self.store.list_jobs(dealer_id=dealer_id, states=["ready"])
        return sorted((j for j in jobs if j.run_after <= now), key=lambda j: (j.priority, j.id))

    async def enqueue(
        self, dealers: Sequence[str], types: Sequence[str] | None = None, *,
        payload: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """One pipeline per dealer (every job type, or *types* linked to their parents' latest
        jobs), atomically; the new job ids. The seed had no such call: its jobs came from
        elsewhere, and an embedder has no CLI to enqueue with."""
        return await self.store.enqueue(dealers, types, payload=payload)

    async def get_dependency_graph_visualization(self, dealer_id: str | None = None) -> str:
        """The dependency graph as text, each node marked with its state."""
        return graphs.render(await self.build_dependency_graph(dealer_id))

    def get_processing_stats(self) -> ProcessingStats:
        """Stats of the current (or last) run, with processing time up to now."""
        if self._t0 and not self._idle.is_set():
            self._stats.processing_time_ms = (time.perf_counter() - self._t0) * 1000
        return self._stats

    def reset_processing_stats(self) -> None:
        self._stats = ProcessingStats()
        self._dealers_seen.clear()
        self.latencies_ms.clear()

    def pause(self) -> None:
        """Stop claiming (running jobs finish); this process only — see Operator for fleets."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._flush_claimed_all = False
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming and return from run() once running jobs have finished."""
        self._stopping = True
        self._wake.set()

    def abort(self, reason: str = "worker stopped") -> None:
        """Hard stop: stop claiming and cancel running jobs. They are released as `retrying`,
        due at once and not charged an attempt, so any worker picks them up again."""
        self._stopping = True
        self._aborting = reason
        self._cancel_running()
        self._wake.set()

    def _cancel_running(self, claims: Iterable[_Claim] | None = None) -> None:
        """Cancel the tasks of *claims* (default: every run); each run's release (or, for a
        run in _lost, its end) is recorded as its task ends."""
        for claim in list(self._job_tasks) if claims is None else list(claims):
            task = self._job_tasks.get(claim)
            if task is None:
                continue
            task.cancel()
            # A task cancelled before its first step never runs _run_job, so nothing would
            # record its job (and run() waited for it forever): release it when the task ends.
            task.add_done_callback(functools.partial(self._release_unstarted, claim))

    def _release_unstarted(self, claim: _Claim, task: asyncio.Task[None]) -> None:
        job = self._in_flight.get(claim)
        if job is not None:  # still ours: its coroutine never ran
            self._forget_run(claim)
            if claim in self._lost:
                self._lost.discard(claim)
                self._ended(job, claim, "lost", None, 0.0, None)
            else:
                self._ended(job, claim, "release", self._aborting or "worker stopped", 0.0,
                            None)

    def _forget_run(self, claim: _Claim) -> None:
        self._job_tasks.pop(claim, None)
        if self._job_runs.get(claim[0]) == claim:
            del self._job_runs[claim[0]]

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def _busy(self) -> bool:
        """Jobs still running, or outcomes not yet recorded (which may promote children)."""
        return bool(self._in_flight or self._pending or self._flushing)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- running ------------------------------------------------------------------------------

    async def run(self, wait: bool = True, limit: int | None = None) -> ProcessingStats:
        """Process jobs. wait=False drains what is ready and returns (`--run-once`);
        wait=True keeps polling for new work until stop() (`worker`, the console)."""
        self._stopping = False
        self._aborting = None
        self._limit = limit
        self._flush_claimed_all = False
        self._idle = anyio.Event()
        freeze_startup_heap()
        self._started_at = time.time()
        self._t0 = time.perf_counter()
        await self.store.register_worker(
            self.worker_id, host=socket.gethostname(), pid=os.getpid(), kind=self.kind,
            job_types=list(self.config.job_types),
        )
        if self._pending:
            # Outcomes a database outage kept the last run from recording, and the jobs it
            # stopped (released uncharged): recorded first. Dropped, as they were, the jobs
            # came back through the rescue below as "lease expired", charged an attempt: a
            # job that had succeeded during a 40 s outage failed ("no attempts left").
            carried, self._pending = self._pending, []
            try:
                await self._flush(carried, claim=False)
            except BaseException:
                self._pending[:0] = carried
                raise
        # expired leases of dead workers, and our own jobs from a run that a database
        # outage cut short (same worker id, so they cannot be running any more)
        rescued = await self.store.rescue_expired(worker_id=self.worker_id,
                                                  locked_by=self.worker_id)
        if rescued.changed:  # logged and counted like the rescuer's (they were silent)
            self.bus.emit(LeasesRescued(len(rescued.changed), time.time()))
        ended = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._completer)
                tg.start_soon(self._heartbeat)
                tg.start_soon(self._ticker)
                if wait:
                    tg.start_soon(self._rescuer)
                await self._claim_loop(wait=wait)
                while self._busy:
                    self._wake = anyio.Event()
                    await self._wake.wait()
                tg.cancel_scope.cancel()
            ended = True
        except BaseExceptionGroup as group:
            # A side task's StoreUnavailable (e.g. the completer's finish) reaches us wrapped
            # in the task group's ExceptionGroup; callers (the worker's reconnect loop,
            # --run-once's exit 3) catch the bare error.
            lone = _lone_store_error(group)
            if lone is None:
                raise
            raise lone from None
        finally:
            self._stats.processing_time_ms = (time.perf_counter() - self._t0) * 1000
            self._idle.set()
            if not ended and self._aborting is None:
                # cut short (the database went away): running jobs are stopped and kept as
                # releases for the next run to record, like the outcomes not yet recorded
                self._aborting = f"{self.kind} lost the database"
            with anyio.CancelScope(shield=True):
                self._cancel_running()
                if self._job_tasks:
                    await asyncio.wait(list(self._job_tasks.values()))
                await self.handlers.aclose()
                try:
                    # after an outage or a hard stop, a database that is down gets 2 s, not
                    # a whole retry budget per call (the worker took ~58 s to exit)
                    with (self.store.db.short_retries(2.0) if not ended or self._aborting
                          else contextlib.nullcontext()):
                        await self.store.unregister_worker(self.worker_id)
                        await self.store.record_run(
                            self.worker_id, self.kind, self._started_at,
                            self._stats.to_dict(),
                        )
                except StoreUnavailable:
                    pass  # the database is what went away; the error that brought us here says so
        return self._stats

    def _claim_shares(self) -> int:
        """Into how many claims the slots are split, so that the next claim can be made while
        the outcomes of the last one are recorded.

        Postgres: 2. The claim and the flush run in server processes on two connections at
        once while this process runs jobs: `dealertui bench` 6,309 -> 7,258 jobs/s (medians
        of 5), though the server does 30% more work in the twice as many, half as big
        statements. SQLite: 1, everything in one claim. It has one writer, and each statement
        of a transaction comes back through this thread: a claim could not make progress while
        this thread ran jobs, and the half-size claims cost 20% (10,535 -> 8,633 jobs/s).
        """
        return 1 if self.store.db.is_sqlite else 2

    async def _claim_loop(self, *, wait: bool) -> None:
        shares = self._claim_shares()
        while not self._stopping:
            wake = self._wake = anyio.Event()
            if self._paused:
                await wake.wait()
                continue
            capacity = self._slots - len(self._in_flight)
            free_dealers = self.max_concurrent_dealers - len(self._dealer_load)
            share_jobs, share_dealers = self._share(shares)
            if (self._pending or self._flushing) and (
                shares == 1 or (capacity < share_jobs and free_dealers < share_dealers)
            ):
                # Outcomes are about to be recorded: that frees slots and promotes children,
                # so claim after it, unless a whole share of the slots is free already.
                # Claiming whatever was free meanwhile made claims and flushes alternate in
                # slivers (300 flushes of ~33 jobs per 10,000 jobs measured). SQLite's flush
                # makes that claim itself, in its own transaction (see _completer).
                await wake.wait()
                continue
            if self._limit_reached():
                return
            again = False
            if self._flush_claimed_all:
                # the flush that woke us claimed in its transaction, and took every job it
                # could: claiming again before anything changes would find nothing
                self._flush_claimed_all = False
            else:
                ask = self._claim_request(shares)
                if ask is not None:
                    request, more_dealers = ask
                    self._claiming = True
                    try:
                        result = await self.store.claim(
                            self.worker_id, request.limit, per_dealer=request.per_dealer,
                            lease_s=request.lease_s, max_dealers=request.max_dealers,
                            active_dealers=request.active_dealers,
                            only_dealers=request.only_dealers, job_types=request.job_types,
                        )
                    finally:
                        self._claiming = False
                    again = self._claimed(request, more_dealers, result)
            if again or wake.is_set():
                # woken during the claim (e.g. a flush promoted children after the claim's
                # snapshot was taken, as Postgres allows), or the claim was full: claim again.
                # A claim that came back short took every job it could: claiming again before
                # anything changes found nothing (22 of 52 claims per 10,000 bench jobs,
                # 8.6 ms each), so wait for a flush, a control or the idle poll instead.
                continue
            if not wait and not self._busy:
                return  # drained: nothing claimable, nothing running, nothing to record
            if wait:
                with anyio.move_on_after(IDLE_POLL_S):
                    await wake.wait()
            else:
                await wake.wait()

    @property
    def _slots(self) -> int:
        return self.max_concurrent_dealers * self.max_concurrent_jobs_per_dealer

    def _share(self, shares: int) -> tuple[int, int]:
        """(jobs, new dealers) one claim may take when the slots are split into *shares*."""
        return -(-self._slots // shares), -(-self.max_concurrent_dealers // shares)

    def _limit_reached(self) -> bool:
        return self._limit is not None and self._stats.total_jobs >= self._limit

    def _claim_request(self, shares: int) -> tuple[ClaimRequest, bool] | None:
        """The next claim (at most one share of the slots), and whether more new dealers may
        start than it asks for; None when no claim can win."""
        if self._claiming or self._stopping or self._paused or self._limit_reached():
            return None  # (a claim in flight: its jobs are not counted yet, so no second one)
        capacity = self._slots - len(self._in_flight)
        if self._limit is not None:
            capacity = min(capacity, self._limit - self._stats.total_jobs)
        active = tuple(self._dealer_load)
        free_dealers = max(self.max_concurrent_dealers - len(active), 0)
        if len(active) >= self.max_concurrent_dealers and all(
            n >= self.max_concurrent_jobs_per_dealer for n in self._dealer_load.values()
        ):
            return None  # every slot this worker may use is taken: a claim cannot win
        share_jobs, share_dealers = self._share(shares)
        new_dealers = min(free_dealers, share_dealers)
        asked = min(capacity, share_jobs, CLAIM_BATCH)
        if asked <= 0:
            return None
        request = ClaimRequest(asked, self.max_concurrent_jobs_per_dealer, self.lease_s,
                               new_dealers, active,
                               None if self.only_dealers is None else tuple(self.only_dealers),
                               self._job_types)
        return request, new_dealers < free_dealers

    def _claimed(self, request: ClaimRequest, more_dealers: bool, result: ClaimResult) -> bool:
        """Start what a claim took; True when it was full (of jobs, or of new dealers while
        more may start), so that claiming again may find more."""
        self._stats.dependency_violations += result.dependency_violations
        jobs = result.jobs
        self._start(jobs)
        if not jobs:
            return False
        if len(jobs) == request.limit:
            return True
        assert request.max_dealers is not None
        new = {j.dealer_id for j in jobs}.difference(request.active_dealers)
        return more_dealers and len(new) >= request.max_dealers

    def _start(self, jobs: list[ClaimedJob]) -> None:
        now = time.time()
        emit = self.bus.active
        loop = asyncio.get_running_loop()
        # One timer per job type of the batch, not an asyncio.timeout per job: every job of a
        # batch starts now, so they share their type's deadline (~10 µs a job saved, measured
        # with py-spy on `dealertui bench`). The timer cancels whichever are still running and
        # is itself cancelled once the last of them ends.
        by_type: dict[str, _Deadline] = {}
        job_types = self.config.job_types
        left = [len(jobs)]  # jobs of this claim still running
        for job in jobs:
            claim = job.claim
            self._in_flight[claim] = job
            self._dealer_load[job.dealer_id] += 1
            self._dealers_seen.add(job.dealer_id)
            if job.ready_at is not None:
                self.latencies_ms.append(max(now - job.ready_at, 0.0) * 1000)
            if emit:
                self.bus.emit(JobStarted(job.id, job.dealer_id, job.job_type, job.attempt, now))
            deadline = by_type.get(job.job_type)
            if deadline is None:
                jt = job_types.get(job.job_type)
                deadline = by_type[job.job_type] = _Deadline(
                    self._timed_out, jt.timeout_s if jt else DEFAULT_TIMEOUT_S
                )
            # A plain asyncio task, not tg.start_soon: anyio's task group costs ~36 µs per task
            # (measured: 10,000 no-op tasks 0.36 s vs 0.15 s), which alone would cap the engine
            # near 25,000 jobs/s. run() cancels and awaits any left when it ends.
            # No done callbacks: _run_job does their bookkeeping as it ends. Two callbacks per
            # task cost two add_done_callback and two call_soon per job (~12% of the engine's
            # own time in `dealertui bench`, cProfile).
            # The same job still running here under an older claim (cancelled, then retried
            # and claimed again before our heartbeat saw it): that run has lost its claim, so
            # stop it, and start the new handler only once it has ended.
            older = self._job_runs.get(job.id)
            before = None if older is None else self._job_tasks.get(older)
            if older is not None and before is not None:
                self._lost.add(older)
                self._cancel_running([older])
            task = loop.create_task(self._run_job(job, claim, deadline, left, before))
            self._job_tasks[claim] = deadline.tasks[claim] = task
            self._job_runs[job.id] = claim
        for deadline in by_type.values():
            deadline.arm(loop)
        self._stats.total_jobs += len(jobs)
        self._stats.dealers_processed = len(self._dealers_seen)

    async def _run_job(
        self, job: ClaimedJob, claim: _Claim, deadline: _Deadline, left: list[int],
        before: asyncio.Task[None] | None = None,
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            ctx = JobContext(
                job_id=job.id,
                dealer_id=job.dealer_id,
                job_type=job.job_type,
                attempt=job.attempt,
                payload=job.payload,
                demo=self.config.demo,
            )
            t0 = time.perf_counter()
            kind, error = "ok", None
            try:
                await self.handlers.get(job.job_type)(ctx)
            except PermanentError as exc:
                kind, error = "failed", str(exc) or type(exc).__name__
            except TransientError as exc:
                kind, error = "retry", str(exc) or type(exc).__name__
            except asyncio.CancelledError:
                if claim in self._timed_out:  # cancelled by its _Deadline, not by a stop
                    self._timed_out.discard(claim)
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    kind, error = "retry", f"timed out after {deadline.timeout_s:g}s"
                elif claim in self._lost:  # no longer ours: stopped, nothing to record
                    self._lost.discard(claim)
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    kind, error = "lost", None
                elif self._aborting is None:
                    raise  # run() is unwinding after an error: the lease will bring it back
                else:
                    kind, error = "release", self._aborting
            except Exception as exc:  # a handler's own bug: worth another try, with its message
                kind, error = "retry", f"{type(exc).__name__}: {exc}"
            self._ended(job, claim, kind, error, time.perf_counter() - t0, left)
        finally:
            deadline.done(claim)
            self._forget_run(claim)

    def _ended(
        self, job: ClaimedJob, claim: _Claim, kind: str, error: str | None,
        duration_s: float, left: list[int] | None,
    ) -> None:
        """Hand a job's outcome to the completer and free its slot."""
        self._pending.append(_Outcome(job, claim, kind, error, duration_s))
        del self._in_flight[claim]
        self._dealer_load[job.dealer_id] -= 1
        if not self._dealer_load[job.dealer_id]:
            del self._dealer_load[job.dealer_id]
        if left is not None:
            left[0] -= 1
        if left is None or not left[0] or not self._in_flight:
            self._batch_ended.set()
        self._have_outcomes.set()

    async def _completer(self) -> None:
        while True:
            await self._have_outcomes.wait()
            if self._in_flight and not self._batch_ended.is_set():
                # let a batch gather: up to FLUSH_INTERVAL_S, or until the jobs of one claim
                # have all ended (a fixed sleep idled 4 ms in every cycle of claim, run, flush
                # when jobs finish at once, ~11% of `dealertui bench`)
                with anyio.move_on_after(FLUSH_INTERVAL_S):
                    await self._batch_ended.wait()
            self._batch_ended = anyio.Event()
            self._have_outcomes = anyio.Event()
            batch, self._pending = self._pending, []
            self._flushing = True
            try:
                await self._flush(batch)
            except BaseException:
                # not known to be recorded: kept for the next run (finish ignores jobs that
                # are no longer running under our lease, so recording twice is harmless)
                self._pending[:0] = batch
                raise
            finally:
                self._flushing = False
            self._wake.set()

    async def _flush(self, batch: list[_Outcome], claim: bool = True) -> None:
        if not batch:
            return
        # SQLite: the claim that follows a flush is made in the flush's transaction (both
        # need the one writer anyway): 35 -> 20 transactions, each a begin, a checkout and a
        # commit, per 10,000 bench jobs; 15,555 -> 16,140 jobs/s (medians of 20, interleaved).
        ask = self._claim_request(1) if claim and self._claim_shares() == 1 else None
        ok = [o.claim for o in batch if o.kind == "ok"]
        released = [o.claim for o in batch if o.kind == "release"]
        failed = [JobOutcome(o.job.id, o.error, token=o.job.token) for o in batch
                  if o.kind == "failed"]
        retry = []
        for o in batch:
            if o.kind == "retry":
                jt = self.config.job_types.get(o.job.job_type)
                policy = jt.retry if jt else self.config.retry
                retry.append(JobOutcome(o.job.id, o.error, backoff_delay(policy, o.job.attempt),
                                        o.job.token))
        if ask is not None:
            self._claiming = True
        try:
            result = await self.store.finish(
                self.worker_id, succeeded=ok, failed=failed, retry=retry, release=released,
                release_reason=next((o.error for o in batch if o.kind == "release"), None),
                then_claim=None if ask is None else ask[0],
            )
        finally:
            if ask is not None:
                self._claiming = False
        landed, dead = result.landed, set(result.failed)
        delays = {r.job_id: r.delay_s for r in retry}
        now = time.time()
        emit = self.bus.active
        stats = self._stats
        for o in batch:
            j = o.job
            if o.kind == "lost" or o.claim not in landed:
                continue  # no longer ours under this claim (cancelled, rescued, reset)
            if o.kind == "release":
                stats.released_jobs += 1  # handed back unfinished: no outcome, but retrying
                continue
            stats.processed_jobs += 1
            if o.kind == "ok":
                stats.successful_jobs += 1
                stats.count(j.dealer_id, j.job_type, "succeeded")
                if emit:
                    self.bus.emit(JobSucceeded(j.id, j.dealer_id, j.job_type, j.attempt, now,
                                               o.duration_s))
            elif j.id in dead:
                stats.failed_jobs += 1
                stats.count(j.dealer_id, j.job_type, "failed")
                if emit:
                    self.bus.emit(JobFailed(j.id, j.dealer_id, j.job_type, j.attempt, now,
                                            o.error or ""))
            else:
                stats.retried_jobs += 1
                stats.count(j.dealer_id, j.job_type, "retrying")
                if emit:
                    self.bus.emit(JobRetrying(j.id, j.dealer_id, j.job_type, j.attempt, now,
                                              o.error or "", delays.get(j.id, 0.0)))
        stats.blocked_jobs += len(result.blocked)
        if emit:
            for job_id in result.blocked:
                dealer_id, job_type = result.blocked_as.get(job_id, ("", ""))
                self.bus.emit(JobBlocked(job_id, dealer_id, job_type, 0, now,
                                         "an ancestor failed"))
        if ask is not None and result.claimed is not None:
            self._flush_claimed_all = not self._claimed(*ask, result.claimed)

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self.lease_s / 3)
            running = set(self._job_tasks)  # claimed (committed) before the heartbeat begins
            held = set(await self.store.extend_leases(self.worker_id, list(running),
                                                      self.lease_s))
            # Running here, not there under this claim: an operator cancelled or skipped it,
            # reset-stuck took it back, or it was claimed again since. Its handler is stopped
            # (an exec handler's process group killed) and its slot freed.
            lost = [c for c in running - held if c in self._job_tasks and c in self._in_flight]
            self._lost.update(lost)
            self._cancel_running(lost)

    async def _rescuer(self) -> None:
        while True:
            await anyio.sleep(max(self.lease_s / 2, 1.0))
            rescued = await self.store.rescue_expired(worker_id=self.worker_id)
            if rescued.changed:
                self.bus.emit(LeasesRescued(len(rescued.changed), time.time()))
                self._flush_claimed_all = False
                self._wake.set()  # rescued jobs are ready: claim them

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(STATS_TICK_S)
            if self.bus.active:
                self.bus.emit(StatsTick(self.get_processing_stats(), len(self._in_flight),
                                        time.time()))
