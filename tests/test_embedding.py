"""The embedding API (dealertui.open, JobType; README "Embedding") on SQLite and Postgres, and
examples/embed.py run as a user runs it: a real interpreter in an empty directory."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import dealertui
from dealertui import ConfigError, JobContext, JobType

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]

ROOT = Path(__file__).resolve().parents[1]



def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}


class Recorder:
    """An async handler that notes (dealer, type) of every job it runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, ctx: JobContext) -> dict[str, int]:
        self.calls.append((ctx.dealer_id, ctx.job_type))
        return {"rows": 120}


def seed_types(handler: Any) -> list[JobType]:
    return [JobType("homenet", handler=handler),
            JobType("dealer_com", depends_on=["homenet"], handler=handler)]


# -- the example ----------------------------------------------------------------------------


def test_example_runs_as_written(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], cwd=tmp_path,
                       capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "4 1.0"  # 2 dealers x 2 types, all succeeded
    drawing = "\n".join(lines[1:])
    for dealer in ("d001", "d002"):
        for job_type in ("homenet", "dealer_com"):
            assert f"✔ {dealer} {job_type} #" in drawing
    assert (tmp_path / "feeds.db").is_file()  # the relative URL is the directory it ran in


# -- the seed's methods -----------------------------------------------------------------------


async def test_every_seed_method(db_url: str) -> None:
    handler = Recorder()
    async with dealertui.open(db_url, job_types=seed_types(handler), dealers=["d1", "d2"],
                              max_concurrent_dealers=3,
                              max_concurrent_jobs_per_dealer=2) as manager:
        assert isinstance(manager, dealertui.MultiDealerDependencyManager)
        assert (manager.max_concurrent_dealers, manager.max_concurrent_jobs_per_dealer) == (3, 2)
        ids = await manager.enqueue(["d1", "d2"])
        assert len(ids) == 4

        graph = await manager.build_dependency_graph()
        assert len(graph.nodes) == 4 and len(graph.edges) == 2 and graph.cycles == []
        one = await manager.build_dependency_graph("d1")
        assert {n.job_type for n in one.nodes.values()} == {"homenet", "dealer_com"}
        assert {n.dealer_id for n in one.nodes.values()} == {"d1"}

        ready = await manager.get_ready_jobs_for_dealer("d1")
        assert [j.job_type for j in ready] == ["homenet"]  # dealer_com waits for it
        before = await manager.get_dependency_graph_visualization("d1")
        assert "○ homenet" in before and "… dealer_com" in before

        stats = await manager.process_multi_dealer_jobs(limit=10)
        assert (stats.processed_jobs, stats.successful_jobs, stats.failed_jobs) == (4, 4, 0)
        assert stats.success_rate == 1.0 and stats.dealers_processed == 2
        for dealer in ("d1", "d2"):
            mine = [t for d, t in handler.calls if d == dealer]
            assert mine == ["homenet", "dealer_com"]
        assert await manager.get_ready_jobs_for_dealer("d1") == []
        after = await manager.get_dependency_graph_visualization()
        assert after.count("✔") == 4 and "succeeded" in after

        assert manager.get_processing_stats().processed_jobs == 4
        await manager.enqueue(["d1"])
        assert (await manager.process_multi_dealer_jobs()).processed_jobs == 6  # runs add up
        manager.reset_processing_stats()
        reset = manager.get_processing_stats()
        assert (reset.processed_jobs, reset.total_jobs, reset.dealers_processed) == (0, 0, 0)
        await manager.enqueue(["d2"])
        again = await manager.process_multi_dealer_jobs()
        assert (again.processed_jobs, again.dealers_processed) == (2, 1)


async def test_limit_stops_the_run(db_url: str) -> None:
    handler = Recorder()
    async with dealertui.open(db_url, job_types=seed_types(handler),
                              dealers=["d1", "d2", "d3"]) as manager:
        await manager.enqueue(["d1", "d2", "d3"])
        stats = await manager.process_multi_dealer_jobs(limit=2)
        assert stats.total_jobs == 2 and len(handler.calls) == 2


