"""Nothing runs jobs on a default nobody named (issue 13): no simulated handlers on real jobs,
no database created by a run, handlers checked before any job is claimed, and every headless
run naming its config file and database on its first line. The CLI in-process, SQLite and
Postgres."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import DEMO_CONFIG, RUN_LINE, run_cli, show, without_header

from dealertui.config import EXEC_PLACEHOLDERS, ExecHandler, load_config
from dealertui.demo import demo_config
from dealertui.errors import ConfigError
from dealertui.handlers import JobContext
from dealertui.handlers.check import check_runnable
from dealertui.handlers.exec import make_exec_handler

TYPES = ("homenet", "dealer_com", "product_scrape", "url_shorten")


def run(tmp_path: Path, *args: str, config: Path | None = None,
        url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`dealertui [--config C] [--database-url URL] ARGS…` in-process in *tmp_path*, where no
    config file is found unless *config* names one; tests.fixtures.handlers is importable."""
    head = ["--config", str(config)] if config is not None else []
    head += ["--database-url", url] if url is not None else []
    return run_cli(tmp_path, *head, *args)


def refused(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit *code*; stderr is at most the run's header line, then one error sentence."""
    assert p.returncode == code, show(p)
    assert "Traceback" not in p.stderr + p.stdout and p.stdout == "", show(p)
    lines = without_header(p.stderr.strip().splitlines())
    assert len(lines) == 1 and lines[0].startswith("dealertui: error: "), show(p)
    for needle in needles:
        assert needle in lines[0], show(p)
    return lines[0]


def states(tmp_path: Path, url: str) -> dict[str, int]:
    p = run(tmp_path, "status", "--json", url=url)
    assert p.returncode == 0, show(p)
    by_state: dict[str, int] = json.loads(p.stdout)["by_state"]
    return {s: n for s, n in by_state.items() if n}


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_type(handler: str) -> str:
    return f"[job_types.homenet]\npriority = 1\nhandler = {handler}\n"


@pytest.fixture
def pipeline(tmp_path: Path, db_url: str) -> str:
    """*db_url* with dealer d1 and its four-job pipeline enqueued (through a config that
    names the demo handlers, so the job types are the built-in four)."""
    cfg = write(tmp_path, DEMO_CONFIG, "setup.toml")
    for args in (("dealers", "add", "d1"), ("enqueue", "--all-dealers")):
        p = run(tmp_path, *args, config=cfg, url=db_url)
        assert p.returncode == 0, show(p)
    return db_url


# -- 1. no handler without a config ------------------------------------------------------------


def test_without_a_config_run_once_and_worker_refuse_and_run_nothing(
    tmp_path: Path, pipeline: str
) -> None:
    before = states(tmp_path, pipeline)
    assert sum(before.values()) == 4 and "succeeded" not in before
    for args in (("--run-once",), ("--run-once", "--json"), ("worker",)):
        line = refused(run(tmp_path, *args, url=pipeline), 2, "no config file found",
                       "$DEALERTUI_CONFIG", ", ".join(TYPES), "--demo")
        # every place a config was looked for
        assert str(tmp_path / "dealertui.toml") in line
        assert str(tmp_path / "xdg-config" / "dealertui" / "config.toml") in line
    assert states(tmp_path, pipeline) == before  # nothing claimed, nothing simulated
    # read-only commands still work without a config
    for args in (("status",), ("graph",), ("--run-once", "--dry-run", "--json")):
        p = run(tmp_path, *args, url=pipeline)
        assert p.returncode == 0 and "Traceback" not in p.stderr, show(p)


def test_a_file_without_job_types_names_no_handler_either(tmp_path: Path, pipeline: str) -> None:
    cfg = write(tmp_path, "[concurrency]\nmax_concurrent_dealers = 1\n")
    refused(run(tmp_path, "--run-once", config=cfg, url=pipeline), 2, str(cfg),
            "no [job_types]", "homenet")


def test_demo_handlers_run_where_a_config_names_them(tmp_path: Path, pipeline: str) -> None:
    p = run(tmp_path, "--run-once", "--json", config=write(tmp_path, DEMO_CONFIG), url=pipeline)
    assert p.returncode == 0, show(p)
    assert json.loads(p.stdout)["successful_jobs"] == 4, show(p)


def test_the_demo_and_only_the_demo_fills_in_the_simulated_handlers(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    bare = load_config(env=env, cwd=tmp_path)
    assert all(jt.handler is None for jt in bare.job_types.values())
    with pytest.raises(ConfigError, match="no config file found"):
        check_runnable(bare, env=env, cwd=tmp_path)
    demo = demo_config(bare, str(tmp_path))
    assert {n: jt.handler for n, jt in demo.job_types.items()} == {
        n: f"dealertui.handlers.demo:{n}" for n in TYPES}
    check_runnable(demo)


# -- 2. the first line: which config, which database ------------------------------------------


def test_every_run_names_its_config_and_database_first(tmp_path: Path, pipeline: str) -> None:
    cfg = write(tmp_path, DEMO_CONFIG)
    masked = pipeline
    if pipeline.startswith("postgresql"):  # a password, which the line must not show
        masked = pipeline.replace("://postgres@", "://postgres:***@", 1)
        pipeline = pipeline.replace("://postgres@", "://postgres:hunter2@", 1)
    p = run(tmp_path, "--run-once", "--json", config=cfg, url=pipeline)
    assert p.returncode == 0, show(p)
    json.loads(p.stdout)  # stdout stays one JSON document
    first = p.stderr.splitlines()[0]
    shown = (str(tmp_path / "t.db") if masked.startswith("sqlite")
             else masked.replace("+asyncpg", ""))
    assert re.fullmatch(RUN_LINE + re.escape(f"config {cfg}, database {shown}"), first), show(p)
    assert "hunter2" not in p.stderr + p.stdout
    # without a config file, and for the worker (refused here: a typo'd database)
    p = run(tmp_path, "--run-once", url=pipeline)
    assert re.fullmatch(RUN_LINE + re.escape(f"no config file, database {shown}"),
                        p.stderr.splitlines()[0]), show(p)
    p = run(tmp_path, "worker", config=cfg, url=f"sqlite:///{tmp_path}/typo.db")
    assert re.fullmatch(RUN_LINE + re.escape(f"config {cfg}, database {tmp_path / 'typo.db'}"),
                        p.stderr.splitlines()[0]), show(p)


# -- 3. a run creates no database ---------------------------------------------------------------


def test_a_run_does_not_create_a_missing_database(tmp_path: Path, db_url: str) -> None:
    cfg = write(tmp_path, DEMO_CONFIG)
    typo = f"sqlite:///{tmp_path}/typo/real.db"
    for url in (typo, db_url):  # db_url: a SQLite file not there yet, an empty Postgres db
        for args in (("--run-once",), ("--run-once", "--json"), ("worker",)):
            refused(run(tmp_path, *args, config=cfg, url=url), 3,
                    "does not exist" if url.startswith("sqlite") else "no dealertui schema",
                    "init-db")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "t.db").exists()
    p = run(tmp_path, "status", url=db_url)
    assert p.returncode == 3, show(p)  # still nothing there: no schema was created either
    # --create, or init-db first, and it runs
    p = run(tmp_path, "--run-once", "--json", "--create", config=cfg, url=typo)
    assert p.returncode == 0 and json.loads(p.stdout)["processed_jobs"] == 0, show(p)
    assert (tmp_path / "typo" / "real.db").exists()
    assert run(tmp_path, "init-db", url=db_url).returncode == 0
    p = run(tmp_path, "--run-once", "--json", config=cfg, url=db_url)
    assert p.returncode == 0, show(p)


def test_create_applies_to_run_once_and_worker_only(tmp_path: Path) -> None:
    p = run(tmp_path, "--create", "status")
    assert p.returncode == 2 and "--create does not apply to the status command" in p.stderr
    p = run(tmp_path, "--create")
    assert p.returncode == 2 and "--create applies to --run-once only" in p.stderr


# -- 4. handlers checked on load ---------------------------------------------------------------


def _not_executable(tmp_path: Path) -> str:
    script = tmp_path / "scrape.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return str(script)


@pytest.mark.parametrize(
    ("handler", "needles"),
    [
        ('"tests.fixtures.nosuch:ok"', ["'tests.fixtures.nosuch:ok'", "cannot be imported",
                                         "No module named"]),
        ('"tests.fixtures.handlers:nosuch"', ["has no callable 'nosuch'"]),
        ('{ exec = ["dealertui-no-such-program", "{dealer_id}"] }',
         [".exec", "'dealertui-no-such-program' is not found on PATH"]),
        ('{ exec = ["NOT_EXECUTABLE"] }', [".exec", "is not executable"]),
        ('{ exec = ["/nonexistent/scrape"] }', [".exec", "'/nonexistent/scrape' does not exist"]),
    ],
    ids=["no-module", "no-function", "not-on-path", "not-executable", "no-file"],
)
def test_an_unusable_handler_is_a_config_error_before_any_job_runs(
    tmp_path: Path, pipeline: str, handler: str, needles: list[str]
) -> None:
    handler = handler.replace("NOT_EXECUTABLE", _not_executable(tmp_path))
    text = DEMO_CONFIG.replace('"dealertui.handlers.demo:product_scrape"', handler)
    cfg = write(tmp_path, text)
    before = states(tmp_path, pipeline)
    for args in (("--run-once",), ("worker",)):
        line = refused(run(tmp_path, *args, config=cfg, url=pipeline), 2,
                       f"{cfg}, line 14: job_types.product_scrape.handler", *needles)
        assert line.endswith(".")
    assert states(tmp_path, pipeline) == before  # the other types' jobs did not run either
    # a read-only command does not resolve handlers: status on a box without their code
    p = run(tmp_path, "status", config=cfg, url=pipeline)
    assert p.returncode == 0, show(p)


def test_an_unknown_placeholder_is_refused_when_the_file_loads(tmp_path: Path) -> None:
    cfg = write(tmp_path, one_type('{ exec = ["echo", "--dealer={dealr_id}", "{\\"k\\": 1}"] }'))
    for args in (("--run-once",), ("status",)):  # a typo in the file, as an unknown key is
        refused(run(tmp_path, *args, config=cfg, url=f"sqlite:///{tmp_path}/x.db"), 2,
                f"{cfg}, line 3", "job_types.homenet.handler.exec", "{dealr_id}",
                '"--dealer={dealr_id}"', "{dealer_id} {job_type} {job_id} {attempt}")
    assert not (tmp_path / "x.db").exists()


def test_an_exec_handlers_path_is_its_own_env_path(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "feedtool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    plain = load_config(write(tmp_path, one_type('{ exec = ["feedtool"] }')), env={})
    with pytest.raises(ConfigError, match="'feedtool' is not found on PATH"):
        check_runnable(plain)
    with_path = one_type(f'{{ exec = ["feedtool"], env = {{ PATH = "{tool.parent}" }} }}')
    check_runnable(load_config(write(tmp_path, with_path, "p.toml"), env={}))


@pytest.mark.anyio
async def test_the_known_placeholders_are_the_ones_exec_fills(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    code = f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"
    argv = (sys.executable, "-c", code, *(f"{{{p}}}" for p in EXEC_PLACEHOLDERS))
    handler = make_exec_handler(ExecHandler(argv))
    await handler(JobContext(job_id=7, dealer_id="d1", job_type="homenet", attempt=2))
    filled: list[Any] = json.loads(out.read_text())
    assert filled == ["d1", "homenet", "7", "2"]  # none left as a literal {name}


# -- the console ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_consoles_s_refuses_job_types_without_a_handler(tmp_path: Path) -> None:
    import dataclasses

    try:
        from consolepilot import quit_when_idle, until
    except ImportError:
        from tests.consolepilot import quit_when_idle, until
    from dealertui.config import parse_config
    from dealertui.store import Intent, open_store
    from dealertui.tui.app import make_app

    cfg = dataclasses.replace(parse_config({"dealers": [{"id": "d1"}]}, None),
                              database_url=f"sqlite+aiosqlite:///{tmp_path}/console.db")
    store = await open_store(cfg, Intent.CREATE)
    try:
        await store.enqueue(["d1"])
        app = make_app(cfg, store, refresh_s=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.snapshot is not None, "the first snapshot")
            await pilot.press("s")
            said = await until(pilot, lambda: [str(n.message) for n in app._notifications
                                               if "engine not started" in str(n.message)],
                               "the refusal")
            assert "no config file found" in said[0] and "--demo" in said[0]
            assert app.manager is None  # no engine process was started
            await quit_when_idle(app, pilot)
        jobs = await store.list_jobs()
        assert len(jobs) == 4 and all(j.attempts == 0 for j in jobs)
        assert not any(j.state in ("running", "succeeded", "failed") for j in jobs)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_the_console_does_not_create_a_missing_database(tmp_path: Path) -> None:
    import dataclasses

    try:
        from consolepilot import until
    except ImportError:
        from tests.consolepilot import until
    from dealertui.config import parse_config
    from dealertui.tui.app import make_app

    path = tmp_path / "typo" / "console.db"
    cfg = dataclasses.replace(parse_config({}, None), database_url=f"sqlite+aiosqlite:///{path}")
    app = make_app(cfg)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: not app.is_running, "the console to exit")
    assert app.startup_error is not None and app.startup_error.exit_code == 3
    assert "does not exist" in str(app.startup_error) and "init-db" in str(app.startup_error)
    assert not path.parent.exists()
