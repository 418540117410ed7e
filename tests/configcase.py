"""Helpers for the dealertui.config tests (tests/test_config_*.py, test_database_url.py): the
repository root, writing a config file, and catching the one-sentence ConfigError (the clean
`env` fixture they share is in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dealertui.config import load_config
from dealertui.errors import ConfigError

ROOT = Path(__file__).parents[1]


def write(directory: Path, text: str, name: str = "bad.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env, cwd=path.parent, **kwargs)
    message = str(info.value)
    assert_one_sentence(message)
    return message


def assert_one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message, message
