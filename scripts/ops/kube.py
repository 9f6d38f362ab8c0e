"""kubectl and helm invocations against one kubeconfig (shared by cluster, release and smoke)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ops.paths import BIN_DIR, kubernetes_binary


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> str:
    """./bin/<name> (pinned, from `make tools`), else the cached build, else PATH."""
    pinned = BIN_DIR / name
    if pinned.exists():
        return str(pinned)
    if name == "kubectl":
        cached = kubernetes_binary("kubectl")
        if cached.exists():
            return str(cached)
    found = shutil.which(name)
    if found:
        return found
    raise ToolMissing(f"{name} not found: run `make tools`")


def kubectl(
    kubeconfig: Path,
    *args: str,
    check: bool = True,
    input_text: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        check=check,
        text=True,
        capture_output=True,
        input=input_text,
        timeout=timeout,
    )


def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    return json.loads(kubectl(kubeconfig, *args, "-o", "json").stdout)


def helm(
    kubeconfig: Path,
    *args: str,
    check: bool = True,
    timeout: float = 600,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("helm"), "--kubeconfig", str(kubeconfig), *args],
        check=check,
        text=True,
        capture_output=capture,
        timeout=timeout,
    )


def succeeds(kubeconfig: Path, *args: str, timeout: float = 20) -> bool:
    try:
        return kubectl(kubeconfig, *args, check=False, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def poll(check: Callable[[], bool], timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def apply_manifest(kubeconfig: Path, manifest: Path | str, extra: Sequence[str] = ()) -> None:
    if isinstance(manifest, Path):
        kubectl(kubeconfig, "apply", "-f", str(manifest), *extra)
    else:
        kubectl(kubeconfig, "apply", "-f", "-", *extra, input_text=manifest)


def describe_failure(error: subprocess.CalledProcessError) -> str:
    command = " ".join(str(part) for part in error.cmd)
    output = (error.stderr or "").strip() or (error.stdout or "").strip()
    return f"`{command}` failed (exit {error.returncode}):\n{output}"
