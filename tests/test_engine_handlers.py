"""The engine (MultiDealerDependencyManager) with Python-callable handlers
(tests/fixtures/handlers.py) and http webhook handlers talking to a real ThreadingHTTPServer on
127.0.0.1; on SQLite and Postgres.
"""

from __future__ import annotations

import http.server
import importlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import storeops
from enginerun import FIXTURE_HANDLERS, jobs_by, make_config, opened, run_all

#: repo_importable: "tests.fixtures.handlers:ok" must import however pytest was started
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]


# -- python callables -------------------------------------------------------------------------


async def test_python_callable_handlers(db_url: str) -> None:
    handlers = importlib.import_module(FIXTURE_HANDLERS)
    handlers.CALLS.clear()
    job_types = {
        "good": {"priority": 1, "handler": f"{FIXTURE_HANDLERS}:ok"},
        "bad": {"priority": 2, "handler": f"{FIXTURE_HANDLERS}:boom"},
        "flaky": {"priority": 3, "handler": f"{FIXTURE_HANDLERS}:flaky"},
        "missing": {"priority": 4, "handler": "nonexistent.module:fn"},
        "absent_fn": {"priority": 5, "handler": f"{FIXTURE_HANDLERS}:no_such_function"},
    }
    cfg = make_config(db_url, job_types, dealers=("d1",))
    async with opened(cfg) as store:
        await store.enqueue(["d1"])
        stats = await run_all(store, cfg)
        jobs = await jobs_by(store)

    good = jobs[("d1", "good")]
    assert good.state == "succeeded"
    (ctx,) = handlers.CALLS
    assert (ctx.job_id, ctx.dealer_id, ctx.job_type, ctx.attempt) == (good.id, "d1", "good", 1)

    bad = jobs[("d1", "bad")]
    assert bad.state == "failed" and bad.attempts == 1
    assert "boom: d1 bad cannot be done" in (bad.last_error or "")

    flaky = jobs[("d1", "flaky")]
    assert flaky.state == "retrying" and flaky.attempts == 1
    assert "feed is down" in (flaky.last_error or "")

    for name, spec in (("missing", "nonexistent.module:fn"),
                       ("absent_fn", f"{FIXTURE_HANDLERS}:no_such_function")):
        job = jobs[("d1", name)]
        assert job.state == "failed", job
        assert job.attempts == 1, "an unusable handler spec is permanent, not retried"
        assert spec in (job.last_error or ""), job.last_error

    assert stats.successful_jobs == 1
    assert stats.failed_jobs == 3
    assert stats.retried_jobs == 1
    assert stats.processed_jobs == stats.total_jobs == 5


# -- http webhooks ----------------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        self.received: list[tuple[str, str, Any]] = []
        self.release = threading.Event()  # ends /slow early at teardown
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                path = self.path.partition("?")[0]
                outer.received.append((self.command, path, body))
                if path == "/slow":
                    outer.release.wait(3)
                status = {"/ok": 200, "/bad": 404, "/down": 503, "/slow": 200}.get(path, 404)
                payload = json.dumps({"path": path}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = _Server()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)


async def test_http_handlers(db_url: str, http_server: _Server) -> None:
    def hook(path: str) -> dict[str, Any]:
        return {"url": http_server.url(path), "method": "POST"}

    # credentials in the URL and a token in its query must not reach job errors
    secret_down = {"url": http_server.url("/down?token=t0ken").replace(
        "http://", "http://hookuser:s3cret@"), "method": "POST"}

    job_types = {
        "hook_ok": {"priority": 1, "handler": hook("/ok")},
        "hook_bad": {"priority": 2, "handler": hook("/bad")},
        "hook_down": {"priority": 3, "handler": secret_down},
        "hook_slow": {"priority": 4, "handler": hook("/slow"), "timeout_s": 0.5},
    }
    cfg = make_config(db_url, job_types, dealers=("d1",))
    async with opened(cfg) as store:
        await store.enqueue(["d1"])
        t0 = time.monotonic()
        stats = await run_all(store, cfg)
        elapsed = time.monotonic() - t0
        jobs = await jobs_by(store)
        down_events = await storeops.job_events(store, jobs[("d1", "hook_down")].id)

    ok = jobs[("d1", "hook_ok")]
    assert ok.state == "succeeded"
    bodies = {path: body for method, path, body in http_server.received if method == "POST"}
    assert set(bodies) == {"/ok", "/bad", "/down", "/slow"}
    assert isinstance(bodies["/ok"], dict)
    assert bodies["/ok"]["dealer_id"] == "d1"
    assert bodies["/ok"]["job_type"] == "hook_ok"
    assert bodies["/ok"]["job_id"] == ok.id

    bad = jobs[("d1", "hook_bad")]
    assert bad.state == "failed" and bad.attempts == 1
    assert "404" in (bad.last_error or "")
    down = jobs[("d1", "hook_down")]
    assert down.state == "retrying"
    assert "503" in (down.last_error or "")
    assert "/down?…" in (down.last_error or ""), down.last_error
    for text in [down.last_error or "", *(str(e) for e in down_events)]:
        assert "s3cret" not in text and "t0ken" not in text, text
    slow = jobs[("d1", "hook_slow")]
    assert slow.state == "retrying"
    assert "timed out" in (slow.last_error or "")
    assert elapsed < 2.9, f"the run waited for /slow ({elapsed:.1f}s), not its 0.5 s timeout"
    assert (stats.successful_jobs, stats.failed_jobs, stats.retried_jobs) == (1, 1, 2)


# -- payloads ---------------------------------------------------------------------------------


async def test_every_kind_of_handler_gets_the_payload(
    db_url: str, http_server: _Server, tmp_path: Path,
) -> None:
    """`enqueue --payload`: a python handler's ctx.payload (decoded), an exec handler's
    $DEALERTUI_PAYLOAD (a real subprocess), an http handler's body (a real server); `{}` for
    a pipeline enqueued without one."""
    handlers = importlib.import_module(FIXTURE_HANDLERS)
    handlers.CALLS.clear()
    seen = tmp_path / "payloads.txt"
    write_env = ("import os, sys; open(sys.argv[1], 'a').write("
                 "os.environ['DEALERTUI_DEALER_ID'] + ' ' + os.environ['DEALERTUI_PAYLOAD'] "
                 "+ '\\n')")
    job_types = {
        "py": {"priority": 1, "handler": f"{FIXTURE_HANDLERS}:ok"},
        "ex": {"priority": 2, "handler": {"exec": [sys.executable, "-c", write_env, str(seen)]}},
        "hook": {"priority": 3, "handler": {"url": http_server.url("/ok"), "method": "POST"}},
    }
    cfg = make_config(db_url, job_types, dealers=("d1", "d2"))
    payload = {"feed": "full", "n": 2, "deep": {"list": [1, "[b]x[/b]"]}}
    async with opened(cfg) as store:
        await store.enqueue(["d1"], payload=payload)
        await store.enqueue(["d2"])
        stats = await run_all(store, cfg)
    assert stats.successful_jobs == 6, stats

    got = {ctx.dealer_id: ctx.payload for ctx in handlers.CALLS}
    assert got == {"d1": payload, "d2": {}}
    lines = sorted(seen.read_text(encoding="utf-8").splitlines())
    assert [(ln.split(" ", 1)[0], json.loads(ln.split(" ", 1)[1])) for ln in lines] == [
        ("d1", payload), ("d2", {})]
    bodies = {b["dealer_id"]: b["payload"] for m, _p, b in http_server.received if m == "POST"}
    assert bodies == {"d1": payload, "d2": {}}
