"""The kubelet as a supervised host process, started the way kubeadm's systemd drop-in starts it.

kubeadm's 10-kubeadm.conf runs
``kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS``; the
first two are fixed paths and the third comes from /var/lib/kubelet/kubeadm-flags.env,
which the kubelet-start phase writes. We build the same command line.
"""

from __future__ import annotations

import shlex
import urllib.error
import urllib.request

from ops.local_cluster import layout, services
from ops.paths import kubernetes_binary

NAME = "kubelet"
HEALTHZ = "http://127.0.0.1:10248/healthz"


def kubeadm_flags() -> list[str]:
    for line in layout.KUBEADM_FLAGS_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUBELET_KUBEADM_ARGS":
            return shlex.split(shlex.split(value)[0]) if value.strip() else []
    return []


def command() -> list[str]:
    return [
        str(kubernetes_binary("kubelet")),
        f"--bootstrap-kubeconfig={layout.KUBERNETES_DIR / 'bootstrap-kubelet.conf'}",
        f"--kubeconfig={layout.KUBERNETES_DIR / 'kubelet.conf'}",
        f"--config={layout.KUBELET_CONFIG}",
        *kubeadm_flags(),
    ]


def healthy() -> bool:
    try:
        with urllib.request.urlopen(HEALTHZ, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start() -> None:
    layout.pod_logs_dir().mkdir(parents=True, exist_ok=True)
    services.start(NAME, command())
    services.wait_for(NAME, healthy, timeout=60, what="kubelet /healthz")


def stop() -> None:
    services.stop_service(NAME)
