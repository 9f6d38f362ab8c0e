"""Minimal Debian root file systems, built offline with debootstrap from apt's own mirror (cached).

One builder for every Debian root the project needs: the server image's offline base
(python3), kube-proxy's and flannel's root (iptables, conntrack), local-path's helper
(sh, mkdir, rm) and the kind node's base (systemd, containerd, runc, CNI plugins, ...).
Each is a tarball of the root under ``<cache>/base/``, keyed by its package list, with
apt's sources pointed at Debian's mirror over plain http (as containers reach it) and
apt's caches and the docs removed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ops import apt
from ops.paths import cache_root
from ops.pins import DEBIAN_SUITE

CONTAINER_SOURCES = (
    f"deb http://deb.debian.org/debian {DEBIAN_SUITE} main\n"
    f"deb http://deb.debian.org/debian {DEBIAN_SUITE}-updates main\n"
    f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main\n"
)
# Docs and apt's downloaded lists and packages (the directories stay, so apt works in a container).
EXCLUDED = (
    "./usr/share/doc",
    "./usr/share/man",
    "./usr/share/locale",
    "./var/cache/apt/*.bin",
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*_*",
)


def log(message: str) -> None:
    print(f"[debian] {message}", flush=True)


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses (debootstrap should use the same one)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.name.endswith(".disabled-by-farm"):
            continue
        for line in source.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                urls = [word for word in words[1:] if "://" in word]
                if urls:
                    return urls[0]
    return "http://deb.debian.org/debian"


def ensure_debootstrap() -> str:
    path = shutil.which("debootstrap")
    if path:
        return path
    apt.install(["debootstrap"], "offline Debian roots need debootstrap")
    return shutil.which("debootstrap") or "debootstrap"


def rootfs_tarball_path(packages: Sequence[str]) -> Path:
    name = "-".join(packages)
    if len(name) > 80:
        name = f"{len(packages)}pkgs-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return cache_root() / "base" / f"debian-{DEBIAN_SUITE}-minbase-{name}.tar"


def rootfs_tarball(packages: Sequence[str]) -> Path:
    """A tar of a minbase Debian root with `packages` installed (built once, then cached)."""
    tarball = rootfs_tarball_path(packages)
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"debootstrap {DEBIAN_SUITE} minbase + {', '.join(packages)} (from {apt_mirror()})")
    with tempfile.TemporaryDirectory(prefix="tfms-rootfs-", dir=tarball.parent) as rootfs:
        subprocess.run(
            [
                ensure_debootstrap(),
                "--variant=minbase",
                f"--include={','.join(packages)}",
                DEBIAN_SUITE,
                rootfs,
                apt_mirror(),
            ],
            check=True,
        )
        (Path(rootfs) / "etc/apt/sources.list").write_text(CONTAINER_SOURCES)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            [
                "tar",
                "--numeric-owner",
                *[f"--exclude={path}" for path in EXCLUDED],
                "-C",
                rootfs,
                "-cf",
                str(partial),
                ".",
            ],
            check=True,
        )
        partial.replace(tarball)
    log(f"{tarball} ({tarball.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.0f}s")
    return tarball
