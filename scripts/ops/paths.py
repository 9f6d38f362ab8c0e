"""Where things live: the checkout, and the build cache kept outside it."""

from __future__ import annotations

import os
from pathlib import Path

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
