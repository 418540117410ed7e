"""dealertui.config: bad config files are one sentence naming the file, the key and the value
(limits, malformed TOML with line and column, cycles), and the CLI prints
`dealertui: error: <sentence>`, exits 2 and shows no traceback.

The tests whose names contain `subprocess` run the real CLI (`python -m dealertui`); deselect
them with `-k "not subprocess"`.

Every test passes an explicit `env` and `cwd`, so neither the user's own config nor their
DEALERTUI_* variables are ever read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from configcase import ROOT, config_error, write

from dealertui.config import DEFAULT_JOB_TYPES, load_config, parse_config
from dealertui.errors import ConfigError

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
