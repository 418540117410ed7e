"""What holds a job back from outside its own pipeline: pauses and circuit breakers.

One set of reasons for `why` (every reason, with who, when and the counts) and for the plan
of `--run-once --dry-run` (the first reason, short), so both know that a half-open breaker
whose trials are taken holds a job too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dealertui.model import BreakerRow, Pause
from dealertui.store.breakers import describe
from dealertui.text import ago


@dataclass(frozen=True, slots=True)
class Hold:
    code: str           # stable for scripts: paused, breaker_open, breaker_half_open
    what: str           # the short form: "dealer d004 is paused"
    detail: str         # what `why` adds: who, when, the counts
    data: dict[str, Any] = field(default_factory=dict)
    #: False for a half-open breaker with trials left: said by `why`, but the job may run
    holds: bool = True

    @property
    def text(self) -> str:
        return f"{self.what}{self.detail}"


def _pause_what(p: Pause) -> str:
    if p.scope == "global":
        return "everything is paused"
    return f"{'dealer' if p.scope == 'dealer' else 'job type'} {p.key} is paused"


@dataclass(frozen=True, slots=True)
class Controls:
    """The pauses and breakers in force, indexed once: the plan asks for every job it
    weighs, so each question is three dictionary lookups, not a scan of every breaker."""

    pauses: dict[tuple[str, str], Pause]
    breakers: dict[str, BreakerRow]

    @classmethod
    def of(cls, pauses: Iterable[Pause], breakers: Iterable[BreakerRow]) -> Controls:
        return cls({(p.scope, p.key): p for p in pauses}, {b["key"]: b for b in breakers})

    def holds(self, dealer_id: str, job_type: str, *, half_open_max_jobs: int,
              now: float) -> list[Hold]:
        """Every pause and breaker that concerns a job of *job_type* for *dealer_id*, pauses
        first (global, dealer, type), then breakers (type-wide, then this dealer's)."""
        out: list[Hold] = []
        for scope_key in (("global", ""), ("dealer", dealer_id), ("type", job_type)):
            p = self.pauses.get(scope_key)
            if p is None:
                continue
            who = f" by {p.by}" if p.by else ""
            why = f" ({p.reason})" if p.reason else ""
            out.append(Hold("paused", _pause_what(p), f"{who} {ago(now - p.at)} ago{why}",
                            {"scope": p.scope, "key": p.key, "by": p.by, "at": p.at}))
        for key in (f"type:{job_type}", f"dealer:{dealer_id}:{job_type}"):
            b = self.breakers.get(key)
            if b is None:
                continue
            if b["state"] == "open":
                left = ago((b["half_open_at"] or now) - now)
                out.append(Hold("breaker_open", f"circuit breaker {key} is open",
                                f": {describe(b)}; half-open in {left}",
                                {"key": key, "half_open_at": b["half_open_at"]}))
            elif b["state"] == "half_open":
                left_trials = max(half_open_max_jobs - b["trials"], 0)
                out.append(Hold("breaker_half_open", f"circuit breaker {key} is half-open",
                                f": {left_trials} trial jobs left", {"key": key},
                                holds=left_trials == 0))
        return out
