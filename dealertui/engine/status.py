"""`status`: the store's counts, workers and recent runs, with the fairness meter, the dealers
the config no longer names and whether each worker is alive. Composed once here, for
`status`, `status --json` and anything else that shows the fleet's state."""

from __future__ import annotations

from typing import Any

from dealertui.config import Config
from dealertui.engine.actions import unconfigured_dealers
from dealertui.store import JobStore
from dealertui.store.reads import fairness


async def status_report(store: JobStore, config: Config) -> dict[str, Any]:
    """The `status --json` object (README, "status --json")."""
    status = await store.status()
    status["fairness"] = await fairness(store)
    status["dealers_not_in_config"] = unconfigured_dealers(config, list(status["by_dealer"]))
    now = store.clock()
    for w in status["workers"]:
        # a worker whose heartbeat is older than a lease has let its leases run out
        w["alive"] = now - w["heartbeat_at"] <= config.concurrency.lease_s
    return status
