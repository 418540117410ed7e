"""TOML config + environment + flags -> frozen dataclasses (DESIGN.md, "Config file").

Every problem a user can cause raises `ConfigError` with one sentence that names the file, the
key and the bad value. Reading the file is the only I/O; nothing is created or written here.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import networkx as nx
import platformdirs

from dealertui.errors import ConfigError
from dealertui.model import is_valid_dealer_id

ENV_CONFIG = "DEALERTUI_CONFIG"
ENV_DATABASE_URL = "DEALERTUI_DATABASE_URL"
JOB_TYPE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
EXEC_PLACEHOLDERS = ("dealer_id", "job_type", "job_id", "attempt")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    backoff_jitter_s: float = 1.0


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    window_s: float = 60
    reset_timeout_s: float = 60
    half_open_max_jobs: int = 1
    min_dealers: int = 2


@dataclass(frozen=True)
class ConcurrencyConfig:
    max_concurrent_dealers: int = 3
    max_concurrent_jobs_per_dealer: int = 2
    lease_s: float = 60.0


@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo handler (`--demo`, `bench`)."""

    seed: int | None = None
    latency_ms_min: float = 200
    latency_ms_max: float = 1500
    failure_rate: float = 0.05
    failing_dealers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecHandler:
    """`{ exec = [...], env = {...} }`: a subprocess, no shell."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpHandler:
    """`{ url = "...", method = "POST", headers = {...} }`: a webhook."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


HandlerSpec = str | ExecHandler | HttpHandler


@dataclass(frozen=True)
class JobTypeConfig:
    name: str
    priority: int
    depends_on: tuple[str, ...]
    handler: HandlerSpec
    timeout_s: float
    retry: RetryPolicy
    retry_exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class DealerConfig:
    id: str
    name: str | None = None


@dataclass(frozen=True)
class Config:
    source: Path | None
    database_url: str
    concurrency: ConcurrencyConfig
    retry: RetryPolicy
    circuit_breaker: BreakerConfig
    # hash=False: a mapping is not hashable, the rest of the config is.
    job_types: Mapping[str, JobTypeConfig] = field(hash=False)
    dealers: tuple[DealerConfig, ...]
    demo: DemoConfig

    def __post_init__(self) -> None:
        # Always a read-only view, ordered by priority then name, however it was built.
        ordered = sorted(self.job_types.values(), key=lambda jt: (jt.priority, jt.name))
        object.__setattr__(self, "job_types", MappingProxyType({jt.name: jt for jt in ordered}))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy cannot be pickled; workers started with `spawn` need the config.
        args = [
            dict(self.job_types) if f.name == "job_types" else getattr(self, f.name)
            for f in fields(self)
        ]
        return (Config, tuple(args))

    def __repr__(self) -> str:
        # Written by hand so that a logged config never shows the database password.
        return (
            f"Config(source={self.source!r}, database_url={mask_url(self.database_url)!r}, "
            f"job_types={list(self.job_types)!r}, dealers={len(self.dealers)})"
        )

    def job_type_order(self) -> list[str]:
        """Job type names, parents before children; ties broken by priority, then name."""
        key = {name: (jt.priority, name) for name, jt in self.job_types.items()}
        return list(nx.lexicographical_topological_sort(_graph(self.job_types), key=key.get))


def _graph(job_types: Mapping[str, JobTypeConfig]) -> nx.DiGraph:
    """Edges point from a parent (a `depends_on` entry) to the job type that waits for it."""
    graph = nx.DiGraph()
    graph.add_nodes_from(job_types)
    for jt in job_types.values():
        graph.add_edges_from((dep, jt.name) for dep in jt.depends_on)
    return graph


def _seed(name: str, priority: int, depends_on: tuple[str, ...]) -> JobTypeConfig:
    return JobTypeConfig(
        name, priority, depends_on, f"dealertui.handlers.demo:{name}", 300.0, RetryPolicy()
    )


DEFAULT_JOB_TYPES: Mapping[str, JobTypeConfig] = MappingProxyType(
    {
        jt.name: jt
        for jt in (
            _seed("homenet", 1, ()),
            _seed("dealer_com", 2, ("homenet",)),
            _seed("product_scrape", 3, ("homenet",)),
            _seed("url_shorten", 4, ("product_scrape",)),
        )
    }
)


# --- database URLs -------------------------------------------------------------------------


