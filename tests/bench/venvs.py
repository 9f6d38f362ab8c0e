"""One virtualenv per benchmark peer, built from its pinned requirements and cached.

Peers pin frameworks whose dependencies clash with ours (and with each other), so each
gets its own venv under ``<cache>/bench/<peer>-<hash>/``, keyed by the Python version
and its requirement files: a second run, or a fresh clone on the same machine, reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import time
from pathlib import Path

from ops.paths import REPO_ROOT, cache_root

PEERS_DIR = Path(__file__).resolve().parent / "peers"
READY_MARKER = ".bench-ready"
# Peers without a requirements file run on the project's own venv (same HTTP stack as ours).
PROJECT_VENV = REPO_ROOT / ".venv"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def requirement_files(peer_dir: Path) -> list[Path]:
    return [path for path in (peer_dir / "requirements.txt", peer_dir / "constraints.txt") if path.exists()]


def venv_key(peer_dir: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in requirement_files(peer_dir):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def venv_dir(peer: str) -> Path:
    return cache_root() / "bench" / f"{peer}-{venv_key(PEERS_DIR / peer)}"


def ensure_venv(peer: str) -> Path:
    """A benchmark peer's venv directory, building it on first use."""
    if not requirement_files(PEERS_DIR / peer):
        return PROJECT_VENV
    return ensure_requirements_venv(PEERS_DIR / peer, venv_dir(peer), peer)


def ensure_requirements_venv(peer_dir: Path, target: Path, label: str) -> Path:
    """The venv of `peer_dir`'s requirements.txt (+ constraints.txt) at `target`, built once.

    Also what the compatibility suite's peer clients run in (tests/compat/clients). Two
    processes wanting the same venv at once: one builds it, the other waits (file lock).
    """
    if (target / READY_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / READY_MARKER).exists():
            build_venv(peer_dir, target, label)
    return target


def build_venv(peer_dir: Path, target: Path, label: str) -> None:
    started = time.monotonic()
    log(f"building the {label} venv in {target} (first run or pins changed)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    install = [*pip, "install", "-r", str(peer_dir / "requirements.txt")]
    constraints = peer_dir / "constraints.txt"
    if constraints.exists():
        install += ["-c", str(constraints)]
    subprocess.run(install, check=True)
    (target / READY_MARKER).write_text(venv_key(peer_dir) + "\n")
    log(f"{label} venv ready in {time.monotonic() - started:.0f}s")


def python_of(peer: str) -> Path:
    return ensure_venv(peer) / "bin" / "python"


def main() -> None:
    """Build every peer venv (``python -m bench.venvs [peer ...]``)."""
    peers = sys.argv[1:] or sorted(p.name for p in PEERS_DIR.iterdir() if requirement_files(p))
    for peer in peers:
        log(f"{peer}: {ensure_venv(peer)}")


if __name__ == "__main__":
    main()
