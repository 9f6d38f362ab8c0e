"""Start, stop and inspect the supervised host services (containerd, kubelet).

Each service runs under its own ``ops.local_cluster.supervisor`` process, detached from
the caller's session, with its output in ``<run>/logs/<name>.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ops.local_cluster import layout
from ops.local_cluster.processes import Process, read_pidfile, stop
from ops.paths import REPO_ROOT

TAIL_LINES = 30


class ComponentFailed(RuntimeError):
    """A component did not come up; the message carries its last log lines."""


def log_path(name: str) -> Path:
    return layout.logs_dir() / f"{name}.log"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def supervisor_process(name: str) -> Process | None:
    return read_pidfile(layout.pids_dir() / f"{name}.supervisor.pid")


def service_process(name: str) -> Process | None:
    return read_pidfile(layout.pids_dir() / f"{name}.pid")


def running(name: str) -> bool:
    return supervisor_process(name) is not None and service_process(name) is not None


def start(name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Launch command under a detached supervisor and wait until the service process exists."""
    layout.logs_dir().mkdir(parents=True, exist_ok=True)
    layout.pids_dir().mkdir(parents=True, exist_ok=True)
    supervisor_env = dict(env or os.environ)
    supervisor_env["PYTHONPATH"] = str(REPO_ROOT / "scripts")
    subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.local_cluster.supervisor",
            "--name",
            name,
            "--pid-dir",
            str(layout.pids_dir()),
            "--log",
            str(log_path(name)),
            "--",
            *command,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        env=supervisor_env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if running(name):
            return
        time.sleep(0.05)
    raise ComponentFailed(f"{name} did not start; last lines of {log_path(name)}:\n{tail(log_path(name))}")


def stop_service(name: str, grace: float = 25.0) -> None:
    """Stop the supervisor (which stops its service); then make sure the service is gone too."""
    supervisor = supervisor_process(name)
    service = service_process(name)
    if supervisor is not None:
        stop([supervisor], grace=grace)
    if service is not None and service.alive():
        stop([service], grace=5.0)


def wait_for(
    name: str,
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.5,
) -> None:
    """Poll check until true; fail early if the service died, with its last log lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not running(name):
            raise ComponentFailed(f"{name} exited; last lines of {log_path(name)}:\n{tail(log_path(name))}")
        time.sleep(interval)
    raise ComponentFailed(
        f"{what} not within {timeout:.0f}s; last lines of {log_path(name)}:\n{tail(log_path(name))}"
    )
