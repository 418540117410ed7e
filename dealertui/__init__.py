"""dealertui: an operations console and headless runner for per-dealer job pipelines."""

__version__ = "0.1.0"
