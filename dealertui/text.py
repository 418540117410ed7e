"""Numbers in sentences for people: counts with their noun, durations. No dependencies, so
the CLI, the console and the engine's checks can all use it."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 job', '2 jobs', '0 jobs' (or *many* for the plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def span(seconds: float) -> str:
    """A duration: 45s, 3m20s, 2h05m, 3d."""
    s = round(seconds)
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"
