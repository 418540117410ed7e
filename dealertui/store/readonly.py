"""Reading a SQLite database that this user cannot write, without writing anything.

A WAL database is read through its `-shm` index, which SQLite creates beside the file when
the first connection opens it. A user who cannot write the directory cannot create it, and
every read would fail with "attempt to write a readonly database". SQLite's rules
(https://www.sqlite.org/wal.html#readonly), applied per connection, since the owner's
processes may start or finish writing while a console stays open:

- no `-wal` with content beside the file: nothing is waiting to be checkpointed, so the file
  alone is the database; `immutable=1` reads it without `-shm` and creates nothing.
- a `-wal` with content and a readable `-shm` (an owner's process is using the database, or
  died): `mode=ro` reads both.
- a `-wal` with content and no `-shm` that this user could read or create: SQLite cannot read
  it; the owner must open the database once (which checkpoints the log and removes both).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from urllib.parse import quote

from dealertui.errors import StoreUnavailable


def who() -> str:
    """This process's user name (its uid when it has no name), for error sentences."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def writable(path: str) -> bool:
    """True when this user can write *path* and create files beside it (-wal, -shm)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)


def not_writable_reason(path: str) -> str:
    """Why this user cannot write *path* (assumes `not writable(path)`)."""
    directory = os.path.dirname(path) or "."
    what = (f"its directory {directory}" if os.access(path, os.W_OK)
            else "the file" if os.access(directory, os.W_OK)
            else f"the file or its directory {directory}")
    return f"{what} is read-only for this user ({who()})"


def read_uri(path: str) -> str:
    """The URI that reads *path* without writing (see the module docstring), or "" when this
    user can write it (an ordinary connection, which removes its -wal and -shm on close).

    Raises StoreUnavailable when SQLite cannot read the database as this user."""
    if writable(path):
        return ""
    uri = "file:" + quote(path)
    wal, shm = Path(path + "-wal"), Path(path + "-shm")
    try:
        wal_bytes = wal.stat().st_size
    except FileNotFoundError:
        wal_bytes = 0
    except OSError as exc:
        raise _unreadable(path, f"cannot read {wal}: {exc.strerror}") from None
    if wal_bytes == 0:
        return uri + "?immutable=1"
    if os.access(shm, os.R_OK) or os.access(os.path.dirname(path) or ".", os.W_OK):
        return uri + "?mode=ro"
    return _raise_wal_without_shm(path)


def _raise_wal_without_shm(path: str) -> str:
    owner = _owner(path)
    raise _unreadable(
        path,
        f"its write-ahead log {path}-wal holds changes that SQLite can read only through a "
        f"{path}-shm file, which {who()} cannot create in {os.path.dirname(path)}; ask "
        f"{owner} to run 'dealertui status' once (it folds the log into the database and "
        "removes both files), or read it as a user who can write that directory",
    )


def _owner(path: str) -> str:
    try:
        return f"its owner ({pwd.getpwuid(os.stat(path).st_uid).pw_name})"
    except (KeyError, OSError):
        return "its owner"


def _unreadable(path: str, reason: str) -> StoreUnavailable:
    return StoreUnavailable(f"cannot read the database {path}: {reason}.", lasting=True)
