"""Outcome batching: the completer gathers outcomes for a few milliseconds and records them
with one `store.finish` call, which also promotes children (and, on SQLite, makes the next
claim in the same transaction)."""

from __future__ import annotations

import time

import anyio

from dealertui.engine.claiming import Claiming
from dealertui.engine.events import JobBlocked, JobFailed, JobRetrying, JobSucceeded
from dealertui.engine.resilience import backoff_delay
from dealertui.engine.runstate import Outcome
from dealertui.model import JobOutcome

FLUSH_INTERVAL_S = 0.004


class OutcomeRecording(Claiming):
    """Records ended runs in batches and counts them in the run's stats."""

    async def _completer(self) -> None:
        while True:
            await self._have_outcomes.wait()
            if self._in_flight and not self._batch_ended.is_set():
                # let a batch gather: up to FLUSH_INTERVAL_S, or until the jobs of one claim
                # have all ended (a fixed sleep idles 4 ms in every cycle of claim, run, flush
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

    async def _flush(self, batch: list[Outcome], claim: bool = True) -> None:
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
