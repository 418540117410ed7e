"""dealertui.config: the database URL — precedence of flag, environment and file,
normalisation, ~ expanded in SQLite paths, bad URLs refused with the password masked, and a
Config's repr hiding the password.

Every test passes an explicit `env` and `cwd`, so neither the user's own config nor their
DEALERTUI_* variables are ever read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from configcase import assert_one_sentence, config_error, write

from dealertui.config import load_config, normalize_database_url
from dealertui.errors import ConfigError

# --- the database URL --------------------------------------------------------------------


def test_database_url_precedence(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///from_file.db"\n', "db.toml")
    from_env = {**env, "DEALERTUI_DATABASE_URL": "postgres://u@envhost/db"}
    assert load_config(path, env=env).database_url == "sqlite+aiosqlite:///from_file.db"
    assert load_config(path, env=from_env).database_url == "postgresql+asyncpg://u@envhost/db"
    flag = load_config(path, env=from_env, database_url="sqlite:////abs/flag.db")
    assert flag.database_url == "sqlite+aiosqlite:////abs/flag.db"
    empty_var = {**env, "DEALERTUI_DATABASE_URL": ""}  # an empty variable counts as unset
    assert load_config(path, env=empty_var).database_url == "sqlite+aiosqlite:///from_file.db"
    no_file = load_config(env=from_env, cwd=tmp_path)
    assert no_file.database_url == "postgresql+asyncpg://u@envhost/db"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("sqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db?ssl=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_normalize_database_url(url: str, normalized: str) -> None:
    assert normalize_database_url(url, "--database-url") == normalized


def test_a_sqlite_path_under_home_is_expanded() -> None:
    # the directory was created under $HOME, but SQLite opened the literal "~/x.db"
    home = os.path.expanduser("~")
    assert normalize_database_url("sqlite:///~/x/t.db", "--database-url") == (
        f"sqlite+aiosqlite:///{home}/x/t.db")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root:hunter2@db/x", "unsupported scheme 'mysql'"),
        ("postgresql+psycopg://u:hunter2@h/db", "unsupported scheme 'postgresql+psycopg'"),
        ("root:hunter2@db/x", "is not a database URL"),
        ("sqlite://relative.db", "has no path"),
        ("sqlite:///:memory:", "names no database file"),
        ("sqlite:///", "names no database file"),
        ("sqlite://", "names no database file"),
        ("postgresql://u:hunter2@h:notaport/db", "is not a valid database URL"),
        ("postgresql://u:hunter2@h:99999/db", "is not a valid database URL"),
        ("", "is not a database URL"),
    ],
)
def test_bad_database_url_is_refused_with_the_password_masked(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_database_url(url, "--database-url")
    message = str(info.value)
    assert message.startswith("--database-url ") and fragment in message
    assert "hunter2" not in message
    assert_one_sentence(message)


def test_bad_database_url_in_file_and_env(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, '[database]\nurl = "mysql://root:hunter2@db/x"\n', "db.toml")
    message = config_error(path, env)
    assert str(path) in message and "database.url" in message
    assert "'mysql://root:***@db/x'" in message and "hunter2" not in message
    bad_env = {**env, "DEALERTUI_DATABASE_URL": "oracle://scott:tiger@h/db"}
    with pytest.raises(ConfigError) as info:
        load_config(env=bad_env, cwd=tmp_path)
    message = str(info.value)
    assert "$DEALERTUI_DATABASE_URL" in message and "'oracle'" in message
    assert "tiger" not in message


def test_repr_of_config_hides_the_password(tmp_path: Path, env: dict[str, str]) -> None:
    config = load_config(env=env, cwd=tmp_path, database_url="postgresql://u:secret@h/db")
    assert "secret" not in repr(config) and "u:***@h" in repr(config)
