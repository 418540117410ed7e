"""Lists of ids as ONE bound parameter, for the hot statements.

SQLAlchemy's expanding `IN :ids` renders one placeholder per id, so a batch of 1,000 jobs is
a statement with 1,000 parameters whose text changes with the batch size. Its cost, in
`dealertui bench` (10,000 jobs): on Postgres every such statement is a new
prepared statement to parse and plan (asyncpg caches by text, so it never hits), and on both
backends SQLAlchemy renders and binds the list on every execution (~62,000 name renders per
run). One parameter holding the whole list keeps the text fixed:

- Postgres: `col = ANY(:ids)` with a Python list (asyncpg sends an array);
- SQLite: `col IN (SELECT value FROM json_each(:ids))` with the list as JSON text.

Used where batches are large and frequent (claim, finish, promotion, events); elsewhere the
plain expanding form stays, it reads better.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection


def _dialect(on: AsyncConnection | str) -> str:
    return on if isinstance(on, str) else on.dialect.name


def in_list(on: AsyncConnection | str, column: str, name: str = "ids") -> str:
    """The SQL condition "*column* is one of the list bound as :*name*" (*on*: a connection
    or a dialect name)."""
    if _dialect(on) == "postgresql":
        return f"{column} = ANY(:{name})"
    return f"{column} IN (SELECT value FROM json_each(:{name}))"


def list_value(on: AsyncConnection | str, values: Iterable[Any]) -> Any:
    """*values* as the one parameter `in_list` expects."""
    if _dialect(on) == "postgresql":
        return list(values)
    return json.dumps(list(values))


@functools.lru_cache(maxsize=512)
def sql(statement: str) -> TextClause:
    """A text() construct per distinct statement text, made once (texts are per dialect)."""
    return text(statement)


def one_of(on: AsyncConnection | str, column: str, values: Iterable[Any], name: str = "ids") -> Any:
    """A WHERE condition "*column* is one of *values*" with the list bound as one parameter,
    for lists a user can make arbitrarily long (a dealers file, every dealer): an expanding
    IN stops at 32,767 parameters on both backends."""
    return text(in_list(on, column, name)).bindparams(**{name: list_value(on, values)})


def at_claims(on: AsyncConnection | str, table: str = "jobs", name: str = "claims") -> str:
    """The SQL condition "the job row of *table* is still at one of the claims bound by
    `claims_params`": its id and its fencing token (claim_seq) both match one claim, so the
    write of a run whose job was claimed again since (cancelled and retried, rescued, reset)
    lands nowhere. The plain id list in front lets both planners find the rows by key."""
    if _dialect(on) == "postgresql":
        return (
            f"{table}.id = ANY(:{name}_ids) AND ({table}.id, {table}.claim_seq) IN ("
            f"SELECT * FROM unnest(CAST(:{name}_ids AS BIGINT[]), "
            f"CAST(:{name}_tokens AS INTEGER[])))"
        )
    return (
        f"{table}.id IN (SELECT value ->> 0 FROM json_each(:{name})) AND "
        f"({table}.id, {table}.claim_seq) IN "
        f"(SELECT value ->> 0, value ->> 1 FROM json_each(:{name}))"
    )


def claims_params(
    on: AsyncConnection | str, claims: Iterable[tuple[int, int]], name: str = "claims"
) -> dict[str, Any]:
    """The parameters `at_claims` expects for (job id, token) pairs."""
    pairs = list(claims)
    if _dialect(on) == "postgresql":
        return {f"{name}_ids": [p[0] for p in pairs], f"{name}_tokens": [p[1] for p in pairs]}
    return {name: json.dumps([[p[0], p[1]] for p in pairs])}
