"""TOML config + environment + flags -> frozen dataclasses (docs/design.md, "Config file").

Every problem a user can cause raises `ConfigError` with one sentence that names the file, the
key and the bad value. Reading the file is the only I/O; nothing is created or written here.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import networkx as nx
import platformdirs

from dealertui.errors import ConfigError
from dealertui.model import DEALER_ID_RE, dealer_name_problem, is_valid_dealer_id

ENV_CONFIG = "DEALERTUI_CONFIG"
ENV_DATABASE_URL = "DEALERTUI_DATABASE_URL"
JOB_TYPE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    backoff_jitter_s: float = 1.0


@dataclass(frozen=True)
class BreakerConfig:
    """Breakers open on failure rates over the last `window_s` (store/breakers.py)."""

    window_s: float = 60
    #: a (dealer, job type) breaker opens when this share of that dealer's calls failed...
    dealer_failure_rate: float = 0.5
    #: ...once it made at least this many calls in the window
    dealer_min_calls: int = 5
    #: a job type's shared breaker opens when this share of the dealers that ran it failed...
    type_failure_rate: float = 0.25
    #: ...once at least this many distinct dealers ran it in the window
    type_min_dealers: int = 20
    reset_timeout_s: float = 60
    half_open_max_jobs: int = 1


#: keys of [circuit_breaker] that counted failures; refused, naming the keys that replace them
_OLD_BREAKER_KEYS = {
    "failure_threshold": "circuit_breaker.dealer_failure_rate and dealer_min_calls",
    "min_dealers": "circuit_breaker.type_failure_rate and type_min_dealers",
}


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
    """`{ exec = ["cmd", "{dealer_id}"], env = {K = "v"} }`: a subprocess, no shell."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpHandler:
    """`{ url = "https://...", method = "POST", headers = {K = "v"} }`: a webhook."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


#: a callable (an async function of a JobContext) comes only from the embedding API, never a file
HandlerSpec = str | ExecHandler | HttpHandler | Callable[..., Any]


@dataclass(frozen=True)
class JobTypeConfig:
    name: str
    priority: int
    depends_on: tuple[str, ...]
    handler: HandlerSpec | None  # None: a built-in type no config names a handler for
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
    job_types: Mapping[str, JobTypeConfig] = field(hash=False)  # a mapping is not hashable
    dealers: tuple[DealerConfig, ...]
    demo: DemoConfig

    def __post_init__(self) -> None:
        # Always a read-only view ordered by priority then name, however the config was built.
        ordered = sorted(self.job_types.values(), key=lambda jt: (jt.priority, jt.name))
        object.__setattr__(self, "job_types", MappingProxyType({jt.name: jt for jt in ordered}))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy cannot be pickled, and `spawn`ed worker processes need the config.
        args = [getattr(self, f.name) for f in fields(self)]
        return (Config, tuple(dict(a) if isinstance(a, MappingProxyType) else a for a in args))

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


def _graph(job_types: Mapping[str, JobTypeConfig]) -> nx.DiGraph[str]:
    """Edges point from a parent (a `depends_on` entry) to the job type that waits for it."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(job_types)
    for jt in job_types.values():
        graph.add_edges_from((dep, jt.name) for dep in jt.depends_on)
    return graph


# name, priority, then the job types it depends on
_SEEDS: list[tuple[str, int, *tuple[str, ...]]] = [
    ("homenet", 1), ("dealer_com", 2, "homenet"), ("product_scrape", 3, "homenet")
]
_SEEDS.append(("url_shorten", 4, "product_scrape"))
# No handler: simulated work must never mark real jobs succeeded. `--demo` fills in the demo
# handlers (demo.py); a command that runs jobs refuses a type without one (handlers/check.py).
DEFAULT_JOB_TYPES: Mapping[str, JobTypeConfig] = MappingProxyType(
    {
        name: JobTypeConfig(name, prio, tuple(deps), None, 300.0, RetryPolicy())
        for name, prio, *deps in _SEEDS
    }
)
#: the `{name}` placeholders an exec handler's arguments may hold (handlers/exec.py fills them)
EXEC_PLACEHOLDERS = ("dealer_id", "job_type", "job_id", "attempt")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --- database URLs -------------------------------------------------------------------------


