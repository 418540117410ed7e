"""A password in the database URL appears in no output of any command, errors included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import write_demo_config

SECRET = "s3cr3t-Pa55"


def _env(tmp_path: Path, url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALERTUI_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
    if url is not None:
        env["DEALERTUI_DATABASE_URL"] = url
    return env


def run(tmp_path: Path, url: str, *args: str, via_env: bool = False) -> str:
    cmd = [sys.executable, "-m", "dealertui"]
    if not via_env:
        cmd += ["--database-url", url]
    p = subprocess.run(
        [*cmd, *args], cwd=tmp_path, env=_env(tmp_path, url if via_env else None),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )
    return f"{p.returncode}\n{p.stdout}\n{p.stderr}"


@pytest.fixture
def secret_url(postgres_server) -> str:  # type: ignore[no-untyped-def]
    """A real database on the suite's server, reached with a URL that carries a password
    (the throwaway server trusts 127.0.0.1, so any password is accepted)."""
    url = postgres_server.create_database(f"secret_{uuid.uuid4().hex[:8]}")
    return url.replace("://postgres@", f"://postgres:{SECRET}@", 1)


def test_no_command_prints_the_password(tmp_path: Path, secret_url: str) -> None:
    write_demo_config(tmp_path)  # handlers for run-once (a run without them refuses at once)
    outputs = [
        run(tmp_path, secret_url, "init-db"),
        run(tmp_path, secret_url, "dealers", "add", "d1"),
        run(tmp_path, secret_url, "enqueue", "--all-dealers"),
        run(tmp_path, secret_url, "status"),
        run(tmp_path, secret_url, "status", "--json"),
        run(tmp_path, secret_url, "graph"),
        run(tmp_path, secret_url, "--run-once", "--json", via_env=True),
        run(tmp_path, secret_url, "--run-once", "--metrics-textfile", str(tmp_path / "m.prom")),
        run(tmp_path, secret_url, "reset-stuck"),
        run(tmp_path, secret_url, "retry", "--all-failed"),
        run(tmp_path, secret_url, "enqueue", "--dealer", "nope"),  # a usage error
        run(tmp_path, secret_url, "bench", "--dealers", "5", "--database-url", secret_url),
    ]
    assert outputs[0].startswith("0\n"), outputs[0]
    for out in outputs:
        assert SECRET not in out, out
    assert SECRET not in (tmp_path / "m.prom").read_text()


def test_errors_mask_the_password(tmp_path: Path) -> None:
    write_demo_config(tmp_path)  # else run-once refuses before it reaches the database
    dead = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nothing"
    for out in (
        run(tmp_path, dead, "status"),
        run(tmp_path, dead, "--run-once", via_env=True),
        run(tmp_path, f"mysql://u:{SECRET}@h/db", "status"),
    ):
        assert SECRET not in out, out
        assert "Traceback" not in out
        assert out.split("\n", 1)[0] in {"2", "3"}, out


def test_worker_log_masks_the_password(tmp_path: Path, secret_url: str) -> None:
    write_demo_config(tmp_path)
    assert SECRET not in run(tmp_path, secret_url, "init-db")  # a worker does not create it
    proc = subprocess.Popen(
        [sys.executable, "-m", "dealertui", "worker"], cwd=tmp_path,
        env=_env(tmp_path, secret_url), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    head = []  # SIGTERM once it has started (a loaded machine took more than a fixed 3 s)
    for line in proc.stderr:
        head.append(line)
        if "started" in line:
            break
    time.sleep(1)  # "started" is logged just before its signal handler is set
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    err = "".join(head) + err
    assert proc.returncode == 0, err
    assert "started" in err
    assert SECRET not in out + err
