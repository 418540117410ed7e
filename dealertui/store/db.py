"""Database: one engine (store/engines.py), two kinds of transaction (read, write), each
retried as a whole on transient faults; faults that no retry cures become one sentence.

A writer on SQLite takes `BEGIN IMMEDIATE` (see engines.py) and, within one process, an
in-process lock first.
"""

from __future__ import annotations

import copy
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from dealertui.errors import StoreUnavailable
from dealertui.store.engines import (
    SQLITE_BUSY_TIMEOUT_MS,
    create_engine,
    describe_url,
    is_sqlite,
    sqlite_path,
)
from dealertui.store.readonly import not_writable_reason, read_uri, writable

T = TypeVar("T")

#: how long calls must have been failing before Database.on_outage hears of it (shorter
#: blips, such as another process holding the SQLite write lock, are normal)
OUTAGE_REPORT_S = 1.0

# SQLSTATE classes that mean "try again on a fresh connection": connection exceptions (08),
# admin/crash shutdown and "cannot connect now" (57P0x), serialization failure and deadlock.
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "53300")
# SQLSTATEs that no retry cures but that say the database cannot be used as configured: a
# wrong password or role (28), no such database (3D000) or schema (3F000), no privilege
# (42501), a read-only standby (25006), disk full or out of memory (53), I/O errors (58),
# corruption (XX001, XX002). They end in one sentence (StoreUnavailable), not a traceback.
_UNUSABLE_SQLSTATES = ("28", "3D000", "3F000", "42501", "25006", "53", "58", "XX001", "XX002")
# The same for SQLite (primary result codes): no permission, a read-only file or directory,
# a damaged file, a full disk, not a database. Retried, "attempt to write a readonly
# database" would spin a worker ~150 times a second; they end in one sentence too.
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 3, 8, 11, 13, 26
_UNUSABLE_SQLITE = (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return seen


def is_transient(exc: BaseException) -> bool:
    """True for faults that a retry on a fresh connection can cure."""
    for e in _chain(exc):
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlite3.OperationalError):
            msg = str(e).lower()
            if "locked" in msg or "busy" in msg:
                return True
        if _sqlstate(e).startswith(_TRANSIENT_SQLSTATES):
            return True
        if isinstance(e, ConnectionError | TimeoutError):
            return True
        name = type(e).__name__
        if name in {"ConnectionDoesNotExistError", "CannotConnectNowError", "InterfaceError"} and (
            type(e).__module__.startswith("asyncpg")
        ):
            return True
    return False


def _sqlstate(e: BaseException) -> str:
    code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
    return code if isinstance(code, str) else ""


def is_unusable(exc: BaseException) -> bool:
    """True for faults that mean the database cannot be used as configured (no retry)."""
    return any(_sqlstate(e).startswith(_UNUSABLE_SQLSTATES) or _sqlite_code(e) in _UNUSABLE_SQLITE
               for e in _chain(exc))


def _sqlite_code(e: BaseException) -> int | None:
    """The primary SQLite result code of *e* (extended codes carry it in the low byte)."""
    code = getattr(e, "sqlite_errorcode", None) if isinstance(e, sqlite3.Error) else None
    return code & 0xFF if isinstance(code, int) else None


