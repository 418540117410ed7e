"""Command line: parse arguments, pick a front end, print results. No logic of its own.

One module per command area; `main` (the `dealertui` console script and `python -m
dealertui`) is in `entry`. Nothing here imports the store, SQLAlchemy or Textual at import
time: `dealertui --help` must answer at once."""

from dealertui.cli.entry import main

__all__ = ["main"]
