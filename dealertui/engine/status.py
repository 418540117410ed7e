"""`status`: the store's counts, workers and recent runs, with the fairness meter, the dealers
the config no longer names and whether each worker is alive. Composed once here, for
`status`, `status --json` and anything else that shows the fleet's state."""

from __future__ import annotations

from dealertui.config import Config
from dealertui.engine.actions import unconfigured_dealers
from dealertui.model import StatusReport, WorkerReport
from dealertui.store import JobStore
from dealertui.store.reads import fairness


async def status_report(store: JobStore, config: Config) -> StatusReport:
    """The `status --json` object (README, "status --json")."""
    s = await store.status()
    now = store.clock()
    return StatusReport(
        last_runs=s["last_runs"], disabled_dealers=s["disabled_dealers"], total=s["total"],
        by_state=s["by_state"], by_type=s["by_type"], by_dealer=s["by_dealer"],
        paused=s["paused"],
        # a worker whose heartbeat is older than a lease has let its leases run out
        workers=[WorkerReport(**w, alive=now - w["heartbeat_at"] <= config.concurrency.lease_s)
                 for w in s["workers"]],
        fairness=await fairness(store),
        dealers_not_in_config=unconfigured_dealers(config, list(s["by_dealer"])),
    )
