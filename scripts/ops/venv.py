"""Create (or reuse) the project's Python environment and link it at .venv.

The venv lives in the cache, keyed by the pinned requirements, so a fresh clone on a
machine that already built it starts in a second. Runs on the system Python with the
standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ops import apt
from ops.paths import REPO_ROOT, cache_root

NO_DEPS_REQUIREMENTS = REPO_ROOT / "image" / "requirements-no-deps.txt"
REQUIREMENT_FILES = (
    REPO_ROOT / "requirements-dev.txt",
    REPO_ROOT / "image" / "requirements.txt",
    NO_DEPS_REQUIREMENTS,
)
READY_MARKER = ".tfms-ready"


def requirements_key() -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in REQUIREMENT_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_venv() -> Path:
    venv_dir = cache_root() / f"venv-{requirements_key()}"
    if (venv_dir / READY_MARKER).exists():
        return venv_dir
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    # Two clones (or a clone and CI) may build the same venv at once: one builds, the other waits.
    with (venv_dir.parent / f"{venv_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv_dir / READY_MARKER).exists():
            build_venv(venv_dir)
    return venv_dir


def ensure_venv_module() -> None:
    """`python -m venv` needs ensurepip, which Debian and Ubuntu ship separately (python3-venv)."""
    probe = subprocess.run([sys.executable, "-c", "import ensurepip, venv"], capture_output=True, check=False)
    if probe.returncode == 0:
        return
    debian_python = sys.executable.startswith("/usr/bin/")
    if os.geteuid() == 0 and debian_python and shutil.which("apt-get"):
        version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
        apt.install(["python3-venv", version], f"{sys.executable} -m venv needs ensurepip")
        return
    raise SystemExit(
        f"{sys.executable} cannot create virtualenvs (no ensurepip): install Debian/Ubuntu's "
        "python3-venv (`sudo apt-get install python3-venv`), or run make with PYTHON=<a python with venv>"
    )


def build_venv(venv_dir: Path) -> None:
    ensure_venv_module()
    started = time.monotonic()
    print(f"[venv] building {venv_dir} (pinned requirements changed or first run)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv_dir)], check=True)
    pip = [str(venv_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-r", str(REPO_ROOT / "requirements-dev.txt")], check=True)
    # Packages whose declared dependencies must not be resolved (the file says why each).
    subprocess.run([*pip, "install", "--no-deps", "-r", str(NO_DEPS_REQUIREMENTS)], check=True)
    (venv_dir / READY_MARKER).write_text(requirements_key())
    print(f"[venv] ready in {time.monotonic() - started:.0f}s", flush=True)


def link_venv(venv_dir: Path) -> None:
    link = REPO_ROOT / ".venv"
    if link.is_symlink() and link.resolve() == venv_dir.resolve():
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise SystemExit(f"{link} is a real directory; remove it so it can point at the cached venv")
    link.symlink_to(venv_dir)


def main() -> None:
    link_venv(ensure_venv())


if __name__ == "__main__":
    main()
