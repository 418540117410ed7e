"""dealertui: an operations console and headless runner for per-dealer job pipelines.

Embedding (README, "Embedding"): `async with dealertui.open(url, job_types=[...]) as manager`.
The names below are imported on first use, so that `import dealertui` (which every CLI
command does) does not load the engine and the database drivers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "open": "dealertui.api",
    "JobType": "dealertui.api",
    "build_config": "dealertui.api",
    "MultiDealerDependencyManager": "dealertui.engine.manager",
    "JobContext": "dealertui.handlers.base",
    "PermanentError": "dealertui.handlers.base",
    "TransientError": "dealertui.handlers.base",
    "Config": "dealertui.config",
    "RetryPolicy": "dealertui.config",
    "load_config": "dealertui.config",
    "ProcessingStats": "dealertui.model",
    "DependencyGraph": "dealertui.model",
    "Job": "dealertui.model",
    "DealertuiError": "dealertui.errors",
    "ConfigError": "dealertui.errors",
    "UsageError": "dealertui.errors",
    "StoreUnavailable": "dealertui.errors",
}

__all__ = [  # written out: linters and type checkers read a literal list only
    "Config",
    "ConfigError",
    "DealertuiError",
    "DependencyGraph",
    "Job",
    "JobContext",
    "JobType",
    "MultiDealerDependencyManager",
    "PermanentError",
    "ProcessingStats",
    "RetryPolicy",
    "StoreUnavailable",
    "TransientError",
    "UsageError",
    "build_config",
    "load_config",
    "open",
]

if TYPE_CHECKING:
    from dealertui.api import JobType, build_config, open
    from dealertui.config import Config, RetryPolicy, load_config
    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.errors import ConfigError, DealertuiError, StoreUnavailable, UsageError
    from dealertui.handlers.base import JobContext, PermanentError, TransientError
    from dealertui.model import DependencyGraph, Job, ProcessingStats


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dealertui' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
