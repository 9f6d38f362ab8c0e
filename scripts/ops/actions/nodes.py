"""Wait until the cluster has the nodes it should, all Ready (say which are not, when they are not)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ops import kube

READY_TIMEOUT_SECONDS = 240


def log(message: str) -> None:
    print(f"[nodes] {message}", flush=True)


def node_readiness(kubeconfig: Path) -> dict[str, bool]:
    result = kube.kubectl(kubeconfig, "get", "nodes", "-o", "json", check=False, timeout=20)
    if result.returncode != 0:
        return {}
    return {
        node["metadata"]["name"]: any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])
        )
        for node in json.loads(result.stdout)["items"]
    }


def all_ready(kubeconfig: Path, expected: int) -> bool:
    readiness = node_readiness(kubeconfig)
    return bool(readiness) and all(readiness.values()) and len(readiness) >= expected


def wait_ready(kubeconfig: Path, expected: int, timeout: float = READY_TIMEOUT_SECONDS) -> dict[str, bool]:
    """Block until at least `expected` nodes exist and every node is Ready; raises naming the others."""
    deadline = time.monotonic() + timeout
    readiness: dict[str, bool] = {}
    while time.monotonic() < deadline:
        readiness = node_readiness(kubeconfig)
        if readiness and all(readiness.values()) and len(readiness) >= expected:
            log(f"{len(readiness)} node(s) Ready: {', '.join(sorted(readiness))}")
            return readiness
        time.sleep(2)
    not_ready = sorted(name for name, ready in readiness.items() if not ready)
    raise RuntimeError(
        f"nodes not Ready within {timeout:.0f}s: want {expected}, have {len(readiness)}"
        + (f"; not Ready: {', '.join(not_ready)}" if not_ready else "")
    )
