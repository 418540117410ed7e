"""Help that matches the parser: every option and command has a help line, usage says which
options may be repeated, and `dealertui --help` answers without loading the store or Textual."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dealertui.cli.parser import build_parser


def parsers(parser: argparse.ArgumentParser | None = None,
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(prog, parser) for the top-level parser and every subcommand, depth first."""
    parser = parser or build_parser()
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # resume/pause are two parsers
                yield from parsers(sub)


PARSERS = list(parsers())


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction[
        argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def test_walk_reaches_every_command() -> None:
    progs = {prog for prog, _ in parsers()}
    for expected in ("dealertui", "dealertui enqueue", "dealertui dealers add",
                     "dealertui dealers remove", "dealertui resume", "dealertui bench"):
        assert expected in progs


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[prog for prog, _ in PARSERS])
def test_every_option_and_command_has_help(prog: str, parser: argparse.ArgumentParser) -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction)
        and (a.help is None or not str(a.help).strip() or a.help == argparse.SUPPRESS)
    ]
    assert not missing, f"{prog}: no help line for {', '.join(missing)}"
    for sub in _subcommands(parser):
        listed = {a.dest for a in sub._choices_actions if a.help and str(a.help).strip()}
        bare = [name for name in sub.choices if name not in listed]
        assert not bare, f"{prog}: no help line for the command(s) {', '.join(bare)}"


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[prog for prog, _ in PARSERS])
def test_usage_says_an_option_may_be_repeated(prog: str,
                                              parser: argparse.ArgumentParser) -> None:
    usage = " ".join(parser.format_usage().split())  # wrapped lines joined
    for action in parser._actions:
        if not action.option_strings:
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:  # a switch: --json, --help, --version
            assert flag in usage, f"{prog}: usage does not name {flag}: {usage}"
            continue
        metavar = action.metavar or action.dest.upper()
        once = f"{flag} {metavar}"
        assert once in usage, f"{prog}: usage does not name {once}: {usage}"
        again = f"{once} [{flag} {metavar} ...]"
        if isinstance(action, argparse._AppendAction):
            assert again in usage, f"{prog}: usage does not say {flag} may be repeated: {usage}"
        else:
            assert again not in usage, f"{prog}: usage says {flag} may be repeated: {usage}"


def test_usage_of_enqueue() -> None:
    (_, enqueue), = [(p, x) for p, x in parsers() if p == "dealertui enqueue"]
    assert " ".join(enqueue.format_usage().split()) == (
        "usage: dealertui enqueue [-h] (--dealer ID [--dealer ID ...] | --all-dealers) "
        "[--type T [--type T ...]] [--payload JSON] [--allow-duplicate] [--json]"
    )


_PROBE = """
import contextlib, io, json, sys
from dealertui.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""
HEAVY = ("sqlalchemy", "textual", "rich", "aiosqlite", "asyncpg", "dealertui.store",
         "dealertui.engine.manager", "dealertui.headless", "dealertui.tui")


@pytest.mark.parametrize("argv", [["--help"], ["retry", "--help"], ["dealers", "add", "--help"]])
def test_help_loads_no_heavy_module(argv: list[str]) -> None:
    """A fresh interpreter: what other tests imported must not hide a stray import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    p = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                       timeout=60, env=env, check=False)
    assert p.returncode == 0, p.stderr
    answer = json.loads(p.stdout.strip().splitlines()[-1])
    assert answer["code"] == 0 and answer["out"].startswith("usage: dealertui")
    loaded = [m for m in answer["modules"]
              if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert not loaded, f"dealertui {' '.join(argv)} loads {loaded[:8]}"


README = Path(__file__).resolve().parent.parent / "README.md"


def reference_entries() -> list[str]:
    """The README's CLI reference (the first code block under "## CLI"), one entry per
    `dealertui …` line with its indented continuation lines."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## CLI\n"):]
    block = section.split("```\n", 2)[1]
    entries: list[str] = []
    for line in block.splitlines():
        if line.startswith("dealertui "):
            entries.append(line)
        elif line.startswith(" ") and entries:
            entries[-1] += " " + line.strip()
    return entries


def _entries_for(prog: str, entries: list[str]) -> list[str]:
    words = prog.split()[1:]
    if not words:  # the global options: the console and --run-once lines
        return [e for e in entries if e.split()[1][0] in "[-"]
    return [e for e in entries
            if words[0] in e.split()[1].split("|") and all(w in e.split() for w in words[1:])]


@pytest.mark.parametrize("prog,parser", PARSERS, ids=[prog for prog, _ in PARSERS])
def test_the_readme_reference_names_every_option(prog: str,
                                                 parser: argparse.ArgumentParser) -> None:
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) and prog != (
            "dealertui"):
        return  # `dealers`: its subcommands have the options
    entries = _entries_for(prog, reference_entries())
    assert entries, f"the README's CLI reference has no line for {prog}"
    text = " ".join(entries)
    missing = [a.option_strings[-1] for a in parser._actions
               if a.option_strings and a.dest != "help"
               and not any(re.search(rf"{re.escape(o)}(?![\w-])", text)
                           for o in a.option_strings)]
    assert not missing, f"the README's CLI reference for {prog} lacks {', '.join(missing)}"
