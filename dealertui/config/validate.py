"""Validating a TOML table key by key: each value's kind and range, and unknown keys, each
refused with one sentence that names the file, the key and the bad value."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, NoReturn

from dealertui.errors import ConfigError


class KeyProblem(ConfigError):
    """A ConfigError about one key; `_load_file` adds that key's line when it can find it."""

    def __init__(self, where: str, key: str, text: str) -> None:
        super().__init__(f"{where}: {text}.")
        self.where, self.key, self.text = where, key, text


def fail(where: str, key: str, text: str) -> NoReturn:
    raise KeyProblem(where, key, f"{key} {text}")


def show(value: object) -> str:
    """A value as it is written in TOML (true, "text", [1, 2]), shortened."""
    shown = json.dumps(value, default=str, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _all(kind: type, items: Iterable[Any]) -> bool:
    return all(isinstance(x, kind) for x in items)


_REQUIRED = object()
# What a key's value must be, by the phrase the error sentence uses for it.
_KINDS: dict[str, Callable[[Any], bool]] = {
    "a table": lambda v: isinstance(v, dict),
    "an integer": lambda v: type(v) is int,  # bool is an int subclass: refuse `= true`
    "a finite number": lambda v: type(v) in (int, float) and math.isfinite(v),
    "a string": lambda v: isinstance(v, str),
    "a list of strings": lambda v: isinstance(v, list) and _all(str, v),
    "a table of strings": lambda v: isinstance(v, dict) and _all(str, v.values()),
    "an array of tables ([[dealers]])": lambda v: isinstance(v, list) and _all(dict, v),
    "a list of exit codes from 1 to 255": lambda v: (
        isinstance(v, list) and all(type(c) is int and 1 <= c <= 255 for c in v)
    ),
}


class Table:
    """A TOML table being validated: knows its dotted key and refuses unknown keys."""

    def __init__(self, where: str, key: str, value: Any, known: Iterable[str]) -> None:
        self.where, self.key, self.data = where, key, value
        if not isinstance(value, dict):
            fail(where, key, f"must be a table, not {show(value)}")
        for name in value:
            if name not in known:
                known_keys = ", ".join(sorted(known))
                text = f"unknown key {self.path(name)!r} (known keys: {known_keys})"
                raise KeyProblem(where, self.path(name), text)

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, text: str) -> NoReturn:
        fail(self.where, self.path(name), text)

    def get(self, name: str, kind: str, default: Any = _REQUIRED, low: int | None = None) -> Any:
        """The value of `name`, or `default` when it is absent; it must be of `kind`.
        *low* is the smallest integer the key allows, as an out-of-range error names it."""
        if name not in self.data:
            if default is _REQUIRED:
                self.fail(name, "is required but missing")
            return default
        if not _KINDS[kind](value := self.data[name]):
            self.fail(name, f"must be {kind}, not {show(value)}")
        if kind == "an integer" and not -_INT32 <= value < _INT32:
            # stored in INTEGER columns: Postgres's are 32-bit, and SQLite's stop at 64
            low = -_INT32 if low is None else low
            self.fail(name, f"must be between {low} and {_INT32 - 1}, not {value}")
        return value

    def number(self, name: str, kind: str, default: Any, zero_ok: bool = False) -> Any:
        """An integer or a finite number that must be > 0, or >= 0 when `zero_ok`."""
        value = self.get(name, kind, default, low=0 if zero_ok else 1)
        if value < 0 or (value == 0 and not zero_ok):
            self.fail(name, f"must be {'at least' if zero_ok else 'greater than'} 0, not {value}")
        return value if kind == "an integer" else float(value)


_INT32 = 2**31


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def parse_policy(table: Table, cls: type, defaults: Any) -> Any:
    """A dataclass of positive numbers (`*_jitter_s` may be 0), each defaulting to `defaults`."""
    values = {}
    for f in fields(cls):
        kind = "an integer" if f.type in ("int", int) else "a finite number"
        zero_ok = f.name.endswith("jitter_s")
        values[f.name] = table.number(f.name, kind, getattr(defaults, f.name), zero_ok)
    return cls(**values)