def default_database_url() -> str:
    """SQLite in the user's data directory (the directory is created by the store, not here)."""
    path = Path(platformdirs.user_data_dir("dealertui", appauthor=False)) / "dealertui.db"
    return f"sqlite+aiosqlite:///{path}"


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***`, e.g. `postgresql://user:***@host/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # Look for the userinfo in the authority first, so an '@' in the query is not mistaken for
    # it; fall back to the last '@' so that a password with an unescaped '/' is masked too.
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    at = rest.rfind("@", 0, min(ends, default=len(rest)))
    at = at if at >= 0 else rest.rfind("@")
    user, colon, _ = rest[:at].partition(":")
    if at >= 0 and colon and "/" not in user:
        rest = f"{user}:***@{rest[at + 1 :]}"
    rest = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", rest)
    return f"{scheme}{sep}{rest}"


def normalize_database_url(url: str, source_desc: str) -> str:
    """The SQLAlchemy async form of `url` (`sqlite+aiosqlite://` or `postgresql+asyncpg://`).

    `source_desc` says where the URL came from (`--database-url`, `$DEALERTUI_DATABASE_URL`,
    `<file>: database.url`) and starts the error sentence.
    """
    shown = repr(mask_url(url))
    if not url.strip():
        raise ConfigError(f"{source_desc} is empty.")
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ConfigError(
            f"{source_desc} {shown} is not a database URL "
            "(expected e.g. sqlite:///dealertui.db or postgresql://user@host/db)."
        )
    if scheme.lower() in ("sqlite", "sqlite+aiosqlite"):
        if rest and not rest.startswith("/"):
            raise ConfigError(
                f"{source_desc} {shown} has no path (use sqlite:///relative.db "
                "or sqlite:////absolute/path.db)."
            )
        return "sqlite+aiosqlite://" + rest
    if scheme.lower() in ("postgresql", "postgres", "postgresql+asyncpg"):
        return "postgresql+asyncpg://" + rest
    raise ConfigError(
        f"{source_desc} {shown} uses unsupported scheme {scheme!r} (use sqlite://, "
        "sqlite+aiosqlite://, postgresql://, postgres:// or postgresql+asyncpg://)."
    )


# --- finding and loading the file ----------------------------------------------------------


