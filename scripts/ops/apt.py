"""Debian packages the scripts need on a fresh machine, installed only when missing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def install(packages: Sequence[str], reason: str, recommends: bool = False) -> None:
    """apt-get install packages, saying why; raises on failure."""
    print(f"[apt] {reason}: installing {' '.join(packages)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    options = [] if recommends else ["--no-install-recommends"]
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *options, *packages], check=True, env=env)
