"""An already-parsed TOML table -> Config: every section validated, job types checked for
unknown parents and cycles, dealers for valid and unique ids."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import networkx as nx

from dealertui.config.handler_spec import parse_handler
from dealertui.config.model import (
    DEFAULT_JOB_TYPES,
    BreakerConfig,
    ConcurrencyConfig,
    Config,
    DealerConfig,
    DemoConfig,
    JobTypeConfig,
    RetryPolicy,
    type_graph,
)
from dealertui.config.retention import KEYS as RETENTION_KEYS
from dealertui.config.retention import parse_retention
from dealertui.config.schedules import parse_schedules
from dealertui.config.urls import default_database_url, normalize_database_url
from dealertui.config.validate import KeyProblem, Table, fail, field_names, parse_policy, show
from dealertui.errors import ConfigError
from dealertui.model import DEALER_ID_RE, dealer_name_problem, is_valid_dealer_id

JOB_TYPE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

#: keys of [circuit_breaker] that counted failures; refused, naming the keys that replace them
_OLD_BREAKER_KEYS = {
    "failure_threshold": "circuit_breaker.dealer_failure_rate and dealer_min_calls",
    "min_dealers": "circuit_breaker.type_failure_rate and type_min_dealers",
}


_TOP_KEYS = ("circuit_breaker", "concurrency", "database", "dealers", "demo", "job_types",
             "retention", "retry", "schedules")
_JOB_KEYS = ("priority", "depends_on", "handler", "timeout_s", "retry_exit_codes")


def parse_config(data: Mapping[str, Any], source: Path | None) -> Config:
    """Validate an already-parsed TOML table; `source` names the file in error sentences."""
    where = str(source) if source is not None else "config"
    top = Table(where, "", dict(data), _TOP_KEYS)

    def section(name: str, known: Iterable[str]) -> Table:
        return Table(where, name, top.data.get(name, {}), known)

    url = section("database", ("url",)).get("url", "a string", None)
    if url is not None:
        try:
            url = normalize_database_url(url, "database.url")
        except ConfigError as exc:
            raise KeyProblem(where, "database.url", str(exc).rstrip(".")) from None
    retry = parse_policy(
        retry_table := section("retry", field_names(RetryPolicy)), RetryPolicy, RetryPolicy()
    )
    _check_backoff(retry_table, retry)
    _refuse_old_breaker_keys(where, top.data.get("circuit_breaker"))
    conc, breaker = (
        parse_policy(section(name, field_names(cls)), cls, cls())
        for name, cls in (("concurrency", ConcurrencyConfig), ("circuit_breaker", BreakerConfig))
    )
    _check_rates(section("circuit_breaker", field_names(BreakerConfig)), breaker)
    job_types = _job_types(where, top.data.get("job_types"), retry)
    dealers = _dealers(top)
    return Config(
        source=source,
        database_url=url or default_database_url(),
        concurrency=conc,
        retry=retry,
        circuit_breaker=breaker,
        job_types=job_types,
        dealers=dealers,
        demo=_demo(section("demo", field_names(DemoConfig))),
        schedules=parse_schedules(where, top.data.get("schedules"), [d.id for d in dealers],
                                  list(job_types)),
        retention=parse_retention(section("retention", RETENTION_KEYS)),
    )


def _refuse_old_breaker_keys(where: str, raw: Any) -> None:
    for old, new in _OLD_BREAKER_KEYS.items():
        if isinstance(raw, dict) and old in raw:
            fail(where, f"circuit_breaker.{old}", f"= {show(raw[old])} is no longer read: "
                  f"breakers open on a failure rate now, so set {new} instead")


def _check_rates(table: Table, cfg: BreakerConfig) -> None:
    for name in ("dealer_failure_rate", "type_failure_rate"):
        if getattr(cfg, name) > 1:
            table.fail(name, f"must be a share between 0 and 1, not {getattr(cfg, name):g}")


def _check_backoff(table: Table, policy: RetryPolicy) -> None:
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
        fail(where, "job_types", f"must be a table of [job_types.NAME] tables, not {show(raw)}")
    result: dict[str, JobTypeConfig] = {}
    for name, value in raw.items():
        if not JOB_TYPE_NAME_RE.fullmatch(name):
            fail(where, f"job_types.{name}", f"is not a valid name ({JOB_TYPE_NAME_RE.pattern})")
        table = Table(where, f"job_types.{name}", value, _JOB_KEYS + field_names(RetryPolicy))
        policy = parse_policy(table, RetryPolicy, retry)
        _check_backoff(table, policy)
        codes = table.get("retry_exit_codes", "a list of exit codes from 1 to 255", [])
        result[name] = JobTypeConfig(
            name=name,
            priority=table.get("priority", "an integer"),
            depends_on=tuple(table.get("depends_on", "a list of strings", [])),
            handler=parse_handler(table),
            timeout_s=table.number("timeout_s", "a finite number", 300.0),
            retry=policy,
            retry_exit_codes=tuple(sorted(set(codes))),
        )
    for jt in result.values():
        for dep in jt.depends_on:
            if dep not in result:
                text = f"names unknown job type {dep!r} (known: {', '.join(sorted(result))})"
                fail(where, f"job_types.{jt.name}.depends_on", text)
    try:
        edges = nx.find_cycle(type_graph(result))
    except nx.NetworkXNoCycle:
        return result
    # Edges run parent -> child; show the cycle in `depends_on` order from its smallest name.
    cycle = [child for _parent, child in edges][::-1]
    cycle = cycle[cycle.index(min(cycle)) :] + cycle[: cycle.index(min(cycle))]
    text = f"makes a dependency cycle: {' -> '.join([*cycle, cycle[0]])}"
    fail(where, f"job_types.{cycle[0]}.depends_on", text)



def _dealers(top: Table) -> tuple[DealerConfig, ...]:
    seen: dict[str, int] = {}
    for index, item in enumerate(top.get("dealers", "an array of tables ([[dealers]])", [])):
        table = Table(top.where, f"dealers[{index}]", item, ("id", "name"))
        dealer_id = table.get("id", "a string")
        if not is_valid_dealer_id(dealer_id):
            table.fail(
                "id", f"{show(dealer_id)} is not a valid dealer id ({DEALER_ID_RE.pattern})"
            )
        if dealer_id in seen:
            table.fail("id", f"{show(dealer_id)} repeats dealers[{seen[dealer_id]}].id")
        seen[dealer_id] = index
        name = table.get("name", "a string", None)
        if dealer_name_problem(name) is not None:
            table.fail("name", f"must not contain control characters or terminal escapes, "
                               f"not {name!r}")
    return tuple(DealerConfig(d["id"], d.get("name")) for d in top.data.get("dealers", []))


def _demo(table: Table) -> DemoConfig:
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
            table.fail("failing_dealers", f"has {show(dealer_id)}, which is not a valid dealer id")
    return DemoConfig(table.get("seed", "an integer", None), low, high, rate, failing)
