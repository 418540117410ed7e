"""The demo: a fresh embedded database with a dozen dealers, two of them with broken feeds,
so retries, failures, blocked jobs and open breakers all show up within a minute."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from dealertui.config import Config
from dealertui.store import JobStore

DEMO_DEALERS = (
    ("d001", "Sunrise Motors"), ("d002", "Harbor Auto Group"), ("d003", "Canyon Ford"),
    ("d004", "Maple Street Kia"), ("d005", "Northgate Honda"), ("d006", "Prairie Chevrolet"),
    ("d007", "Bayside Toyota"), ("d008", "Summit Subaru"), ("d009", "Riverbend Nissan"),
    ("d010", "Lakeshore Hyundai"), ("d011", "Redwood Mazda"), ("d012", "Granite VW"),
)
DEMO_FAILING = ("d004", "d009")
DEMO_HANDLERS = "dealertui.handlers.demo"


@contextmanager
def demo_database(config: Config) -> Iterator[Config]:
    """*config* pointed at a fresh SQLite file in a temp dir that is removed afterwards.

    So no `dealertui --demo` leaves its directory (~2 MB of database and WAL) in /tmp.
    """
    with tempfile.TemporaryDirectory(prefix="dealertui-demo-",
                                     ignore_cleanup_errors=True) as tmp:
        yield demo_config(config, tmp)


def demo_config(config: Config, tmp: str) -> Config:
    """*config* pointed at a new SQLite file in *tmp*, with the demo's failure knobs."""
    demo = dataclasses.replace(
        config.demo, latency_ms_min=300, latency_ms_max=2500, failure_rate=0.08,
        failing_dealers=DEMO_FAILING,
    )
    retry = dataclasses.replace(config.retry, max_attempts=4, backoff_initial_s=2.0,
                                backoff_max_s=20.0, backoff_jitter_s=1.0)
    # the built-in types get the simulated handlers here, and only here (and in bench)
    job_types = {
        n: dataclasses.replace(jt, retry=retry, handler=jt.handler or f"{DEMO_HANDLERS}:{n}")
        for n, jt in config.job_types.items()
    }
    # the two broken dealers' own breakers open after 3 attempts; the shared ones only if half
    # of the 12 dealers fail (2 broken feeds and the 8% noise never are)
    breaker = dataclasses.replace(config.circuit_breaker, dealer_min_calls=3, window_s=60,
                                  type_min_dealers=8, type_failure_rate=0.5,
                                  reset_timeout_s=30)
    return dataclasses.replace(
        config, database_url=f"sqlite+aiosqlite:///{tmp}/demo.db", demo=demo, retry=retry,
        job_types=job_types, circuit_breaker=breaker,
    )


async def seed_demo(store: JobStore) -> None:
    """Add the demo dealers and enqueue one pipeline each."""
    await store.add_dealers(DEMO_DEALERS)
    await store.enqueue([d for d, _ in DEMO_DEALERS])
