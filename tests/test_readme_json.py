"""The README's JSON examples list every key the commands print, and no key they do not.

The examples are the ```json blocks of the README's "Machine-readable output" section, each
after a line naming its command in backticks (`status --json`). Every command with --json
has one. They are compared with the real output of those commands, run in-process on a
SQLite database with a small config: objects key by key, recursively; each item of a list
against the documented item. An object with a "..." key is a map whose keys are data (job
types, dealer ids): each real entry is compared with the documented entries beside "...",
and with none (`{"...": null}`) its entries are free.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import DEMO_CONFIG

from dealertui.cli import main
from dealertui.cli.parser import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "Machine-readable output"
JOB = "6"  # d002's dealer_com: blocked once d002's homenet fails
#: each documented command as it is run here (small, and on the database below)
ARGV = {
    "--run-once --dry-run --json": ["--run-once", "--dry-run", "--json"],
    "--run-once --json": ["--run-once", "--json"],
    "status --json": ["status", "--json"],
    "dealers list --json": ["dealers", "list", "--json"],
    "why --job ID --json": ["why", "--job", JOB, "--json"],
    "audit --json": ["audit", "--json"],
    "schedules --json": ["schedules", "--json"],
    "jobs --json": ["jobs", "--json"],
    "runs --json": ["runs", "--json"],
    "history --dealer ID --json": ["history", "--dealer", "d001", "--json"],
    "health --json": ["health", "--json"],
    "health --detailed --json": ["health", "--detailed", "--json"],
    "prune --dry-run --json": ["prune", "--dry-run", "--json"],
    "analyze-errors --json": ["analyze-errors", "--json"],
    "bench --json": ["bench", "--dealers", "2", "--json"],
    # last: it adds pipelines the reads above would count
    "enqueue --json": ["enqueue", "--dealer", "d001", "--dealer", "d002", "--json"],
}
#: d002's feeds fail at once (one attempt), so there are errors, blocked jobs and reasons
CONFIG = (DEMO_CONFIG.replace("failure_rate = 0\n",
                              'failure_rate = 0\nfailing_dealers = ["d002"]\n')
          + "\n[retry]\nmax_attempts = 1\n"
          + '\n[[schedules]]\nname = "yearly"\ncron = "0 0 1 1 *"\n')


def documented() -> dict[str, Any]:
    """{command: parsed example} from the README's section on machine-readable output."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    level = text.rfind("\n", 0, start)
    hashes = text[level + 1:start].split(" ")[0]
    end = re.search(rf"\n#{{1,{len(hashes)}}} ", text[start:])
    section = text[start:start + end.start()] if end else text[start:]
    examples: dict[str, Any] = {}
    command: str | None = None
    block: list[str] | None = None
    for line in section.splitlines():
        if block is not None:
            if line.strip() == "```":
                assert command is not None, "a ```json block before any `COMMAND --json`"
                assert command not in examples, f"two examples of `{command}`"
                examples[command] = json.loads("\n".join(block))
                block = None
            else:
                block.append(line)
        elif line.strip() == "```json":
            block = []
        else:
            named = [c for c in re.findall(r"`([^`]*--json)`", line)]
            if named:
                command = named[-1].removeprefix("dealertui ")
    return examples


def shape_errors(doc: Any, real: Any, path: str) -> list[str]:
    """Where *real* has keys *doc* does not name, or lacks keys *doc* names."""
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{path}: documented an object, prints {json.dumps(real)[:60]}"]
        if "..." in doc:
            examples = [v for k, v in doc.items() if k != "..."]
            return [e for k, v in real.items() for ex in examples
                    for e in shape_errors(ex, v, f"{path}.{k}")]
        errors = [f"{path}: prints {k!r}, which the README does not list"
                  for k in real if k not in doc]
        errors += [f"{path}: the README lists {k!r}, which it does not print"
                   for k in doc if k not in real]
        for k in doc.keys() & real.keys():
            errors += shape_errors(doc[k], real[k], f"{path}.{k}")
        return errors
    if isinstance(doc, list):
        if not isinstance(real, list):
            return [f"{path}: documented a list, prints {json.dumps(real)[:60]}"]
        if not doc:
            return [f"{path}: documented [], prints items with keys: add one"
                    for item in real[:1] if isinstance(item, (dict, list))]
        return [e for i, item in enumerate(real)
                for e in shape_errors(doc[0], item, f"{path}[{i}]")]
    if isinstance(real, (dict, list)):
        return [f"{path}: documented a value, prints {json.dumps(real)[:60]}"]
    return []


