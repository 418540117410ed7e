"""dealertui.config: config.example.toml loads cleanly and shows every key, the defaults
without any file, the seed job types, and a Config that is frozen, picklable and imports no
UI library.

Every test passes an explicit `env` and `cwd`, so neither the user's own config nor their
DEALERTUI_* variables are ever read.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from configcase import ROOT, write

from dealertui.config import (
    DEFAULT_JOB_TYPES,
    BreakerConfig,
    ConcurrencyConfig,
    Config,
    DemoConfig,
    ExecHandler,
    HttpHandler,
    RetryPolicy,
    default_database_url,
    load_config,
)
from dealertui.config.retention import KEYS as RETENTION_KEYS

EXAMPLE = ROOT / "config.example.toml"


# --- the example file and the defaults ---------------------------------------------------


def test_example_file_loads_cleanly(env: dict[str, str]) -> None:
    config = load_config(EXAMPLE, env=env, cwd=ROOT)
    assert config.source == EXAMPLE
    assert config.database_url == "sqlite+aiosqlite:///dealertui.db"
    assert list(config.job_types) == ["homenet", "dealer_com", "product_scrape", "url_shorten"]
    assert config.job_type_order() == list(config.job_types)
    scrape = config.job_types["product_scrape"]
    assert scrape.retry.max_attempts == 3 and scrape.retry_exit_codes == (69, 111)
    assert scrape.retry.backoff_max_s == config.retry.backoff_max_s  # inherited from [retry]
    for name, jt in config.job_types.items():
        assert jt.handler == f"dealertui.handlers.demo:{name}"
        assert jt.depends_on == DEFAULT_JOB_TYPES[name].depends_on
    assert [(d.id, d.name) for d in config.dealers] == [
        ("d001", "Sunrise Motors"),
        ("d002", "Harbor Auto Group"),
    ]
    assert config.concurrency.lease_s == 60.0


def test_example_file_shows_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = {"url", "priority", "depends_on", "handler", "timeout_s", "retry_exit_codes"}
    keys |= {"exec", "env", "method", "headers", "id", "name"}
    keys |= {"cron", "every", "timezone", "dealers", "types", "payload", "overlap"}
    keys |= set(RETENTION_KEYS)
    for cls in (RetryPolicy, BreakerConfig, ConcurrencyConfig, DemoConfig):
        keys |= {f.name for f in dataclasses.fields(cls)}
    for key in sorted(keys):
        assert re.search(rf"^\s*#?\s*{key}\s*=|[{{,]\s*{key}\s*=", text, re.M), key


@pytest.mark.parametrize("kind", ["exec", "url"])
def test_example_file_commented_handlers_are_valid(
    tmp_path: Path, env: dict[str, str], kind: str
) -> None:
    """Uncommenting an alternative handler (in place of the demo one) gives a valid config."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"# handler = {{ {kind}"))
    assert lines[index - 1].startswith("handler = ")
    lines[index - 1 : index + 1] = [lines[index].removeprefix("# ")]
    config = load_config(write(tmp_path, "\n".join(lines), "alt.toml"), env=env)
    handlers = [jt.handler for jt in config.job_types.values()]
    expected = ExecHandler if kind == "exec" else HttpHandler
    assert sum(isinstance(h, expected) for h in handlers) == 1


def test_defaults_without_any_file(tmp_path: Path, env: dict[str, str]) -> None:
    config = load_config(env=env, cwd=tmp_path)
    assert config.source is None
    assert config.database_url == default_database_url()
    assert dict(config.job_types) == dict(DEFAULT_JOB_TYPES)
    assert config.job_type_order() == ["homenet", "dealer_com", "product_scrape", "url_shorten"]
    assert config.concurrency == ConcurrencyConfig()
    assert config.retry == RetryPolicy() and config.circuit_breaker == BreakerConfig()
    assert config.demo == DemoConfig() and config.dealers == ()
    url = default_database_url()
    assert url.startswith("sqlite+aiosqlite:///") and url.endswith("/dealertui.db")


def test_default_job_types_match_the_design() -> None:
    assert {n: (jt.priority, jt.depends_on) for n, jt in DEFAULT_JOB_TYPES.items()} == {
        "homenet": (1, ()),
        "dealer_com": (2, ("homenet",)),
        "product_scrape": (3, ("homenet",)),
        "url_shorten": (4, ("product_scrape",)),
    }
    for name, jt in DEFAULT_JOB_TYPES.items():
        # no handler: only --demo fills in the simulated ones (tests/test_no_silent_defaults.py)
        assert jt.handler is None and jt.timeout_s == 300


def test_file_without_job_types_gets_the_seed_types_with_its_retry(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(tmp_path, "[retry]\nmax_attempts = 7\nbackoff_jitter_s = 0\n", "ok.toml")
    config = load_config(path, env=env)
    assert list(config.job_types) == list(DEFAULT_JOB_TYPES)
    for jt in config.job_types.values():
        assert jt.retry == RetryPolicy(max_attempts=7, backoff_jitter_s=0.0)


def test_file_with_job_types_defines_all_of_them(tmp_path: Path, env: dict[str, str]) -> None:
    text = """
[retry]
max_attempts = 4
[job_types.b]
priority = 1
depends_on = ["a"]
handler = { exec = ["run", "{dealer_id}"], env = { MODE = "x" } }
retry_exit_codes = [70, 69, 70]
backoff_initial_s = 2
[job_types.c]
priority = 2
handler = { url = "https://example.com/hook", method = "put", headers = { X-Key = "k" } }
[job_types.a]
priority = 5
handler = "mypkg.jobs:run_a"
timeout_s = 30
max_attempts = 9
"""
    config = load_config(write(tmp_path, text, "ok.toml"), env=env)
    assert list(config.job_types) == ["b", "c", "a"]  # by priority, then name
    assert config.job_type_order() == ["c", "a", "b"]  # parents first, then by priority
    a, b, c = (config.job_types[n] for n in "abc")
    assert a.retry == RetryPolicy(max_attempts=9) and a.timeout_s == 30.0
    assert b.retry == RetryPolicy(max_attempts=4, backoff_initial_s=2.0)
    assert b.handler == ExecHandler(argv=("run", "{dealer_id}"), env=(("MODE", "x"),))
    assert b.retry_exit_codes == (69, 70)
    assert c.handler == HttpHandler("https://example.com/hook", "PUT", (("X-Key", "k"),))


def test_config_is_frozen_and_picklable(env: dict[str, str]) -> None:
    config = load_config(EXAMPLE, env=env)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.database_url = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.job_types["x"] = config.job_types["homenet"]  # type: ignore[index]
    again = pickle.loads(pickle.dumps(config))
    assert again == config and hash(again) == hash(config)
    assert isinstance(again, Config) and list(again.job_types) == list(config.job_types)


def test_config_module_imports_no_ui_library() -> None:
    code = "import sys, dealertui.config; print(sorted({'textual', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
