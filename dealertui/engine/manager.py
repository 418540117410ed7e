"""MultiDealerDependencyManager: claims ready jobs, runs them, records outcomes — in batches.

Three loops share one anyio task group:
- the claimer (claiming.py) fills free slots with one claim per batch (the store enforces the
  per-dealer limit across every worker; this process enforces its own dealer limit);
- every claimed job runs as its own task, under its job type's timeout (runs.py);
- the completer (outcomes.py) gathers outcomes for a few milliseconds and records them with one
  `store.finish` call, which also promotes children, so jobs that become ready mid-run are
  claimed in the same run (on SQLite that call makes the next claim too, in the same
  transaction; at most one claim is in flight at a time).
Side tasks (lease heartbeat, lease rescuer: leases.py; stats tick) live in the same group and
stop with it. This module holds the seed's API, the controls and the run's lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from dealertui.config import Config
from dealertui.engine import graph as graphs
from dealertui.engine import upkeep
from dealertui.engine.events import EventBus, LeasesRescued, StatsTick
from dealertui.engine.leases import LeaseKeeping
from dealertui.engine.outcomes import OutcomeRecording
from dealertui.engine.process import freeze_startup_heap, make_worker_id
from dealertui.engine.runstate import Claim, Outcome
from dealertui.errors import StoreUnavailable
from dealertui.handlers import HandlerRegistry
from dealertui.model import ClaimedJob, DependencyGraph, Job, ProcessingStats
from dealertui.store import JobStore

STATS_TICK_S = 0.5


def _lone_store_error(group: BaseExceptionGroup) -> StoreUnavailable | None:
    """The StoreUnavailable in *group* if that is all it holds, else None."""
    matched, rest = group.split(StoreUnavailable)
    if matched is None or rest is not None:
        return None
    exc: BaseException = matched
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc if isinstance(exc, StoreUnavailable) else None


class MultiDealerDependencyManager(LeaseKeeping, OutcomeRecording):
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
        #: what the front end will exit with after this run, recorded with it (`runs`); a
        #: run-once sets it (it knows its signals), the console leaves None
        self.exit_code_of: Callable[[ProcessingStats], int | None] = lambda _stats: None
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
        self._in_flight: dict[Claim, ClaimedJob] = {}
        self._dealer_load: Counter[str] = Counter()
        self._pending: list[Outcome] = []
        self._wake = anyio.Event()
        self._have_outcomes = anyio.Event()
        # set when the last running job ends, or the last of one claim's jobs: the completer
        # stops gathering then (nothing else of that claim can join the batch)
        self._batch_ended = anyio.Event()
        self._idle = anyio.Event()
        self._flushing = False
        self._job_tasks: dict[Claim, asyncio.Task[None]] = {}
        #: the newest run's claim of each job id, so that a new claim of a job waits for the
        #: old run to end: never two handlers of one job at once in this worker
        self._job_runs: dict[int, Claim] = {}
        self._timed_out: set[Claim] = set()  # runs cancelled by their type's timeout
        self._lost: set[Claim] = set()  # runs whose claim was taken (cancelled, rescued)
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
        jobs), atomically; the new job ids. An embedder has no CLI to enqueue with."""
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

    @property
    def paused(self) -> bool:
        return self._paused

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
            # stopped (released uncharged): recorded first, before the rescue below, which
            # would take the jobs back as "lease expired" and charge an attempt: a job that
            # succeeded during an outage must not fail with "no attempts left".
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
        if rescued.changed:  # logged and counted like the rescuer's
            self.bus.emit(LeasesRescued(len(rescued.changed), time.time()))
        # schedules due and history past retention, before the claims: a run-once fired by
        # cron processes the pipelines its own upkeep enqueued
        await upkeep.run_once(self.store, self.config, self.worker_id, self.bus)
        ended = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._completer)
                tg.start_soon(self._heartbeat)
                tg.start_soon(self._ticker)
                if wait:
                    tg.start_soon(self._rescuer)
                    tg.start_soon(upkeep.forever, self.store, self.config, self.worker_id,
                                  self.bus)
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
                    # a whole retry budget per call, so a stopping worker exits in time
                    with (self.store.db.short_retries(2.0) if not ended or self._aborting
                          else contextlib.nullcontext()):
                        await self.store.unregister_worker(self.worker_id)
                        await self.store.record_run(
                            self.worker_id, self.kind, self._started_at,
                            self._stats.to_dict(), host=socket.gethostname(),
                            exit_code=self.exit_code_of(self._stats),
                        )
                except StoreUnavailable:
                    pass  # the database is what went away; the error that brought us here says so
        return self._stats

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(STATS_TICK_S)
            if self.bus.active:
                self.bus.emit(StatsTick(self.get_processing_stats(), len(self._in_flight),
                                        time.time()))
