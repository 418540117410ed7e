"""Lease keeping: extend the leases of running jobs (and stop the runs whose claim was taken),
and rescue the expired leases of workers that died."""

from __future__ import annotations

import time

import anyio

from dealertui.engine.events import LeasesRescued
from dealertui.engine.runs import RunSupervision


class LeaseKeeping(RunSupervision):
    """The heartbeat and the rescuer, two side tasks of a run."""


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
