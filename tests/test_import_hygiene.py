"""Layering by import (docs/design.md "Layers"): only the console may pull in Textual, and the
engine, store, handlers, config and model pull in neither Textual nor rich.

Each module is imported in a fresh interpreter, so what another test imported cannot hide a
stray import. Modules are discovered with pkgutil, so new ones are covered as they land;
``dealertui.tui`` (the console) is the one package left out.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dealertui

CONSOLE = "dealertui.tui"
#: no front-end libraries at all below the front ends
LOW_LAYERS = ("dealertui.engine", "dealertui.store", "dealertui.handlers", "dealertui.config")
LOW_MODULES = ("dealertui.model",)


def _is_console(name: str) -> bool:
    return name == CONSOLE or name.startswith(CONSOLE + ".")


def discover() -> list[str]:
    """Every module of the package but the console. pkgutil does not descend into a
    directory without ``__init__.py`` (a namespace package, as ``dealertui/engine`` is), so
    those are walked too."""
    names = {"dealertui"}
    root = Path(dealertui.__file__).parent
    todo: list[tuple[list[str], str]] = [([str(root)], "dealertui.")]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d.isidentifier()]  # no __pycache__ etc.
        here = Path(dirpath)
        if here != root and "__init__.py" not in filenames and any(
            f.endswith(".py") for f in filenames
        ):
            rel = here.relative_to(root).parts
            names.add("dealertui." + ".".join(rel))
            todo.append(([dirpath], "dealertui." + ".".join(rel) + "."))
    for paths, prefix in todo:
        for info in pkgutil.walk_packages(paths, prefix):
            names.add(info.name)
    # __main__ runs the CLI on import
    return sorted(n for n in names if not _is_console(n) and n != "dealertui.__main__")


MODULES = discover()


def _is_low(name: str) -> bool:
    return name in LOW_MODULES or any(
        name == p or name.startswith(p + ".") for p in LOW_LAYERS
    )


def test_discovery_finds_the_layers() -> None:
    for expected in (
        "dealertui.config",
        "dealertui.model",
        "dealertui.errors",
        "dealertui.store",
        "dealertui.store.jobstore",
        "dealertui.engine.actions",
        "dealertui.headless",
        "dealertui.cli",
    ):
        assert expected in MODULES
    assert not any(_is_console(m) for m in MODULES)


_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "rich"))))
"""


def _front_end_modules(module: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert p.returncode == 0, f"importing {module} failed:\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_probe_sees_front_end_imports() -> None:
    assert "rich.console" in _front_end_modules("rich.console")


@pytest.mark.parametrize("module", MODULES)
def test_no_textual_outside_the_console(module: str) -> None:
    loaded = _front_end_modules(module)
    textual = [m for m in loaded if m == "textual" or m.startswith("textual.")]
    assert not textual, f"importing {module} loads Textual: {textual[:5]}"
    if _is_low(module):
        rich = [m for m in loaded if m == "rich" or m.startswith("rich.")]
        assert not rich, f"importing {module} loads rich (a front-end library): {rich[:5]}"