class Database:
    """One engine, two kinds of transaction (read, write), both retried on transient faults."""

    def __init__(self, url: str, *, retry_budget_s: float = 10.0, create: bool = True,
                 read_only: bool = False) -> None:
        self.url = url
        self.dialect = "sqlite" if is_sqlite(url) else "postgresql"
        #: only reads will be made (status, health, the read-only console): a SQLite file
        #: this user cannot write is read without creating anything beside it
        self.read_only = read_only
        self.engine = create_engine(url, make_dirs=create and not read_only, read_only=read_only)
        self._write_engine = self.engine.execution_options(dealertui_write=True)
        self.retry_budget_s = retry_budget_s
        self.url_description = describe_url(url)
        self.preview = False  # see rolling_back()
        #: told (one sentence) when the database has been failing for OUTAGE_REPORT_S while
        #: calls keep retrying, and again when it answers: the worker logs both, so an outage
        #: shorter than the retry budget does not pass in silence
        self.on_outage: Callable[[str], None] | None = None
        self._failing_since: float | None = None
        self._outage_reported = False
        # SQLite has one writer at a time. Two of our own connections racing for it would
        # meet in SQLite's busy handler, which sleeps in steps of up to 25 ms; an in-process
        # lock hands the write lock over at once (other processes still meet busy_timeout).
        self._write_lock = anyio.Lock() if self.is_sqlite else None

    async def preflight(self, create: bool = True) -> None:
        """Open a SQLite file once in a thread before the pool does.

        When aiosqlite fails to open a file, its worker thread may report the error to an
        event loop that has already closed and print a traceback; checking first keeps the
        user's error to one sentence. Unless *create*, a missing file is that error (opening
        it would create it: a read-only command must not leave an empty file for a typo).
        """
        path = sqlite_path(self.url)
        if path is None:
            return

        def probe() -> None:
            if not create and not os.path.exists(path):
                raise StoreUnavailable(
                    f"the database {self.url_description} does not exist; run 'dealertui "
                    "init-db' first (or check the path)."
                )
            uri = read_uri(path) if self.read_only else ""
            conn = sqlite3.connect(uri or path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                   uri=bool(uri))
            try:
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                conn.close()
            if tables and "meta" not in tables:
                # before any connection of ours sets WAL (for good) on another application's
                # file; the store's own check (init_schema) would come too late
                raise self.foreign(tables)

        try:
            await anyio.to_thread.run_sync(probe)
        except sqlite3.Error as exc:
            if is_transient(exc):
                return  # busy: the retried transactions will wait for it
            raise self.unavailable(exc) from None

    async def sqlite_script(self, script: str) -> bool:
        """Run *script* to its end on a SQLite connection of its own, holding this process's
        write lock: pysqlite steps a statement without result columns once, and `PRAGMA
        incremental_vacuum(N)` frees one page per step, so through the pool it would free
        one page, not N; executescript steps each statement until it is done. False when
        another process held the database past busy_timeout (nothing done; try later)."""
        path = sqlite_path(self.url)
        if path is None or self._write_lock is None or self.preview:
            return False

        def run() -> None:
            conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None)
            try:
                conn.executescript(script)
            finally:
                conn.close()

        try:
            async with self._write_lock:
                await anyio.to_thread.run_sync(run)
        except sqlite3.Error as exc:
            if is_transient(exc):
                return False
            raise self.unavailable(exc) from None
        return True

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def dispose(self) -> None:
        await self.engine.dispose()

    def rolling_back(self) -> Database:
        """A view of this database whose write transactions always roll back (previews)."""
        view = copy.copy(self)
        view.preview = True
        return view

    @asynccontextmanager
    async def _begin(self, write: bool) -> AsyncIterator[AsyncConnection]:
        if write and self._write_lock is not None:
            async with self._write_lock, self._write_engine.begin() as conn:
                yield conn
            return
        engine = self._write_engine if write else self.engine
        async with engine.begin() as conn:
            yield conn

    async def run(
        self,
        fn: Callable[[AsyncConnection], Awaitable[T]],
        *,
        write: bool = True,
        budget_s: float | None = None,
    ) -> T:
        """Run *fn* in one transaction; retry the whole transaction on transient faults.

        A fault that outlasts the retry budget, or that is not transient but still means the
        database cannot be used (unreachable, unwritable, wrong password), becomes
        StoreUnavailable with one sentence naming the database.
        """
        budget = self.retry_budget_s if budget_s is None else budget_s
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_transient),
                # exponential from 20 ms, capped at 1 s, plus up to 50 ms of jitter (spelled
                # so that tenacity 8 and 9 both accept it without a DeprecationWarning)
                wait=wait_exponential(multiplier=0.02, max=1.0) + wait_random(0, 0.05),
                stop=stop_after_delay(budget),
                reraise=True,
                before_sleep=lambda state: self._failing(state, budget),
            ):
                with attempt:
                    async with self._begin(write) as conn:
                        result = await fn(conn)
                        if write and self.preview:
                            await conn.rollback()
                    self._answered()
                    return result
        except (OperationalError, InterfaceError, OSError) as exc:
            self._failed()
            raise self.unavailable(exc) from None
        except DBAPIError as exc:
            if is_transient(exc) or is_unusable(exc):
                self._failed()
                raise self.unavailable(exc) from None
            raise
        raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying reraises

    def _failing(self, state: RetryCallState, budget: float) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if (self.on_outage is not None and not self._outage_reported
                and now - self._failing_since >= OUTAGE_REPORT_S and state.outcome is not None):
            self._outage_reported = True
            exc = state.outcome.exception()
            reason = self.unavailable(exc) if exc is not None else "no answer"
            self.on_outage(f"{reason} Retrying (each call for up to {budget:g}s).")

    def foreign(self, tables: set[str]) -> StoreUnavailable:
        """The refusal of a database that holds another application's *tables*."""
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        return StoreUnavailable(
            f"the database {self.url_description} holds tables that are not dealertui's "
            f"({shown}); give dealertui a database of its own."
        )

    @property
    def answering(self) -> bool:
        """False while calls are failing (from the first failed attempt to the next success)."""
        return self._failing_since is None

    @contextmanager
    def short_retries(self, budget_s: float) -> Iterator[None]:
        """Calls made inside retry for at most *budget_s* (a worker stopping during an outage
        must not spend a whole retry budget on each last call)."""
        saved = self.retry_budget_s
        self.retry_budget_s = min(saved, budget_s)
        try:
            yield
        finally:
            self.retry_budget_s = saved

    def _failed(self) -> None:
        # a fault that was not retried fails the call too: `answering` stays False until a
        # call succeeds (the worker reads "answering" as "the outage is over" and would
        # retry a read-only database at once, for ever)
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def _answered(self) -> None:
        if self._failing_since is None:
            return
        lasted = time.monotonic() - self._failing_since
        if self._outage_reported and self.on_outage is not None:
            self.on_outage(f"the database {self.url_description} answers again "
                           f"(after {lasted:.1f}s).")
        self._failing_since = None
        self._outage_reported = False

    def write_refusal(self) -> str | None:
        """Why this user cannot write the SQLite file, known without trying (None: it can, as
        far as file modes tell, or the database is not a SQLite file)."""
        path = sqlite_path(self.url)
        if path is None or not os.path.exists(path) or writable(path):
            return None
        return not_writable_reason(path)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The StoreUnavailable sentence for *exc*, with any password masked."""
        codes = {_sqlite_code(e) for e in _chain(exc)}
        if _SQLITE_READONLY in codes and (refusal := self.write_refusal()) is not None:
            return StoreUnavailable(
                f"cannot write the database {self.url_description}: {refusal}; this command "
                "writes to it and needs write access to the file and its directory.",
                lasting=True)
        if _SQLITE_CORRUPT in codes:
            return StoreUnavailable(
                f"cannot use the database {self.url_description}: the file is damaged "
                f"({_reason(exc)}); restore it from a backup, or salvage what is readable "
                "with sqlite3's '.recover' command.", lasting=True)
        reason = _reason(exc)
        secret = make_url(self.url).password
        if secret:
            reason = reason.replace(str(secret), "***")
        return StoreUnavailable(f"cannot use the database {self.url_description}: {reason}.",
                                lasting=is_unusable(exc))


def _reason(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.rstrip(".")
    root = _chain(exc)[-1]
    text = str(getattr(exc, "orig", None) or root) or type(root).__name__
    return text.splitlines()[0].rstrip(".")
