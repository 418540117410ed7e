"""The event log pane: job transitions and errors, newest last."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from dealertui.model import JobState
from dealertui.tui.widgets import STATE_STYLE

#: a job entering these from nothing or from waiting (an enqueue, a promotion) is not logged:
#: too many to read, and visible in the lanes
_ROUTINE_TO = (JobState.READY, JobState.WAITING)
_ROUTINE_FROM = (JobState.WAITING, None)


class EventLog(RichLog):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=500, markup=False, wrap=False, **kwargs)

    def write_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Write the transitions worth reading of *events* (job_events rows, oldest first)."""
        for e in events:
            if e["to_state"] in _ROUTINE_TO and not e["error"] and e["from_state"] in (
                _ROUTINE_FROM
            ):
                continue
            line = Text(time.strftime("%H:%M:%S ", time.localtime(e["at"])), style="grey50")
            line.append(f"{e['dealer_id']} {e['job_type']} #{e['job_id']} ")
            line.append(f"{e['from_state'] or '·'}→{e['to_state']}",
                        style=STATE_STYLE.get(e["to_state"], ""))
            note = e["error"] or (e["message"] if e["to_state"] != JobState.RUNNING else None)
            if note:
                line.append(f"  {note}", style="red" if e["error"] else "grey62")
            self.write(line)
