"""Database URLs: the default, the SQLAlchemy async form of what a user wrote, and a masked
form for messages and logs."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from dealertui.errors import ConfigError
from dealertui.masking import mask_url


def default_database_url() -> str:
    """SQLite in the user's data directory (the store creates the directory, not this)."""
    path = Path(platformdirs.user_data_dir("dealertui", appauthor=False)) / "dealertui.db"
    return f"sqlite+aiosqlite:///{path}"


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