def default_database_url() -> str:
    """SQLite in the user's data directory (the store creates the directory, not this)."""
    path = Path(platformdirs.user_data_dir("dealertui", appauthor=False)) / "dealertui.db"
    return f"sqlite+aiosqlite:///{path}"


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***`, e.g. `postgresql://user:***@host/db`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # The userinfo ends at the last '@' of the authority (so an '@' in the query is not taken
    # for it), else at the last '@' at all (so a password with a raw '/' is masked too).
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    at = rest.rfind("@", 0, min(ends, default=len(rest)))
    at = at if at >= 0 else rest.rfind("@")
    user, colon, _ = rest[: max(at, 0)].partition(":")
    if colon and "/" not in user:
        rest = f"{user}:***@{rest[at + 1 :]}"
    rest = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", rest)
    return f"{scheme}{sep}{rest}"


def normalize_database_url(url: str, source_desc: str) -> str:
    """The SQLAlchemy async form of `url`: `sqlite+aiosqlite://...` or `postgresql+asyncpg://...`.

    `source_desc` says where the URL came from (`--database-url`, `$DEALERTUI_DATABASE_URL`,
    `database.url`) and starts the error sentence, which shows the URL password-masked.
    """
    scheme, sep, rest = url.strip().partition("://")
    shown = f"{source_desc} {mask_url(url)!r}"
    if not sep:
        raise ConfigError(f"{shown} is not a database URL (try sqlite:///dealertui.db).")
    if scheme.lower() in ("sqlite", "sqlite+aiosqlite"):
        if rest and not rest.startswith("/"):  # sqlite://x.db: a host, not a path
            raise ConfigError(f"{shown} has no path (use sqlite:///rel.db or sqlite:////abs.db).")
        if rest.partition("?")[0] in ("", "/", "/:memory:"):
            # each process, and each pooled connection, would get a database of its own
            raise ConfigError(
                f"{shown} names no database file, and an in-memory database is gone when the "
                "command exits (use sqlite:///dealertui.db)."
            )
        if rest.startswith("/~"):  # sqlite:///~/x.db: SQLite would open a file named "~/x.db"
            rest = "/" + os.path.expanduser(rest[1:])
        return "sqlite+aiosqlite://" + rest
    if scheme.lower() in ("postgresql", "postgres", "postgresql+asyncpg"):
        normalized = "postgresql+asyncpg://" + rest
        try:
            urlsplit(normalized).port  # noqa: B018 - parsing it is the check
        except ValueError as exc:
            raise ConfigError(f"{shown} is not a valid database URL: {exc}.") from None
        return normalized
    raise ConfigError(
        f"{shown} uses unsupported scheme {scheme!r} (use sqlite://, sqlite+aiosqlite://, "
        "postgresql://, postgres:// or postgresql+asyncpg://)."
    )


# --- finding and loading the file ----------------------------------------------------------


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
    except _KeyProblem as exc:
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


# --- validation ----------------------------------------------------------------------------


class _KeyProblem(ConfigError):
    """A ConfigError about one key; `_load_file` adds that key's line when it can find it."""

    def __init__(self, where: str, key: str, text: str) -> None:
        super().__init__(f"{where}: {text}.")
        self.where, self.key, self.text = where, key, text


def _fail(where: str, key: str, text: str) -> NoReturn:
    raise _KeyProblem(where, key, f"{key} {text}")


def _show(value: object) -> str:
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


class _Table:
    """A TOML table being validated: knows its dotted key and refuses unknown keys."""

    def __init__(self, where: str, key: str, value: Any, known: Iterable[str]) -> None:
        self.where, self.key, self.data = where, key, value
        if not isinstance(value, dict):
            _fail(where, key, f"must be a table, not {_show(value)}")
        for name in value:
            if name not in known:
                known_keys = ", ".join(sorted(known))
                text = f"unknown key {self.path(name)!r} (known keys: {known_keys})"
                raise _KeyProblem(where, self.path(name), text)

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, text: str) -> NoReturn:
        _fail(self.where, self.path(name), text)

    def get(self, name: str, kind: str, default: Any = _REQUIRED, low: int | None = None) -> Any:
        """The value of `name`, or `default` when it is absent; it must be of `kind`.
        *low* is the smallest integer the key allows, as an out-of-range error names it."""
        if name not in self.data:
            if default is _REQUIRED:
                self.fail(name, "is required but missing")
            return default
        if not _KINDS[kind](value := self.data[name]):
            self.fail(name, f"must be {kind}, not {_show(value)}")
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


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _policy(table: _Table, cls: type, defaults: Any) -> Any:
    """A dataclass of positive numbers (`*_jitter_s` may be 0), each defaulting to `defaults`."""
    values = {}
    for f in fields(cls):
        kind = "an integer" if f.type in ("int", int) else "a finite number"
        zero_ok = f.name.endswith("jitter_s")
        values[f.name] = table.number(f.name, kind, getattr(defaults, f.name), zero_ok)
    return cls(**values)


