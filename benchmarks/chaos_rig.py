"""The machinery of benchmarks/chaos.py: a scenario's directory, config, database, worker
processes, the watcher of handler runs, and the reads of the database the verdict needs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from chaos_analysis import Facts, Fault, Run

ROOT = Path(__file__).resolve().parents[1]
HANDLER = Path(__file__).resolve().parent / "chaos_handler.py"
PIPELINE = {"feed": (1, ()), "site": (2, ("feed",)), "scrape": (3, ("feed",)),
            "links": (4, ("site", "scrape"))}
UNFINISHED = ("waiting", "ready", "running", "retrying")
CONFIG_DEALERS = [f"c{i:02d}" for i in range(1, 7)]
ADDED_DEALER = "c07"  # added with `dealers add`, the rest come from the config
PER_DEALER = 2
FAIL_RATE = 0.05


def pg_server() -> Any:
    sys.path.insert(0, str(ROOT))
    from tests.pg import PostgresServer

    server = PostgresServer()
    server.start()
    return server


class Monitor(threading.Thread):
    """Tails the handler log and watches each run's process until it writes its end line or
    is gone; a run killed without an end line keeps the last time it was seen alive."""

    def __init__(self, log: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.runs: list[Run] = []
        self.open: dict[int, Run] = {}
        self.gone: dict[int, Run] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.offset = 0
        self.partial = b""

    def run(self) -> None:
        while not self.done.is_set():
            self.poll()
            self.done.wait(0.05)
        self.poll()

    def poll(self) -> None:
        now = time.time()  # before the checks: a run seen alive was alive at `now`
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        with self.lock:
            for raw in lines:
                self._line(raw.decode().split())
            for pid, r in list(self.open.items()):
                if _alive(pid):
                    r.seen_alive = now
                else:
                    self.gone[pid] = self.open.pop(pid)

    def _line(self, p: list[str]) -> None:
        if p[0] == "start" and len(p) == 8:
            r = Run(int(p[3]), int(p[4]), int(p[1]), int(p[2]), p[5], p[6], float(p[7]))
            self.runs.append(r)
            self.open[r.pid] = r
        elif p[0] == "end" and len(p) == 7:
            pid = int(p[3])
            r = self.open.pop(pid, None) or self.gone.pop(pid, None)  # type: ignore[arg-type]
            if r is not None and r.job_id == int(p[1]):
                r.end, r.exit = float(p[6]), int(p[5])

    def open_runs(self, ppid: int) -> list[Run]:
        with self.lock:
            return [r for r in self.open.values() if r.ppid == ppid]

    def stop(self) -> list[Run]:
        self.done.set()
        if self.is_alive():
            self.join(5)
        return self.runs


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and HANDLER.name.encode() in cmdline


class Worker:
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], n: int) -> None:
        self.err = cwd / f"worker{n}.err"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)  # our Ctrl-C is ours
        self.pid = self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)


class Rig:
    def __init__(self, name: str, backend: str, pg: Any, *, sleep_s: float, lease_s: float,
                 quick: bool) -> None:
        self.name, self.backend, self.pg, self.sleep_s = name, backend, pg, sleep_s
        self.lease_s, self.limit = lease_s, PER_DEALER
        self.max_pipelines = 4 if quick else 10
        self.tmp = Path(tempfile.mkdtemp(prefix=f"dealertui-chaos-{name}-"))
        self.logfile = self.tmp / "handler.log"
        self.monitor = Monitor(self.logfile)
        self.workers: list[Worker] = []
        self.all_workers: list[Worker] = []
        self.killed: set[int] = set()
        self.faults: list[Fault] = []
        self.dealers = [*CONFIG_DEALERS, ADDED_DEALER]
        self.ops = self.ops_refused = self.crashes = self.pipelines = 0
        self.cli_tracebacks = 0
        self.dbname: str | None = None
        self.next_tend = 0.0
        self.topping_up = True
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
        env.update(XDG_CONFIG_HOME=str(self.tmp / "xdg-config"),
                   XDG_DATA_HOME=str(self.tmp / "xdg-data"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
        self.env = env

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        if self.backend == "postgres":
            self.dbname = f"chaos_{self.name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
            self.url = self.pg.create_database(self.dbname)
            self.pg_dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        else:
            self.db_path = self.tmp / "chaos.db"
            self.url = f"sqlite:///{self.db_path}"  # an absolute path: four slashes
        self.cfg = self.tmp / "chaos.toml"
        self.cfg.write_text(self._config(), encoding="utf-8")
        self.cli("init-db")
        self.cli("dealers", "add", ADDED_DEALER, "--name", "added by dealers add")
        self.enqueue()
        self.monitor.start()

    def _config(self) -> str:
        q = json.dumps
        argv = [sys.executable, "-S", str(HANDLER), str(self.logfile), "{job_id}", "{attempt}",
                "{dealer_id}", "{job_type}", str(self.sleep_s), str(FAIL_RATE),
                str(uuid.uuid4().int % 10**6)]
        handler = "{ exec = [" + ", ".join(q(a) for a in argv) + "] }"
        lines = ["[concurrency]", "max_concurrent_dealers = 3",
                 f"max_concurrent_jobs_per_dealer = {PER_DEALER}", f"lease_s = {self.lease_s}", "",
                 "[retry]", "max_attempts = 50", "backoff_initial_s = 0.2",
                 "backoff_max_s = 1.0", "backoff_jitter_s = 0.2", "",
                 # breakers out of the way: the faults are the subject here
                 "[circuit_breaker]", "dealer_min_calls = 1000000", "type_min_dealers = 1000000", ""]
        for name, (priority, deps) in PIPELINE.items():
            lines += [f"[job_types.{name}]", f"priority = {priority}",
                      f"depends_on = [{', '.join(q(d) for d in deps)}]",
                      f"handler = {handler}", "timeout_s = 60", ""]
        for d in CONFIG_DEALERS:
            lines += ["[[dealers]]", f"id = {q(d)}", ""]
        return "\n".join(lines)

    # -- processes ---------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dealertui", "--config", str(self.cfg),
                "--database-url", self.url, *args]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), cwd=self.tmp, env=self.env, capture_output=True,
                           stdin=subprocess.DEVNULL, text=True, timeout=120, check=False)
        if "Traceback" in p.stderr:
            self.cli_tracebacks += 1
            self.log(f"Traceback from {' '.join(args)}:\n{p.stderr}")
        if check and p.returncode != 0:
            raise RuntimeError(f"dealertui {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
        return p

    def op(self, *args: str) -> None:
        self.ops += 1
        if self.cli(*args, check=False).returncode != 0:
            self.ops_refused += 1

    def op_pair(self, first: list[str], second: list[str], delay: float) -> None:
        """Two operator commands started *delay* seconds apart, as two operators (or a script)
        would: their imports overlap, so the second acts well within a heartbeat after the
        first. A second that comes too early is refused, like any race an operator loses."""
        procs: list[tuple[list[str], subprocess.Popen[str]]] = []
        for args in (first, second):
            procs.append((args, subprocess.Popen(
                self.argv(*args), cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
            time.sleep(delay)
        for args, p in procs:
            _, err = p.communicate(timeout=120)
            self.ops += 1
            self.ops_refused += p.returncode != 0
            if "Traceback" in err:
                self.cli_tracebacks += 1
                self.log(f"Traceback from {' '.join(args)}:\n{err}")

    def enqueue(self) -> None:
        self.cli("enqueue", "--all-dealers")
        self.pipelines += 1

    def start_worker(self) -> Worker:
        w = Worker(self.argv("worker", "--grace", "5s"), self.tmp, self.env,
                   len(self.all_workers))
        self.all_workers.append(w)
        return w

    def kill9(self, w: Worker) -> None:
        w.signal(signal.SIGKILL)
        w.proc.wait()
        self.killed.add(w.pid)
        self.fault("kill9", time.time(), worker_pid=w.pid)

    def fault(self, kind: str, t0: float, *, worker_pid: int | None = None,
              job_id: int | None = None, excuses: bool = True) -> None:
        # a fault that cannot cost a run its outcome (pause, retry) names no job at all
        self.faults.append(Fault(kind, t0, time.time(), worker_pid,
                                 job_id if excuses else -1))

    def tend(self) -> None:
        """Replace workers that died on their own; enqueue more work when it runs low."""
        for i, w in enumerate(self.workers):
            if w.proc.poll() is not None and w.pid not in self.killed:
                self.crashes += 1
                self.log(f"worker pid {w.pid} exited {w.proc.returncode} by itself; restarted")
                self.killed.add(w.pid)
                self.workers[i] = self.start_worker()
        if not self.topping_up or time.monotonic() < self.next_tend:
            return
        self.next_tend = time.monotonic() + 1.0
        if self.pipelines >= self.max_pipelines:
            return
        try:
            unfinished = len(self.job_ids(*UNFINISHED))
        except Exception:  # the database is away (a fault): nothing to do now
            return
        if unfinished < 2 * len(self.dealers):
            self.enqueue()

    def wait_running(self, w: Worker, timeout: float) -> Run | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.monitor.open_runs(w.pid)
            if runs:
                return runs[0]
            self.tend()
            time.sleep(0.1)
        return None

    def drain(self, timeout: float) -> bool:
        self.topping_up = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tend()
            try:
                if not self.job_ids(*UNFINISHED):
                    return True
            except Exception:
                pass
            time.sleep(0.5)
        self.log(f"work left after {timeout:.0f} s of draining")
        return False

    def stop_workers(self) -> None:
        for w in self.workers:
            w.signal(signal.SIGCONT)
            w.signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(20)
            except subprocess.TimeoutExpired:
                w.signal(signal.SIGKILL)
                w.proc.wait()

    def close(self, keep: bool = False) -> None:
        for w in self.all_workers:
            if w.proc.poll() is None:
                w.signal(signal.SIGCONT)
                w.signal(signal.SIGKILL)
                w.proc.wait()
        self.monitor.stop()
        for pid in list(self.monitor.open):
            try:
                os.killpg(pid, signal.SIGKILL)  # handlers lead their own process groups
            except OSError:
                pass
        if self.dbname is not None:
            try:
                self.pg.drop_database(self.dbname)
            except Exception as exc:
                self.log(f"could not drop database {self.dbname}: {exc}")
        if keep:
            self.log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self, message: str) -> None:
        print(f"  [{self.name}] {message}", file=sys.stderr, flush=True)

    # -- the database --------------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        if self.backend == "sqlite":
            con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
            try:
                con.row_factory = sqlite3.Row
                return [dict(r) for r in con.execute(sql.replace("$1", "?"), params)]
            finally:
                con.close()
        return asyncio.run(self._pg(sql, *params))

    async def _pg(self, sql: str, *params: Any, dsn: str | None = None) -> list[dict[str, Any]]:
        import asyncpg  # type: ignore[import-untyped]

        con = await asyncpg.connect(dsn or self.pg_dsn, timeout=5)
        try:
            return [dict(r) for r in await con.fetch(sql, *params)]
        finally:
            await con.close()

    def job_ids(self, *states: str) -> list[int]:
        marks = ", ".join(f"'{s}'" for s in states)
        return [r["id"] for r in self.query(f"SELECT id FROM jobs WHERE state IN ({marks})")]

    def terminate_backends(self) -> int:
        admin = self.pg_dsn.rsplit("/", 1)[0] + "/postgres"
        rows = asyncio.run(self._pg(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()", self.dbname, dsn=admin))
        return len(rows)

    def facts(self) -> Facts:
        runs = self.monitor.stop()
        events = self.query("SELECT id, job_id, at, from_state, to_state, worker, attempt"
                            " FROM job_events")
        tracebacks = self.cli_tracebacks + sum(
            "Traceback" in w.err.read_text(errors="replace") for w in self.all_workers)
        return Facts(
            runs=runs,
            jobs=self.query("SELECT id, dealer_id, job_type, state FROM jobs"),
            events=events,
            deps=[(r["child_id"], r["parent_id"])
                  for r in self.query("SELECT child_id, parent_id FROM job_deps")],
            workers={r["id"]: r["pid"] for r in self.query("SELECT id, pid FROM workers")},
            faults=self.faults,
            limit=self.limit,
            allowance_s=self.lease_s / 3 + 2.0,
            notes={"crashes": self.crashes, "tracebacks": tracebacks,
                   "op_refused": self.ops_refused, "ops": self.ops,
                   "pipelines": self.pipelines},
        )
