"""One table per vocabulary: every front end's map covers every job state and colour role.

A state added to model.STATES without a style, glyph or label in some front end fails here,
not on an operator's screen as a blank or '?' cell.
"""

from __future__ import annotations

from dealertui import headless
from dealertui.model import (
    ALL_STATES,
    SATISFIED_STATES,
    STATE_GLYPH,
    STATE_LABEL,
    STATES,
    TERMINAL_STATES,
    UNFINISHED_STATES,
    JobState,
    Role,
)
from dealertui.tui import widgets


def test_every_state_has_one_definition() -> None:
    assert set(STATES) == set(JobState)
    assert all(spec.state is state for state, spec in STATES.items())


def test_state_lists_are_derived_and_consistent() -> None:
    assert ALL_STATES == tuple(s.value for s in JobState)
    assert set(SATISFIED_STATES) <= set(TERMINAL_STATES)
    assert not set(UNFINISHED_STATES) & set(TERMINAL_STATES)
    # blocked is the one state that is neither finished nor on its way
    assert set(ALL_STATES) - set(TERMINAL_STATES) - set(UNFINISHED_STATES) == {"blocked"}


def test_glyphs_and_labels_fit_their_cells() -> None:
    from rich.cells import cell_len

    assert set(STATE_GLYPH) == set(ALL_STATES) == set(STATE_LABEL)
    assert all(cell_len(g) == 1 for g in STATE_GLYPH.values())
    assert len(set(STATE_GLYPH.values())) == len(STATE_GLYPH), "two states share a glyph"
    assert all(1 <= cell_len(label) <= 5 for label in STATE_LABEL.values())


def test_every_front_end_styles_every_role_and_state() -> None:
    for name, role_style, state_style in (
        ("console", widgets.ROLE_STYLE, widgets.STATE_STYLE),
        ("reports", headless.ROLE_STYLE, headless.STATE_STYLE),
    ):
        assert set(role_style) == set(Role), f"{name} lacks a style for a role"
        assert set(state_style) == set(ALL_STATES), f"{name} lacks a style for a state"