# -- handlers of every kind -------------------------------------------------------------------


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handle(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


async def test_every_handler_kind_runs(db_url: str, tmp_path: Path,
                                       webhook: tuple[str, list[dict[str, Any]]]) -> None:
    from tests.fixtures import handlers as fixture_handlers

    log = tmp_path / "exec.log"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    sync_calls: list[str] = []
    url, bodies = webhook
    job_types = [
        JobType("by_name", handler="tests.fixtures.handlers:ok"),
        JobType("by_exec", handler={"exec": [sys.executable, "-c", write, str(log),
                                             "{dealer_id}"]}),
        JobType("by_http", handler={"url": url, "method": "POST"}),
        JobType("by_sync", handler=lambda ctx: sync_calls.append(ctx.dealer_id)),
    ]
    fixture_handlers.CALLS.clear()
    async with dealertui.open(db_url, job_types=job_types, dealers=["d1"]) as manager:
        await manager.enqueue(["d1"])
        stats = await manager.process_multi_dealer_jobs()
    assert (stats.processed_jobs, stats.successful_jobs) == (4, 4)
    assert [c.job_type for c in fixture_handlers.CALLS] == ["by_name"]
    assert log.read_text() == "d1\n"
    assert [(b["dealer_id"], b["job_type"]) for b in bodies] == [("d1", "by_http")]
    assert sync_calls == ["d1"]


@pytest.mark.parametrize(("spec", "said"), [
    ("tests.fixtures.no_such_module:ok",
     "handler 'tests.fixtures.no_such_module:ok' cannot be imported"),
    ("tests.fixtures.handlers:no_such_function",
     "handler 'tests.fixtures.handlers:no_such_function' not found"),
    ("not a spec", 'must look like "package.module:function", not "not a spec"'),
    ({"exec": ["dealertui-no-such-command"]},
     "handler.exec command 'dealertui-no-such-command' is not found on PATH"),
    ({"exec": []}, "handler.exec must start with a command, not []"),
    ({"url": "ftp://feeds.example"}, 'must be an http:// or https:// URL, not "ftp://feeds'),
    ({"url": "https://feeds.example", "method": "FETCH"}, 'must be one of GET'),
    ({"command": "x"}, "unknown key 'handler.command'"),
    (42, "handler must be an async function"),
])
def test_unresolvable_spec_is_refused_when_built(spec: Any, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        JobType("homenet", handler=spec)
    text = str(caught.value)
    assert text.startswith("JobType 'homenet': ") and said in text, text
    assert "\n" not in text and text.endswith(".")


async def test_refused_before_anything_is_written(tmp_path: Path) -> None:
    async def ok(ctx: JobContext) -> None:
        return None

    with pytest.raises(ConfigError, match="depends_on names unknown job type 'home_net'"):
        async with dealertui.open(f"sqlite:///{tmp_path}/x.db",
                                  job_types=[JobType("homenet", handler=ok),
                                             JobType("dealer_com", depends_on=["home_net"],
                                                     handler=ok)]):
            pass
    with pytest.raises(ConfigError, match=r"dealers\[0\]\.id \"no way\" is not a valid"):
        async with dealertui.open(f"sqlite:///{tmp_path}/x.db", job_types=seed_types(ok),
                                  dealers=["no way"]):
            pass
    with pytest.raises(ConfigError, match="needs job_types="):
        async with dealertui.open(f"sqlite:///{tmp_path}/x.db"):
            pass
    assert os.listdir(tmp_path) == []


# -- priorities -------------------------------------------------------------------------------


async def test_priorities_default_to_the_order_given(db_url: str) -> None:
    handler = Recorder()
    types = [JobType("zeta", handler=handler), JobType("alpha", handler=handler),
             JobType("mid", handler=handler)]
    async with dealertui.open(db_url, job_types=types, dealers=["d1"]) as manager:
        assert [(n, jt.priority) for n, jt in manager.config.job_types.items()] == [
            ("zeta", 1), ("alpha", 2), ("mid", 3)]
        await manager.enqueue(["d1"])
        ready = await manager.get_ready_jobs_for_dealer("d1")
        assert [j.job_type for j in ready] == ["zeta", "alpha", "mid"]  # not by name
    types = [JobType("zeta", handler=handler, priority=9), JobType("alpha", handler=handler),
             JobType("mid", handler=handler, priority=0)]
    async with dealertui.open(db_url, job_types=types, dealers=["d2"]) as manager:
        await manager.enqueue(["d2"])
        ready = await manager.get_ready_jobs_for_dealer("d2")
        assert [(j.job_type, j.priority) for j in ready] == [("mid", 0), ("alpha", 2),
                                                               ("zeta", 9)]


# -- a config file ----------------------------------------------------------------------------


async def test_open_what_a_config_file_describes(db_url: str, tmp_path: Path) -> None:
    from tests.fixtures import handlers as fixture_handlers

    path = tmp_path / "dealertui.toml"
    path.write_text(f"""
[database]
url = "{db_url}"

[concurrency]
max_concurrent_dealers = 4

[job_types.homenet]
priority = 1
handler = "tests.fixtures.handlers:ok"

[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = "tests.fixtures.handlers:ok"

[[dealers]]
id = "d7"
name = "Seventh Motors"
""")
    fixture_handlers.CALLS.clear()
    config = dealertui.load_config(path, env={})
    async with dealertui.open(config=config, max_concurrent_jobs_per_dealer=1,
                              dealers=["d8"]) as manager:
        assert manager.config.database_url == config.database_url
        assert (manager.max_concurrent_dealers, manager.max_concurrent_jobs_per_dealer) == (4, 1)
        await manager.enqueue(["d7", "d8"])
        stats = await manager.process_multi_dealer_jobs()
        names = {d.id: d.name for d in await manager.store.list_dealers()}
    assert (stats.processed_jobs, stats.successful_jobs) == (4, 4)
    assert sorted((c.dealer_id, c.job_type) for c in fixture_handlers.CALLS) == [
        ("d7", "dealer_com"), ("d7", "homenet"), ("d8", "dealer_com"), ("d8", "homenet")]
    assert names == {"d7": "Seventh Motors", "d8": None}


async def test_a_config_file_without_handlers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dealertui.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n')
    with pytest.raises(ConfigError, match="has no \\[job_types\\] section"):
        async with dealertui.open(config=dealertui.load_config(path, env={})):
            pass
    assert not (tmp_path / "x.db").exists()


# -- the package ------------------------------------------------------------------------------


def test_public_names_import_lazily_and_without_textual() -> None:
    probe = ("import sys, dealertui; light = 'sqlalchemy' not in sys.modules; "
             "from dealertui import *; "
             "print(light, 'textual' in sys.modules, callable(open), JobType.__module__)")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env=_clean_env(), timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "False", "True", "dealertui.api"]
    assert set(dealertui.__all__) >= {"open", "JobType", "JobContext", "load_config",
                                      "MultiDealerDependencyManager", "ConfigError"}
    for name in dealertui.__all__:
        assert getattr(dealertui, name) is not None


def test_the_store_of_the_example_is_a_real_one(tmp_path: Path) -> None:
    """What examples/embed.py leaves behind is a dealertui database the CLI reads."""
    subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py")], cwd=tmp_path,
                   check=True, capture_output=True, env=_clean_env(), timeout=120)
    p = subprocess.run([sys.executable, "-m", "dealertui", "--database-url",
                        f"sqlite:///{tmp_path}/feeds.db", "status", "--json"],
                       capture_output=True, text=True, env=_clean_env(), timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "succeeded" in p.stdout

