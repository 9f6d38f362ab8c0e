"""metrics-server v0.7.2 with --kubelet-insecure-tls (scripts/manifests/metrics-server.yaml), as on kind.

Done when `kubectl top node` answers: the aggregated metrics API is registered and has a
sample for the nodes, which the HPA needs.
"""

from __future__ import annotations

from pathlib import Path

from ops import kube
from ops.paths import REPO_ROOT

MANIFEST = REPO_ROOT / "scripts" / "manifests" / "metrics-server.yaml"
ROLLOUT_TIMEOUT_SECONDS = 180
METRICS_TIMEOUT_SECONDS = 180


def metrics_available(kubeconfig: Path) -> bool:
    """metrics-server answers through the aggregator with a usage sample for the nodes."""
    result = kube.kubectl(
        kubeconfig, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False, timeout=20
    )
    return result.returncode == 0 and '"usage"' in result.stdout


def install(kubeconfig: Path) -> None:
    kube.apply_manifest(kubeconfig, MANIFEST)
    kube.kubectl(
        kubeconfig,
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/metrics-server",
        f"--timeout={ROLLOUT_TIMEOUT_SECONDS}s",
        timeout=ROLLOUT_TIMEOUT_SECONDS + 20,
    )
    if not kube.poll(lambda: metrics_available(kubeconfig), timeout=METRICS_TIMEOUT_SECONDS, interval=3):
        raise RuntimeError(
            f"metrics-server is running but serves no node metrics within {METRICS_TIMEOUT_SECONDS}s "
            "(kubectl -n kube-system logs deployment/metrics-server)"
        )
    kube.kubectl(kubeconfig, "top", "node")