def _run(url: str, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", "dealertui.toml", "--database-url", url, *args])
    assert "Traceback" not in err.getvalue(), err.getvalue()
    return code, out.getvalue()


async def _register_worker(url: str) -> None:
    """A live worker, so status --json has one to show."""
    from dealertui.config import load_config
    from dealertui.store import Intent, open_store

    store = await open_store(load_config("dealertui.toml", database_url=url), Intent.WRITE)
    try:
        await store.register_worker("w1", host="h", pid=1, kind="worker")
    finally:
        await store.close()


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """{documented command: what it printed, parsed}, on one database, in an order that
    leaves every list and map the examples show with entries in it."""
    tmp = tmp_path_factory.mktemp("readme-json")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("DEALERTUI_")]:
            mp.delenv(key)
        mp.setenv("XDG_CONFIG_HOME", str(tmp / "xdg-config"))
        mp.setenv("XDG_DATA_HOME", str(tmp / "xdg-data"))
        mp.chdir(tmp)
        (tmp / "dealertui.toml").write_text(CONFIG, encoding="utf-8")
        url = f"sqlite:///{tmp}/t.db"
        for setup in (["dealers", "add", "d001", "--name", "One"], ["dealers", "add", "d002"],
                      ["dealers", "add", "d003"], ["enqueue", "--all-dealers"],
                      ["pause", "--dealer", "d003", "--reason", "held for the plan"]):
            assert _run(url, *setup)[0] == 0, setup
        outputs: dict[str, Any] = {}
        for command in ARGV:  # the plan before the run, the run before the reads
            if command == "status --json":
                anyio.run(_register_worker, url)
            code, out = _run(url, *ARGV[command])
            assert code in (0, 1), (command, code, out)  # 1: the run had a failed job
            outputs[command] = json.loads(out)
        yield outputs


def test_the_readme_documents_every_json_command() -> None:
    examples = documented()
    assert set(examples) == set(ARGV), (
        f"documented {sorted(examples)}; this test runs {sorted(ARGV)}")
    for prog, parser in _parsers(build_parser()):
        if any("--json" in a.option_strings for a in parser._actions):
            name = prog.removeprefix("dealertui").strip() or "--run-once"
            assert any(c.startswith(name + " ") for c in examples), (
                f"`{name} --json` has no example in the README")


def _parsers(parser: Any) -> Iterator[tuple[str, Any]]:
    import argparse

    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


@pytest.mark.parametrize("command", list(ARGV))
def test_the_example_has_the_printed_keys(command: str, printed: dict[str, Any]) -> None:
    example = documented().get(command)
    assert example is not None, f"the README has no example of `{command}`"
    errors = shape_errors(example, printed[command], command.split(" --json")[0])
    assert not errors, "\n".join(errors)


def test_shape_errors_sees_missing_and_extra_keys() -> None:
    assert shape_errors({"a": 1, "b": 1}, {"a": 2, "c": 3}, "x") == [
        "x: prints 'c', which the README does not list",
        "x: the README lists 'b', which it does not print",
    ]
    assert shape_errors([{"a": 1}], [{"a": 1}, {"b": 1}], "x") == [
        "x[1]: prints 'b', which the README does not list",
        "x[1]: the README lists 'a', which it does not print",
    ]
    per_dealer = {"d001": {"share": 0.5}, "...": {}}
    assert shape_errors(per_dealer, {"d9": {"share": 1.0}}, "x") == []
    assert shape_errors(per_dealer, {"d9": {}}, "x") == [
        "x.d9: the README lists 'share', which it does not print"]
    assert shape_errors({"p": {"n": 0, "...": 0}}, {"p": {"n": 1, "by": {"t": 1}}}, "x") == [
        'x.p.by: documented a value, prints {"t": 1}']
    assert shape_errors({"w": []}, {"w": [{"id": 1}]}, "x") == [
        "x.w: documented [], prints items with keys: add one"]
