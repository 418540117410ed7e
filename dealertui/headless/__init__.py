"""Headless front end: human and machine output for cron, scripts and terminals (rich).

render: `status` and `--dry-run` reports, and the report style of every job state;
run_once: `--run-once` and its plan; worker: `worker`; bench: `bench`; runlog: what a run
writes to stderr; signals: a run-once stopped by a signal; insights: `health` and
`analyze-errors` for people.
"""

from __future__ import annotations

from dealertui.headless.bench import bench
from dealertui.headless.insights import print_error_groups, print_health
from dealertui.headless.render import ROLE_STYLE, STATE_STYLE, print_blast_radius, print_status
from dealertui.headless.run_once import print_plan, run_once
from dealertui.headless.worker import run_worker

__all__ = [
    "ROLE_STYLE",
    "STATE_STYLE",
    "bench",
    "print_blast_radius",
    "print_error_groups",
    "print_health",
    "print_plan",
    "print_status",
    "run_once",
    "run_worker",
]
