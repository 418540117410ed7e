"""The CLI contract of docs/design.md for setting up: init-db (twice is fine), dealers add and
list (invalid ids refused), enqueue (named or all dealers, single types linked to their
prerequisite runs, unknown names refused).

`dealertui.cli.main` runs in-process, each call with the test's environment minus every
``DEALERTUI_*`` variable, XDG directories inside ``tmp_path`` and ``cwd=tmp_path``
(tests/helpers.py), so no stray config file or database URL is picked up. Every
database-backed test runs on SQLite and on Postgres (``db_url``).
"""

from __future__ import annotations

from pathlib import Path

from clirun import Cli, counts, ok, run, zeros
from helpers import one_error

# --- init-db -------------------------------------------------------------------------------


def test_init_db_twice(cli: Cli) -> None:
    from sqlalchemy.engine import make_url

    first = ok(cli("init-db"))
    assert "database ready" in first.stdout
    second = ok(cli("init-db"))
    assert "database ready" in second.stdout
    password = make_url(cli.db_url).password
    if password:
        assert str(password) not in first.stdout + first.stderr
    assert cli.status()["total"] == 0


# --- dealers -------------------------------------------------------------------------------


def test_dealers_add_and_list(cli: Cli) -> None:
    ok(cli("init-db"))
    assert ok(cli("dealers", "list")).stdout.strip() == ""
    assert "d1" in ok(cli("dealers", "add", "d1", "--name", "First Motors")).stdout
    ok(cli("dealers", "add", "d2"))
    listed = ok(cli("dealers", "list")).stdout
    assert "d1" in listed and "First Motors" in listed and "d2" in listed
    assert cli.dealers() == [
        {"id": "d1", "name": "First Motors", "disabled": False},
        {"id": "d2", "name": None, "disabled": False},
    ]
    # adding again renames, never duplicates
    ok(cli("dealers", "add", "d1", "--name", "Renamed"))
    assert [(d["id"], d["name"]) for d in cli.dealers()] == [("d1", "Renamed"), ("d2", None)]


def test_dealers_add_invalid_id(cli: Cli) -> None:
    ok(cli("dealers", "add", "a" * 64))  # the longest id allowed
    for args, shown in [
        (["bad id"], "'bad id'"),
        (["--", "-x"], "'-x'"),
        (["a" * 65], "'" + "a" * 65 + "'"),
        (["d1/../x"], "'d1/../x'"),
    ]:
        line = one_error(cli("dealers", "add", *args), 2, shown)
        assert "invalid dealer id" in line
    assert [d["id"] for d in cli.dealers()] == ["a" * 64]  # nothing written


def test_dealers_add_dash_id_without_separator(tmp_path: Path) -> None:
    # argparse takes '-x' for an option and would only say the ID is missing
    one_error(run(tmp_path, "dealers", "add", "-x", db_url=f"sqlite:///{tmp_path}/t.db"), 2, "-x")
    one_error(run(tmp_path, "dealers", "add", "--name", "X", "-x",
                   db_url=f"sqlite:///{tmp_path}/t.db"), 2, "-x")


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_named_dealers(cli: Cli) -> None:
    cli.add_dealers("d1", "d2", "d3")
    p = ok(cli("enqueue", "--dealer", "d1", "--dealer", "d2"))
    assert "8" in p.stdout
    st = cli.status()
    assert st["total"] == 8
    assert st["by_dealer"]["d1"] == counts(ready=1, waiting=3)
    assert st["by_dealer"]["d2"] == counts(ready=1, waiting=3)
    assert st["by_dealer"]["d3"] == zeros()


def test_enqueue_all_dealers(cli: Cli) -> None:
    one_error(cli("enqueue", "--all-dealers"), 2, "no dealers")
    cli.add_dealers("d1", "d2", "d3")
    ok(cli("enqueue", "--all-dealers"))
    st = cli.status()
    assert st["total"] == 12
    assert st["by_state"] == counts(ready=3, waiting=9)
    assert set(st["by_dealer"]) == {"d1", "d2", "d3"}


def test_enqueue_single_type_links_to_prerequisite_runs(cli: Cli) -> None:
    cli.add_dealers("d1", "d2")
    # d1 never ran homenet: its dealer_com is blocked, and the output says why
    p = ok(cli("enqueue", "--dealer", "d1", "--type", "dealer_com"))
    assert "blocked" in p.stdout
    assert "no successful homenet run" in p.stdout
    # d2 has a homenet job underway: its dealer_com waits for it
    ok(cli("enqueue", "--dealer", "d2", "--type", "homenet"))
    p = ok(cli("enqueue", "--dealer", "d2", "--type", "dealer_com"))
    assert "blocked" not in p.stdout
    st = cli.status()
    assert st["total"] == 3
    assert st["by_dealer"]["d1"] == counts(blocked=1)
    assert st["by_dealer"]["d2"] == counts(ready=1, waiting=1)
    assert st["by_type"]["dealer_com"] == counts(blocked=1, waiting=1)


def test_enqueue_refuses_unknown_names(cli: Cli) -> None:
    cli.add_dealers("d1")
    one_error(cli("enqueue", "--dealer", "d1", "--dealer", "ghost"), 2, "'ghost'")
    one_error(cli("enqueue", "--dealer", "bad id"), 2, "'bad id'")
    line = one_error(cli("enqueue", "--dealer", "d1", "--type", "nosuch"), 2, "'nosuch'")
    assert "homenet" in line  # names the known types
    assert cli.status()["total"] == 0  # all or nothing