def _user_config_file(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        base = Path(xdg)
    elif os.name == "nt":
        base = Path(platformdirs.user_config_dir(appauthor=False, roaming=True))
    else:  # DESIGN.md promises ~/.config on macOS too, not ~/Library/Application Support
        base = Path(env.get("HOME") or Path.home()) / ".config"
    return base / "dealertui" / "config.toml"


def _named_file(value: str | Path, origin: str, cwd: Path | None) -> Path:
    path = Path(value).expanduser()
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    if not path.exists():
        raise ConfigError(f"{origin} names config file '{path}', which does not exist.")
    if path.is_dir():
        raise ConfigError(f"{origin} names '{path}', which is a directory, not a config file.")
    return path


def find_config_path(
    explicit: str | Path | None, env: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> Path | None:
    """The config file to read: `--config`, `$DEALERTUI_CONFIG`, `./dealertui.toml`, the user
    config file (`$XDG_CONFIG_HOME` or `~/.config`/dealertui/config.toml), or None."""
    if explicit is not None:
        return _named_file(explicit, "--config", cwd)
    if env.get(ENV_CONFIG):  # an empty variable counts as unset, as shells make that easy
        return _named_file(env[ENV_CONFIG], f"${ENV_CONFIG}", cwd)
    for candidate in ((cwd or Path.cwd()) / "dealertui.toml", _user_config_file(env)):
        if candidate.is_file():
            return candidate
    return None


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
    if source is None:
        config = parse_config({}, None)
    else:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not valid UTF-8"
            raise ConfigError(f"{source}: cannot read the config file: {reason}.") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_toml_error(source, exc)) from None
        try:
            config = parse_config(data, source)
        except _KeyProblem as exc:
            line = _find_line(text, exc.key)
            if line is None:
                raise
            raise ConfigError(f"{exc.where}, line {line}: {exc.text}.") from None
    if database_url is not None:
        config = replace(
            config, database_url=normalize_database_url(database_url, "--database-url")
        )
    elif env.get(ENV_DATABASE_URL):
        url = normalize_database_url(env[ENV_DATABASE_URL], f"${ENV_DATABASE_URL}")
        config = replace(config, database_url=url)
    return config


def _toml_error(source: Path, exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.11's TOMLDecodeError carries only a message ending in "(at line L, column C)".
    match = re.fullmatch(
        r"(.*?)\s*\((at line (\d+), column (\d+)|at end of document)\)", str(exc), re.DOTALL
    )
    reason, where = (match.group(1), match.group(2)) if match else (str(exc), "somewhere")
    if reason[:2].istitle():
        reason = reason[0].lower() + reason[1:]
    return f"{source}: invalid TOML {where}: {reason.rstrip('.')}."


def _split_dotted(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


def _find_line(text: str, key: str) -> int | None:
    """Best effort: the line that sets dotted `key` (`dealers[1].id`), or its closest parent.

    A heuristic over the raw text (tomllib keeps no positions); None when nothing matches.
    """
    want = [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]
    table: list[Any] = []
    arrays: dict[tuple[str, ...], int] = {}
    best: tuple[int, int] | None = None  # (length of matched prefix, line)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[[") and "]]" in stripped:
            name = tuple(_split_dotted(stripped[2 : stripped.index("]]")]))
            arrays[name] = arrays.get(name, -1) + 1
            table = full = [*name, arrays[name]]
        elif stripped.startswith("[") and "]" in stripped:
            table = full = _split_dotted(stripped[1 : stripped.index("]")])
        elif "=" in stripped and not stripped.startswith("#"):
            full = table + _split_dotted(stripped.split("=", 1)[0])
        else:
            continue
        if full == want:
            return number
        if want[: len(full)] == full and (best is None or len(full) > best[0]):
            best = (len(full), number)
    return best[1] if best else None


# --- validation ----------------------------------------------------------------------------


class _KeyProblem(ConfigError):
    """A ConfigError about one key; `load_config` adds that key's line when it can find it."""

    def __init__(self, where: str, key: str, text: str) -> None:
        super().__init__(f"{where}: {text}.")
        self.where, self.key, self.text = where, key, text


def _show(value: object) -> str:
    """A value as the user wrote it in TOML (true, "text", [1, 2]), shortened."""
    shown = json.dumps(value, default=str, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


_REQUIRED = object()


class _Table:
    """A TOML table being validated: knows its dotted key and refuses unknown keys."""

    def __init__(self, where: str, key: str, value: object, known: Iterable[str]) -> None:
        self.where, self.key = where, key
        if not isinstance(value, dict):
            raise _KeyProblem(where, key, f"{key} must be a table, not {_show(value)}")
        self.data: dict[str, Any] = value
        known = sorted(known)
        for name in value:
            if name not in known:
                raise _KeyProblem(
                    where,
                    self.path(name),
                    f"unknown key {self.path(name)!r} (known keys: {', '.join(known)})",
                )

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, text: str) -> None:
        raise _KeyProblem(self.where, self.path(name), f"{self.path(name)} {text}")

    def get(self, name: str, default: Any, kind: str, ok: Any) -> Any:
        """The value of `name` (or `default`), which must pass `ok`, else '... must be kind'."""
        if name not in self.data:
            if default is _REQUIRED:
                self.fail(name, "is required but missing")
            return default
        value = self.data[name]
        if not ok(value):
            self.fail(name, f"must be {kind}, not {_show(value)}")
        return value

    def integer(self, name: str, default: Any = _REQUIRED, minimum: int | None = None) -> Any:
        # bool is a subclass of int: `max_attempts = true` must not mean 1.
        value = self.get(
            name, default, "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
        )
        if minimum is not None and value is not None and value < minimum:
            self.fail(name, f"must be at least {minimum}, not {value}")
        return value

    def number(self, name: str, default: Any, *, zero_ok: bool = False) -> float:
        value = self.get(
            name,
            default,
            "a finite number",
            lambda v: not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v),
        )
        if value < 0 or (value == 0 and not zero_ok):
            self.fail(name, f"must be {'at least' if zero_ok else 'greater than'} 0, not {value}")
        return float(value)

    def string(self, name: str, default: Any = _REQUIRED) -> Any:
        return self.get(name, default, "a string", lambda v: isinstance(v, str))

    def strings(self, name: str, default: Any = ()) -> tuple[str, ...]:
        return tuple(
            self.get(
                name,
                default,
                "a list of strings",
                lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
            )
        )

    def str_map(self, name: str) -> tuple[tuple[str, str], ...]:
        value = self.get(
            name,
            {},
            "a table of strings",
            lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        )
        return tuple(value.items())


def _policy(table: _Table, cls: type, defaults: Any) -> Any:
    """Build a dataclass of positive numbers (`*_jitter_s` may be 0) from `table`."""
    values = {}
    for f in fields(cls):
        default = getattr(defaults, f.name)
        if f.type == "int":
            values[f.name] = table.integer(f.name, default, minimum=1)
        else:
            values[f.name] = table.number(f.name, default, zero_ok=f.name.endswith("jitter_s"))
    return cls(**values)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


_RETRY_KEYS = _names(RetryPolicy)
_JOB_KEYS = ("priority", "depends_on", "handler", "timeout_s", "retry_exit_codes", *_RETRY_KEYS)


def parse_config(data: Mapping[str, Any], source: Path | None) -> Config:
    """Validate an already-parsed TOML table; `source` names the file in error sentences."""
    where = str(source) if source is not None else "config"
    top = _Table(
        where,
        "",
        dict(data),
        ("circuit_breaker", "concurrency", "database", "dealers", "demo", "job_types", "retry"),
    )

    def section(name: str, known: Iterable[str]) -> _Table:
        return _Table(where, name, top.data.get(name, {}), known)

    url = section("database", ("url",)).string("url", None)
    if url is not None:
        try:
            url = normalize_database_url(url, "database.url")
        except ConfigError as exc:
            raise _KeyProblem(where, "database.url", str(exc).rstrip(".")) from None
    retry = _policy(section("retry", _RETRY_KEYS), RetryPolicy, RetryPolicy())
    _check_backoff(top.data.get("retry", {}), retry, section("retry", _RETRY_KEYS))
    return Config(
        source=source,
        database_url=url or default_database_url(),
        concurrency=_policy(
            section("concurrency", _names(ConcurrencyConfig)),
            ConcurrencyConfig,
            ConcurrencyConfig(),
        ),
        retry=retry,
        circuit_breaker=_policy(
            section("circuit_breaker", _names(BreakerConfig)), BreakerConfig, BreakerConfig()
        ),
        job_types=_job_types(where, top.data.get("job_types"), retry),
        dealers=_dealers(where, top.data.get("dealers", [])),
        demo=_demo(section("demo", _names(DemoConfig))),
    )


def _check_backoff(own: Mapping[str, Any], policy: RetryPolicy, table: _Table) -> None:
    """backoff_max_s >= backoff_initial_s; blame the key this table set itself."""
    if policy.backoff_max_s >= policy.backoff_initial_s:
        return
    if "backoff_max_s" in own or "backoff_initial_s" not in own:
        table.fail(
            "backoff_max_s",
            f"must be at least backoff_initial_s "
            f"({policy.backoff_initial_s:g}), not {policy.backoff_max_s:g}",
        )
    table.fail(
        "backoff_initial_s",
        f"must be at most backoff_max_s "
        f"({policy.backoff_max_s:g}), not {policy.backoff_initial_s:g}",
    )


def _job_types(where: str, raw: Any, retry: RetryPolicy) -> dict[str, JobTypeConfig]:
    if raw is None:  # no [job_types.*] at all: the built-in four, with this file's [retry]
        return {name: replace(jt, retry=retry) for name, jt in DEFAULT_JOB_TYPES.items()}
    if not isinstance(raw, dict):
        raise _KeyProblem(where, "job_types", f"job_types must be a table, not {_show(raw)}")
    if not raw:
        raise _KeyProblem(
            where,
            "job_types",
            "job_types is empty (define at least one "
            "[job_types.NAME], or remove [job_types] to use the built-in four)",
        )
    result: dict[str, JobTypeConfig] = {}
    for name, value in raw.items():
        if not JOB_TYPE_NAME_RE.fullmatch(name):
            raise _KeyProblem(
                where,
                f"job_types.{name}",
                f"job type name {name!r} in job_types.{name} must match {JOB_TYPE_NAME_RE.pattern}",
            )
        table = _Table(where, f"job_types.{name}", value, _JOB_KEYS)
        policy = _policy(table, RetryPolicy, retry)
        _check_backoff(table.data, policy, table)
        codes = table.get(
            "retry_exit_codes",
            [],
            "a list of exit codes from 1 to 255",
            lambda v: isinstance(v, list) and all(type(c) is int and 1 <= c <= 255 for c in v),
        )
        result[name] = JobTypeConfig(
            name=name,
            priority=table.integer("priority"),
            depends_on=table.strings("depends_on"),
            handler=_handler(table),
            timeout_s=table.number("timeout_s", 300.0),
            retry=policy,
            retry_exit_codes=tuple(sorted(set(codes))),
        )
    for jt in result.values():
        for dep in jt.depends_on:
            if dep not in result:
                raise _KeyProblem(
                    where,
                    f"job_types.{jt.name}.depends_on",
                    f"job_types.{jt.name}.depends_on names unknown job type "
                    f"{dep!r} (known job types: {', '.join(sorted(result))})",
                )
    try:
        edges = nx.find_cycle(_graph(result))
    except nx.NetworkXNoCycle:
        return result
    # Edges run parent -> child; show the cycle in `depends_on` order, from its smallest name.
    cycle = [child for _parent, child in edges][::-1]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    key = f"job_types.{cycle[0]}.depends_on"
    raise _KeyProblem(
        where, key, f"{key} makes a dependency cycle: {' -> '.join([*cycle, cycle[0]])}"
    )


def _handler(job: _Table) -> HandlerSpec:
    value, key = job.get("handler", _REQUIRED, "a string or a table", lambda v: True), "handler"
    if isinstance(value, str):
        module, _colon, func = value.partition(":")  # a second colon fails isidentifier()
        if not all(part.isidentifier() for part in [*module.split("."), *func.split(".")]):
            job.fail(key, f'must look like "package.module:function", not {_show(value)}')
        return value
    if not isinstance(value, dict):
        job.fail(
            key,
            f"must be \"package.module:function\" or a table with 'exec' or 'url', "
            f"not {_show(value)}",
        )
    kind = "exec" if "exec" in value else "url" if "url" in value else None
    known = {"exec": ("exec", "env"), "url": ("url", "method", "headers")}.get(kind)
    table = _Table(
        job.where, job.path(key), value, known or ("env", "exec", "headers", "method", "url")
    )
    if kind is None:
        job.fail(key, "needs either 'exec' (a command) or 'url' (a webhook)")
    if kind == "exec":
        argv = table.strings("exec")
        if not argv or not argv[0]:
            table.fail("exec", f"must be a non-empty list of strings, not {_show(list(argv))}")
        env = table.str_map("env")
        for arg in (*argv, *(v for _k, v in env)):
            # A misspelt placeholder would reach the command verbatim; refuse it now.
            for name in re.findall(r"\{(\w+)\}", arg):
                if name not in EXEC_PLACEHOLDERS:
                    table.fail(
                        "exec" if arg in argv else "env",
                        f"has unknown placeholder "
                        f"'{{{name}}}' in {_show(arg)} (known: "
                        f"{', '.join('{' + p + '}' for p in EXEC_PLACEHOLDERS)})",
                    )
        return ExecHandler(argv=argv, env=env)
    url = table.string("url")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        table.fail("url", f"must be an http:// or https:// URL, not {_show(mask_url(url))}")
    method = table.string("method", "POST")
    if method.upper() not in HTTP_METHODS:
        table.fail("method", f"must be one of {', '.join(HTTP_METHODS)}, not {_show(method)}")
    return HttpHandler(url=url, method=method.upper(), headers=table.str_map("headers"))


def _dealers(where: str, raw: Any) -> tuple[DealerConfig, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise _KeyProblem(
            where,
            "dealers",
            f"dealers must be an array of tables ([[dealers]] with id and name), not {_show(raw)}",
        )
    seen: dict[str, int] = {}
    dealers = []
    for index, item in enumerate(raw):
        table = _Table(where, f"dealers[{index}]", item, ("id", "name"))
        dealer_id = table.string("id")
        if not is_valid_dealer_id(dealer_id):
            table.fail(
                "id",
                f"{_show(dealer_id)} is not a valid dealer id (1 to 64 letters, "
                "digits, '_', '.' or '-', starting with a letter or digit)",
            )
        if dealer_id in seen:
            table.fail("id", f"{_show(dealer_id)} is a duplicate of dealers[{seen[dealer_id]}].id")
        seen[dealer_id] = index
        dealers.append(DealerConfig(id=dealer_id, name=table.string("name", None)))
    return tuple(dealers)


def _demo(table: _Table) -> DemoConfig:
    d = DemoConfig()
    low = table.number("latency_ms_min", d.latency_ms_min, zero_ok=True)
    high = table.number("latency_ms_max", d.latency_ms_max, zero_ok=True)
    if high < low:
        table.fail("latency_ms_max", f"must be at least latency_ms_min ({low:g}), not {high:g}")
    rate = table.number("failure_rate", d.failure_rate, zero_ok=True)
    if rate > 1:
        table.fail("failure_rate", f"must be between 0 and 1, not {rate:g}")
    failing = table.strings("failing_dealers")
    for dealer_id in failing:
        if not is_valid_dealer_id(dealer_id):
            table.fail(
                "failing_dealers", f"contains {_show(dealer_id)}, which is not a valid dealer id"
            )
    return DemoConfig(
        seed=table.integer("seed", None),
        latency_ms_min=low,
        latency_ms_max=high,
        failure_rate=rate,
        failing_dealers=failing,
    )
