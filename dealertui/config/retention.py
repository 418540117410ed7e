"""[retention]: how long finished pipelines and audit rows are kept (docs/design.md,
"Retention"). One key per finished job state, from the state table, plus `audit`; each a
duration such as "7d" or "off" (kept for ever)."""

from __future__ import annotations

from dataclasses import dataclass

from dealertui.config.validate import Table, show
from dealertui.model import TERMINAL_STATES, JobState
from dealertui.text import seconds

DAY_S = 86400.0

#: a failure is kept longer than the rest: someone may still be looking into it
_DEFAULT_DAYS = {**dict.fromkeys(TERMINAL_STATES, 7), JobState.FAILED.value: 30}
_DEFAULT_AUDIT_DAYS = 90
OFF = "off"

KEYS: tuple[str, ...] = (*TERMINAL_STATES, "audit")


@dataclass(frozen=True)
class RetentionConfig:
    """Seconds each finished state's pipelines are kept after their newest job finished (None:
    for ever), and the audit log's rows after they were written."""

    #: (state, seconds or None) for every finished state, in the state table's order
    states: tuple[tuple[str, float | None], ...] = tuple(
        (s, d * DAY_S) for s, d in _DEFAULT_DAYS.items())
    audit_s: float | None = _DEFAULT_AUDIT_DAYS * DAY_S

    def limit_s(self, state: str) -> float | None:
        """How long a pipeline whose worst outcome is *state* is kept (None: for ever)."""
        return dict(self.states).get(state)

    @property
    def prunes(self) -> bool:
        """Whether any limit is set (all "off": pruning has nothing to do)."""
        return self.audit_s is not None or any(s is not None for _, s in self.states)


def parse_retention(table: Table) -> RetentionConfig:
    """The [retention] table (*table* already refuses unknown keys, see KEYS)."""
    defaults = RetentionConfig()
    states = tuple((state, _limit(table, state, default)) for state, default in defaults.states)
    return RetentionConfig(states, _limit(table, "audit", defaults.audit_s))


def _limit(table: Table, key: str, default: float | None) -> float | None:
    if key not in table.data:
        return default
    raw = table.data[key]
    if isinstance(raw, str) and raw.strip().lower() == OFF:
        return None
    value = seconds(raw) if isinstance(raw, str) else None
    if value is None:
        table.fail(key, f'must be a duration such as "7d", "12h", "15m" or "90s", or "off" '
                        f"(kept for ever), not {show(raw)}")
    if value <= 0:
        # 0 would delete every pipeline the moment it finishes: surely a slip
        table.fail(key, f'must be longer than 0s (or "off"), not {show(raw)}')
    return value
