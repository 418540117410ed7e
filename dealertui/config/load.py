"""Finding the config file (--config, $DEALERTUI_CONFIG, then the search paths), reading it,
and the database URL's override by flag or environment. Reading the file is the only I/O."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import platformdirs

from dealertui.config.model import Config
from dealertui.config.parse import parse_config
from dealertui.config.urls import normalize_database_url
from dealertui.config.validate import KeyProblem
from dealertui.errors import ConfigError

ENV_CONFIG = "DEALERTUI_CONFIG"
ENV_DATABASE_URL = "DEALERTUI_DATABASE_URL"


def _named_file(value: str | Path, origin: str, cwd: Path | None) -> Path:
    path = Path(value).expanduser()
    path = cwd / path if cwd is not None and not path.is_absolute() else path
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"{origin} names config file '{path}', which {what}.")
    return path


def find_config_path(
    explicit: str | Path | None, env: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> Path | None:
    """The config file to read: `--config`, else `$DEALERTUI_CONFIG`, else `./dealertui.toml`,
    else `$XDG_CONFIG_HOME` (or `~/.config`) `/dealertui/config.toml`, else None."""
    if explicit is not None:
        return _named_file(explicit, "--config", cwd)
    if env.get(ENV_CONFIG):  # an empty variable counts as unset, as shells make that easy
        return _named_file(env[ENV_CONFIG], f"${ENV_CONFIG}", cwd)
    for candidate in config_search_paths(env, cwd):
        try:
            found = candidate.is_file()
        except PermissionError:
            # e.g. HOME=/root for another user: the file may be there, unreadable to us
            raise ConfigError(
                f"cannot look for the config file '{candidate}': permission denied; name "
                f"one with --config or ${ENV_CONFIG}."
            ) from None
        if found:
            return candidate
    return None


def config_search_paths(env: Mapping[str, str] = os.environ, cwd: Path | None = None
                        ) -> list[Path]:
    """The files looked for when neither --config nor $DEALERTUI_CONFIG names one."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        user_dir = Path(xdg)
    elif os.name == "nt":
        user_dir = Path(platformdirs.user_config_dir(appauthor=False, roaming=True))
    else:  # docs/design.md promises ~/.config, on macOS too (not ~/Library/Application Support)
        user_dir = Path(env.get("HOME") or Path.home()) / ".config"
    return [(cwd or Path.cwd()) / "dealertui.toml", user_dir / "dealertui/config.toml"]


def load_config(
    path: str | Path | None = None,
    *,
    database_url: str | None = None,
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
) -> Config:
    """Find, read and validate the config; `path=None` searches as `find_config_path` does.

    The database URL comes from `database_url` (the `--database-url` flag), else
    `$DEALERTUI_DATABASE_URL`, else the file, else `default_database_url()`.
    """
    source = find_config_path(path, env, cwd)
    config = parse_config({}, None) if source is None else _load_file(source)
    if database_url is not None:
        url = normalize_database_url(database_url, "--database-url")
    elif env.get(ENV_DATABASE_URL):
        url = normalize_database_url(env[ENV_DATABASE_URL], f"${ENV_DATABASE_URL}")
    else:
        return config
    return replace(config, database_url=url)


def _load_file(source: Path) -> Config:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not valid UTF-8" if isinstance(exc, ValueError) else exc.strerror or exc
        raise ConfigError(f"{source}: cannot read the config file: {reason}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's error has only a message ending "(at line L, column C)"; reword it.
        found = re.fullmatch(r"(.*?)\s*\((at line \d+, column \d+|at end of document)\)", str(exc))
        reason, at = found.groups() if found else (str(exc), "somewhere")
        reason = reason[0].lower() + reason[1:] if reason[:2].istitle() else reason
        raise ConfigError(f"{source}: invalid TOML {at}: {reason.rstrip('.')}.") from None
    try:
        return parse_config(data, source)
    except KeyProblem as exc:
        line = _find_line(text, exc.key)
        if line is None:
            raise
        raise ConfigError(f"{exc.where}, line {line}: {exc.text}.") from None


def locate(source: Path | None, key: str) -> str:
    """Where *key* of a loaded config is set, for an error sentence: "FILE, line N" (or FILE,
    or "config" for a config without a file)."""
    if source is None:
        return "config"
    try:
        line = _find_line(source.read_text(encoding="utf-8"), key)
    except (OSError, UnicodeDecodeError):
        line = None
    return f"{source}, line {line}" if line is not None else str(source)


def _find_line(text: str, key: str) -> int | None:
    """Best effort: the line that sets dotted `key` (`dealers[1].id`), or its closest parent.

    A heuristic over the raw text (tomllib keeps no positions); None when nothing matches.
    """
    want = [int(p[1:-1]) if p[0] == "[" else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]
    table: list[Any] = []
    arrays: dict[tuple[str, ...], int] = {}
    best: tuple[int, int] | None = None  # (length of the matched prefix, line number)
    for number, line in enumerate(text.splitlines(), 1):
        head = re.match(r"\s*(\[\[?)([^\]]+)\]|\s*([^#=\s\"'][^=]*)=", line)
        if head is None:
            continue
        dotted = [p.strip().strip("\"'") for p in (head[2] or head[3]).split(".")]
        if head[1] == "[[":  # one more element of an array of tables
            arrays[tuple(dotted)] = arrays.get(tuple(dotted), -1) + 1
            dotted.append(arrays[tuple(dotted)])
        full = table + dotted if head[3] else dotted
        table = table if head[3] else dotted
        if full == want:
            return number
        if want[: len(full)] == full and (best is None or len(full) > best[0]):
            best = (len(full), number)
    return best[1] if best else None
