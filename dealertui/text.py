"""Numbers in sentences for people: counts with their noun, durations. No dependencies, so
the CLI, the console and the engine's checks can all use it."""

from __future__ import annotations

import re


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 job', '2 jobs', '0 jobs' (or *many* for the plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float | None:
    """'15m' -> 900.0: a number with s, m, h or d (or none: seconds); None when *text* is no
    such duration. The one duration syntax of flags and config keys alike."""
    m = _SPAN.match(text)
    return float(m.group(1)) * _UNIT_S[m.group(2)] if m else None


#: (unit, its seconds, first value it does not show): each fits three cells
_COMPACT = (("s", 1, 60), ("m", 60, 3600), ("h", 3600, 86400), ("d", 86400, 86400 * 100))


def span(seconds: float, *, compact: bool = False) -> str:
    """A duration, floored to the second: 45s, 3m20s, 2h05m, 3d. *compact* keeps one unit in
    at most three cells (45s, 3m, 2h, 3d; "old" from 100 days) for a narrow column. The one
    duration format of every front end."""
    s = max(int(seconds), 0)
    if compact:
        for unit, size, below in _COMPACT:
            if s < below:
                return f"{s // size}{unit}"
        return "old"
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def ago(seconds: float, *, compact: bool = False) -> str:
    """How long ago something was, *seconds* before now (never negative): '5s', '2h05m'."""
    return span(max(seconds, 0.0), compact=compact)
