"""The test suite's shared helpers: clocks, config builders, store openers and pipeline
helpers, and the CLI runners. Fixtures live in conftest.py; a worker's writes by job id in
storeops.py.

The CLI runs in-process (``cli``/``run_cli``: ``dealertui.cli.main`` with its own
environment, cwd and captured output) unless a real process is the point: signals, a
terminal, the worker's engine process, import-time behaviour, ``python -m`` itself. Those use
``cli_process``/``cli_env``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from dealertui.config import Config, parse_config
from dealertui.store import JobStore, JobTypeRule, rules_from_config

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# --- clocks ---------------------------------------------------------------------------------

T0 = 10_000.0


class Clock:
    """A store clock that moves only when the test says (waits and windows are exact)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t

    def advance(self, dt: float) -> None:
        self.t += dt


class WallClock:
    """Wall-clock time plus an offset a test moves forward (leases expire on demand) where
    something else in the test (a worker, the console) runs on real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# --- configs --------------------------------------------------------------------------------

#: the built-in four job types and their parents, in priority order
PARENTS: dict[str, tuple[str, ...]] = {
    "homenet": (),
    "dealer_com": ("homenet",),
    "product_scrape": ("homenet",),
    "url_shorten": ("product_scrape",),
}
#: the built-in job types with no handler named (read commands and store tests need no more)
DEFAULT_CONFIG: Config = parse_config({}, None)


def default_types(handler: Any, **extra: Any) -> dict[str, Any]:
    """The four built-in job types (same priorities and depends_on), all with *handler*."""
    return {
        name: {"priority": prio, "depends_on": list(PARENTS[name]), "handler": handler, **extra}
        for prio, name in enumerate(PARENTS, 1)
    }


def make_config(
    db_url: str,
    job_types: Mapping[str, Any] | None = None,
    *,
    dealers: Sequence[str | tuple[str, str | None]] = (),
    **sections: Any,
) -> Config:
    """A parsed config on *db_url*: *job_types* (default: the built-in four, no handler),
    *dealers* as ids or (id, name), any other section as a keyword (``retry={...}``)."""
    raw: dict[str, Any] = dict(sections)
    if job_types is not None:
        raw["job_types"] = dict(job_types)
    if dealers:
        raw["dealers"] = [
            {"id": d} if isinstance(d, str) else {"id": d[0], **({"name": d[1]} if d[1] else {})}
            for d in dealers
        ]
    return dataclasses.replace(parse_config(raw, None), database_url=db_url)


# --- stores and pipelines -------------------------------------------------------------------


@asynccontextmanager
async def opened(
    db_url: str,
    rules: Mapping[str, JobTypeRule] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    dealers: Sequence[str] = ("d1",),
    config: Config = DEFAULT_CONFIG,
    **kw: Any,
) -> AsyncIterator[JobStore]:
    """A store on *db_url* (rules and breaker settings from *config* unless *rules* are
    given) with *dealers* added, closed after."""
    if rules is None:
        rules = rules_from_config(config)
        kw.setdefault("breaker", config.circuit_breaker)
    store = await JobStore.open(db_url, rules, clock=clock or Clock(), **kw)
    try:
        if dealers:
            await store.add_dealers([(d, None) for d in dealers])
        yield store
    finally:
        await store.close()


def with_store(url: str, fn: Callable[[JobStore], Awaitable[T]],
               config: Config = DEFAULT_CONFIG) -> T:
    """*fn* on a store of the existing database at *url*, from a synchronous test."""

    async def go() -> T:
        store = await JobStore.open(url, rules_from_config(config), create=False)
        try:
            return await fn(store)
        finally:
            await store.close()

    return anyio.run(go)


async def pipeline(store: JobStore, dealer: str = "d1", types: list[str] | None = None
                   ) -> dict[str, int]:
    """Enqueue one pipeline; returns {job_type: job_id}."""
    ids = await store.enqueue([dealer], types)
    return {j.job_type: j.id for j in await store.list_jobs(job_ids=ids)}


async def job_states(store: JobStore, ids: Mapping[str, int]) -> dict[str, str]:
    """{name: state} of the jobs *ids* names ({job_type: id}, as `pipeline` returns)."""
    got = {j.id: j.state for j in await store.list_jobs(job_ids=list(ids.values()))}
    return {t: got[i] for t, i in ids.items()}


async def claim(store: JobStore, worker: str = "w1", *, per_dealer: int = 100,
                lease_s: float = 60.0, limit: int = 100, **kw: Any) -> list[int]:
    """The sorted ids *worker* claims."""
    got = await store.claim(worker, limit, per_dealer=per_dealer, lease_s=lease_s, **kw)
    return sorted(j.id for j in got.jobs)


def job_ids(url: str, dealer: str | None = None) -> dict[str, int]:
    """{job_type: newest job id} of *dealer* (or every dealer) in the database at *url*."""

    async def read(store: JobStore) -> dict[str, int]:
        found: dict[str, int] = {}
        for j in sorted(await store.list_jobs(dealer_id=dealer), key=lambda j: j.id):
            found[j.job_type] = j.id
        return found

    return with_store(url, read)


# --- the CLI --------------------------------------------------------------------------------


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The test's environment minus every DEALERTUI_* variable, with config and data
    directories of its own and a fixed terminal width (for a CLI process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env.update(_isolated(tmp_path))
    env.pop("PYTHONWARNINGS", None)
    return env


def _isolated(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "COLUMNS": "120"}


def run_cli(cwd: Path, *args: str, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """`dealertui ARGS…` in-process, as `cli_process` runs it: in *cwd*, with the environment
    of `cli_env` (plus *env*), tests.fixtures importable; its exit code and output.

    Everything main() could read from the process (environment, cwd, sys.path, stdout and
    stderr) is set for the call and put back after it, so calls do not see each other."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("DEALERTUI_")]:
            mp.delenv(key)
        for key, value in {**_isolated(cwd), **(env or {})}.items():
            mp.setenv(key, value)
        mp.chdir(cwd)
        mp.syspath_prepend(str(ROOT))  # handler = "tests.fixtures.handlers:…"
        with redirect_stdout(out), redirect_stderr(err):
            code = _main_outside_any_loop(list(args))
    return subprocess.CompletedProcess(["dealertui", *args], code, out.getvalue(),
                                       err.getvalue())


