"""Privileged containers on a Docker host whose capability bounding set is smaller than Docker assumes.

kind starts every node with `docker run --privileged`. Docker 20.10 (Debian bookworm's
docker.io) gives such a container every capability the kernel knows of, and on a host
whose bounding set lacks one (these machines lack CAP_SYS_RESOURCE) runc refuses:
`unable to apply caps: operation not permitted` (moby/moby#42906). containerd's CRI and
podman >= 3.2 use the current bounding set instead, which is why privileged pods work
on the local cluster.

The fix is applied only where the condition is seen: a privileged test container is run
first; only if it fails for this reason is `scripts/bounded-runc` (a small Go shim that
removes capabilities outside its bounding set from the OCI spec, then execs runc) built,
installed at /usr/local/lib/tf-model-server/bounded-runc and made Docker's default
runtime in /etc/docker/daemon.json (other settings kept), and dockerd told to reload.
Every step is logged. `python -m ops.docker_caps IMAGE` runs the check (and fix) alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops import docker
from ops.paths import REPO_ROOT
from ops.toolcache import go_env

SHIM_SOURCE = REPO_ROOT / "scripts" / "bounded-runc"
SHIM_PATH = Path("/usr/local/lib/tf-model-server/bounded-runc")
RUNTIME_NAME = "tfms-bounded-runc"
DAEMON_JSON = Path("/etc/docker/daemon.json")
FAILURE_MARK = "unable to apply caps"
RELOAD_TIMEOUT_SECONDS = 30
# Linux capability numbers 0..40, as in scripts/bounded-runc/main.go.
CAPABILITY_NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def log(message: str) -> None:
    print(f"[docker] {message}", flush=True)


def missing_capabilities(status_text: str, last_cap: int) -> list[str]:
    """Capabilities 0..last_cap that the CapBnd line of a /proc/<pid>/status text lacks."""
    line = next(line for line in status_text.splitlines() if line.startswith("CapBnd:"))
    mask = int(line.split(":", 1)[1].strip(), 16)
    return [
        CAPABILITY_NAMES[number] if number < len(CAPABILITY_NAMES) else f"capability {number}"
        for number in range(last_cap + 1)
        if not mask & (1 << number)
    ]


def host_missing_capabilities() -> list[str]:
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    return missing_capabilities(Path("/proc/self/status").read_text(), last_cap)


def privileged_run_error(image: str) -> str | None:
    """None when `docker run --privileged` works with this image, else Docker's error text."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--entrypoint", "true", image],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode == 0:
        return None
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    # Docker ends with "Run 'docker run --help' ..."; the daemon's reason is the line before.
    reasons = [line for line in lines if "Error" in line or "error" in line]
    return (reasons or lines or [f"exit {result.returncode}"])[0]


def build_shim(dest: Path) -> None:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / "bounded-runc"
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", f"-s -w -X main.runc={runc}", "-o", str(built), "."],
            check=True,
            cwd=SHIM_SOURCE,
            env=go_env(),
        )
        shutil.copyfile(built, dest.with_suffix(".new"))
        dest.with_suffix(".new").chmod(0o755)
        dest.with_suffix(".new").replace(dest)
    log(f"built {dest} (execs {runc})")


def with_default_runtime(config: dict[str, object]) -> dict[str, object]:
    """daemon.json content with our runtime registered and made the default; everything else kept."""
    runtimes = dict(config.get("runtimes") or {})  # type: ignore[call-overload]
    runtimes[RUNTIME_NAME] = {"path": str(SHIM_PATH)}
    return {**config, "runtimes": runtimes, "default-runtime": RUNTIME_NAME}


def dockerd_pid() -> int:
    result = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False)
    pids = result.stdout.split()
    if len(pids) != 1:
        raise RuntimeError(f"expected one dockerd process to reload, found {pids or 'none'}")
    return int(pids[0])


def default_runtime() -> str:
    result = subprocess.run(
        ["docker", "info", "--format", "{{.DefaultRuntime}}"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def install_default_runtime() -> None:
    build_shim(SHIM_PATH)
    config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    if DAEMON_JSON.exists():
        shutil.copyfile(DAEMON_JSON, DAEMON_JSON.with_suffix(".json.before-tfms"))
    DAEMON_JSON.write_text(json.dumps(with_default_runtime(config), indent=2) + "\n")
    log(f"{DAEMON_JSON}: runtime {RUNTIME_NAME} -> {SHIM_PATH}, now Docker's default-runtime")
    os.kill(dockerd_pid(), signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_SECONDS
    while default_runtime() != RUNTIME_NAME:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"dockerd did not take default-runtime {RUNTIME_NAME} within {RELOAD_TIMEOUT_SECONDS}s "
                f"after SIGHUP (see {docker.daemon_log_path()})"
            )
        time.sleep(0.5)
    log("dockerd reloaded its configuration")


def ensure_privileged_containers(image: str) -> None:
    """Make `docker run --privileged` work here, changing Docker's config only if it does not."""
    docker.ensure_daemon()
    error = privileged_run_error(image)
    if error is None:
        log("privileged containers start here: Docker's configuration left as it is")
        return
    if FAILURE_MARK not in error:
        raise RuntimeError(f"`docker run --privileged {image}` fails: {error}")
    missing = host_missing_capabilities()
    log(
        f"`docker run --privileged` fails here ({error}): this host's capability bounding set lacks "
        f"{', '.join(missing) or 'capabilities Docker asks for'} and Docker gives privileged containers "
        "every capability it knows (moby/moby#42906). Fixing it for this machine only:"
    )
    install_default_runtime()
    error = privileged_run_error(image)
    if error is not None:
        raise RuntimeError(f"`docker run --privileged` still fails with {RUNTIME_NAME}: {error}")
    log(f"privileged containers start now (runtime {RUNTIME_NAME})")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ops.docker_caps IMAGE  (an image present locally)", file=sys.stderr)
        return 2
    ensure_privileged_containers(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
