"""Dealers: what an id and a name may be, and how a stored name is shown."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEALER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


DEALER_ID_HINT = "use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def is_valid_dealer_id(value: object) -> bool:
    """True when *value* is a dealer id docs/design.md allows."""
    return isinstance(value, str) and DEALER_ID_RE.fullmatch(value) is not None


#: Unicode categories a dealer name must not contain: controls (ESC starts a terminal escape),
#: format characters (bidi overrides reorder what is shown), surrogates, line separators.
_UNSHOWABLE = ("Cc", "Cf", "Cs", "Zl", "Zp")


def dealer_name_problem(name: str | None) -> str | None:
    """Why *name* cannot be a dealer's name (one sentence), or None when it can."""
    if name is None or not any(unicodedata.category(c) in _UNSHOWABLE for c in name):
        return None
    return (f"invalid dealer name {name!r}: it must not contain control characters or "
            "terminal escapes.")


def shown_name(name: str | None) -> str:
    """A stored name for a terminal: every unshowable character as its Python escape
    (names stored before they were checked may carry terminal escapes)."""
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNSHOWABLE
        else c
        for c in name or ""
    )


@dataclass(frozen=True, slots=True)
class Dealer:
    id: str
    name: str | None
    created_at: float
    last_served_at: float | None = None
    #: set while the dealer is disabled: its jobs are kept and never claimed
    disabled_at: float | None = None
