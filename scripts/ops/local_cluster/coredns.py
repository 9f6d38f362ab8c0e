"""CoreDNS tuned for the one-node local cluster: one replica and no upstream forwarding.

kubeadm's addon phase installs CoreDNS with two replicas forwarding to the host's
resolver. On one node with two cores one replica is enough, and without forwarding
cluster names still resolve while nothing leaves the machine, and the host's resolver
(possibly a loopback stub) can never make CoreDNS loop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ops import kube

UPSTREAM_FORWARD = re.compile(r"\n[ \t]*forward \. /etc/resolv\.conf \{[^}]*\}")


def without_upstream_forwarding(corefile: str) -> str:
    return UPSTREAM_FORWARD.sub("", corefile)


def configure(kubeconfig: Path) -> None:
    config_map = kube.kubectl_json(kubeconfig, "-n", "kube-system", "get", "configmap", "coredns")
    corefile = config_map["data"]["Corefile"]
    patched = without_upstream_forwarding(corefile)
    if patched != corefile:
        config_map["data"]["Corefile"] = patched
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            config_map["metadata"].pop(key, None)
        kube.kubectl(kubeconfig, "replace", "-f", "-", input_text=json.dumps(config_map))
    kube.kubectl(kubeconfig, "-n", "kube-system", "scale", "deployment/coredns", "--replicas=1")
