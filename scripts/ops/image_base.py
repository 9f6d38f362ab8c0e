"""The server image's base: python:3.11-slim when present or pullable, else an offline Debian base.

The offline base is a debootstrapped bookworm root with python3 (ops.debian, cached), imported
into Docker as ``tfms-base:bookworm``. The choice is printed with its reason.
"""

from __future__ import annotations

import subprocess

from ops import debian
from ops.progress import Steps

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "tfms-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PULL_TIMEOUT_SECONDS = 30


def log(message: str) -> None:
    print(f"[image] {message}", flush=True)


step = Steps(log).step


def image_exists(name: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return result.returncode == 0


def try_pull(name: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ["docker", "pull", name],
            capture_output=True,
            text=True,
            timeout=PULL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"pull timed out after {PULL_TIMEOUT_SECONDS}s"
    reason = (result.stderr.strip().splitlines() or ["pulled"])[-1]
    return result.returncode == 0, reason


def ensure_offline_base() -> None:
    if image_exists(OFFLINE_BASE):
        return
    tarball = debian.rootfs_tarball(BASE_PACKAGES)
    with step(f"docker import {tarball.name} as {OFFLINE_BASE}"):
        subprocess.run(["docker", "import", str(tarball), OFFLINE_BASE], check=True, capture_output=True)


def choose_base(requested: str | None) -> str:
    """The base image for this build, and say why it was chosen."""
    if requested:
        log(f"base image: {requested} (requested)")
        return requested
    if image_exists(DEFAULT_BASE):
        log(f"base image: {DEFAULT_BASE} (present locally)")
        return DEFAULT_BASE
    pulled, reason = try_pull(DEFAULT_BASE)
    if pulled:
        log(f"base image: {DEFAULT_BASE} (pulled)")
        return DEFAULT_BASE
    log(f"{DEFAULT_BASE} is not available ({reason}); using the offline base {OFFLINE_BASE}")
    ensure_offline_base()
    log(f"base image: {OFFLINE_BASE} (debootstrap bookworm, built offline from apt's mirror)")
    return OFFLINE_BASE
