"""Errors a user can cause. Each carries the exit code of docs/design.md and one clear sentence."""

from __future__ import annotations


class DealertuiError(Exception):
    """Base class: `str(err)` is the sentence shown to the user; `exit_code` the process exit."""

    exit_code = 1


class ConfigError(DealertuiError):
    """A bad config file, key, value or flag (exit 2)."""

    exit_code = 2


class UsageError(DealertuiError):
    """A command asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class StoreUnavailable(DealertuiError):
    """The database cannot be used: unreachable, locked past every retry, unwritable (exit 3).

    `lasting` when waiting will not help (wrong password, no privilege, no such database): a
    worker stops instead of reconnecting for ever."""

    exit_code = 3

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting
