"""Embedding dealertui: the seed's `new MultiDealerDependencyManager(3, 2)`, from Python.

Run it in an empty directory: it creates feeds.db there, enqueues one pipeline for each of two
dealers, runs them and prints the stats and the dependency graph (README, "Embedding").
"""

import anyio

import dealertui


async def homenet(ctx: dealertui.JobContext) -> dict:
    return {"rows": 120}


async def main() -> None:
    async with dealertui.open(
        "sqlite:///feeds.db",
        job_types=[dealertui.JobType("homenet", handler=homenet),
                   dealertui.JobType("dealer_com", depends_on=["homenet"], handler=homenet)],
        dealers=["d001", "d002"],
        max_concurrent_dealers=3, max_concurrent_jobs_per_dealer=2,
    ) as manager:                      # the MultiDealerDependencyManager
        await manager.enqueue(["d001", "d002"])
        stats = await manager.process_multi_dealer_jobs(limit=10)
        print(stats.processed_jobs, stats.success_rate)
        print(await manager.get_dependency_graph_visualization())


anyio.run(main)
