"""Run supervision: every claimed job runs as its own task, keyed by its claim, under its job
type's timeout; a run whose claim was taken (cancelled, rescued, claimed again) is stopped.
Each run hands its outcome to the completer (outcomes.py) as it ends."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable

from dealertui.engine.events import JobStarted
from dealertui.engine.runstate import Claim, Outcome, RunState
from dealertui.handlers import JobContext, PermanentError, TransientError, payload_of
from dealertui.model import ClaimedJob

DEFAULT_TIMEOUT_S = 300.0  # a job type missing from the config (its handler fails anyway)


class Deadline:
    """The timeout shared by the jobs of one type started in one batch."""

    __slots__ = ("handle", "tasks", "timed_out", "timeout_s")

    def __init__(self, timed_out: set[Claim], timeout_s: float) -> None:
        self.timed_out = timed_out  # the manager's: _run_job tells a timeout from a stop by it
        self.timeout_s = timeout_s
        self.tasks: dict[Claim, asyncio.Task[None]] = {}
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.tasks:
            self.handle = loop.call_later(self.timeout_s, self._expire)

    def done(self, claim: Claim) -> None:
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


class RunSupervision(RunState):
    """Starts claimed jobs, ends them (in time, on a stop, on a lost claim), frees their slots."""

    def _cancel_running(self, claims: Iterable[Claim] | None = None) -> None:
        """Cancel the tasks of *claims* (default: every run); each run's release (or, for a
        run in _lost, its end) is recorded as its task ends."""
        for claim in list(self._job_tasks) if claims is None else list(claims):
            task = self._job_tasks.get(claim)
            if task is None:
                continue
            task.cancel()
            # A task cancelled before its first step never runs _run_job, so nothing would
            # record its job (and run() would wait for it forever): release it as the task ends.
            task.add_done_callback(functools.partial(self._release_unstarted, claim))

    def _release_unstarted(self, claim: Claim, task: asyncio.Task[None]) -> None:
        job = self._in_flight.get(claim)
        if job is not None:  # still ours: its coroutine never ran
            self._forget_run(claim)
            if claim in self._lost:
                self._lost.discard(claim)
                self._ended(job, claim, "lost", None, 0.0, None)
            else:
                self._ended(job, claim, "release", self._aborting or "worker stopped", 0.0,
                            None)

    def _forget_run(self, claim: Claim) -> None:
        self._job_tasks.pop(claim, None)
        if self._job_runs.get(claim[0]) == claim:
            del self._job_runs[claim[0]]

    def _start(self, jobs: list[ClaimedJob]) -> None:
        now = time.time()
        emit = self.bus.active
        loop = asyncio.get_running_loop()
        # One timer per job type of the batch, not an asyncio.timeout per job: every job of a
        # batch starts now, so they share their type's deadline (~10 µs a job saved, measured
        # with py-spy on `dealertui bench`). The timer cancels whichever are still running and
        # is itself cancelled once the last of them ends.
        by_type: dict[str, Deadline] = {}
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
                deadline = by_type[job.job_type] = Deadline(
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
        self, job: ClaimedJob, claim: Claim, deadline: Deadline, left: list[int],
        before: asyncio.Task[None] | None = None,
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            t0 = time.perf_counter()
            kind, error = "ok", None
            try:
                ctx = JobContext(
                    job_id=job.id,
                    dealer_id=job.dealer_id,
                    job_type=job.job_type,
                    attempt=job.attempt,
                    payload=payload_of(job.payload),
                    demo=self.config.demo,
                )
                await self.handlers.get(job.job_type)(ctx)
            except PermanentError as exc:
                kind, error = "failed", str(exc) or type(exc).__name__
            except TransientError as exc:
                kind, error = "retry", str(exc) or type(exc).__name__
            except asyncio.CancelledError:
                if claim in self._timed_out:  # cancelled by its Deadline, not by a stop
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
        self, job: ClaimedJob, claim: Claim, kind: str, error: str | None,
        duration_s: float, left: list[int] | None,
    ) -> None:
        """Hand a job's outcome to the completer and free its slot."""
        self._pending.append(Outcome(job, claim, kind, error, duration_s))
        del self._in_flight[claim]
        self._dealer_load[job.dealer_id] -= 1
        if not self._dealer_load[job.dealer_id]:
            del self._dealer_load[job.dealer_id]
        if left is not None:
            left[0] -= 1
        if left is None or not left[0] or not self._in_flight:
            self._batch_ended.set()
        self._have_outcomes.set()
