"""The claim loop: fill free slots with one claim per batch, within this worker's dealer
limit (the store enforces the per-dealer limit across every worker)."""

from __future__ import annotations

import anyio

from dealertui.engine.runs import RunSupervision
from dealertui.model import ClaimRequest, ClaimResult

CLAIM_BATCH = 1024
IDLE_POLL_S = 0.5


class Claiming(RunSupervision):
    """Decides when and how much to claim, claims, and starts what it took."""

    def _claim_shares(self) -> int:
        """Into how many claims the slots are split, so that the next claim can be made while
        the outcomes of the last one are recorded.

        Postgres: 2. The claim and the flush run in server processes on two connections at
        once while this process runs jobs: `dealertui bench` 6,309 -> 7,258 jobs/s (medians
        of 5), though the server does 30% more work in the twice as many, half as big
        statements. SQLite: 1, everything in one claim. It has one writer, and each statement
        of a transaction comes back through this thread: a claim cannot make progress while
        this thread runs jobs, and half-size claims cost 20% (10,535 -> 8,633 jobs/s).
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
                # Claiming whatever is free meanwhile makes claims and flushes alternate in
                # slivers (300 flushes of ~33 jobs per 10,000 jobs). SQLite's flush
                # makes that claim itself, in its own transaction (see _completer).
                await wake.wait()
                continue
            if self._limit_reached():
                return
            again = False
            if self._flush_claimed_all:
                # the flush that woke us claimed in its transaction, and took every job it
                # could: claiming again before anything changes finds nothing
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
                # A claim that comes back short took every job it could: claiming again before
                # anything changes finds nothing (22 of 52 claims per 10,000 bench jobs,
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
