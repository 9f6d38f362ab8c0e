"""metrics-server v0.7.2 with --kubelet-insecure-tls (scripts/manifests/metrics-server.yaml), as on kind.

Done when `kubectl top node` answers: the aggregated metrics API is registered and has a
sample for the nodes, which the HPA needs.

The APIService is applied last, after the Deployment is rolled out. Registered together
with its Service, the apiserver's aggregator opens its first connection to the Service's
ClusterIP before kube-proxy has a rule for it; that connection leaves by the node's
default route, and on a machine whose egress is intercepted (these) a proxy answers it
with 404 and the aggregator keeps the HTTP/2 connection, failing its discovery check for
good (seen on the kind cluster: no request ever reached metrics-server).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

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


def split_manifest() -> tuple[list[dict], list[dict]]:
    """(everything but the APIService, the APIService)."""
    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    api_services = [doc for doc in documents if doc["kind"] == "APIService"]
    return [doc for doc in documents if doc["kind"] != "APIService"], api_services


def apply_documents(kubeconfig: Path, documents: list[dict]) -> None:
    kube.apply_manifest(kubeconfig, json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}))


def install(kubeconfig: Path) -> None:
    workload, api_services = split_manifest()
    apply_documents(kubeconfig, workload)
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
    apply_documents(kubeconfig, api_services)
    if not kube.poll(lambda: metrics_available(kubeconfig), timeout=METRICS_TIMEOUT_SECONDS, interval=3):
        raise RuntimeError(
            f"metrics-server is running but serves no node metrics within {METRICS_TIMEOUT_SECONDS}s "
            "(kubectl -n kube-system logs deployment/metrics-server)"
        )
    kube.kubectl(kubeconfig, "top", "node")
