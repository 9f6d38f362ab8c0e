"""Where things live: the checkout, and the build cache kept outside it."""

from __future__ import annotations

import os
from pathlib import Path

from ops.pins import KUBERNETES_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / "bin"
REPORTS_DIR = REPO_ROOT / "reports"


def cache_root() -> Path:
    """Build cache shared by every clone on this machine (survives a fresh clone)."""
    override = os.environ.get("TFMS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tf-model-server"


def tool_dir(name: str, version: str) -> Path:
    """Where one pinned tool's build or download is cached: <cache>/tools/<name>-<version>/."""
    return cache_root() / "tools" / f"{name}-{version}"


def kubernetes_binary(name: str) -> Path:
    """A cached Kubernetes binary (kubeadm, kubelet, kubectl, ...), built or downloaded by ops.k8s_build."""
    return tool_dir("kubernetes", KUBERNETES_VERSION) / "bin" / name
