"""Make sure a Docker daemon answers, and pick a client that can run BuildKit builds.

Machines without systemd (CI containers, these build hosts) have no service manager to
start dockerd, so this module starts it in the background with its log in the cache.
Run it directly to just ensure the daemon: ``python -m ops.docker``.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ops import apt
from ops.paths import cache_root

DAEMON_START_TIMEOUT_SECONDS = 60
DEBIAN_PACKAGE = "docker.io"
# Clients from 23.0 on hand `docker build` to the buildx plugin; older ones (Debian's
# 20.10) talk to the daemon's built-in BuildKit when DOCKER_BUILDKIT=1.
FIRST_CLIENT_NEEDING_BUILDX = (23, 0)


def log(message: str) -> None:
    print(f"[docker] {message}", flush=True)


def docker_dir() -> Path:
    return cache_root() / "docker"


def daemon_log_path() -> Path:
    return docker_dir() / "dockerd.log"


def daemon_answers(client: str = "docker") -> bool:
    try:
        result = subprocess.run(
            [client, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def install_client() -> None:
    apt.install([DEBIAN_PACKAGE], "docker is missing", recommends=True)


def start_daemon() -> None:
    """Start dockerd detached from this process; its output goes to the cache log."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        install_client()
        dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise SystemExit(f"dockerd not found even after installing {DEBIAN_PACKAGE}")
    docker_dir().mkdir(parents=True, exist_ok=True)
    log(f"no daemon answers: starting {dockerd} (log: {daemon_log_path()})")
    with daemon_log_path().open("ab") as log_file:
        subprocess.Popen(
            [dockerd],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_daemon(timeout: float = DAEMON_START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return
        time.sleep(0.5)
    tail = daemon_log_path().read_text(errors="replace")[-2000:] if daemon_log_path().exists() else ""
    raise SystemExit(f"dockerd did not answer within {timeout:.0f}s; last log lines:\n{tail}")


def ensure_daemon() -> None:
    """Install the client if missing, start dockerd if nothing answers, wait for it."""
    if shutil.which("docker") is None:
        install_client()
    if daemon_answers():
        return
    docker_dir().mkdir(parents=True, exist_ok=True)
    # Several engineers' scripts may race to start the one daemon: serialize on a lock.
    with (docker_dir() / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not daemon_answers():
            started = time.monotonic()
            start_daemon()
            wait_for_daemon()
            log(f"daemon ready in {time.monotonic() - started:.1f}s")


def image_id(image: str) -> str | None:
    """The local image's ID (None when Docker has no image of that name)."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class BuildClient:
    """A docker client binary plus the environment that makes `docker build` use BuildKit."""

    binary: str
    env: dict[str, str]


def client_version(binary: str) -> tuple[int, ...]:
    result = subprocess.run(
        [binary, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    digits = result.stdout.strip().split("+")[0].split("-")[0].split(".")
    try:
        return tuple(int(part) for part in digits[:2])
    except ValueError:
        return ()


def has_buildx(binary: str) -> bool:
    result = subprocess.run([binary, "buildx", "version"], capture_output=True, check=False)
    return result.returncode == 0


def candidate_clients() -> list[str]:
    seen: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(directory) / "docker"
        if path.is_file() and os.access(path, os.X_OK):
            real = str(path.resolve())
            if real not in seen:
                seen.append(real)
    return seen


@functools.cache
def build_client() -> BuildClient:
    """The first docker client on PATH that can run BuildKit builds (secrets, cache mounts)."""
    base_env = dict(os.environ, DOCKER_BUILDKIT="1")
    for binary in candidate_clients():
        if has_buildx(binary):
            return BuildClient(binary, base_env)
        version = client_version(binary)
        if version and version < FIRST_CLIENT_NEEDING_BUILDX:
            return BuildClient(binary, base_env)
    raise SystemExit(
        "no docker client here can run BuildKit builds: install the buildx plugin, or Debian's "
        f"{DEBIAN_PACKAGE} (its 20.10 client uses the daemon's built-in BuildKit)"
    )


def main() -> None:
    ensure_daemon()
    client = build_client()
    log(f"daemon answers; BuildKit builds use {client.binary}")


if __name__ == "__main__":
    main()
