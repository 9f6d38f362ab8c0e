"""What a kind cluster has beyond `kubeadm init`: metrics-server, DNS tuned for this machine, storage.

kubeadm's addon phase installs CoreDNS and kube-proxy; this adds metrics-server (the same
pinned manifest the kind provider applies), kind's default StorageClass "standard"
(local-path-provisioner, so PVCs bind as on kind), and adjusts CoreDNS: one replica (one
node, two cores) and no upstream forwarding: cluster names resolve, nothing leaves the
machine, and the host's resolver (possibly a loopback stub) can never make CoreDNS loop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ops import kube
from ops.local_cluster import layout
from ops.paths import REPO_ROOT

MANIFESTS_DIR = REPO_ROOT / "scripts" / "manifests"
METRICS_SERVER_MANIFEST = MANIFESTS_DIR / "metrics-server.yaml"
LOCAL_PATH_MANIFEST = MANIFESTS_DIR / "local-path-storage.yaml"
UPSTREAM_FORWARD = re.compile(r"\n[ \t]*forward \. /etc/resolv\.conf \{[^}]*\}")


def without_upstream_forwarding(corefile: str) -> str:
    return UPSTREAM_FORWARD.sub("", corefile)


def configure_coredns(kubeconfig: Path) -> None:
    config_map = kube.kubectl_json(kubeconfig, "-n", "kube-system", "get", "configmap", "coredns")
    corefile = config_map["data"]["Corefile"]
    patched = without_upstream_forwarding(corefile)
    if patched != corefile:
        config_map["data"]["Corefile"] = patched
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            config_map["metadata"].pop(key, None)
        kube.kubectl(kubeconfig, "replace", "-f", "-", input_text=json.dumps(config_map))
    kube.kubectl(kubeconfig, "-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")


def install_metrics_server(kubeconfig: Path) -> None:
    kube.apply_manifest(kubeconfig, METRICS_SERVER_MANIFEST)


def install_storage(kubeconfig: Path) -> None:
    layout.volumes_dir().mkdir(parents=True, exist_ok=True)
    manifest = LOCAL_PATH_MANIFEST.read_text().replace("VOLUMES_DIR", str(layout.volumes_dir()))
    kube.apply_manifest(kubeconfig, manifest)


def install(kubeconfig: Path) -> None:
    configure_coredns(kubeconfig)
    install_metrics_server(kubeconfig)
    install_storage(kubeconfig)
