"""What every command shares: opening the store for one intent, and printing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from dealertui.config import Config
from dealertui.model import Intent

if TYPE_CHECKING:
    from dealertui.engine.actions import Operator
    from dealertui.store import JobStore

# A person at a prompt wants an answer soon; workers ride out longer outages.
CLI_RETRY_BUDGET_S = 3.0


async def with_operator(config: Config, fn: Callable[[Operator], Awaitable[int]],
                        intent: Intent = Intent.CREATE) -> int:
    from dealertui.engine.actions import Operator
    from dealertui.store import open_store

    store = await open_store(config, intent, retry_budget_s=CLI_RETRY_BUDGET_S)
    try:
        return await fn(Operator(store, config))
    finally:
        await store.close()


async def read_store(config: Config) -> JobStore:
    from dealertui.store import open_store

    return await open_store(config, Intent.READ, retry_budget_s=CLI_RETRY_BUDGET_S)


def out(text: str = "") -> None:
    print(text, flush=True)
