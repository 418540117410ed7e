"""Helpers for the CLI contract tests (tests/test_cli_*.py): dealertui in-process with global
options first, a `Cli` bound to one directory and database, and the status counts it prints.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from helpers import job_ids, run_cli, show

STATES = ("waiting", "ready", "running", "retrying", "succeeded", "failed", "blocked", "cancelled",
          "skipped")


def run(tmp_path: Path, *args: str, db_url: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """dealertui in-process with global options first."""
    head = ["--database-url", db_url] if db_url is not None else []
    return run_cli(tmp_path, *head, *args)


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, show(p)
    assert "Traceback" not in p.stderr, show(p)
    return p


class Cli:
    """``cli("status", "--json")`` runs ``dealertui --database-url URL status --json``."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.tmp_path, *args, db_url=self.db_url)

    def status(self) -> dict[str, Any]:
        p = ok(self("status", "--json"))
        return json.loads(p.stdout)

    def dealers(self) -> list[dict[str, Any]]:
        return json.loads(ok(self("dealers", "list", "--json")).stdout)

    def add_dealers(self, *ids: str) -> None:
        for d in ids:
            ok(self("dealers", "add", d))

    def job_id(self, dealer_id: str, job_type: str) -> int:
        """The newest job of that dealer and type, read through the store."""
        found = job_ids(self.db_url, dealer_id)
        assert job_type in found, f"no {job_type} job for {dealer_id}"
        return found[job_type]


def zeros() -> dict[str, int]:
    return dict.fromkeys(STATES, 0)


def counts(**kw: int) -> dict[str, int]:
    return {**zeros(), **kw}
