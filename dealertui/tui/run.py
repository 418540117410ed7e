"""Start the console from the command line (the one place that imports Textual for `cli`)."""

from __future__ import annotations

from dealertui.config import Config
from dealertui.demo import demo_database, seed_demo
from dealertui.tui.app import make_app


def run_console(config: Config, *, demo: bool = False, read_only: bool = False) -> int:
    if demo:
        with demo_database(config) as demo_cfg:
            app = make_app(demo_cfg, seed=seed_demo, start_engine=True, read_only=read_only)
            app.run()  # returns once the engine's child process has exited
    else:
        app = make_app(config, read_only=read_only)
        app.run()
    if app.startup_error is not None:
        raise app.startup_error  # the CLI says it in one sentence, with its exit code
    return app.return_code or 0
