"""TOML config + environment + flags -> frozen dataclasses (docs/design.md, "Config file").

Every problem a user can cause raises `ConfigError` with one sentence that names the file, the
key and the bad value. Reading the file is the only I/O; nothing is created or written here.

model: the dataclasses and the built-in job types; handler_spec: what runs a job type;
urls: database URLs; validate: key-by-key checks of a TOML table; retention: how long
history is kept; parse: a table -> Config; load: finding and reading the file.
"""

from __future__ import annotations

from dealertui.config.handler_spec import (
    EXEC_PLACEHOLDERS,
    HTTP_METHODS,
    ExecHandler,
    HandlerSpec,
    HttpHandler,
)
from dealertui.config.load import (
    ENV_CONFIG,
    ENV_DATABASE_URL,
    config_search_paths,
    find_config_path,
    load_config,
    locate,
)
from dealertui.config.model import (
    DEFAULT_JOB_TYPES,
    BreakerConfig,
    ConcurrencyConfig,
    Config,
    DealerConfig,
    DemoConfig,
    JobTypeConfig,
    RetryPolicy,
)
from dealertui.config.parse import JOB_TYPE_NAME_RE, parse_config
from dealertui.config.retention import RetentionConfig
from dealertui.config.schedules import ScheduleConfig
from dealertui.config.urls import default_database_url, normalize_database_url
from dealertui.errors import ConfigError
from dealertui.masking import mask_url

__all__ = [
    "DEFAULT_JOB_TYPES",
    "ENV_CONFIG",
    "ENV_DATABASE_URL",
    "EXEC_PLACEHOLDERS",
    "HTTP_METHODS",
    "JOB_TYPE_NAME_RE",
    "BreakerConfig",
    "ConcurrencyConfig",
    "Config",
    "ConfigError",
    "DealerConfig",
    "DemoConfig",
    "ExecHandler",
    "HandlerSpec",
    "HttpHandler",
    "JobTypeConfig",
    "RetentionConfig",
    "RetryPolicy",
    "ScheduleConfig",
    "config_search_paths",
    "default_database_url",
    "find_config_path",
    "load_config",
    "locate",
    "mask_url",
    "normalize_database_url",
    "parse_config",
]
