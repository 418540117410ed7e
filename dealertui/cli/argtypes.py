"""Argument types: values refused by argparse, with a sentence that says what to type."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dealertui.text import seconds


def parse_duration(value: str) -> float:
    """'15m' -> 900.0; accepts s, m, h, d or a bare number of seconds."""
    parsed = seconds(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use a number with s, m, h or d, such as 15m"
        )
    return parsed


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    if n >= 2**63:  # no job id, limit or count is this big, and SQLite's integers end here
        raise argparse.ArgumentTypeError(f"expected a positive integer below 2**63, got {value!r}")
    return n


def non_negative_int(value: str) -> int:
    """0 or a positive integer (a count that may be none)."""
    return 0 if value.strip() == "0" else positive_int(value)


def port_number(value: str) -> int:
    n = positive_int(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {value!r}")
    return n


def json_object(value: str) -> dict[str, Any]:
    """A job payload: one JSON object (handlers read keys from it, so nothing else)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid JSON {value!r} ({exc.msg} at character {exc.pos}); give an object such "
            'as \'{"feed": "full"}\'') from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"feed\": \"full\"}}', got "
            f"{type(parsed).__name__} {value!r}")
    return parsed
