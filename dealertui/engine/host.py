"""EngineProcess: the console's engine, a MultiDealerDependencyManager in a child process.

The console embeds the engine, but not in its own interpreter. Measured at 1,000 dealers
(benchmarks/console_bench.py, 4,000 no-op jobs, SQLite):
- on the console's event loop, the manager's per-batch work (claiming, starting and recording
  up to 1,024 jobs at a time) holds the loop: key→repaint p95 86–118 ms, and the engine runs
  at 44–57% of its headless rate;
- on a loop of its own in a thread, keys wait for thread switches instead of batches, but
  the console's refresh and the engine still share one GIL: 43% of headless;
- in a child process (this module), both get a core: 89–117% of headless.

The child is `python -m dealertui.engine.host`. Parent and child talk over its stdin and
stdout in length-prefixed pickle frames (both ends are this module, so nothing else speaks
the protocol): the parent sends ("start", config, kind, wait, sys.path), then controls — ("pause",),
("resume",), ("stop",), ("abort", reason); the child sends ("status", in_flight, paused)
when either changes, and last ("done", ProcessingStats) or ("error", DealertuiError).
The child's own stdout is moved to stderr (a handler's print cannot corrupt a frame), and
its stderr is kept by the parent for the message if the child dies without a frame. When
the console goes away (its end of stdin closes: exit, crash, kill -9) the child aborts:
running jobs are released as `retrying`, not charged. It ignores SIGINT and SIGHUP, which a
terminal sends to the whole process group: the console decides when its engine stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import struct
import sys
from collections import deque
from typing import Any

from dealertui.config import Config
from dealertui.errors import DealertuiError
from dealertui.model import ProcessingStats

_HEADER = struct.Struct("!I")
STATUS_EVERY_S = 0.1


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next frame, or None at end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None
    return message


class EngineProcess:
    """The console's handle on its engine: start it, steer it, await its stats."""

    def __init__(self, config: Config, *, kind: str = "console", wait: bool = True) -> None:
        self.config = config
        self.kind = kind
        self.wait = wait
        self.pid: int | None = None
        self._paused = False
        self._in_flight = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._queued: list[tuple[Any, ...]] = []  # controls sent before the child is up
        self._stderr: deque[str] = deque(maxlen=20)
        self._running = False  # run() has been entered
        self._closing = False  # close() has been called: start no child
        self._ended = asyncio.Event()  # run() has followed its child to the end

    # -- controls (the caller's event loop) ----------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def pause(self) -> None:
        self._paused = True
        self._send(("pause",))

    def resume(self) -> None:
        self._paused = False
        self._send(("resume",))

    def stop(self) -> None:
        """Stop claiming; the child exits once its running jobs have finished."""
        self._send(("stop",))

    def abort(self, reason: str = "console closed") -> None:
        """Cancel running jobs (released as retrying, not charged); the child exits."""
        self._send(("abort", reason))

    async def close(self, reason: str = "console closed", timeout_s: float = 10.0) -> None:
        """Abort the child and return once it has exited (killed after *timeout_s*).

        The console awaits this as it unmounts. Cancelling run() is not enough: Textual
        cancels its workers as the app exits without awaiting them, and asyncio.run then
        cancels run() a second time while it waits, so a child still starting up (~1 s of
        imports) would outlive the console and create its database after the console is gone.
        """
        self._closing = True
        if not self._running:
            return  # no child, and run() will not start one now
        self.abort(reason)
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # the child aborts at end of input even if it missed the frame
        try:
            await asyncio.wait_for(asyncio.shield(self._ended.wait()), timeout_s)
        except TimeoutError:
            if self._proc is not None and self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            await self._ended.wait()

    def _send(self, message: tuple[Any, ...]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            self._queued.append(message)
            return
        if proc.stdin.is_closing():
            return  # the child has gone already
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(_frame(message))

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> ProcessingStats:
        """Start the child and follow it to its end: its stats, or its error raised here."""
        if self._closing or self._running:
            raise DealertuiError("this engine process has been closed or started already.")
        self._running = True
        try:
            return await self._run()
        finally:
            self._ended.set()

    async def _run(self) -> ProcessingStats:
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dealertui.engine.host",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.pid = proc.pid
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        drain = asyncio.create_task(self._keep_stderr(proc.stderr))
        try:
            if self._closing:  # closed while the child was being spawned: it gets no start
                proc.stdin.close()
            else:
                # sys.path too: a python handler importable here must be importable there
                proc.stdin.write(_frame(("start", self.config, self.kind, self.wait, sys.path)))
                for queued in self._queued:
                    proc.stdin.write(_frame(queued))
            self._queued.clear()
            outcome: tuple[Any, ...] | None = None
            while (message := await _read_frame(proc.stdout)) is not None:
                if message[0] == "status":
                    _, self._in_flight, self._paused = message
                else:
                    outcome = message
            await proc.wait()
            await drain
        finally:
            if proc.returncode is None:  # cancelled while the child runs: do not orphan it
                self._send(("abort", "console closed"))
                with contextlib.suppress(ProcessLookupError):
                    proc.stdin.close()
                with contextlib.suppress(TimeoutError, ProcessLookupError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 10)
                if proc.returncode is None:
                    proc.kill()
            drain.cancel()
            self._in_flight = 0
        if outcome is not None and outcome[0] == "done":
            stats: ProcessingStats = outcome[1]
            return stats
        if outcome is not None and outcome[0] == "error":
            raise outcome[1]
        last = self._stderr[-1] if self._stderr else "no message"
        raise DealertuiError(f"the engine process exited with code {proc.returncode}: {last}")

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            text = line.decode(errors="replace").rstrip()
            if text:
                self._stderr.append(text)


# -- the child --------------------------------------------------------------------------------


async def _child_main(out: Any) -> int:
    from dealertui.engine.manager import MultiDealerDependencyManager
    from dealertui.store import Intent, open_store

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    start = await _read_frame(reader)
    if start is None or start[0] != "start":
        return 2
    _, config, kind, wait, path = start
    sys.path[:] = path

    def send(message: tuple[Any, ...]) -> None:
        out.write(_frame(message))
        out.flush()

    try:
        store = await open_store(config, Intent.CREATE, retry_budget_s=30.0)
    except DealertuiError as exc:
        send(("error", exc))
        return exc.exit_code
    manager = MultiDealerDependencyManager(store, config, kind=kind)

    async def follow_console() -> None:
        while (message := await _read_frame(reader)) is not None:
            if message[0] == "abort":
                manager.abort(message[1])
            elif message[0] in ("pause", "resume", "stop"):
                getattr(manager, message[0])()
        manager.abort("console closed")  # its end of the pipe closed: it is gone

    async def report_status() -> None:
        last = None
        while True:
            now = (manager.in_flight, manager.paused)
            if now != last:
                send(("status", *now))
                last = now
            await asyncio.sleep(STATUS_EVERY_S)

    tasks = [asyncio.create_task(follow_console()), asyncio.create_task(report_status())]
    try:
        stats = await manager.run(wait=wait)
    except DealertuiError as exc:
        send(("error", exc))
        return exc.exit_code
    except Exception as exc:
        send(("error", DealertuiError(f"the engine failed: {type(exc).__name__}: {exc}")))
        return 1
    finally:
        for task in tasks:
            task.cancel()
        await store.close()
    send(("done", stats))
    return 0


def child() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # frames go to the real stdout; anything else printed (a handler's print) goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.exit(asyncio.run(_child_main(out)))


if __name__ == "__main__":
    child()
