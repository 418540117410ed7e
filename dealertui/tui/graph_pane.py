"""The graph pane: the selected dealer's current pipeline as a graph, each node coloured by its
state; the job types when no dealer is selected."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.widgets import Static

from dealertui.config import Config
from dealertui.engine import graph as graphs
from dealertui.store import JobStore
from dealertui.store.reads import ConsoleSnapshot
from dealertui.tui.widgets import STATE_STYLE


class GraphPane(Static):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        #: the dealer and its lanes last drawn: redrawn only when one of them changes
        self._drawn: tuple[Any, ...] | None = None

    # a description of its own: without one Textual names the worker by the repr of its
    # arguments, the whole snapshot (10,000 lanes), twice a second
    @work(exclusive=True, exit_on_error=False, group="graph", description="graph")
    async def show(
        self, store: JobStore, config: Config, snapshot: ConsoleSnapshot, dealer: str | None
    ) -> None:
        lanes = tuple(
            (t, c.job_id, c.state) for t in sorted(config.job_types)
            if (c := snapshot.lanes.get((dealer or "", t))) is not None
        )
        key = (dealer, lanes)
        if key == self._drawn:
            return
        if dealer is None:
            # no dealer selected (none yet, or the filter hides them all): the job types, as
            # the README says; graphs.build(None) would list every job of every dealer
            graph = graphs.from_config(config)
        else:
            graph = await graphs.current_pipeline(store, config, dealer)
        text = Text()
        for line in graphs.render(graph).splitlines():
            state = line.rsplit(" ", 1)[-1]
            text.append(line + "\n", style=STATE_STYLE.get(state, ""))
        names = dict(snapshot.dealers)
        self.border_title = (
            f"graph: {dealer} {names.get(dealer) or ''}".rstrip() if dealer else "job types"
        )
        self.update(text)
        # only now: a run cancelled by a newer one (exclusive) during the await above must not
        # mark this key drawn, or the pane stays empty until the dealer's lanes change
        self._drawn = key
