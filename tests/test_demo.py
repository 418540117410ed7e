"""`dealertui --demo` as an operator runs it: in a terminal, quit with `q`.

The console runs in a real pseudo-terminal (Textual needs one), its temp directory under a
TMPDIR of the test's own, so what the demo leaves behind is visible.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


class Terminal:
    """A child process on a 100x30 pseudo-terminal, its screen output collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=cwd, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        # the child blocks once the pty's buffer is full: keep reading it
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not chunk:
                return
            self.output.extend(chunk)

    def text(self) -> str:
        return ANSI.sub(b"", bytes(self.output)).decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


def _wait(predicate, timeout: float, what: str, term: Terminal) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen: {term.text()[-2000:]}")
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("how", ["q", "SIGHUP", "SIGTERM"])
def test_demo_quits_and_leaves_no_database_or_process_behind(tmp_path: Path, how: str) -> None:
    # SIGHUP is what a dropped SSH session or a killed tmux sends; it, and SIGTERM, ended the
    # process on the spot and left the demo's directory behind
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color", HOME=str(tmp_path))
    for name in ("DEALERTUI_CONFIG", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    term = Terminal([sys.executable, "-m", "dealertui", "--demo"], env, tmp_path)
    try:
        _wait(lambda: "Sunrise Motors" in term.text(), 60, "the demo's dealer lanes", term)
        demo_dirs = list(tmp_path.glob("dealertui-demo-*"))
        assert len(demo_dirs) == 1, demo_dirs
        assert (demo_dirs[0] / "demo.db").exists()
        _wait(lambda: _children(term.proc.pid), 30, "the engine's child process", term)
        engines = _children(term.proc.pid)
        if how == "q":
            os.write(term.master, b"q")
        else:
            os.kill(term.proc.pid, getattr(signal, how))
        assert term.proc.wait(timeout=30) == 0, term.text()[-2000:]
        assert not [p for p in engines if _alive(p)], engines
        assert list(tmp_path.glob("dealertui-demo-*")) == []
    finally:
        term.close()


def test_the_console_on_an_unusable_database_says_so_in_one_sentence(tmp_path: Path) -> None:
    # it raised from on_mount: a rich traceback and exit 1
    (tmp_path / "file").write_text("not a directory")
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color", HOME=str(tmp_path))
    for name in ("DEALERTUI_CONFIG", "XDG_CONFIG_HOME", "DEALERTUI_DATABASE_URL"):
        env.pop(name, None)
    url = f"sqlite:///{tmp_path}/file/x.db"
    term = Terminal([sys.executable, "-m", "dealertui", "--database-url", url], env, tmp_path)
    try:
        assert term.proc.wait(timeout=60) == 3, term.text()[-2000:]
        time.sleep(0.2)  # the last output reaches the reader thread
        text = term.text()
        assert "Traceback" not in text, text[-2000:]
        line = text[text.index("dealertui: error:"):].strip()
        assert f"{tmp_path}/file/x.db" in line and "\n" not in line, text
        # the console creates no database (a typo'd path showed an empty console): it says
        # so as `status` does, before any directory is made (test_no_silent_defaults.py)
        assert "does not exist" in line, line
    finally:
        term.close()
