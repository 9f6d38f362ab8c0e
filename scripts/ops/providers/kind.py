"""The kind provider: users' default cluster, 1 control-plane + N workers, NodePorts on 127.0.0.1.

The cluster is created from scripts/kind-config.yaml (kind v0.26.0, NodePorts 30080-30089
published on 127.0.0.1 by the control-plane node), with `KIND_WORKERS` workers (default 2).
Its node image is kind's pinned public image when Docker has it or can pull it; otherwise
the offline build of ops.kind_image (`make kind-image`), and then, because kind's own CNI
cannot be built here, `networking.disableDefaultCNI: true` so ops.actions.pod_network adds
flannel. Which image and why is printed. On a host where `docker run --privileged` fails
for want of capabilities, ops.docker_caps fixes Docker first (and says so). The kubeconfig
goes to the cache, never to ~/.kube/config. `down` leaves no node container, volume or
kind network behind; the node images stay (they are the cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ops import docker, docker_caps, kind_image, kube, tools
from ops.paths import REPO_ROOT, cache_root
from ops.pins import KIND_CLUSTER_NAME, KIND_DEFAULT_WORKERS, KIND_OFFLINE_NODE_IMAGE, KIND_PUBLIC_NODE_IMAGE

CONFIG = REPO_ROOT / "scripts" / "kind-config.yaml"
PULL_TIMEOUT_SECONDS = 300
POD_SUBNET = "10.244.0.0/16"  # kind's default podSubnet
SERVICE_SUBNET = "10.96.0.0/16"  # kind's default serviceSubnet
KIND_NETWORK = "kind"
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
# Multi-node kind needs more inotify instances than Debian's default 128 (kind's known issues).
INOTIFY_MINIMUMS = {"fs.inotify.max_user_instances": 512, "fs.inotify.max_user_watches": 524288}
# The offline node image's kube-proxy and flanneld use Debian's iptables, which is nft.
NODE_IPTABLES_MODE = "nft"


def log(message: str) -> None:
    print(f"[kind] {message}", flush=True)


@dataclass(frozen=True)
class NodeImage:
    name: str
    offline: bool
    reason: str


def workers_from_env() -> int:
    value = os.environ.get("KIND_WORKERS", "")
    if not value:
        return KIND_DEFAULT_WORKERS
    if not value.isdigit():
        raise SystemExit(f"KIND_WORKERS must be a whole number of workers (0 or more), got {value!r}")
    return int(value)


def cluster_config(workers: int, offline: bool) -> dict[str, Any]:
    """scripts/kind-config.yaml with `workers` worker nodes and, for the offline image, no default CNI."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    control_plane = next(node for node in config["nodes"] if node["role"] == "control-plane")
    worker = {"role": "worker", "image": control_plane["image"]}
    config["nodes"] = [control_plane, *([worker] * workers)]
    if offline:
        config.setdefault("networking", {})["disableDefaultCNI"] = True
    return config


def image_present(name: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0
    )


