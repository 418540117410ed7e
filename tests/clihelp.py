"""Running `python -m dealertui` from tests: a clean environment and readable failures.

Shared by test_cli, test_graph_ops and test_why_audit (each had its own copy).
"""

from __future__ import annotations

import os
import re
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


#: the built-in job types with the simulated handlers named explicitly, instantly and never
#: failing: a run without a config refuses to run jobs (tests/test_no_silent_defaults.py)
DEMO_CONFIG = "".join(
    f'[job_types.{name}]\npriority = {prio}\ndepends_on = {deps}\n'
    f'handler = "dealertui.handlers.demo:{name}"\n\n'
    for prio, name, deps in ((1, "homenet", []), (2, "dealer_com", ["homenet"]),
                             (3, "product_scrape", ["homenet"]),
                             (4, "url_shorten", ["product_scrape"]))
).replace("'", '"') + "[demo]\nlatency_ms_min = 0\nlatency_ms_max = 0\nfailure_rate = 0\n"


def write_demo_config(directory: Path) -> Path:
    """DEMO_CONFIG as *directory*/dealertui.toml, where a command run there finds it."""
    path = directory / "dealertui.toml"
    path.write_text(DEMO_CONFIG, encoding="utf-8")
    return path


_HEADER = re.compile(r"^(\S+ )?dealertui (run-once|run-once --dry-run|worker): "
                     r"(config .+|no config file), database ")


def without_header(lines: list[str]) -> list[str]:
    """*lines* of stderr without a run's first line (which config and database it uses)."""
    return lines[1:] if lines and _HEADER.match(lines[0]) else lines
