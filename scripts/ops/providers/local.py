"""The local provider: the offline single-node cluster of upstream binaries (ops.local_cluster).

Images come from Docker by `docker save | ctr import` into the cluster's own containerd
(namespace k8s.io, where the kubelet's CRI looks); an image whose ID the node already
has is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ops import docker
from ops.local_cluster import bringup, containerd, host, layout


def node_image_id(image: str) -> str | None:
    """The image ID the local cluster's CRI has under this name (None when absent)."""
    result = containerd.crictl("inspecti", "-o", "json", image, check=False)
    if result.returncode != 0:
        return None
    return str(json.loads(result.stdout)["status"]["id"])


class LocalProvider:
    name = "local"
    pod_subnet = layout.POD_SUBNET
    service_subnet = layout.SERVICE_SUBNET
    needs_pod_network = False  # the bring-up writes its own bridge CNI config (one node)
    expected_nodes = 1

    def can_run(self) -> tuple[bool, str]:
        try:
            host.require_root()
        except host.HostNotReady as error:
            return False, str(error)
        return True, "root on this machine (upstream binaries, built here if needed)"

    @property
    def host_volumes_dir(self) -> Path | None:
        return layout.volumes_dir()

    def kubeconfig(self) -> Path:
        return bringup.kubeconfig()

    def up(self) -> Path:
        return bringup.up()

    def down(self) -> None:
        bringup.down()

    def healthy(self) -> bool:
        return bringup.healthy()

    def status(self) -> str:
        return bringup.status()

    def left_state(self) -> bool:
        """A cluster nobody recorded (killed mid-run) left its files: `down` must still clean them."""
        return layout.OWNER_MARKER.exists() or layout.STATE_DIR.exists()

    def load_images(self, images: Sequence[str]) -> list[str]:
        stale = [image for image in images if node_image_id(image) != docker.image_id(image)]
        if stale:
            containerd.import_stream(["docker", "save", *stale])
        return stale