_TOP_KEYS = ("circuit_breaker", "concurrency", "database", "dealers", "demo", "job_types", "retry")
_JOB_KEYS = ("priority", "depends_on", "handler", "timeout_s", "retry_exit_codes")


def parse_config(data: Mapping[str, Any], source: Path | None) -> Config:
    """Validate an already-parsed TOML table; `source` names the file in error sentences."""
    where = str(source) if source is not None else "config"
    top = _Table(where, "", dict(data), _TOP_KEYS)

    def section(name: str, known: Iterable[str]) -> _Table:
        return _Table(where, name, top.data.get(name, {}), known)

    url = section("database", ("url",)).get("url", "a string", None)
    if url is not None:
        try:
            url = normalize_database_url(url, "database.url")
        except ConfigError as exc:
            raise _KeyProblem(where, "database.url", str(exc).rstrip(".")) from None
    retry = _policy(
        retry_table := section("retry", _names(RetryPolicy)), RetryPolicy, RetryPolicy()
    )
    _check_backoff(retry_table, retry)
    _refuse_old_breaker_keys(where, top.data.get("circuit_breaker"))
    conc, breaker = (
        _policy(section(name, _names(cls)), cls, cls())
        for name, cls in (("concurrency", ConcurrencyConfig), ("circuit_breaker", BreakerConfig))
    )
    _check_rates(section("circuit_breaker", _names(BreakerConfig)), breaker)
    return Config(
        source=source,
        database_url=url or default_database_url(),
        concurrency=conc,
        retry=retry,
        circuit_breaker=breaker,
        job_types=_job_types(where, top.data.get("job_types"), retry),
        dealers=_dealers(top),
        demo=_demo(section("demo", _names(DemoConfig))),
    )


def _refuse_old_breaker_keys(where: str, raw: Any) -> None:
    for old, new in _OLD_BREAKER_KEYS.items():
        if isinstance(raw, dict) and old in raw:
            _fail(where, f"circuit_breaker.{old}", f"= {_show(raw[old])} is no longer read: "
                  f"breakers open on a failure rate now, so set {new} instead")


def _check_rates(table: _Table, cfg: BreakerConfig) -> None:
    for name in ("dealer_failure_rate", "type_failure_rate"):
        if getattr(cfg, name) > 1:
            table.fail(name, f"must be a share between 0 and 1, not {getattr(cfg, name):g}")


def _check_backoff(table: _Table, policy: RetryPolicy) -> None:
    """backoff_max_s >= backoff_initial_s; blame the key that `table` sets itself."""
    initial, most = policy.backoff_initial_s, policy.backoff_max_s
    if most >= initial:
        return
    if "backoff_max_s" in table.data or "backoff_initial_s" not in table.data:
        table.fail(
            "backoff_max_s", f"must be at least backoff_initial_s ({initial:g}), not {most:g}"
        )
    table.fail("backoff_initial_s", f"must be at most backoff_max_s ({most:g}), not {initial:g}")


def _job_types(where: str, raw: Any, retry: RetryPolicy) -> dict[str, JobTypeConfig]:
    if raw is None:  # no [job_types.*] at all: the built-in four, with this file's [retry]
        return {name: replace(jt, retry=retry) for name, jt in DEFAULT_JOB_TYPES.items()}
    if not isinstance(raw, dict) or not raw:
        _fail(where, "job_types", f"must be a table of [job_types.NAME] tables, not {_show(raw)}")
    result: dict[str, JobTypeConfig] = {}
    for name, value in raw.items():
        if not JOB_TYPE_NAME_RE.fullmatch(name):
            _fail(where, f"job_types.{name}", f"is not a valid name ({JOB_TYPE_NAME_RE.pattern})")
        table = _Table(where, f"job_types.{name}", value, _JOB_KEYS + _names(RetryPolicy))
        policy = _policy(table, RetryPolicy, retry)
        _check_backoff(table, policy)
        codes = table.get("retry_exit_codes", "a list of exit codes from 1 to 255", [])
        result[name] = JobTypeConfig(
            name=name,
            priority=table.get("priority", "an integer"),
            depends_on=tuple(table.get("depends_on", "a list of strings", [])),
            handler=_handler(table),
            timeout_s=table.number("timeout_s", "a finite number", 300.0),
            retry=policy,
            retry_exit_codes=tuple(sorted(set(codes))),
        )
    for jt in result.values():
        for dep in jt.depends_on:
            if dep not in result:
                text = f"names unknown job type {dep!r} (known: {', '.join(sorted(result))})"
                _fail(where, f"job_types.{jt.name}.depends_on", text)
    try:
        edges = nx.find_cycle(_graph(result))
    except nx.NetworkXNoCycle:
        return result
    # Edges run parent -> child; show the cycle in `depends_on` order from its smallest name.
    cycle = [child for _parent, child in edges][::-1]
    cycle = cycle[cycle.index(min(cycle)) :] + cycle[: cycle.index(min(cycle))]
    text = f"makes a dependency cycle: {' -> '.join([*cycle, cycle[0]])}"
    _fail(where, f"job_types.{cycle[0]}.depends_on", text)