def _main_outside_any_loop(argv: list[str]) -> int:
    """main() runs its own event loop: from an async test it runs in a thread of its own
    (where a run cannot install signal handlers; signal tests run a process)."""
    import asyncio
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _main(argv)
    result: list[int] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_main(argv))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _main(argv: list[str]) -> int:
    from dealertui.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse's --help and --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`dealertui --database-url URL ARGS…`, in-process in *tmp_path*."""
    return run_cli(tmp_path, "--database-url", url, *args)


def cli_process(cwd: Path, *args: str, exe: Sequence[str] | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
    """`python -m dealertui ARGS…` (or *exe* ARGS…) as a real process in *cwd*, for the
    tests where the process is the point."""
    return subprocess.run(
        [*(exe or [sys.executable, "-m", "dealertui"]), *args],
        cwd=cwd, env=cli_env(cwd), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, check=False,
    )


def show(p: subprocess.CompletedProcess[str]) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"


def ok(p: subprocess.CompletedProcess[str]) -> str:
    """*p*'s stdout, once it is known to have exited 0 without a traceback."""
    assert p.returncode == 0 and "Traceback" not in p.stderr, show(p)
    return p.stdout


#: a run's lines: `2026-12-04 18:31:54 dealertui run-once[3f9a2c]: …` (the dry run is no run)
RUN_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d dealertui (run-once|worker)\[[0-9a-f]{6}\]: "
_HEADER = re.compile(rf"^({RUN_LINE}|dealertui run-once --dry-run: )"
                     r"(config .+|no config file), database ")


def without_header(lines: list[str]) -> list[str]:
    """*lines* of stderr without a run's first line (which config and database it uses)."""
    return lines[1:] if lines and _HEADER.match(lines[0]) else lines


def one_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit *code*, no traceback, and (after a run's header line) exactly one line on
    stderr, containing every needle; that line."""
    assert p.returncode == code, show(p)
    assert "Traceback" not in p.stderr + p.stdout, show(p)
    lines = without_header(p.stderr.strip().splitlines())
    assert len(lines) == 1, show(p)
    for needle in needles:
        assert needle in lines[0], show(p)
    return lines[0]


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
