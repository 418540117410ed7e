"""EngineMetrics (Prometheus): fed by the engine's EventBus and the store, on SQLite and Postgres;
served over real HTTP on loopback; written in the node_exporter textfile format."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import PARENTS, default_types, make_config
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dealertui.config import Config
from dealertui.engine.events import EventBus
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.engine.metrics import EngineMetrics
from dealertui.store import Intent, open_store
from dealertui.store.schema import breakers

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("repo_importable")]


def picky_config(db_url: str) -> Config:
    """Default job types, all "picky": dealer ok1 succeeds, dealer fail1 fails permanently."""
    return make_config(db_url, default_types("tests.fixtures.handlers:picky"),
                       dealers=["ok1", "fail1"])


async def test_metrics_follow_a_pipeline_and_the_store(db_url: str, tmp_path: Path) -> None:
    cfg = picky_config(db_url)
    metrics = EngineMetrics()
    bus = EventBus()
    metrics.subscribe(bus)
    store = await open_store(cfg, Intent.CREATE)
    try:
        await store.enqueue(["ok1", "fail1"])
        stats = await MultiDealerDependencyManager(store, cfg, bus=bus).process_multi_dealer_jobs()
        metrics.observe_stats(stats, in_flight=0)
        await metrics.refresh(store)  # empty breakers table
        breaker_rows_before = metrics.registry.get_sample_value(
            "dealertui_breaker_open", {"key": "type:homenet"})

        async def put_breakers(conn):
            await conn.execute(breakers.insert(), [
                {"key": "type:homenet", "job_type": "homenet", "state": "open",
                 "updated_at": 1.0},
                {"key": "dealer:ok1:url_shorten", "dealer_id": "ok1",
                 "job_type": "url_shorten", "state": "half_open", "updated_at": 1.0},
            ])

        await store.db.run(put_breakers)
        await metrics.refresh(store)
        opened = _breakers(metrics)

        async def close_one(conn):
            await conn.execute(breakers.update().where(breakers.c.key == "type:homenet")
                               .values(state="closed"))
            await conn.execute(breakers.delete().where(
                breakers.c.key == "dealer:ok1:url_shorten"))

        await store.db.run(close_one)
        await metrics.refresh(store)
        closed = _breakers(metrics)
    finally:
        await store.close()

    assert stats.successful_jobs == 4 and stats.failed_jobs == 1 and stats.blocked_jobs == 3
    v = metrics.registry.get_sample_value
    for job_type in PARENTS:
        assert v("dealertui_jobs_started_total", {"job_type": job_type}) == (
            2 if job_type == "homenet" else 1)
        assert v("dealertui_jobs_finished_total",
                 {"job_type": job_type, "outcome": "succeeded"}) == 1
        assert v("dealertui_job_duration_seconds_count", {"job_type": job_type}) == 1
        assert v("dealertui_jobs", {"state": "succeeded", "job_type": job_type}) == 1
        assert v("dealertui_jobs", {"state": "ready", "job_type": job_type}) == 0
    assert v("dealertui_jobs_finished_total", {"job_type": "homenet", "outcome": "failed"}) == 1
    # descendants blocked by the failure, each under its own job type
    for job_type in ("dealer_com", "product_scrape", "url_shorten"):
        assert v("dealertui_jobs_finished_total",
                 {"job_type": job_type, "outcome": "blocked"}) == 1
    assert v("dealertui_jobs_finished_total", {"job_type": "unknown", "outcome": "blocked"}
             ) is None
    assert v("dealertui_jobs", {"state": "failed", "job_type": "homenet"}) == 1
    for job_type in ("dealer_com", "product_scrape", "url_shorten"):
        assert v("dealertui_jobs", {"state": "blocked", "job_type": job_type}) == 1
    assert v("dealertui_in_flight_jobs") == 0
    assert v("dealertui_throughput_jobs_per_second") == stats.throughput_jobs_per_s
    assert v("dealertui_job_duration_seconds_sum", {"job_type": "homenet"}) >= 0

    assert breaker_rows_before is None
    assert opened == {
        "type:homenet": (1.0, "open"),
        "dealer:ok1:url_shorten": (0.0, "half_open"),
    }
    assert closed == {"type:homenet": (0.0, "closed")}  # the deleted breaker is gone

    metrics.record_rescues(2)
    metrics.record_rescues(0)
    assert v("dealertui_lease_rescues_total") == 2

    # no label or value anywhere carries the database URL or its password
    exposition = generate_latest(metrics.registry).decode()
    assert db_url not in exposition
    password = urlsplit(db_url).password
    if password:
        assert password not in exposition

    # node_exporter textfile: written atomically, parseable, same numbers
    path = tmp_path / "dealertui.prom"
    metrics.write_textfile(path)
    assert not list(tmp_path.glob("dealertui.prom.*"))  # no temp file left behind
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    started = {s.labels["job_type"]: s.value for s in families["dealertui_jobs_started"].samples
               if s.name == "dealertui_jobs_started_total"}
    assert started == {"homenet": 2, "dealer_com": 1, "product_scrape": 1, "url_shorten": 1}
    assert families["dealertui_job_duration_seconds"].type == "histogram"
    assert families["dealertui_lease_rescues"].samples[0].value == 2


def _breakers(metrics: EngineMetrics) -> dict[str, tuple[float, str]]:
    """key -> (dealertui_breaker_open, the state whose dealertui_breaker_state is 1)."""
    out: dict[str, tuple[float, str]] = {}
    samples = [s for f in metrics.registry.collect() for s in f.samples]
    for s in samples:
        if s.name == "dealertui_breaker_open":
            out[s.labels["key"]] = (s.value, "")
    for s in samples:
        if s.name == "dealertui_breaker_state" and s.value == 1:
            out[s.labels["key"]] = (out[s.labels["key"]][0], s.labels["state"])
    return out


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks a route
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


async def test_serve_on_loopback_over_http() -> None:
    metrics = EngineMetrics()
    other = EngineMetrics()  # own registries: a second instance does not collide
    metrics.record_rescues(3)
    other.record_rescues(1)

    server = metrics.serve(0)
    try:
        assert server.host == "127.0.0.1"
        assert server.httpd.socket.getsockname()[0] == "127.0.0.1"
        assert server.port > 0
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        assert resp.status_code == 200
        lines = resp.text.splitlines()
        assert "dealertui_lease_rescues_total 3.0" in lines
        assert any(line.startswith("# TYPE dealertui_job_duration_seconds histogram")
                   for line in lines)

        addr = _non_loopback_address()
        if addr is not None:  # bound to loopback only: another address of ours refuses
            with pytest.raises(OSError):
                socket.create_connection((addr, server.port), timeout=2).close()
    finally:
        server.close()
    assert not server.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
