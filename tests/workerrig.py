"""Real worker processes for the fault tests (tests/test_worker_*.py, test_fencing.py,
test_engine_process.py): a config file, a `Worker` process and a `Rig` (database + config +
workers, torn down by the `rigs` fixture), waiting with a deadline, and the stamp log the exec
handler tests/fixtures/stamp.py writes, read back and checked (every job once, parents first).

Workers run as ``python -m dealertui --config CFG --database-url URL worker`` with the test's
environment minus every ``DEALERTUI_*`` variable and ``PYTHONPATH`` set to the repository root
(the fleet test's handler is "tests.fixtures.fleet:stamp").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dealertui.model import UNFINISHED_STATES

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / "tests" / "fixtures" / "stamp.py"
PIPELINE = {  # the default job types: name -> (priority, depends_on)
    "homenet": (1, ()),
    "dealer_com": (2, ("homenet",)),
    "product_scrape": (3, ("homenet",)),
    "url_shorten": (4, ("product_scrape",)),
}
UNFINISHED = UNFINISHED_STATES
T = TypeVar("T")


# -- config ---------------------------------------------------------------------------------------


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    dealers: Sequence[str],
    job_types: dict[str, tuple[int, Sequence[str]]],
    handler: str,
    lease_s: float = 2,
    max_dealers: int = 3,
    per_dealer: int = 2,
    max_attempts: int = 10,
) -> Path:
    """A config with short leases and fast retries; *handler* is a TOML inline value."""
    lines = [
        "[concurrency]",
        f"max_concurrent_dealers = {max_dealers}",
        f"max_concurrent_jobs_per_dealer = {per_dealer}",
        f"lease_s = {lease_s}",
        "",
        "[retry]",
        f"max_attempts = {max_attempts}",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 0.5",
        "backoff_jitter_s = 0",
        "",
    ]
    for name, (priority, depends_on) in job_types.items():
        lines += [
            f"[job_types.{name}]",
            f"priority = {priority}",
            f"depends_on = [{', '.join(_q(d) for d in depends_on)}]",
            f"handler = {handler}",
            "timeout_s = 120",
            "",
        ]
    for dealer in dealers:
        lines += ["[[dealers]]", f"id = {_q(dealer)}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def stamp_handler(log: Path, sleep_s: float) -> str:
    argv = [sys.executable, str(STAMP), str(log), "{dealer_id}", "{job_type}", "{job_id}",
            "{attempt}", "--sleep", str(sleep_s)]
    return "{ exec = [" + ", ".join(_q(a) for a in argv) + "] }"


# -- processes ------------------------------------------------------------------------------------


def _env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "120"
    env.pop("PYTHONWARNINGS", None)
    env.update(extra or {})
    return env


class Worker:
    """One `dealertui worker` process; stdout and stderr go to files."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
        self.name = name
        self.out_path = cwd / f"{name}.out"
        self.err_path = cwd / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s\n{self.describe()}"
            ) from None

    def describe(self) -> str:
        return f"--- {self.name} (pid {self.pid}, exit {self.proc.poll()}) stderr:\n{self.stderr}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Rig:
    """A config, a database and the processes one test starts (all reaped at the end)."""

    def __init__(self, tmp_path: Path, cfg: Path, db_url: str,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp_path
        self.cfg = cfg
        self.db_url = db_url
        self.env = _env(tmp_path, env)
        self.workers: list[Worker] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dealertui", "--config", str(self.cfg),
                "--database-url", self.db_url, *args]

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout, check=False)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (
            f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        )
        return p

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def worker(self, *args: str, name: str | None = None) -> Worker:
        w = Worker(self.argv("worker", *args), self.tmp, self.env,
                   name or f"worker{len(self.workers)}")
        self.workers.append(w)
        return w

    def wait_done(self, timeout: float, *watch: Worker) -> dict[str, Any]:
        """Poll `status --json` until no job is waiting/ready/running/retrying."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            left = {s: status["by_state"][s] for s in UNFINISHED if status["by_state"][s]}
            if not left:
                return status
            for w in watch:
                assert w.alive(), f"worker died with work left ({left})\n{w.describe()}"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"work left after {timeout}s: {left}\n"
                    + "\n".join(w.describe() for w in watch)
                )
            time.sleep(0.3)

    def jobs(self) -> list[Any]:
        """Every job as the store holds it (read in-process, on a thread's own event loop)."""
        from dealertui.store import JobStore

        async def read() -> list[Any]:
            store = await JobStore.open(self.db_url, {}, create=False)
            try:
                return await store.list_jobs()
            finally:
                await store.close()

        return in_thread(lambda: asyncio.run(read()))

    def close(self) -> None:
        for w in self.workers:
            w.kill()


def in_thread(fn: Callable[[], T]) -> T:
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def wait_for(pred: Callable[[], T], timeout: float, what: str,
             *watch: Worker, poll: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        for w in watch:
            assert w.alive(), f"worker died while waiting for {what}\n{w.describe()}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n"
                + "\n".join(w.describe() for w in watch)
            )
        time.sleep(poll)


# -- the stamp log --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    word: str  # start | end | fail
    t: float
    dealer: str
    job_type: str
    job_id: int
    attempt: int


def read_stamps(log: Path) -> list[Stamp]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line being written right now
        word, t, dealer, job_type, job_id, attempt = parts
        out.append(Stamp(word, float(t), dealer, job_type, int(job_id), int(attempt)))
    return out


def open_runs(stamps: list[Stamp], since: float = 0.0) -> list[Stamp]:
    """Starts after *since* that have no end (or fail) line for the same job and attempt yet."""
    closed = {(s.job_id, s.attempt) for s in stamps if s.word != "start"}
    return [s for s in stamps
            if s.word == "start" and s.t >= since and (s.job_id, s.attempt) not in closed]


def check_dependency_order(stamps: list[Stamp], job_types: dict[str, tuple[int, Sequence[str]]]
                           ) -> None:
    ends = {(s.dealer, s.job_type): s.t for s in stamps if s.word == "end"}
    violations = []
    for s in stamps:
        if s.word != "start":
            continue
        for parent in job_types[s.job_type][1]:
            ended = ends.get((s.dealer, parent))
            if ended is None or s.t < ended:
                violations.append(f"{s} started before its parent {parent} ended ({ended})")
    assert not violations, "\n".join(violations[:20])


def dealers(n: int) -> list[str]:
    return [f"d{i:03d}" for i in range(n)]


def assert_clean(text: str, *more: str) -> None:
    for needle in ("Traceback", *more):
        assert needle not in text, f"{needle!r} in worker output:\n{text}"


# -- 2. and 3. signals ----------------------------------------------------------------------------

ONE_TYPE = {"work": (1, ())}
