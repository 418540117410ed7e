"""[[schedules]] in the config: a schedule that could never fire as written is a config error,
one sentence naming the file, the line, the key and the value (exit 2 from the CLI), and a good
one is read into a ScheduleConfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from configcase import ROOT, config_error, write

from dealertui.config import ScheduleConfig, load_config

BASE = """
[job_types.homenet]
priority = 1
handler = "dealertui.handlers.demo:homenet"
[job_types.dealer_com]
priority = 2
depends_on = ["homenet"]
handler = "dealertui.handlers.demo:dealer_com"

[[dealers]]
id = "d001"
[[dealers]]
id = "d002"
"""


def schedule(*lines: str, name: str = "hourly-feeds") -> str:
    return "\n[[schedules]]\n" + (f'name = "{name}"\n' if name else "") + "\n".join(lines) + "\n"


# fmt: off
BAD = [
    ("bad-cron", schedule('cron = "61 * * * *"'),
     ["schedules[0].cron", '"61 * * * *"', "five-field cron"]),
    ("six-field-cron", schedule('cron = "0 0 * * * *"'),
     ["schedules[0].cron", '"0 0 * * * *"']),
    ("cron-alias", schedule('cron = "@hourly"'), ["schedules[0].cron", '"@hourly"']),
    ("both", schedule('cron = "0 * * * *"', 'every = "15m"'),
     ["schedules[0].cron", "exactly one", "both", '"hourly-feeds"']),
    ("neither", schedule('dealers = "all"'),
     ["schedules[0].cron", "exactly one", "neither"]),
    ("bad-every", schedule('every = "15 minutes"'), ["schedules[0].every", '"15 minutes"']),
    ("zero-every", schedule('every = "0s"'), ["schedules[0].every", '"0s"']),
    ("every-not-string", schedule("every = 900"), ["schedules[0].every", "a string", "900"]),
    ("unknown-dealer", schedule('every = "1h"', 'dealers = ["d001", "d999"]'),
     ["schedules[0].dealers", '"d999"', "[[dealers]]", "d001, d002"]),
    ("dealers-not-all", schedule('every = "1h"', 'dealers = "some"'),
     ["schedules[0].dealers", '"some"', '"all"']),
    ("unknown-type", schedule('every = "1h"', 'types = ["homenet", "homenett"]'),
     ["schedules[0].types", '"homenett"', "homenet, dealer_com"]),
    ("unknown-timezone", schedule('cron = "0 * * * *"', 'timezone = "Europe/Berlinn"'),
     ["schedules[0].timezone", '"Europe/Berlinn"', "time zone"]),
    ("timezone-with-every", schedule('every = "1h"', 'timezone = "Europe/Berlin"'),
     ["schedules[0].timezone", "cron only"]),
    ("duplicate-name", schedule('every = "1h"') + schedule('cron = "0 * * * *"'),
     ["schedules[1].name", '"hourly-feeds"', "schedules[0].name"]),
    ("bad-name", schedule('every = "1h"', name="no spaces please"),
     ["schedules[0].name", '"no spaces please"']),
    ("missing-name", schedule('every = "1h"', name=""), ["schedules[0].name is required"]),
    ("bad-overlap", schedule('every = "1h"', 'overlap = "wait"'),
     ["schedules[0].overlap", '"wait"', '"skip" or "queue"']),
    ("payload-not-table", schedule('every = "1h"', 'payload = "full"'),
     ["schedules[0].payload", "a table", '"full"']),
    ("unknown-key", schedule('every = "1h"', 'dealer = "all"'),
     ["unknown key 'schedules[0].dealer'", "known keys: cron, dealers, every"]),
    ("not-an-array", '\n[schedules]\nname = "x"\n', ["schedules", "[[schedules]]"]),
]
# fmt: on


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_schedule_is_one_sentence_naming_file_line_key_and_value(
        tmp_path: Path, env: dict[str, str], text: str, fragments: list[str]) -> None:
    path = write(tmp_path, BASE + text)
    message = config_error(path, env)
    assert message.startswith(f"{path}, line "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_good_schedule_is_read_with_its_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, BASE + schedule('cron = "0 * * * *"', "payload = { full = true }")
                 + schedule('every = "15m"', 'dealers = ["d002"]', 'types = ["homenet"]',
                            'overlap = "queue"', name="quarterly"), "good.toml")
    hourly, quarterly = load_config(path, env=env, cwd=tmp_path).schedules
    assert hourly == ScheduleConfig("hourly-feeds", "0 * * * *", None, "UTC", None, (),
                                    {"full": True}, "skip")
    assert quarterly == ScheduleConfig("quarterly", None, 900, "UTC", ("d002",), ("homenet",),
                                       None, "queue")
    assert (hourly.when, quarterly.when) == ("cron 0 * * * *", "every 15m")


def test_the_cli_exits_2_with_the_sentence_and_writes_nothing_subprocess(
        tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, BASE + schedule('cron = "0 25 * * *"'))
    p = subprocess.run(
        [sys.executable, "-m", "dealertui", "--config", str(path), "--database-url",
         f"sqlite:///{tmp_path}/t.db", "worker"],
        cwd=tmp_path, env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "schedules[0].cron" in lines[0] and '"0 25 * * *"' in lines[0]
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "t.db").exists()


def test_the_example_file_s_commented_schedule_is_valid(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# [[schedules]]")
    # the indented `#   every` is the alternative to cron: it stays a comment
    lines[start:] = [line if line.startswith("#  ") else line.removeprefix("# ")
                     for line in lines[start:]]
    (one,) = load_config(write(tmp_path, "\n".join(lines), "example.toml"), env=env).schedules
    assert (one.name, one.cron, one.dealers, one.types, one.payload, one.overlap) == (
        "hourly-feeds", "0 * * * *", None, (), {"full": True}, "skip")
