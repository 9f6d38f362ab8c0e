"""Pinned tools, built or downloaded once into the cache and linked into ./bin.

One mechanism for every binary the project needs: try the release download a user's
machine would use, fall back to building from the Go module proxy. Results live in
``<cache>/tools/<name>-<version>/`` so a second run, or a fresh clone on the same
machine, rebuilds nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from ops.paths import BIN_DIR

DOWNLOAD_TIMEOUT_SECONDS = 20


def log(message: str) -> None:
    print(f"[tools] {message}", flush=True)


def go_env() -> dict[str, str]:
    """Environment for go commands; Go's own module and build caches are already outside the clone."""
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env.setdefault("CGO_ENABLED", "0")
    return env


def download(url: str, dest: Path) -> bool:
    """Fetch url into dest; False (not an exception) when this machine cannot reach it."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
            Path(tmp.name).replace(dest)
        return True
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        log(f"download {url} unavailable ({error}); falling back to a build")
        return False


def extract_member(archive: Path, member_suffix: str, dest: Path) -> None:
    """Copy the single file ending in member_suffix out of a .tar.gz."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(member_suffix):
                source = tar.extractfile(member)
                assert source is not None
                dest.write_bytes(source.read())
                dest.chmod(0o755)
                return
    raise RuntimeError(f"{archive} has no member ending in {member_suffix}")


def go_install(
    package: str,
    version: str,
    gobin: Path,
    extra_env: Mapping[str, str] | None = None,
    ldflags: str = "",
) -> None:
    """`go install [-ldflags ...] package@version` into gobin."""
    env = go_env() | {"GOBIN": str(gobin)} | dict(extra_env or {})
    gobin.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"go install {package}@{version}")
    flags = ["-trimpath", "-ldflags", ldflags] if ldflags else []
    subprocess.run(["go", "install", *flags, f"{package}@{version}"], check=True, env=env)
    log(f"built {package}@{version} in {time.monotonic() - started:.0f}s")


def go_build_module(
    workdir: Path,
    go_mod: str,
    packages: Iterable[str],
    outdir: Path,
    ldflags: str = "",
    extra_env: Mapping[str, str] | None = None,
    trimpath: bool = True,
) -> None:
    """Build packages of a wrapper module (a go.mod that pins and replaces dependencies).

    trimpath=False keeps compile cache keys equal to a plain `go build` of the same module
    graph, so an earlier untrimmed build's cache is reused and only the links are redone.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(go_mod)
    packages = list(packages)
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    env = go_env() | dict(extra_env or {})
    started = time.monotonic()
    log(f"building {len(packages)} package(s) in {workdir}")
    subprocess.run(["go", "mod", "tidy"], check=True, cwd=workdir, env=env)
    command = ["go", "build", *(["-trimpath"] if trimpath else []), "-o", f"{outdir}/"]
    if ldflags:
        command += ["-ldflags", ldflags]
    subprocess.run([*command, *packages], check=True, cwd=workdir, env=env)
    log(f"built in {time.monotonic() - started:.0f}s")


def mark_complete(directory: Path) -> None:
    (directory / ".complete").write_text("ok\n")


def is_complete(directory: Path) -> bool:
    return (directory / ".complete").exists()


def link_into_bin(binary: Path, name: str | None = None) -> Path:
    """Symlink a cached binary into the checkout's bin/."""
    BIN_DIR.mkdir(exist_ok=True)
    link = BIN_DIR / (name or binary.name)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(binary)
    return link
