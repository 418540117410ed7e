"""`{ exec = [...] }` handlers: a subprocess without a shell.

Exit 0 succeeds; 75 (EX_TEMPFAIL) or a timeout is transient; any other exit is permanent unless
the job type lists it in retry_exit_codes. A timeout kills the whole process group, so a
script's own children die with it; so does the worker's death, even by kill -9 (reaper.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import IO

import anyio

from dealertui.config import ExecHandler
from dealertui.handlers.base import Handler, JobContext, PermanentError, TransientError
from dealertui.handlers.reaper import REAPER

EX_TEMPFAIL = 75
PR_SET_PDEATHSIG = 1
STDERR_TAIL = 2000


def expand(arg: str, values: Mapping[str, str]) -> str:
    """Fill `{dealer_id}`-style placeholders; other braces are left as they are."""
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def make_exec_handler(spec: ExecHandler, retry_exit_codes: Sequence[int] = ()) -> Handler:
    retryable = {EX_TEMPFAIL, *retry_exit_codes}

    async def run(ctx: JobContext) -> dict[str, object]:
        values = {
            "dealer_id": ctx.dealer_id,  # validated against the dealer id pattern on entry
            "job_type": ctx.job_type,
            "job_id": str(ctx.job_id),
            "attempt": str(ctx.attempt),
        }
        argv = [expand(a, values) for a in spec.argv]
        env = {**os.environ, **dict(spec.env)}
        env.update({f"DEALERTUI_{k.upper()}": v for k, v in values.items()})
        env["DEALERTUI_PAYLOAD"] = json.dumps(ctx.payload)
        # stderr goes to an unlinked temp file, read once the handler has exited, not to a
        # pipe: a child left running in the background (`cmd &`, or one that escaped with
        # setsid) holds a pipe open, so the job would stay running until its timeout after
        # the handler exited 0, and a stopped run would hang until that child exits.
        with tempfile.TemporaryFile(prefix="dealertui-stderr-") as errors:
            try:
                # asyncio rather than anyio.open_process: only it passes preexec_fn, which
                # makes the child die with its worker (kill -9 included) instead of finishing
                # a job that another worker will run again.
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=env,
                    start_new_session=True,  # own process group: a timeout kills it whole
                    preexec_fn=functools.partial(_die_with_parent, os.getpid(), REAPER.fd()),
                )
            except OSError as exc:
                raise PermanentError(
                    f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
            # the child named its group itself; again here in case the companion was replaced
            REAPER.watch(process.pid)
            try:
                code = await process.wait()
            except BaseException:
                _kill_group(process.pid)
                with anyio.CancelScope(shield=True):
                    await process.wait()
                raise
            finally:
                REAPER.forget(process.pid)
            if code == 0:
                return {"exit_code": 0}
            tail = _tail(errors)
        message = _last_line(tail) or f"exited with code {code}"
        text = f"exit code {code}: {message}"
        if code in retryable:
            raise TransientError(text)
        raise PermanentError(text)

    return run


# Loaded in the parent: dlopen in a forked child of a threaded process can deadlock.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int, reaper_fd: int) -> None:
    """In the child, before exec: ask Linux to SIGKILL us when the worker dies (and leave at
    once if it already died between the fork and this call), and tell the reaper our group
    (we lead it: start_new_session) before the handler can start anything of its own.
    CPython runs this before it closes inherited fds, so *reaper_fd* is still open."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
    # SIGPIPE is back at its default here (restore_signals): a dead companion must not
    # kill the handler, the parent's own watch() replaces the companion
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        os.write(reaper_fd, b"+%d\n" % os.getpid())
    except OSError:
        pass
    signal.signal(signal.SIGPIPE, previous)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(file: IO[bytes]) -> bytes:
    """The last STDERR_TAIL bytes written to *file* (a few KB from a local temp file)."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(size - STDERR_TAIL, 0))
    return file.read()


# terminal escapes (colours, cursor moves) and other control characters, so a handler's
# coloured stderr reaches logs, `why` and the console as plain text
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _last_line(tail: bytes) -> str:
    text = _CONTROL.sub("", tail.decode("utf-8", "replace"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
