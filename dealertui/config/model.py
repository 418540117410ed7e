"""The config as frozen dataclasses (docs/design.md, "Config file"), and the built-in job
types a config without [job_types] gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import networkx as nx

from dealertui.config.handler_spec import HandlerSpec
from dealertui.config.retention import RetentionConfig
from dealertui.config.schedules import ScheduleConfig
from dealertui.masking import mask_url


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    backoff_jitter_s: float = 1.0


@dataclass(frozen=True)
class BreakerConfig:
    """Breakers open on failure rates over the last `window_s` (store/breakers.py)."""

    window_s: float = 60
    #: a (dealer, job type) breaker opens when this share of that dealer's calls failed...
    dealer_failure_rate: float = 0.5
    #: ...once it made at least this many calls in the window
    dealer_min_calls: int = 5
    #: a job type's shared breaker opens when this share of the dealers that ran it failed...
    type_failure_rate: float = 0.25
    #: ...once at least this many distinct dealers ran it in the window
    type_min_dealers: int = 20
    reset_timeout_s: float = 60
    half_open_max_jobs: int = 1



@dataclass(frozen=True)
class ConcurrencyConfig:
    max_concurrent_dealers: int = 3
    max_concurrent_jobs_per_dealer: int = 2
    lease_s: float = 60.0


@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo handler (`--demo`, `bench`)."""

    seed: int | None = None
    latency_ms_min: float = 200
    latency_ms_max: float = 1500
    failure_rate: float = 0.05
    failing_dealers: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobTypeConfig:
    name: str
    priority: int
    depends_on: tuple[str, ...]
    handler: HandlerSpec | None  # None: a built-in type no config names a handler for
    timeout_s: float
    retry: RetryPolicy
    retry_exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class DealerConfig:
    id: str
    name: str | None = None


@dataclass(frozen=True)
class Config:
    source: Path | None
    database_url: str
    concurrency: ConcurrencyConfig
    retry: RetryPolicy
    circuit_breaker: BreakerConfig
    job_types: Mapping[str, JobTypeConfig] = field(hash=False)  # a mapping is not hashable
    dealers: tuple[DealerConfig, ...]
    demo: DemoConfig
    schedules: tuple[ScheduleConfig, ...] = ()
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def __post_init__(self) -> None:
        # Always a read-only view ordered by priority then name, however the config was built.
        ordered = sorted(self.job_types.values(), key=lambda jt: (jt.priority, jt.name))
        object.__setattr__(self, "job_types", MappingProxyType({jt.name: jt for jt in ordered}))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy cannot be pickled, and `spawn`ed worker processes need the config.
        args = [getattr(self, f.name) for f in fields(self)]
        return (Config, tuple(dict(a) if isinstance(a, MappingProxyType) else a for a in args))

    def __repr__(self) -> str:
        # Written by hand so that a logged config never shows the database password.
        return (
            f"Config(source={self.source!r}, database_url={mask_url(self.database_url)!r}, "
            f"job_types={list(self.job_types)!r}, dealers={len(self.dealers)})"
        )

    def job_type_order(self) -> list[str]:
        """Job type names, parents before children; ties broken by priority, then name."""
        key = {name: (jt.priority, name) for name, jt in self.job_types.items()}
        return list(nx.lexicographical_topological_sort(type_graph(self.job_types), key=key.get))


def type_graph(job_types: Mapping[str, JobTypeConfig]) -> nx.DiGraph[str]:
    """Edges point from a parent (a `depends_on` entry) to the job type that waits for it."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(job_types)
    for jt in job_types.values():
        graph.add_edges_from((dep, jt.name) for dep in jt.depends_on)
    return graph


# name, priority, then the job types it depends on
_SEEDS: list[tuple[str, int, *tuple[str, ...]]] = [
    ("homenet", 1), ("dealer_com", 2, "homenet"), ("product_scrape", 3, "homenet")
]
_SEEDS.append(("url_shorten", 4, "product_scrape"))
# No handler: simulated work must never mark real jobs succeeded. `--demo` fills in the demo
# handlers (demo.py); a command that runs jobs refuses a type without one (handlers/check.py).
DEFAULT_JOB_TYPES: Mapping[str, JobTypeConfig] = MappingProxyType(
    {
        name: JobTypeConfig(name, prio, tuple(deps), None, 300.0, RetryPolicy())
        for name, prio, *deps in _SEEDS
    }
)
