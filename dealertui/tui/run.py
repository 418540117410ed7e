"""Start the console from the command line (the one place that imports Textual for `cli`)."""

from __future__ import annotations

from dealertui.config import Config
from dealertui.demo import demo_config, seed_demo
from dealertui.tui.app import make_app


def run_console(config: Config, *, demo: bool = False, read_only: bool = False) -> int:
    if demo:
        config = demo_config(config)
        app = make_app(config, seed=seed_demo, start_engine=True, read_only=read_only)
    else:
        app = make_app(config, read_only=read_only)
    app.run()
    return app.return_code or 0
