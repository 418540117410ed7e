"""dealertui.config: where the config comes from — the search order (--config,
$DEALERTUI_CONFIG, the working directory, the user's config directory), relative paths, and
named configs that do not exist or are directories.

Every test passes an explicit `env` and `cwd`, so neither the user's own config nor their
DEALERTUI_* variables are ever read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from configcase import assert_one_sentence, write

from dealertui.config import find_config_path, load_config
from dealertui.errors import ConfigError

# --- where the config comes from ---------------------------------------------------------


@pytest.fixture
def four_places(tmp_path: Path, env: dict[str, str]) -> dict[str, Path]:
    """A config file in each place of the search order."""
    return {
        "flag": write(tmp_path, "", "flag.toml"),
        "env": write(tmp_path, "", "env.toml"),
        "cwd": write(tmp_path, "", "work/dealertui.toml"),
        "user": write(Path(env["XDG_CONFIG_HOME"]), "", "dealertui/config.toml"),
    }


def test_search_order(tmp_path: Path, env: dict[str, str], four_places: dict[str, Path]) -> None:
    work = tmp_path / "work"
    with_var = {**env, "DEALERTUI_CONFIG": str(four_places["env"])}
    assert find_config_path(four_places["flag"], with_var, work) == four_places["flag"]
    assert find_config_path(None, with_var, work) == four_places["env"]
    assert find_config_path(None, env, work) == four_places["cwd"]
    assert find_config_path(None, env, tmp_path) == four_places["user"]
    assert find_config_path(None, {**env, "DEALERTUI_CONFIG": ""}, tmp_path) == four_places["user"]
    four_places["user"].unlink()
    assert find_config_path(None, env, tmp_path) is None
    assert load_config(four_places["flag"], env=with_var, cwd=work).source == four_places["flag"]
    assert load_config(None, env=with_var, cwd=work).source == four_places["env"]


def test_relative_config_path_is_relative_to_cwd(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path, "", "sub/my.toml")
    assert find_config_path("sub/my.toml", env, tmp_path) == path


def test_user_config_falls_back_to_home_dot_config(tmp_path: Path) -> None:
    path = write(tmp_path / "home", "", ".config/dealertui/config.toml")
    assert find_config_path(None, {"HOME": str(tmp_path / "home")}, tmp_path) == path


@pytest.mark.parametrize(("use_flag", "origin"), [(True, "--config"), (False, "$DEALERTUI_CONFIG")])
def test_named_config_that_does_not_exist(
    tmp_path: Path, env: dict[str, str], use_flag: bool, origin: str
) -> None:
    missing = tmp_path / "nope.toml"
    variables = env if use_flag else {**env, "DEALERTUI_CONFIG": str(missing)}
    explicit = missing if use_flag else None
    with pytest.raises(ConfigError) as info:
        find_config_path(explicit, variables, tmp_path)
    assert origin in str(info.value) and str(missing) in str(info.value)
    assert "does not exist" in str(info.value)
    assert_one_sentence(str(info.value))


def test_config_path_that_is_a_directory(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="which is a directory, not a file"):
        load_config(tmp_path, env=env)