def _handler(job: _Table) -> HandlerSpec:
    value = job.get(
        "handler", "a table" if isinstance(job.data.get("handler"), dict) else "a string"
    )
    if isinstance(value, str):
        module, _colon, func = value.partition(":")  # a second colon fails isidentifier()
        if not all(part.isidentifier() for part in [*module.split("."), *func.split(".")]):
            job.fail("handler", f'must look like "package.module:function", not {_show(value)}')
        return value
    kind = "exec" if "exec" in value else "url" if "url" in value else None
    known: dict[str | None, tuple[str, ...]] = {
        "exec": ("exec", "env"), "url": ("url", "method", "headers")
    }
    table = _Table(job.where, job.path("handler"), value, known.get(kind, ("exec", "url")))
    if kind is None:
        job.fail("handler", "needs 'exec' (a command) or 'url' (a webhook), not {}")
    if kind == "exec":
        argv = tuple(table.get("exec", "a list of strings"))
        if not argv or not argv[0]:
            table.fail("exec", f"must start with a command, not {_show(list(argv))}")
        for arg in argv:
            # an unknown one was passed to the command literally ("{dealr_id}")
            for name in _PLACEHOLDER_RE.findall(arg):
                if name not in EXEC_PLACEHOLDERS:
                    allowed = " ".join(f"{{{p}}}" for p in EXEC_PLACEHOLDERS)
                    table.fail("exec", f"has unknown placeholder {{{name}}} in {_show(arg)} "
                                       f"(known: {allowed})")
        return ExecHandler(argv, tuple(table.get("env", "a table of strings", {}).items()))
    url, method = table.get("url", "a string"), table.get("method", "a string", "POST")
    if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).netloc:
        table.fail("url", f"must be an http:// or https:// URL, not {_show(mask_url(url))}")
    if method.upper() not in HTTP_METHODS:
        table.fail("method", f"must be one of {', '.join(HTTP_METHODS)}, not {_show(method)}")
    headers = tuple(table.get("headers", "a table of strings", {}).items())
    return HttpHandler(url, method.upper(), headers)


def _dealers(top: _Table) -> tuple[DealerConfig, ...]:
    seen: dict[str, int] = {}
    for index, item in enumerate(top.get("dealers", "an array of tables ([[dealers]])", [])):
        table = _Table(top.where, f"dealers[{index}]", item, ("id", "name"))
        dealer_id = table.get("id", "a string")
        if not is_valid_dealer_id(dealer_id):
            table.fail(
                "id", f"{_show(dealer_id)} is not a valid dealer id ({DEALER_ID_RE.pattern})"
            )
        if dealer_id in seen:
            table.fail("id", f"{_show(dealer_id)} repeats dealers[{seen[dealer_id]}].id")
        seen[dealer_id] = index
        name = table.get("name", "a string", None)
        if dealer_name_problem(name) is not None:
            table.fail("name", f"must not contain control characters or terminal escapes, "
                               f"not {name!r}")
    return tuple(DealerConfig(d["id"], d.get("name")) for d in top.data.get("dealers", []))


def _demo(table: _Table) -> DemoConfig:
    low, high, rate = (
        table.number(name, "a finite number", getattr(DemoConfig, name), zero_ok=True)
        for name in ("latency_ms_min", "latency_ms_max", "failure_rate")
    )
    if high < low:
        table.fail("latency_ms_max", f"must be at least latency_ms_min ({low:g}), not {high:g}")
    if rate > 1:
        table.fail("failure_rate", f"must be between 0 and 1, not {rate:g}")
    failing = tuple(table.get("failing_dealers", "a list of strings", []))
    for dealer_id in failing:
        if not is_valid_dealer_id(dealer_id):
            table.fail("failing_dealers", f"has {_show(dealer_id)}, which is not a valid dealer id")
    return DemoConfig(table.get("seed", "an integer", None), low, high, rate, failing)