def pull(name: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ["docker", "pull", name],
            capture_output=True,
            text=True,
            timeout=PULL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"pull did not finish within {PULL_TIMEOUT_SECONDS}s"
    return result.returncode == 0, (result.stderr.strip().splitlines() or ["pulled"])[-1]


def raise_sysctls() -> None:
    for name, minimum in INOTIFY_MINIMUMS.items():
        path = Path("/proc/sys") / name.replace(".", "/")
        current = int(path.read_text())
        if current < minimum:
            path.write_text(str(minimum))
            log(f"{name}: {current} -> {minimum} (multi-node kind needs it)")


class KindProvider:
    name = "kind"
    pod_subnet = POD_SUBNET
    service_subnet = SERVICE_SUBNET

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers_from_env() if workers is None else workers
        self._image: NodeImage | None = None

    # ------------------------------------------------------------------ which node image

    def choose_image(self, build: bool) -> NodeImage | None:
        """The public pinned image if present or pullable, else the offline build (built if `build`)."""
        if image_present(KIND_PUBLIC_NODE_IMAGE):
            return NodeImage(
                KIND_PUBLIC_NODE_IMAGE, False, f"the pinned node image {KIND_PUBLIC_NODE_IMAGE} is present"
            )
        pulled, why_not = pull(KIND_PUBLIC_NODE_IMAGE)
        if pulled:
            return NodeImage(
                KIND_PUBLIC_NODE_IMAGE, False, f"the pinned node image {KIND_PUBLIC_NODE_IMAGE} was pulled"
            )
        unavailable = f"the pinned node image cannot be pulled ({why_not})"
        if kind_image.present():
            return NodeImage(
                KIND_OFFLINE_NODE_IMAGE, True, f"{unavailable}; the offline node image is present"
            )
        if not build:
            return None
        log(f"{unavailable}: building the offline node image (make kind-image) ...")
        return NodeImage(kind_image.ensure_node_image(), True, f"{unavailable}; built the offline node image")

    def node_image(self) -> NodeImage:
        if self._image is None:
            image = self.choose_image(build=True)
            assert image is not None
            self._image = image
            log(f"node image {image.name}: {image.reason}")
        return self._image

    # ------------------------------------------------------------------ Provider

    def can_run(self) -> tuple[bool, str]:
        try:
            if not docker.daemon_answers():
                return False, "no Docker daemon answers (kind runs its nodes as Docker containers)"
        except FileNotFoundError:
            return False, "docker is not installed (kind runs its nodes as Docker containers)"
        image = self.choose_image(build=False)
        if image is None:
            return False, (
                f"the pinned node image {KIND_PUBLIC_NODE_IMAGE} cannot be pulled and no offline node "
                "image is built (`make kind-image` builds one)"
            )
        self._image = image
        return True, f"Docker answers and {image.reason}"

    @property
    def needs_pod_network(self) -> bool:
        return self.node_image().offline

    @property
    def expected_nodes(self) -> int:
        return 1 + self.workers

    @property
    def host_volumes_dir(self) -> Path | None:
        return None  # kind installs its own default StorageClass

    def kubeconfig(self) -> Path:
        return cache_root() / "kind" / "kubeconfig"

    def kind(self) -> str:
        return str(tools.ensure(tools.KIND))

    def exists(self) -> bool:
        result = subprocess.run([self.kind(), "get", "clusters"], capture_output=True, text=True, check=False)
        return KIND_CLUSTER_NAME in result.stdout.split()

    def nodes(self) -> list[str]:
        result = subprocess.run(
            [self.kind(), "get", "nodes", "--name", KIND_CLUSTER_NAME],
            capture_output=True,
            text=True,
            check=False,
        )
        return sorted(result.stdout.split())

    def healthy(self) -> bool:
        if not self.exists() or len(self.nodes()) != self.expected_nodes:
            return False
        self.export_kubeconfig()
        return kube.succeeds(self.kubeconfig(), "get", "--raw=/readyz")

    def export_kubeconfig(self) -> None:
        self.kubeconfig().parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                self.kind(),
                "export",
                "kubeconfig",
                "--name",
                KIND_CLUSTER_NAME,
                "--kubeconfig",
                str(self.kubeconfig()),
            ],
            check=True,
            capture_output=True,
        )

    def up(self) -> Path:
        docker.ensure_daemon()
        image = self.node_image()
        if self.exists():
            present = self.nodes()
            if len(present) == self.expected_nodes:
                log(f"cluster {KIND_CLUSTER_NAME} already exists ({len(present)} nodes): adopting it")
                self.export_kubeconfig()
                return self.kubeconfig()
            log(
                f"cluster {KIND_CLUSTER_NAME} has {len(present)} nodes, want {self.expected_nodes}: "
                "recreating it"
            )
            self.down()
        docker_caps.ensure_privileged_containers(image.name)
        raise_sysctls()
        config_path = cache_root() / "kind" / "cluster-config.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(cluster_config(self.workers, image.offline), sort_keys=False))
        started = time.monotonic()
        log(f"kind create cluster: 1 control-plane + {self.workers} worker(s), image {image.name}")
        subprocess.run(
            [
                self.kind(),
                "create",
                "cluster",
                "--name",
                KIND_CLUSTER_NAME,
                "--image",
                image.name,
                "--config",
                str(config_path),
                "--kubeconfig",
                str(self.kubeconfig()),
            ],
            check=True,
        )
        log(f"kind create cluster: {time.monotonic() - started:.0f}s")
        if image.offline:
            self.check_iptables_mode()
        return self.kubeconfig()

    def check_iptables_mode(self) -> None:
        """kind's entrypoint picks legacy or nft per node; the offline images' iptables is nft."""
        for node in self.nodes():
            result = subprocess.run(
                ["docker", "exec", node, "readlink", "/etc/alternatives/iptables"],
                capture_output=True,
                text=True,
                check=True,
            )
            if not result.stdout.strip().endswith(NODE_IPTABLES_MODE):
                raise RuntimeError(
                    f"node {node} chose iptables {result.stdout.strip()} but the offline kube-proxy and "
                    f"flannel images use iptables-{NODE_IPTABLES_MODE}: their rules would not meet"
                )

    def down(self) -> None:
        if self.exists():
            volumes = self.node_volumes()
            subprocess.run([self.kind(), "delete", "cluster", "--name", KIND_CLUSTER_NAME], check=True)
            for volume in volumes:
                subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)
        else:
            log(f"no kind cluster {KIND_CLUSTER_NAME}: nothing to delete")
        self.remove_network_if_unused()
        left = self.leftovers()
        if left:
            raise RuntimeError("kind cluster-down left these behind:\n  " + "\n  ".join(left))
        self.kubeconfig().unlink(missing_ok=True)
        log("down: no node container, volume or kind network left")

    def node_volumes(self) -> list[str]:
        containers = self.node_containers()
        if not containers:
            return []
        result = subprocess.run(
            ["docker", "inspect", *containers], capture_output=True, text=True, check=True
        )
        return [
            mount["Name"]
            for container in json.loads(result.stdout)
            for mount in container.get("Mounts", [])
            if mount.get("Type") == "volume"
        ]

    def node_containers(self) -> list[str]:
        result = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={CLUSTER_LABEL}={KIND_CLUSTER_NAME}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.split()

    def remove_network_if_unused(self) -> None:
        inspect = subprocess.run(
            ["docker", "network", "inspect", KIND_NETWORK], capture_output=True, text=True, check=False
        )
        if inspect.returncode != 0:
            return
        if not json.loads(inspect.stdout)[0].get("Containers"):
            subprocess.run(["docker", "network", "rm", KIND_NETWORK], capture_output=True, check=True)

    def leftovers(self) -> list[str]:
        """What a deleted cluster must not leave: its node containers, an unused kind network."""
        left = [f"container {container}" for container in self.node_containers()]
        inspect = subprocess.run(
            ["docker", "network", "inspect", KIND_NETWORK], capture_output=True, text=True, check=False
        )
        if inspect.returncode == 0 and not json.loads(inspect.stdout)[0].get("Containers"):
            left.append(f"docker network {KIND_NETWORK}")
        return left

    def status(self) -> str:
        if not self.exists():
            return f"kind cluster {KIND_CLUSTER_NAME}: not present"
        self.export_kubeconfig()
        nodes = kube.kubectl(self.kubeconfig(), "get", "nodes", "-o", "wide", check=False)
        pods = kube.kubectl(self.kubeconfig(), "get", "pods", "-A", "-o", "wide", check=False)
        return f"kind cluster {KIND_CLUSTER_NAME}\n{nodes.stdout}{nodes.stderr}\n{pods.stdout}"

    def load_images(self, images: Sequence[str]) -> list[str]:
        """`kind load docker-image` onto the workers only: the control-plane node takes no pods
        (kind taints it when there are workers), and each node costs a full import of the image."""
        workers = [node for node in self.nodes() if not node.endswith("-control-plane")]
        node_args = ["--nodes", ",".join(workers)] if self.workers and workers else []
        command = [self.kind(), "load", "docker-image", "--name", KIND_CLUSTER_NAME, *node_args, *images]
        subprocess.run(command, check=True)
        return list(images)

    # ------------------------------------------------------------------ node faults (the nodes suite)

    def kill_node(self, node: str) -> None:
        """The node's container SIGKILLed: the node is gone without a drain, as a crashed machine."""
        subprocess.run(["docker", "kill", "--signal", "KILL", node], check=True, capture_output=True)

    def start_node(self, node: str) -> None:
        subprocess.run(["docker", "start", node], check=True, capture_output=True)

    def stale_nat_entries(self, pod_ips: Sequence[str]) -> int:
        """SYN_SENT conntrack entries NATed to these pod IPs on the control-plane node.

        Every NodePort connection from 127.0.0.1 enters the cluster there (kind's port
        mappings), so that is where a lost pod's unanswered connections leave their entries.
        """
        result = subprocess.run(
            ["docker", "exec", f"{KIND_CLUSTER_NAME}-control-plane", "conntrack", "-L", "-p", "tcp"],
            capture_output=True,
            text=True,
            check=True,
        )
        wanted = {f"src={ip} " for ip in pod_ips}
        return sum(
            1
            for line in result.stdout.splitlines()
            if "SYN_SENT" in line and any(needle in line for needle in wanted)
        )
