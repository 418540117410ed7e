"""Kill the process groups of running exec handlers when their worker dies, even by kill -9.

PR_SET_PDEATHSIG (see exec.py) kills a handler's own process when its worker dies, but not
the processes it started: a wrapper script's `curl` or `python` would go on and finish a job
that another worker runs again. Linux has no death signal for a process group, so each
worker process gets one small companion (started at its first exec handler) that is told
the group of every running handler over a pipe and kills the groups it still holds when that
pipe closes, which the kernel does when the worker exits, however it exits.

Hand-written: no library does this for asyncio subprocesses (a cgroup would, but needs
privileges a worker does not have).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

# The companion: one group id per line, "+" while the handler runs, "-" once it is reaped.
# It ignores the terminal's signals: Ctrl-C goes to the worker, which stops its handlers.
_COMPANION = r"""
import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    pgid = int(line[1:])
    if line[0] == "+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupReaper:
    """This process's companion: `watch(pgid)` when a handler starts, `forget(pgid)` once
    its process has been waited for (so a reused group id is never killed)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def fd(self) -> int:
        """The companion's pipe, for a handler to name its own group in before it execs
        (see exec.py): told only after the spawn returns, a worker killed in between (the
        loop is slow to come back under load) leaked a group that was already running."""
        with self._lock:
            proc = self._companion()
            assert proc.stdin is not None
            return proc.stdin.fileno()

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        # A few bytes into a pipe whose reader only reads: this does not block the loop.
        with self._lock:
            for _ in range(2):  # a companion that died is replaced once
                proc = self._companion()
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(line.encode())
                    proc.stdin.flush()
                    return
                except OSError:
                    self._proc = None

    def _companion(self) -> subprocess.Popen[bytes]:
        if self._pid != os.getpid():  # forked: the companion belongs to the parent
            self._proc, self._pid = None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _COMPANION],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # out of the terminal's process group
            )
        return self._proc


REAPER = GroupReaper()
