"""The pod network for clusters that come up without one: flannel (scripts/manifests/flannel.yaml).

kind's own CNI (kindnetd) cannot be built here (its module is not served), so the offline
kind cluster is created with `networking.disableDefaultCNI: true` and gets flannel
instead: flanneld (host-gw backend) plus the standard bridge/host-local/portmap plugins.
Done when the DaemonSet is rolled out on every node; the nodes then turn Ready.
"""

from __future__ import annotations

from pathlib import Path

from ops import kube
from ops.paths import REPO_ROOT
from ops.pins import FLANNEL_IMAGE

MANIFEST = REPO_ROOT / "scripts" / "manifests" / "flannel.yaml"
ROLLOUT_TIMEOUT_SECONDS = 240


def log(message: str) -> None:
    print(f"[pod-network] {message}", flush=True)


def manifest(pod_subnet: str, service_subnet: str) -> str:
    return (
        MANIFEST.read_text()
        .replace("__POD_SUBNET__", pod_subnet)
        .replace("__SERVICE_SUBNET__", service_subnet)
        .replace("__FLANNEL_IMAGE__", FLANNEL_IMAGE)
    )


def install(kubeconfig: Path, pod_subnet: str, service_subnet: str) -> None:
    kube.apply_manifest(kubeconfig, manifest(pod_subnet, service_subnet))
    kube.kubectl(
        kubeconfig,
        "-n",
        "kube-flannel",
        "rollout",
        "status",
        "daemonset/kube-flannel-ds",
        f"--timeout={ROLLOUT_TIMEOUT_SECONDS}s",
        timeout=ROLLOUT_TIMEOUT_SECONDS + 20,
    )
    log(f"flannel (host-gw, {pod_subnet}) rolled out on every node")
