"""Pod networking: the reference CNI plugins from Debian (bridge, host-local, portmap, loopback).

One bridge with the node's pod CIDR, masquerade for traffic leaving it, hairpin so a pod
reaches itself through its Service, portmap for hostPort. The config lives in our run
directory and address allocations under /run/tfms-local-cluster, so nothing in /etc/cni
or /var/lib/cni/networks is touched.
"""

from __future__ import annotations

import json

from ops.local_cluster import layout

CONFIG_NAME = f"10-{layout.CNI_NETWORK}.conflist"


def conflist() -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": layout.CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.CNI_IPAM_DIR),
                    "ranges": [[{"subnet": layout.NODE_POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def write_config() -> None:
    layout.cni_conf_dir().mkdir(parents=True, exist_ok=True)
    for stale in layout.cni_conf_dir().glob("*"):
        stale.unlink()
    (layout.cni_conf_dir() / CONFIG_NAME).write_text(json.dumps(conflist(), indent=2) + "\n")
