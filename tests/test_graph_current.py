"""`graph --dealer` and the console's graph pane draw one composition: the dealer's newest
pipeline, not every pipeline it ever had (engine.graph.current_pipeline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dealertui.cli import main
from dealertui.config import parse_config
from dealertui.engine import graph
from dealertui.store import Intent, open_store

TYPES = {"a": {"priority": 1, "handler": "tests.fixtures.handlers:ok"},
         "b": {"priority": 2, "depends_on": ["a"], "handler": "tests.fixtures.handlers:ok"}}


@pytest.mark.anyio
async def test_the_current_pipeline_is_the_newest_one(db_url: str) -> None:
    cfg = parse_config({"database": {"url": db_url}, "job_types": TYPES,
                        "dealers": [{"id": "d1"}, {"id": "d2"}]}, None)
    store = await open_store(cfg, Intent.CREATE)
    try:
        old = await store.enqueue(["d1"])
        new = await store.enqueue(["d1"])
        other = await store.enqueue(["d2"])
        g = await graph.current_pipeline(store, cfg, "d1")
        assert set(g.nodes) == {str(i) for i in new}
        assert g.edges == [(str(min(new)), str(max(new)))]
        assert not set(g.nodes) & {str(i) for i in [*old, *other]}
        # the whole graph still has everything
        assert len((await graph.build(store, cfg)).nodes) == 6
    finally:
        await store.close()


def test_graph_dealer_prints_only_the_newest_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEALERTUI_DATABASE_URL", raising=False)
    (tmp_path / "dealertui.toml").write_text(
        '[database]\nurl = "sqlite:///g.db"\n[[dealers]]\nid = "d1"\n'
        '[job_types.a]\npriority = 1\nhandler = { exec = ["true"] }\n'
        '[job_types.b]\npriority = 2\ndepends_on = ["a"]\nhandler = { exec = ["true"] }\n',
        encoding="utf-8")
    for _ in range(3):
        assert main(["enqueue", "--dealer", "d1", "--allow-duplicate"]) == 0
    capsys.readouterr()
    assert main(["graph", "--dealer", "d1"]) == 0
    out = capsys.readouterr().out
    assert "#5" in out and "#6" in out, out
    assert not any(f"#{i}" in out for i in range(1, 5)), out
