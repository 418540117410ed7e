"""`init-db`: create the schema before the first command that would."""

from __future__ import annotations

import argparse

from dealertui.cli.common import CLI_RETRY_BUDGET_S, out
from dealertui.config import Config
from dealertui.model import Intent


async def cmd_init_db(config: Config, args: argparse.Namespace) -> int:
    from dealertui.store import describe_database, open_store

    store = await open_store(config, Intent.CREATE, retry_budget_s=CLI_RETRY_BUDGET_S)
    await store.close()
    out(f"database ready: {describe_database(config.database_url)}")
    return 0
