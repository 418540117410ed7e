"""Running `python -m dealertui` from tests: a clean environment and readable failures.

Shared by test_cli, test_graph_ops and test_why_audit (each had its own copy).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The test's environment minus every DEALERTUI_* variable, with config and data
    directories of its own and a fixed terminal width."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["COLUMNS"] = "120"
    env.pop("PYTHONWARNINGS", None)
    return env


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`dealertui --database-url URL ARGS…`, run in *tmp_path*."""
    return subprocess.run(
        [sys.executable, "-m", "dealertui", "--database-url", url, *args],
        cwd=tmp_path, env=cli_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, check=False,
    )


def show(p: subprocess.CompletedProcess[str]) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def ok(p: subprocess.CompletedProcess[str]) -> str:
    """*p*'s stdout, once it is known to have exited 0 without a traceback."""
    assert p.returncode == 0 and "Traceback" not in p.stderr, show(p)
    return p.stdout
