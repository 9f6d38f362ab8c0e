"""The cluster the suites run on: kind, the offline local cluster, or an existing KUBECONFIG.

Bring-up lives once, in `ops.cluster` (`make cluster-up` uses the same code): it creates
or adopts the cluster and installs metrics-server. This module only turns the result
into the handle the suites use: a pytest-kubernetes cluster manager (its kind provider
for kind, pinned by scripts/kind-config.yaml rather than its default v1.25 node image;
its external provider, as the DESIGN says, for the local and existing clusters), the
server images loaded into the node, and the NodePorts the harness may hand to releases.
The suites only ever see `Cluster`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kubernetes import client, config
from ops import cluster as ops_cluster
from ops import image_load, kube
from ops import providers as ops_providers
from ops.paths import BIN_DIR, cache_root
from ops.pins import KIND_CLUSTER_NAME
from pytest_kubernetes.providers import select_provider_manager
from pytest_kubernetes.providers.base import AClusterManager

CHOICES = ops_cluster.PROVIDERS
# The images the suites deploy (`make image` builds them): v1 serves anomaly version 1, v2 version 2.
E2E_IMAGES = ("tf-model-server:v1", "tf-model-server:v2")
# NodePorts reachable on 127.0.0.1 with every provider: kind publishes 30080-30089
# (scripts/kind-config.yaml) and `make up` uses 30080, so the suites take 30081-30089.
NODE_PORTS = tuple(range(30081, 30090))
NODE_ADDRESS = "127.0.0.1"


class NodeFaults(Protocol):
    """What a provider whose nodes are containers can do to a node (ops.providers.kind)."""

    def kill_node(self, node: str) -> None: ...

    def start_node(self, node: str) -> None: ...

    def stale_nat_entries(self, pod_ips: Sequence[str]) -> int: ...


@dataclass(frozen=True)
class Cluster:
    provider: str
    kubeconfig: Path
    manager: AClusterManager
    node_address: str = NODE_ADDRESS
    node_ports: tuple[int, ...] = NODE_PORTS
    # None where nodes cannot be killed from here (the local cluster's one node is this machine).
    node_faults: NodeFaults | None = None

    def free_node_port(self, core: client.CoreV1Api) -> int:
        """A NodePort from the pool that no Service holds (kept namespaces still hold theirs)."""
        used = {
            port.node_port
            for service in core.list_service_for_all_namespaces().items
            for port in service.spec.ports or []
            if port.node_port
        }
        for port in self.node_ports:
            if port not in used:
                return port
        raise RuntimeError(
            f"every e2e NodePort ({self.node_ports[0]}-{self.node_ports[-1]}) is taken, probably by "
            "namespaces kept after failed tests: delete them "
            "(kubectl get ns -l app.kubernetes.io/part-of=tf-model-server-e2e)"
        )


def manager_for(provider: str, kubeconfig: Path) -> AClusterManager:
    """pytest-kubernetes' handle on a cluster ops.cluster has brought up."""
    if provider == "kind":
        manager_class = select_provider_manager("kind", {"cluster_name": KIND_CLUSTER_NAME})
        # The config ops.providers.kind created the cluster from (its workers, its CNI choice).
        manager = manager_class(
            provider_config=str(cache_root() / "kind" / "cluster-config.yaml"), kubeconfig=kubeconfig
        )
    else:
        manager_class = select_provider_manager("external", {"kubeconfig": str(kubeconfig)})
        manager = manager_class(kubeconfig=kubeconfig)
    # The cluster answers already, so this adopts it (and pytest-kubernetes will never delete it).
    manager.create()
    return manager


def wait_ready(kubeconfig: Path, timeout_s: float = 120) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            nodes = core.list_node().items
            if nodes and all(
                any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
                for node in nodes
            ):
                core.read_namespaced_service_account("default", "default")
                return
            last_error = "node not Ready"
        except Exception as exc:  # any API error just means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(2)
    raise RuntimeError(f"cluster at {kubeconfig} not ready within {timeout_s:.0f}s: {last_error}")


@contextmanager
def provide(requested: str) -> Iterator[Cluster]:
    """Bring up (or adopt) the requested cluster and load the e2e images into it."""
    # pytest-kubernetes runs `kubectl` from PATH: put the pinned one (./bin or its cache) first.
    kubectl_dir = Path(kube.tool("kubectl")).parent
    os.environ["PATH"] = os.pathsep.join([str(BIN_DIR), str(kubectl_dir), os.environ.get("PATH", "")])
    started = time.monotonic()
    current = ops_cluster.up(requested)
    wait_ready(current.kubeconfig)
    manager = manager_for(current.provider, current.kubeconfig)
    load_images(current.provider)
    print(
        f"[e2e] {current.provider} cluster ready in {time.monotonic() - started:.0f}s "
        f"(kubeconfig {current.kubeconfig})",
        flush=True,
    )
    provider = ops_providers.get(current.provider)
    node_faults = provider if isinstance(provider, ops_providers.KindProvider) else None
    yield Cluster(current.provider, current.kubeconfig, manager, node_faults=node_faults)


def load_images(provider: str) -> None:
    image_load.load(E2E_IMAGES, provider=provider)
