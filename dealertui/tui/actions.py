"""The console's keys, in one table: the app's bindings and footer, the help screen, the command
palette and the read-only refusal are all made from ACTIONS. A new key is one row here (in the
order the help screen lists it) and its `action_<name>` method on the app."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

#: how the help screen writes the keys whose Textual name is not what the key shows
_SHOWN = {"slash": "/", "question_mark": "?"}


@dataclass(frozen=True)
class ConsoleAction:
    #: Textual's name of the key ("s", "P", "slash", "enter")
    key: str
    #: the action it runs: DealerConsole.action_<action>
    action: str
    #: the footer's word for it (also Textual's key panel)
    label: str
    #: the help screen's line; None when another entry's line says it (esc in the filter's)
    help: str | None
    #: changes state: hidden from the footer and the palette, and refused, under --read-only
    mutating: bool = False
    #: in the footer (which cuts what does not fit at 100 columns)
    footer: bool = True
    #: the command palette's title and line; no title: not in the palette
    palette: str | None = None
    palette_help: str = ""
    #: Textual binds the key itself (the palette's ctrl+p): listed by help, not bound by us
    textual: bool = False

    @property
    def shown(self) -> str:
        """The key as the help screen writes it."""
        return _SHOWN.get(self.key, self.key)


ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("s", "start", "start",
                  "start or resume the engine (and lift a global pause)", mutating=True,
                  palette="Start engine", palette_help="start or resume the engine"),
    ConsoleAction("p", "pause_dealer", "pause", "pause or resume the selected dealer",
                  mutating=True, palette="Pause dealer",
                  palette_help="pause or resume the selected dealer"),
    ConsoleAction("P", "pause_all", "pause all",
                  "pause or resume everything (every worker obeys)", mutating=True,
                  palette="Pause everything", palette_help="pause or resume every worker"),
    ConsoleAction("r", "retry", "retry",
                  "retry the selected job, or the dealer's failed/blocked jobs", mutating=True,
                  palette="Retry",
                  palette_help="retry the selected job or the dealer's failed jobs"),
    ConsoleAction("x", "reset_stuck", "reset stuck", "reset stuck jobs (expired leases)",
                  mutating=True, palette="Reset stuck jobs",
                  palette_help="rescue expired leases"),
    ConsoleAction("c", "cancel", "cancel", "cancel the selected job", mutating=True,
                  palette="Cancel job", palette_help="cancel the selected job"),
    ConsoleAction("e", "enqueue", "enqueue", "enqueue a pipeline for the selected dealer",
                  mutating=True, palette="Enqueue pipeline",
                  palette_help="enqueue a pipeline for the selected dealer"),
    ConsoleAction("slash", "filter", "filter",
                  "filter dealers by id, name, state or payload text (esc clears)",
                  palette="Filter dealers", palette_help="filter by id, name or state"),
    ConsoleAction("enter", "detail", "detail",
                  "job detail: attempts, errors, timeline, parents and children",
                  palette="Job detail", palette_help="attempts, errors, timeline"),
    ConsoleAction("R", "rerun", "rerun",
                  "rerun the selected job and its descendants (on the dealer: its whole "
                  "pipeline)", mutating=True, footer=False, palette="Rerun",
                  palette_help="run the selected job again with its descendants "
                               "(dealer: whole pipeline)"),
    ConsoleAction("k", "skip", "skip",
                  "skip the selected job with a reason (its children may run)", mutating=True,
                  footer=False, palette="Skip job",
                  palette_help="release the selected job without running it, with a reason"),
    ConsoleAction("f", "failures", "failure groups",
                  "failure groups across dealers: retry or pause a whole group", footer=False,
                  palette="Failure groups",
                  palette_help="failures by cause across dealers; retry or pause a group"),
    ConsoleAction("h", "history", "history",
                  "the selected dealer's past pipelines: when, who, outcome, each job's time",
                  footer=False, palette="Dealer history",
                  palette_help="the selected dealer's older pipelines, newest first"),
    ConsoleAction("a", "audit", "audit log", "audit log: every operator action, who, when, why",
                  footer=False, palette="Audit log",
                  palette_help="every operator action: who, what, when, why"),
    ConsoleAction("S", "schedules", "schedules",
                  "schedules: last tick, next due, counts; p pauses or resumes one",
                  footer=False, palette="Schedules",
                  palette_help="each schedule's ticks and pipelines; pause or resume one"),
    ConsoleAction("ctrl+p", "command_palette", "palette", "command palette: every action by name",
                  footer=False, textual=True),
    # not "Keys" in the palette: that is Textual's own command (the key panel)
    ConsoleAction("question_mark", "help", "help", "this help", palette="Help",
                  palette_help="every key of the console and what it does"),
    # ctrl+q is Textual's; q is not in the footer: known to all, and listed by `?`
    ConsoleAction("q", "quit", "quit", "quit (also ctrl+q)", footer=False),
    ConsoleAction("escape", "clear_filter", "clear filter", None, footer=False),
)

#: the actions that change state (hidden and refused under --read-only), and their keys
MUTATING: frozenset[str] = frozenset(a.action for a in ACTIONS if a.mutating)
MUTATING_KEYS: frozenset[str] = frozenset(a.key for a in ACTIONS if a.mutating)
#: the help screen's rows: (key as shown, line)
KEYS_HELP: tuple[tuple[str, str], ...] = tuple(
    (a.shown, a.help) for a in ACTIONS if a.help is not None
)


def bindings() -> list[BindingType]:
    """The app's bindings. The footer shows them in this order and cuts what does not fit:
    `?` (which lists every key) comes first, then the rest in the table's order."""
    ours = sorted((a for a in ACTIONS if not a.textual), key=lambda a: a.action != "help")
    return [Binding(a.key, a.action, a.label, show=a.footer) for a in ours]
