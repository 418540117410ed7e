"""Before a command runs jobs: every job type's handler can be run on this machine.

Found at run time instead, each unusable handler would fail its jobs permanently (and block
their descendants) one by one; here it is a config error (exit 2) before anything is claimed.
Read-only commands do not call this: a `status` on a box without the handlers' code works.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from dealertui.config import (
    ENV_CONFIG,
    Config,
    ExecHandler,
    HttpHandler,
    config_search_paths,
    locate,
)
from dealertui.errors import ConfigError
from dealertui.handlers.base import PermanentError
from dealertui.handlers.python import load_callable


def check_runnable(
    config: Config, env: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> None:
    """Raise ConfigError (one sentence: file, key, value) unless every handler resolves.

    *env* and *cwd* only word the sentence for a missing config file (where it was looked for).
    """
    missing = [name for name, jt in config.job_types.items() if jt.handler is None]
    if missing:
        raise ConfigError(_no_handler(config, missing, env, cwd))
    for name, jt in config.job_types.items():
        key = f"job_types.{name}.handler"
        spec = jt.handler
        if callable(spec):
            continue  # handed over by the embedding API: nothing to look up
        if isinstance(spec, str):
            try:
                load_callable(spec)
            except PermanentError as exc:
                said = str(exc).removeprefix("handler ").rstrip(".")
                raise ConfigError(f"{locate(config.source, key)}: {key} {said}.") from None
        elif isinstance(spec, ExecHandler):
            problem = _program_problem(spec)
            if problem is not None:
                raise ConfigError(f"{locate(config.source, key + '.exec')}: {key}.exec "
                                  f"{problem}.")
        else:
            assert isinstance(spec, HttpHandler)  # nothing to find on this machine


def _no_handler(config: Config, missing: list[str], env: Mapping[str, str],
                cwd: Path | None) -> str:
    types = ", ".join(missing)
    remedy = ("name a handler for each (see config.example.toml), or try the simulated "
              "pipeline with 'dealertui --demo'")
    if config.source is not None:
        return (f"{config.source} has no [job_types] section, so the built-in job types "
                f"({types}) have no handler: {remedy}.")
    looked = [f"no --config, ${ENV_CONFIG} unset"]
    looked += [f"no {path}" for path in config_search_paths(env, cwd)]
    return (f"no config file found ({', '.join(looked)}), so the built-in job types "
            f"({types}) have no handler: write one that names a handler for each (see "
            "config.example.toml), or try the simulated pipeline with 'dealertui --demo'.")


def _program_problem(spec: ExecHandler) -> str | None:
    """Why the command of *spec* cannot be started here, or None."""
    program = spec.argv[0]
    if "{" in program:
        return None  # filled per job: only the job knows which program it is
    # the child is started with the handler's env, whose PATH (if set) is where it is looked up
    path = dict(spec.env).get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=path) is not None:
        return None
    if os.sep in program:
        if not os.path.exists(program):
            return f"command {program!r} does not exist"
        if os.path.isdir(program):
            return f"command {program!r} is a directory, not a program"
        return f"command {program!r} is not executable"
    return f"command {program!r} is not found on PATH"
