"""Dealers leave: disable, enable, remove; dealers the config dropped; dead workers age out;
and the small truths of issue #13 (audited adds and renames, names without escapes, ranges).

Store tests run on both backends (``db_url``); CLI tests call ``dealertui.cli.main``
in-process with a clean environment (no DEALERTUI_* variable, XDG directories and cwd in
``tmp_path``), on both backends too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import storeops
from helpers import run_cli, show
from sqlalchemy import insert, select, update

from dealertui.config import load_config, parse_config
from dealertui.engine.actions import Operator
from dealertui.errors import ConfigError, UsageError
from dealertui.store import JobStore, JobTypeRule
from dealertui.store.dealerops import FORGET_WORKER_AFTER_S
from dealertui.store.schema import dealers as dealers_table
from dealertui.store.schema import job_deps, job_events, jobs, workers

RULES = {"homenet": JobTypeRule(1, ()), "dealer_com": JobTypeRule(2, ("homenet",))}
CONFIG = parse_config({}, None)
TWO_TYPES = ("--type", "homenet", "--type", "dealer_com")  # of the built-in four

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """`dealertui [--config F] --database-url URL ARGS…` in-process: (exit code, out, err)."""

    def run(url: str, *args: str, config: Path | None = None) -> tuple[int, str, str]:
        head = ["--config", str(config)] if config is not None else []
        p = run_cli(tmp_path, *head, "--database-url", url, *args)
        assert "Traceback" not in p.stderr, show(p)
        return p.returncode, p.stdout, p.stderr

    return run


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, (code, out, err)
    return out


def refused(result: tuple[int, str, str], code: int = 2) -> str:
    """The one-sentence error of a refused command (nothing on stdout)."""
    got, out, err = result
    assert got == code, (got, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dealertui: error: "), err
    assert lines[0].endswith("."), err
    return lines[0]


def store_of(url: str, **kw: Any) -> Any:
    return JobStore.open(url, RULES, **kw)


async def _count(store: JobStore, table: Any, *where: Any) -> int:
    from sqlalchemy import func

    async def tx(conn: Any) -> int:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where)))
                   .scalar())

    return await store.db.run(tx, write=False)


# -- disable / enable -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_disabled_dealer_keeps_its_jobs_and_none_is_claimed(db_url: str) -> None:
    store = await store_of(db_url)
    try:
        op = Operator(store, CONFIG, who="tester@host")
        await op.add_dealers([("d1", None), ("d2", None)])
        await op.enqueue(["d1", "d2"])
        assert await op.set_dealer_disabled("d1", True) is True
        assert await op.set_dealer_disabled("d1", True) is False  # already: no second audit
        claimed = await store.claim("w1", 100, per_dealer=10, lease_s=60)
        assert {j.dealer_id for j in claimed.jobs} == {"d2"}
        assert {j.state for j in await store.list_jobs(dealer_id="d1")} == {"ready", "waiting"}
        listed = {d.id: d.disabled_at for d in await store.list_dealers()}
        assert listed["d1"] is not None and listed["d2"] is None
        assert (await store.status())["disabled_dealers"] == ["d1"]

        assert await op.set_dealer_disabled("d1", False) is True
        claimed = await store.claim("w1", 100, per_dealer=10, lease_s=60)
        assert {j.dealer_id for j in claimed.jobs} == {"d1"}
        actions = [e["action"] for e in await store.audit_entries()]
        assert actions.count("disable-dealer") == 1 and actions.count("enable-dealer") == 1
        with pytest.raises(UsageError, match="unknown dealer 'nope'"):
            await op.set_dealer_disabled("nope", True)
    finally:
        await store.close()


def test_enqueue_skips_disabled_dealers_and_refuses_one_by_name(db_url: str, cli: Cli) -> None:
    for d in ("d1", "d2", "d3"):
        ok(cli(db_url, "dealers", "add", d))
    assert ok(cli(db_url, "dealers", "disable", "d2")).strip() == "disabled dealer d2"
    assert "d2\t\tdisabled" in ok(cli(db_url, "dealers", "list")).splitlines()
    listed = json.loads(ok(cli(db_url, "dealers", "list", "--json")))
    assert [d["disabled"] for d in listed] == [False, True, False]

    out = ok(cli(db_url, "enqueue", "--all-dealers", "--type", "homenet"))
    assert "enqueued 2 jobs" in out and "skipped 1 disabled dealer: d2" in out
    line = refused(cli(db_url, "enqueue", "--dealer", "d1", "--dealer", "d2"))
    assert "dealer d2 is disabled" in line and "dealers enable d2" in line
    status = json.loads(ok(cli(db_url, "status", "--json")))
    assert status["total"] == 2  # the refused enqueue wrote nothing, d1's pipeline neither
    assert status["disabled_dealers"] == ["d2"]
    assert "disabled (kept, never claimed): d2" in ok(cli(db_url, "status"))

    ok(cli(db_url, "dealers", "disable", "d1"))
    ok(cli(db_url, "dealers", "disable", "d3"))
    assert "every dealer is disabled" in refused(cli(db_url, "enqueue", "--all-dealers"))
    assert ok(cli(db_url, "dealers", "enable", "d3")).strip() == "enabled dealer d3"
    assert "already" in ok(cli(db_url, "dealers", "enable", "d3"))


# -- remove ---------------------------------------------------------------------------------


def test_remove_is_refused_while_jobs_run_or_wait(db_url: str, cli: Cli) -> None:
    ok(cli(db_url, "dealers", "add", "d1", "--name", "One"))
    ok(cli(db_url, "dealers", "add", "d2"))
    ok(cli(db_url, "enqueue", "--dealer", "d1", "--dealer", "d2", *TWO_TYPES))

    line = refused(cli(db_url, "dealers", "remove", "d1"))
    assert "dealer d1 has 2 unfinished jobs" in line and "--cancel-pending" in line

    async def claim_d1() -> None:
        store = await store_of(db_url)
        try:
            got = await store.claim("w1", 10, per_dealer=10, lease_s=600, only_dealers=["d1"])
            assert [j.job_type for j in got.jobs] == ["homenet"]
        finally:
            await store.close()

    anyio.run(claim_d1)
    line = refused(cli(db_url, "dealers", "remove", "d1", "--cancel-pending"))
    assert "dealer d1 has 1 running job" in line
    assert "d1\tOne" in ok(cli(db_url, "dealers", "list"))
    assert "unknown dealer 'zz'" in refused(cli(db_url, "dealers", "remove", "zz"))


def test_remove_with_cancel_pending_takes_jobs_edges_events_and_keeps_the_audit(
    db_url: str, cli: Cli
) -> None:
    ok(cli(db_url, "dealers", "add", "d1"))
    ok(cli(db_url, "dealers", "add", "d2"))
    ok(cli(db_url, "enqueue", "--all-dealers", *TWO_TYPES))
    ok(cli(db_url, "pause", "--dealer", "d1", "--reason", "feed down"))

    out = ok(cli(db_url, "dealers", "remove", "d1", "--cancel-pending"))
    assert out.strip().startswith("removed dealer d1 and 2 jobs, 2 of them cancelled first")

    async def left() -> dict[str, int]:
        store = await store_of(db_url, create=False)
        try:
            return {
                "dealers": await _count(store, dealers_table, dealers_table.c.id == "d1"),
                "jobs": await _count(store, jobs, jobs.c.dealer_id == "d1"),
                "events": await _count(store, job_events, job_events.c.dealer_id == "d1"),
                "deps": await _count(store, job_deps),
                "d2_jobs": await _count(store, jobs, jobs.c.dealer_id == "d2"),
            }
        finally:
            await store.close()

    # d2's own edge (dealer_com -> homenet) stays; d1's went with its jobs
    assert anyio.run(left) == {"dealers": 0, "jobs": 0, "events": 0, "deps": 1, "d2_jobs": 2}
    status = json.loads(ok(cli(db_url, "status", "--json")))
    assert "d1" not in status["by_dealer"] and status["paused"]["dealers"] == []
    audit = json.loads(ok(cli(db_url, "audit", "--json")))
    by_action = {e["action"]: e for e in audit}
    assert by_action["remove-dealer"]["target"] == "dealer d1"
    assert by_action["remove-dealer"]["count"] == 2
    assert by_action["cancel"]["reason"] == "dealers remove --cancel-pending"
    # the earlier actions naming d1 stay
    assert by_action["pause"]["target"] == "dealer d1" and "add-dealer" in by_action
    # gone for good: the id can be a new dealer, with no jobs of the old one
    ok(cli(db_url, "dealers", "add", "d1"))
    assert json.loads(ok(cli(db_url, "status", "--json")))["by_dealer"]["d1"]["ready"] == 0


def test_a_dealer_the_config_lists_is_not_removed(db_url: str, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('[[dealers]]\nid = "d1"\n')
    ok(cli(db_url, "init-db", config=config))
    line = refused(cli(db_url, "dealers", "remove", "d1", config=config))
    assert "listed under [[dealers]]" in line and str(config) in line


# -- dealers the config no longer names -----------------------------------------------------


def test_status_and_health_name_dealers_the_config_dropped(
    db_url: str, cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('[[dealers]]\nid = "d1"\n[[dealers]]\nid = "d2"\n')
    ok(cli(db_url, "init-db", config=config))
    both = json.loads(ok(cli(db_url, "status", "--json", config=config)))
    assert both["dealers_not_in_config"] == []
    config.write_text('[[dealers]]\nid = "d1"\n')

    status = json.loads(ok(cli(db_url, "status", "--json", config=config)))
    assert status["dealers_not_in_config"] == ["d2"]
    assert "not in the config" in ok(cli(db_url, "status", config=config))
    code, out, _ = cli(db_url, "health", "--detailed", config=config)
    assert code == 0, out  # said, not judged
    line = next(x for x in out.splitlines() if "config_dealers" in x)
    assert "1 dealer in the database is not in the config" in line and "d2" in line
    checks = json.loads(ok(cli(db_url, "health", "--json", config=config)))["checks"]
    assert [c["name"] for c in checks][-1] == "config_dealers"
    # a config that names no dealers leaves them all to `dealers add`: nothing to say
    assert json.loads(ok(cli(db_url, "status", "--json")))["dealers_not_in_config"] == []
    names = [c["name"] for c in json.loads(ok(cli(db_url, "health", "--json")))["checks"]]
    assert "config_dealers" not in names


# -- workers age out ------------------------------------------------------------------------


def test_status_marks_workers_alive_within_their_lease(db_url: str, cli: Cli) -> None:
    ok(cli(db_url, "init-db"))

    async def register() -> None:
        store = await store_of(db_url)
        try:
            await store.register_worker("fresh", host="h", pid=1, kind="worker")
            await store.register_worker("silent", host="h", pid=2, kind="worker")

            async def tx(conn: Any) -> None:
                lease_s = CONFIG.concurrency.lease_s
                await conn.execute(update(workers).where(workers.c.id == "silent")
                                   .values(heartbeat_at=time.time() - 2 * lease_s))

            await store.db.run(tx)
        finally:
            await store.close()

    anyio.run(register)
    status = json.loads(ok(cli(db_url, "status", "--json")))
    assert {w["id"]: w["alive"] for w in status["workers"]} == {"fresh": True, "silent": False}


@pytest.mark.anyio
async def test_the_lease_rescue_forgets_workers_silent_for_a_day(db_url: str) -> None:
    now = [1_000_000.0]
    store = await store_of(db_url, clock=lambda: now[0])
    try:
        await store.add_dealers([("d1", None)])
        await store.enqueue(["d1"], ["homenet"])
        await store.register_worker("dead", host="h", pid=1, kind="worker")
        await store.register_worker("stopped", host="h", pid=2, kind="run-once")
        await store.unregister_worker("stopped")
        claimed = await store.claim("dead", 1, per_dealer=1, lease_s=60)
        now[0] += FORGET_WORKER_AFTER_S - 1
        await store.register_worker("alive", host="h", pid=3, kind="worker")
        rescued = await store.rescue_expired(worker_id="alive")
        assert rescued.changed == [claimed.jobs[0].id]  # its lease, rescued as before
        assert await _count(store, workers) == 3  # silent, but not for a day yet

        now[0] += 2
        await store.rescue_expired(worker_id="alive")
        assert await store.db.run(_ids, write=False) == ["alive"]
        # their rows, not their trail: the events the dead worker wrote stay
        assert "dead" in {e["worker"] for e in await storeops.job_events(store, claimed.jobs[0].id)}
    finally:
        await store.close()


async def _ids(conn: Any) -> list[str]:
    return list((await conn.execute(select(workers.c.id).order_by(workers.c.id))).scalars())


# -- small truths ---------------------------------------------------------------------------


def test_dealers_add_and_rename_are_audited(db_url: str, cli: Cli) -> None:
    ok(cli(db_url, "dealers", "add", "d1", "--name", "Old"))
    ok(cli(db_url, "dealers", "add", "d1", "--name", "New"))
    ok(cli(db_url, "dealers", "add", "d1", "--name", "New"))  # no change: nothing to audit
    ok(cli(db_url, "dealers", "add", "d1"))  # no name given: keeps it
    audit = json.loads(ok(cli(db_url, "audit", "--json")))
    assert [(e["action"], e["target"]) for e in reversed(audit)] == [
        ("add-dealer", "dealer d1"), ("rename-dealer", "dealer d1: 'Old' -> 'New'"),
    ]
    assert audit[0]["who"] and audit[0]["count"] == 0


@pytest.mark.parametrize("name", ["evil\x1b[2J", "bell\x07", "nl\nx", "rtl\u202eabc",
                                  "c1\x9b31m"])
def test_dealer_names_with_control_characters_are_refused(
    db_url: str, cli: Cli, tmp_path: Path, name: str
) -> None:
    line = refused(cli(db_url, "dealers", "add", "d1", "--name", name))
    assert "invalid dealer name" in line and "\x1b" not in line and "\n" not in line.strip()
    if db_url.startswith("sqlite"):  # refused before the database is opened
        assert not list(tmp_path.glob("t.db*"))
    ok(cli(db_url, "dealers", "add", "d1", "--name", "Café Müller & Söhne"))
    assert refused(cli(db_url, "dealers", "add", "d1", "--name", name)).startswith(
        "dealertui: error: invalid dealer name")
    assert "d1\tCafé Müller & Söhne" in ok(cli(db_url, "dealers", "list"))


def test_the_store_refuses_them_too_and_shows_stored_ones_escaped(
    db_url: str, cli: Cli
) -> None:
    async def setup() -> None:
        store = await store_of(db_url)
        try:
            with pytest.raises(UsageError, match="invalid dealer name"):
                await store.add_dealers([("d1", "x\x1b]0;pwned\x07")])

            async def tx(conn: Any) -> None:  # stored by an older release, before the check
                await conn.execute(insert(dealers_table).values(
                    id="d1", name="x\x1b]0;pwned\x07", created_at=0.0, last_served_at=0.0))

            await store.db.run(tx)
        finally:
            await store.close()

    anyio.run(setup)
    out = ok(cli(db_url, "dealers", "list"))
    assert "\x1b" not in out and "\x07" not in out
    assert out.strip() == "d1\tx\\x1b]0;pwned\\x07"


def test_a_config_dealer_name_with_an_escape_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[dealers]]\nid = "d1"\nname = "a\\u001b[31m"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message and "dealers[0].name must not contain control characters" in message
    assert "\x1b" not in message


def test_heartbeat_within_zero_is_refused(db_url: str, cli: Cli) -> None:
    line = refused(cli(db_url, "health", "--heartbeat-within", "0"))
    assert "--heartbeat-within must be more than 0" in line


@pytest.mark.parametrize(("key", "value", "low"), [
    ("concurrency.max_concurrent_dealers", "3000000000", 1),
    ("concurrency.max_concurrent_dealers", "-3000000000", 1),
    ("retry.max_attempts", "99999999999", 1),
])
def test_a_positive_key_out_of_range_names_its_real_range(
    tmp_path: Path, key: str, value: str, low: int
) -> None:
    section, name = key.split(".")
    path = tmp_path / "bad.toml"
    path.write_text(f"[{section}]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert f"{key} must be between {low} and 2147483647, not {value}" in str(info.value)
    assert "-2147483648" not in str(info.value)


def test_the_console_lane_shows_a_disabled_dealer() -> None:
    from dealertui.store.reads import ConsoleSnapshot
    from dealertui.tui.widgets import LanesTable

    table = LanesTable(["homenet"])
    snap = ConsoleSnapshot(0.0, [("d1", None), ("d2", None)], {}, {}, [], set(), [],
                           disabled={"d1"})
    off, on = (table.row_values(snap, d)[0] for d in ("d1", "d2"))
    assert "⊘" in off.plain and "⊘" not in on.plain
    assert table.row_key(snap, "d1") != table.row_key(snap, "d2")
