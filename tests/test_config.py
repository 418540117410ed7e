"""dealertui.config: loading, search order, database URLs and one-sentence errors.

The tests whose names contain `subprocess` run the real CLI (`python -m dealertui`); deselect
them with `-k "not subprocess"`. Every test passes an explicit `env` and `cwd`, so neither the
user's own config nor their DEALERTUI_* variables are ever read.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    find_config_path,
    load_config,
    normalize_database_url,
    parse_config,
)
from dealertui.errors import ConfigError

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "config.example.toml"

# A complete, valid set of job types that the bad-config cases below break one key at a time.
JOB_TYPES = """
[job_types.homenet]
priority = 1
depends_on = []
handler = "dealertui.handlers.demo:homenet"

[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = "dealertui.handlers.demo:dealer_com"

[job_types.product_scrape]
priority = 3
depends_on = ["homenet"]
handler = "dealertui.handlers.demo:product_scrape"

[job_types.url_shorten]
priority = 4
depends_on = ["product_scrape"]
handler = "dealertui.handlers.demo:url_shorten"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment without DEALERTUI_* whose user config directory is empty."""
    (tmp_path / "xdg").mkdir()
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def write(directory: Path, text: str, name: str = "bad.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env, cwd=path.parent, **kwargs)
    message = str(info.value)
    assert_one_sentence(message)
    return message


def assert_one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message, message


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


# --- where the config comes from ---------------------------------------------------------


@pytest.fixture
def four_places(tmp_path: Path, env: dict[str, str]) -> dict[str, Path]:
    """A config file in each place of the search order."""
    return {
        "flag": write(tmp_path, "", "flag.toml"),
        "env": write(tmp_path, "", "env.toml"),
        "cwd": write(tmp_path, "", "work/dealertui.toml"),
        "user": write(Path(env["XDG_CONFIG_HOME"]), "", "dealertui/config.toml"),
    }


def test_search_order(tmp_path: Path, env: dict[str, str], four_places: dict[str, Path]) -> None:
    work = tmp_path / "work"
    with_var = {**env, "DEALERTUI_CONFIG": str(four_places["env"])}
    assert find_config_path(four_places["flag"], with_var, work) == four_places["flag"]
    assert find_config_path(None, with_var, work) == four_places["env"]
    assert find_config_path(None, env, work) == four_places["cwd"]
    assert find_config_path(None, env, tmp_path) == four_places["user"]
    assert find_config_path(None, {**env, "DEALERTUI_CONFIG": ""}, tmp_path) == four_places["user"]
    four_places["user"].unlink()
    assert find_config_path(None, env, tmp_path) is None
    assert load_config(four_places["flag"], env=with_var, cwd=work).source == four_places["flag"]
    assert load_config(None, env=with_var, cwd=work).source == four_places["env"]


def test_relative_config_path_is_relative_to_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, "", "sub/my.toml")
    assert find_config_path("sub/my.toml", env, tmp_path) == path


def test_user_config_falls_back_to_home_dot_config(tmp_path: Path) -> None:
    path = write(tmp_path / "home", "", ".config/dealertui/config.toml")
    assert find_config_path(None, {"HOME": str(tmp_path / "home")}, tmp_path) == path


@pytest.mark.parametrize(("use_flag", "origin"), [(True, "--config"), (False, "$DEALERTUI_CONFIG")])
def test_named_config_that_does_not_exist(
    tmp_path: Path, env: dict[str, str], use_flag: bool, origin: str
) -> None:
    missing = tmp_path / "nope.toml"
    variables = env if use_flag else {**env, "DEALERTUI_CONFIG": str(missing)}
    explicit = missing if use_flag else None
    with pytest.raises(ConfigError) as info:
        find_config_path(explicit, variables, tmp_path)
    assert origin in str(info.value) and str(missing) in str(info.value)
    assert "does not exist" in str(info.value)
    assert_one_sentence(str(info.value))


def test_config_path_that_is_a_directory(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="which is a directory, not a file"):
        load_config(tmp_path, env=env)


# --- the database URL --------------------------------------------------------------------


def test_database_url_precedence(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///from_file.db"\n', "db.toml")
    from_env = {**env, "DEALERTUI_DATABASE_URL": "postgres://u@envhost/db"}
    assert load_config(path, env=env).database_url == "sqlite+aiosqlite:///from_file.db"
    assert load_config(path, env=from_env).database_url == "postgresql+asyncpg://u@envhost/db"
    flag = load_config(path, env=from_env, database_url="sqlite:////abs/flag.db")
    assert flag.database_url == "sqlite+aiosqlite:////abs/flag.db"
    empty_var = {**env, "DEALERTUI_DATABASE_URL": ""}  # an empty variable counts as unset
    assert load_config(path, env=empty_var).database_url == "sqlite+aiosqlite:///from_file.db"
    no_file = load_config(env=from_env, cwd=tmp_path)
    assert no_file.database_url == "postgresql+asyncpg://u@envhost/db"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("sqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_normalize_database_url(url: str, normalized: str) -> None:
    assert normalize_database_url(url, "--database-url") == normalized


def test_a_sqlite_path_under_home_is_expanded() -> None:
    # the directory was created under $HOME, but SQLite opened the literal "~/x.db"
    home = os.path.expanduser("~")
    assert normalize_database_url("sqlite:///~/x/t.db", "--database-url") == (
        f"sqlite+aiosqlite:///{home}/x/t.db")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root:hunter2@db/x", "unsupported scheme 'mysql'"),
        ("postgresql+psycopg://u:hunter2@h/db", "unsupported scheme 'postgresql+psycopg'"),
        ("root:hunter2@db/x", "is not a database URL"),
        ("sqlite://relative.db", "has no path"),
        ("sqlite:///:memory:", "names no database file"),
        ("sqlite:///", "names no database file"),
        ("sqlite://", "names no database file"),
        ("postgresql://u:hunter2@h:notaport/db", "is not a valid database URL"),
        ("postgresql://u:hunter2@h:99999/db", "is not a valid database URL"),
        ("", "is not a database URL"),
    ],
)
def test_bad_database_url_is_refused_with_the_password_masked(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_database_url(url, "--database-url")
    message = str(info.value)
    assert message.startswith("--database-url ") and fragment in message
    assert "hunter2" not in message
    assert_one_sentence(message)


def test_bad_database_url_in_file_and_env(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, '[database]\nurl = "mysql://root:hunter2@db/x"\n', "db.toml")
    message = config_error(path, env)
    assert str(path) in message and "database.url" in message
    assert "'mysql://root:***@db/x'" in message and "hunter2" not in message
    bad_env = {**env, "DEALERTUI_DATABASE_URL": "oracle://scott:tiger@h/db"}
    with pytest.raises(ConfigError) as info:
        load_config(env=bad_env, cwd=tmp_path)
    message = str(info.value)
    assert "$DEALERTUI_DATABASE_URL" in message and "'oracle'" in message
    assert "tiger" not in message


def test_repr_of_config_hides_the_password(tmp_path: Path, env: dict[str, str]) -> None:
    config = load_config(env=env, cwd=tmp_path, database_url="postgresql://u:secret@h/db")
    assert "secret" not in repr(config) and "u:***@h" in repr(config)


# --- bad config files: one sentence naming the file, the key and the value ---------------


def homenet_with(line: str) -> str:
    """JOB_TYPES with one more line in [job_types.homenet]."""
    return JOB_TYPES.replace("priority = 1", f"priority = 1\n{line}")


def homenet_handler(handler: str) -> str:
    """JOB_TYPES with homenet's handler replaced."""
    return JOB_TYPES.replace('"dealertui.handlers.demo:homenet"', handler)


SECTION_MINIMA = [
    ("concurrency", "max_concurrent_dealers"),
    ("concurrency", "max_concurrent_jobs_per_dealer"),
    ("concurrency", "lease_s"),
    ("circuit_breaker", "dealer_failure_rate"),
    ("circuit_breaker", "dealer_min_calls"),
    ("circuit_breaker", "type_failure_rate"),
    ("circuit_breaker", "window_s"),
    ("circuit_breaker", "reset_timeout_s"),
    ("circuit_breaker", "half_open_max_jobs"),
    ("circuit_breaker", "type_min_dealers"),
    ("retry", "max_attempts"),
    ("retry", "backoff_initial_s"),
    ("retry", "backoff_max_s"),
]

# fmt: off
BAD_CONFIGS = [
    # (id, file text, fragments the sentence must contain: key and value)
    ("unknown-top-level", "[concurency]\nmax_concurrent_dealers = 3\n",
     ["unknown key 'concurency'", "known keys: circuit_breaker, concurrency, database"]),
    ("unknown-in-section", "[concurrency]\nmax_dealers = 3\n",
     ["unknown key 'concurrency.max_dealers'", "lease_s, max_concurrent_dealers"]),
    ("unknown-in-job-type", JOB_TYPES.replace("priority = 4", "priority = 4\nprio = 4"),
     ["unknown key 'job_types.url_shorten.prio'", "depends_on"]),
    ("unknown-in-dealer", '[[dealers]]\nid = "d1"\nnmae = "x"\n',
     ["unknown key 'dealers[0].nmae'", "known keys: id, name"]),
    ("unknown-in-handler", homenet_handler('{ command = ["x"] }'),
     ["unknown key 'job_types.homenet.handler.command'"]),
    ("string-for-int", '[concurrency]\nmax_concurrent_dealers = "three"\n',
     ["concurrency.max_concurrent_dealers", "an integer", '"three"']),
    ("bool-for-int", "[retry]\nmax_attempts = true\n", ["retry.max_attempts", "true"]),
    ("float-for-int", JOB_TYPES.replace("priority = 2", "priority = 2.5"),
     ["job_types.dealer_com.priority", "2.5"]),
    ("string-for-float", '[concurrency]\nlease_s = "60s"\n', ["concurrency.lease_s", '"60s"']),
    ("section-not-table", "concurrency = 3\n", ["concurrency must be a table", "3"]),
    ("unknown-depends-on", JOB_TYPES.replace('["product_scrape"]', '["product_scrap"]'),
     ["job_types.url_shorten.depends_on", "'product_scrap'",
      "dealer_com, homenet, product_scrape, url_shorten"]),
    ("depends-on-not-list", JOB_TYPES.replace('["homenet"]', '"homenet"', 1),
     ["job_types.dealer_com.depends_on", '"homenet"']),
    ("bad-dealer-id", '[[dealers]]\nid = "d001"\n[[dealers]]\nid = "bad id!"\n',
     ["dealers[1].id", '"bad id!"', "not a valid dealer id"]),
    ("duplicate-dealer-id", '[[dealers]]\nid = "d001"\n[[dealers]]\nid = "d001"\n',
     ["dealers[1].id", '"d001"', "dealers[0].id"]),
    ("dealers-not-array", '[dealers]\nid = "d001"\n', ["dealers", "[[dealers]]", '"d001"']),
    ("negative-jitter", "[retry]\nbackoff_jitter_s = -1\n", ["retry.backoff_jitter_s", "-1"]),
    ("backoff-max-below-initial", "[retry]\nbackoff_initial_s = 10\nbackoff_max_s = 5\n",
     ["retry.backoff_max_s", "5", "10"]),
    ("type-backoff-initial-above-max", "[retry]\nbackoff_max_s = 5\n"
     + JOB_TYPES.replace("priority = 3", "priority = 3\nbackoff_initial_s = 8"),
     ["job_types.product_scrape.backoff_initial_s", "8", "5"]),
    ("zero-timeout", homenet_with("timeout_s = 0"),
     ["job_types.homenet.timeout_s", "0"]),
    ("zero-type-max-attempts", homenet_with("max_attempts = 0"),
     ["job_types.homenet.max_attempts", "0"]),
    ("exit-code-out-of-range", homenet_with("retry_exit_codes = [0]"),
     ["job_types.homenet.retry_exit_codes", "[0]"]),
    ("exit-code-not-int", homenet_with('retry_exit_codes = ["75"]'),
     ["job_types.homenet.retry_exit_codes", '["75"]']),
    ("bad-job-type-name", JOB_TYPES.replace("[job_types.homenet]", "[job_types.Home-Net]")
     .replace('["homenet"]', '["Home-Net"]'),
     ["job_types.Home-Net", "^[a-z][a-z0-9_]{0,63}$"]),
    ("empty-job-types", "[job_types]\n", ["job_types must be a table", "{}"]),
    ("missing-handler", JOB_TYPES.replace('handler = "dealertui.handlers.demo:homenet"\n', ""),
     ["job_types.homenet.handler is required"]),
    ("handler-without-colon", homenet_handler('"homenet"'),
     ["job_types.homenet.handler", '"homenet"', "package.module:function"]),
    ("handler-two-colons", homenet_handler('"a:b:c"'),
     ["job_types.homenet.handler", '"a:b:c"']),
    ("handler-empty-exec", homenet_handler("{ exec = [] }"),
     ["job_types.homenet.handler.exec", "[]"]),
    ("handler-exec-not-strings", homenet_handler('{ exec = ["run", 5] }'),
     ["job_types.homenet.handler.exec", '["run", 5]']),
    ("handler-ftp-url", homenet_handler('{ url = "ftp://h/x" }'),
     ["job_types.homenet.handler.url", '"ftp://h/x"']),
    ("handler-bad-method", homenet_handler('{ url = "https://h/x", method = "FETCH" }'),
     ["job_types.homenet.handler.method", '"FETCH"']),
    ("demo-failure-rate", "[demo]\nfailure_rate = 1.5\n", ["demo.failure_rate", "1.5"]),
    ("demo-latency", "[demo]\nlatency_ms_min = 500\nlatency_ms_max = 100\n",
     ["demo.latency_ms_max", "100", "500"]),
    ("demo-failing-dealer", '[demo]\nfailing_dealers = ["ok", "not ok"]\n',
     ["demo.failing_dealers", '"not ok"']),
    ("unsupported-url-scheme", '[database]\nurl = "mysql://root:hunter2@db/x"\n',
     ["database.url", "'mysql'", "root:***@db"]),
    ("database-url-not-string", "[database]\nurl = 5\n", ["database.url", "a string", "5"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "fragments"), [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_file_key_and_value(
    tmp_path: Path, env: dict[str, str], text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    message = config_error(path, env)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "hunter2" not in message


@pytest.mark.parametrize(("section", "key"), SECTION_MINIMA)
@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_limits_are_refused(
    tmp_path: Path, env: dict[str, str], section: str, key: str, value: str
) -> None:
    message = config_error(write(tmp_path, f"[{section}]\n{key} = {value}\n"), env)
    assert str(tmp_path / "bad.toml") in message
    assert f"{section}.{key} must be greater than 0, not {value}" in message


def test_zero_jitter_and_zero_failure_rate_are_fine(tmp_path: Path, env: dict[str, str]) -> None:
    text = "[retry]\nbackoff_jitter_s = 0\n[demo]\nfailure_rate = 0\nlatency_ms_min = 0\n"
    config = load_config(write(tmp_path, text, "ok.toml"), env=env)
    assert config.retry.backoff_jitter_s == 0 and config.demo.failure_rate == 0


def test_malformed_toml_names_line_and_column(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, "[concurrency]\nmax_concurrent_dealers = 3\nlease_s = = 60\n")
    message = config_error(path, env)
    assert message.startswith(f"{path}: invalid TOML at line 3, column 11: ")
    path = write(tmp_path, "[concurrency]\nmax_concurrent_dealers = [1,\n")
    assert "invalid TOML at end of document" in config_error(path, env)


def test_key_errors_name_the_line(tmp_path: Path, env: dict[str, str]) -> None:
    text = JOB_TYPES.replace('["product_scrape"]', '["product_scrap"]')
    line = text.splitlines().index('depends_on = ["product_scrap"]') + 1
    assert f"{tmp_path / 'bad.toml'}, line {line}: " in config_error(write(tmp_path, text), env)
    text = '[[dealers]]\nid = "a"\n\n[[dealers]]\nname = "x"\nid = "b c"\n'
    assert ", line 6: dealers[1].id" in config_error(write(tmp_path, text), env)


@pytest.mark.parametrize(
    ("edits", "cycle"),
    [
        ({'depends_on = []': 'depends_on = ["dealer_com"]'}, "dealer_com -> homenet -> dealer_com"),
        ({'depends_on = []': 'depends_on = ["url_shorten"]'},
         "homenet -> url_shorten -> product_scrape -> homenet"),
        ({'depends_on = []': 'depends_on = ["homenet"]'}, "homenet -> homenet"),
    ],
)  # fmt: skip
def test_cycle_is_named(
    tmp_path: Path, env: dict[str, str], edits: dict[str, str], cycle: str
) -> None:
    text = JOB_TYPES
    for old, new in edits.items():
        text = text.replace(old, new)
    message = config_error(write(tmp_path, text), env)
    first = cycle.split(" -> ")[0]
    assert f"job_types.{first}.depends_on makes a dependency cycle: {cycle}." in message
    assert str(tmp_path / "bad.toml") in message


def test_parse_config_without_a_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"concurrency": {"lease_s": 0}}, None)
    assert str(info.value) == "config: concurrency.lease_s must be greater than 0, not 0."
    assert parse_config({}, None).job_types == DEFAULT_JOB_TYPES


# --- the CLI: `dealertui: error: <sentence>`, exit 2, no traceback -----------------------

CLI_CASES = {
    "cycle": JOB_TYPES.replace("depends_on = []", 'depends_on = ["dealer_com"]'),
    "malformed-toml": "[concurrency]\nmax_concurrent_dealers = \n",
    "bad-dealer-id": '[[dealers]]\nid = "-bad"\n',
    "unsupported-url-scheme": '[database]\nurl = "mysql://root:hunter2@db/x"\n',
    "unknown-key": "[concurency]\n",
    "unknown-depends-on": JOB_TYPES.replace('["product_scrape"]', '["product_scrap"]'),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_subprocess_config_error_exits_2(tmp_path: Path, case: str) -> None:
    bad = write(tmp_path, CLI_CASES[case])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with pytest.raises(ConfigError) as info:  # the sentence the CLI must print
        load_config(str(bad), env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    proc = subprocess.run(
        [sys.executable, "-m", "dealertui", "--config", str(bad), "status"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    stderr = " ".join(proc.stderr.split())  # tolerate a wrapped line
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {info.value}" in stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    assert not list(tmp_path.rglob("*.db")), "a config error must write nothing"
