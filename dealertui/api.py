"""The embedding API: `dealertui.open(...)` yields a MultiDealerDependencyManager, the way the
seed's users wrote `new MultiDealerDependencyManager(3, 2)` (README, "Embedding").

Everything passed in goes through the config file's validation (parse_config, then
check_runnable), so a bad value is the same one sentence a config file gets, worded for the
call: `JobType 'homenet': handler.exec command 'nope' is not found on PATH.`
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from dealertui.config import (
    Config,
    ExecHandler,
    HandlerSpec,
    HttpHandler,
    RetryPolicy,
    parse_config,
)
from dealertui.engine.manager import MultiDealerDependencyManager
from dealertui.errors import ConfigError
from dealertui.handlers.check import check_runnable

#: what JobType(handler=...) takes: an async function of a JobContext, "module:function",
#: {"exec": [...], "env": {...}}, {"url": ..., "method": ..., "headers": {...}}
HandlerLike = Callable[..., Any] | str | Mapping[str, Any] | ExecHandler | HttpHandler

# stands in for a callable while parse_config validates the rest of a job type (it checks a
# string's shape only; check_runnable, which would import it, skips the callable put back)
_PLACEHOLDER = "dealertui_embedded:handler"


@dataclasses.dataclass(frozen=True)
class JobType:
    """One job type of a pipeline. *priority* defaults to the position in `open(job_types=)`
    (1, 2, ...); *retry* to the config's [retry] (5 attempts, backoff from 1 s).

    A handler that cannot be used (a module that does not import, a command not on PATH, a
    malformed spec) raises ConfigError here, naming the type and the spec: it is never left to
    fail job after job."""

    name: str
    handler: HandlerLike
    depends_on: Sequence[str] = ()
    priority: int | None = None
    timeout_s: float = 300.0
    retry: RetryPolicy | None = None
    retry_exit_codes: Sequence[int] = ()

    def __post_init__(self) -> None:
        if isinstance(self.depends_on, str):  # "homenet" would be read as h, o, m, ...
            object.__setattr__(self, "depends_on", (self.depends_on,))
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        object.__setattr__(self, "retry_exit_codes", tuple(self.retry_exit_codes))
        if not isinstance(self.name, str):
            raise ConfigError(f"JobType name must be a string, not {self.name!r}.")
        _spec_value(self.name, self.handler)  # a spec of no known kind
        # alone, so that depends_on (checked by open(), which knows the other types) is left out
        _reword(self.name, lambda: check_runnable(_with_callables(
            parse_config({"job_types": {self.name: self._table(1, deps=False)}}, None),
            [self])))

    def _table(self, default_priority: int, deps: bool = True) -> dict[str, Any]:
        """This type as a [job_types.NAME] table of a config file."""
        table: dict[str, Any] = {
            "priority": default_priority if self.priority is None else self.priority,
            "handler": _spec_value(self.name, self.handler),
            "timeout_s": self.timeout_s,
            "retry_exit_codes": list(self.retry_exit_codes),
        }
        if deps:
            table["depends_on"] = list(self.depends_on)
        if self.retry is not None:
            table.update(dataclasses.asdict(self.retry))
        return table


def _spec_value(name: str, spec: HandlerLike) -> Any:
    if isinstance(spec, ExecHandler):
        return {"exec": list(spec.argv), "env": dict(spec.env)}
    if isinstance(spec, HttpHandler):
        return {"url": spec.url, "method": spec.method, "headers": dict(spec.headers)}
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, str):
        return spec
    if callable(spec):
        return _PLACEHOLDER
    raise ConfigError(
        f"JobType {name!r}: handler must be an async function, a \"module:function\" string, "
        f"{{\"exec\": [...]}} or {{\"url\": ...}}, not {spec!r}."
    )


def _with_callables(config: Config, job_types: Iterable[JobType]) -> Config:
    """*config* with the callables that _PLACEHOLDER stood in for put back."""
    given: dict[str, HandlerSpec] = {jt.name: jt.handler for jt in job_types
                                     if callable(jt.handler)}
    if not given:
        return config
    return dataclasses.replace(config, job_types={
        name: dataclasses.replace(jt, handler=given[name]) if name in given else jt
        for name, jt in config.job_types.items()
    })


def _reword(type_name: str | None, check: Callable[[], Any]) -> Any:
    """Run *check*; its ConfigError, worded for a config file ("config: job_types.x.handler
    ..."), is raised again worded for this call."""
    try:
        return check()
    except ConfigError as exc:
        text = str(exc).removeprefix("config: ")
        if type_name is not None:
            text = text.replace(f"job_types.{type_name}.", "")
            text = text.replace(f"job_types.{type_name}", "the name")
            raise ConfigError(f"JobType {type_name!r}: {text}") from None
        for key, arg in (("database.url", "url"), ("concurrency.", "")):
            text = text.replace(key, arg)
        text = re.sub(r"^job_types\.([a-z0-9_]+)\.", lambda m: f"JobType {m[1]!r}: ", text)
        raise ConfigError(f"dealertui.open(): {text}") from None


def build_config(
    url: str | None = None,
    *,
    config: Config | None = None,
    job_types: Sequence[JobType] | None = None,
    dealers: Iterable[str | tuple[str, str | None]] = (),
    max_concurrent_dealers: int | None = None,
    max_concurrent_jobs_per_dealer: int | None = None,
) -> Config:
    """The Config `open` runs: *config* (or the defaults) with what the call passes on top."""
    if config is None and not job_types:
        raise ConfigError("dealertui.open() needs job_types=[dealertui.JobType(...), ...] or "
                          "config=dealertui.load_config(path).")
    if config is None and url is None:
        raise ConfigError("dealertui.open() needs a database URL, e.g. "
                          "dealertui.open(\"sqlite:///feeds.db\", ...), or config=.")
    if isinstance(dealers, str):
        dealers = [dealers]
    base = config
    data: dict[str, Any] = {}
    if url is not None:
        data["database"] = {"url": url}
    concurrency = {"max_concurrent_dealers": max_concurrent_dealers,
                   "max_concurrent_jobs_per_dealer": max_concurrent_jobs_per_dealer}
    data["concurrency"] = {k: v for k, v in concurrency.items() if v is not None}
    if base is not None:
        data["concurrency"] = {**dataclasses.asdict(base.concurrency), **data["concurrency"]}
        data["retry"] = dataclasses.asdict(base.retry)
    if job_types:
        names = [jt.name for jt in job_types]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"dealertui.open(): job_types names {twice[0]!r} twice.")
        data["job_types"] = {jt.name: jt._table(i) for i, jt in enumerate(job_types, 1)}
    known = {d.id for d in base.dealers} if base is not None else set()
    new = []
    for item in dealers:
        dealer_id, name = (item, None) if isinstance(item, str) else item
        if dealer_id not in known:
            known.add(dealer_id)
            new.append({"id": dealer_id} if name is None else {"id": dealer_id, "name": name})
    data["dealers"] = new
    parsed: Config = _reword(None, lambda: parse_config(data, None))
    parsed = _with_callables(parsed, job_types or ())
    if base is None:
        return parsed
    return dataclasses.replace(
        base,
        database_url=parsed.database_url if url is not None else base.database_url,
        concurrency=parsed.concurrency,
        job_types=parsed.job_types if job_types else base.job_types,
        dealers=base.dealers + parsed.dealers,
    )


@asynccontextmanager
async def open(  # dealertui.open, as the README shows it; shadows the builtin here only
    url: str | None = None,
    *,
    config: Config | None = None,
    job_types: Sequence[JobType] | None = None,
    dealers: Iterable[str | tuple[str, str | None]] = (),
    max_concurrent_dealers: int | None = None,
    max_concurrent_jobs_per_dealer: int | None = None,
    create: bool = True,
) -> AsyncIterator[MultiDealerDependencyManager]:
    """Open the database (created with its schema unless *create* is false) and yield the
    manager; the database is closed on the way out. With *config* (`load_config(path)`) its
    database, job types and dealers are used, and the other arguments override them."""
    from dealertui.store import Intent, open_store

    cfg = build_config(url, config=config, job_types=job_types, dealers=dealers,
                       max_concurrent_dealers=max_concurrent_dealers,
                       max_concurrent_jobs_per_dealer=max_concurrent_jobs_per_dealer)
    check_runnable(cfg)
    store = await open_store(cfg, Intent.CREATE if create else Intent.WRITE)
    manager = MultiDealerDependencyManager(store, cfg, kind="embedded")
    try:
        yield manager
    finally:
        try:
            await manager.handlers.aclose()
        finally:
            await store.close()
