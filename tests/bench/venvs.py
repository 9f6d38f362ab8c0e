"""One virtualenv per benchmark peer, built from its pinned requirements and cached.

Peers pin frameworks whose dependencies clash with ours (and with each other), so each
gets its own venv under ``<cache>/bench/<peer>-<hash>/``, keyed by the Python version
and its requirement files: a second run, or a fresh clone on the same machine, reuses it.
"""

from __future__ import annotations

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


def requirement_files(peer: str) -> list[Path]:
    peer_dir = PEERS_DIR / peer
    return [path for path in (peer_dir / "requirements.txt", peer_dir / "constraints.txt") if path.exists()]


def venv_key(peer: str) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in requirement_files(peer):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def venv_dir(peer: str) -> Path:
    return cache_root() / "bench" / f"{peer}-{venv_key(peer)}"


def ensure_venv(peer: str) -> Path:
    """The venv's directory, building it on first use."""
    files = requirement_files(peer)
    if not files:
        return PROJECT_VENV
    target = venv_dir(peer)
    if (target / READY_MARKER).exists():
        return target
    started = time.monotonic()
    log(f"building the {peer} venv in {target} (first run or pins changed)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    install = [*pip, "install", "-r", str(PEERS_DIR / peer / "requirements.txt")]
    constraints = PEERS_DIR / peer / "constraints.txt"
    if constraints.exists():
        install += ["-c", str(constraints)]
    subprocess.run(install, check=True)
    (target / READY_MARKER).write_text(venv_key(peer) + "\n")
    log(f"{peer} venv ready in {time.monotonic() - started:.0f}s")
    return target


def python_of(peer: str) -> Path:
    return ensure_venv(peer) / "bin" / "python"


def main() -> None:
    """Build every peer venv (``python -m bench.venvs [peer ...]``)."""
    peers = sys.argv[1:] or sorted(p.name for p in PEERS_DIR.iterdir() if requirement_files(p.name))
    for peer in peers:
        log(f"{peer}: {ensure_venv(peer)}")


if __name__ == "__main__":
    main()
