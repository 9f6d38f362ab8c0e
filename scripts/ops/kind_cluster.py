"""The kind provider: users' default cluster (pinned kind, pinned node image, NodePorts on 127.0.0.1).

The cluster is created from scripts/kind-config.yaml (node image pinned by digest,
NodePorts 30080-30089 published on 127.0.0.1), then metrics-server is installed from the
same pinned manifest the local cluster uses. The kubeconfig is written to the cache, never
to ~/.kube/config.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from ops import docker, kube
from ops.local_cluster.addons import METRICS_SERVER_MANIFEST
from ops.paths import REPO_ROOT, cache_root

CLUSTER_NAME = "tf-model-server"
CONFIG = REPO_ROOT / "scripts" / "kind-config.yaml"
PULL_TIMEOUT_SECONDS = 900
READY_TIMEOUT_SECONDS = 240


def log(message: str) -> None:
    print(f"[kind] {message}", flush=True)


def node_image() -> str:
    config = yaml.safe_load(CONFIG.read_text())
    return str(config["nodes"][0]["image"])


def kubeconfig() -> Path:
    return cache_root() / "kind" / "kubeconfig"


def kind_binary() -> str:
    try:
        return kube.tool("kind")
    except kube.ToolMissing:
        log("kind is not installed: installing the pinned kind (ops.tools)")
        subprocess.run([sys.executable, "-m", "ops.tools", "install", "kind"], check=True)
        return kube.tool("kind")


def node_image_present() -> bool:
    result = subprocess.run(["docker", "image", "inspect", node_image()], capture_output=True, check=False)
    return result.returncode == 0


def pull_node_image() -> tuple[bool, str]:
    log(f"pulling {node_image()} (what `kind create cluster` would do)")
    try:
        result = subprocess.run(
            ["docker", "pull", node_image()],
            capture_output=True,
            text=True,
            timeout=PULL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"pull did not finish within {PULL_TIMEOUT_SECONDS}s"
    if result.returncode == 0:
        return True, "pulled"
    return False, (result.stderr.strip().splitlines() or ["pull failed"])[-1]


def can_run() -> tuple[bool, str]:
    """Whether kind can create its cluster here, and why (not)."""
    try:
        if not docker.daemon_answers():
            return False, "no Docker daemon answers (kind runs its node as a Docker container)"
    except FileNotFoundError:
        return False, "docker is not installed (kind runs its node as a Docker container)"
    if node_image_present():
        return True, f"Docker answers and the pinned node image {node_image()} is present"
    pulled, reason = pull_node_image()
    if pulled:
        return True, f"Docker answers and the pinned node image {node_image()} was pulled"
    return False, f"the pinned node image {node_image()} is not present and cannot be pulled ({reason})"


def exists() -> bool:
    result = subprocess.run([kind_binary(), "get", "clusters"], capture_output=True, text=True, check=False)
    return CLUSTER_NAME in result.stdout.split()


def install_metrics_server(config: Path) -> None:
    kube.apply_manifest(config, METRICS_SERVER_MANIFEST)
    kube.kubectl(
        config, "-n", "kube-system", "rollout", "status", "deployment/metrics-server", "--timeout=180s"
    )
    if not kube.poll(lambda: kube.succeeds(config, "top", "node"), timeout=120, interval=3):
        raise RuntimeError("metrics-server is running but `kubectl top node` does not answer within 120s")


def up() -> Path:
    started = time.monotonic()
    ok, reason = can_run()
    if not ok:
        raise RuntimeError(f"kind cannot run here: {reason}; CLUSTER=local runs the offline cluster instead")
    config = kubeconfig()
    config.parent.mkdir(parents=True, exist_ok=True)
    if exists():
        subprocess.run(
            [kind_binary(), "export", "kubeconfig", "--name", CLUSTER_NAME, "--kubeconfig", str(config)],
            check=True,
            capture_output=True,
        )
        log(f"cluster {CLUSTER_NAME} already exists: checking it")
    else:
        subprocess.run(
            [
                kind_binary(),
                "create",
                "cluster",
                "--name",
                CLUSTER_NAME,
                "--config",
                str(CONFIG),
                "--kubeconfig",
                str(config),
                "--wait",
                f"{READY_TIMEOUT_SECONDS}s",
            ],
            check=True,
        )
    kube.kubectl(
        config, "wait", "--for=condition=Ready", "node", "--all", f"--timeout={READY_TIMEOUT_SECONDS}s"
    )
    install_metrics_server(config)
    log(f"up in {time.monotonic() - started:.0f}s")
    return config


def down() -> None:
    if not exists():
        log(f"no kind cluster {CLUSTER_NAME}: nothing to delete")
        return
    subprocess.run(
        [kind_binary(), "delete", "cluster", "--name", CLUSTER_NAME, "--kubeconfig", str(kubeconfig())],
        check=True,
    )


def status() -> str:
    if not exists():
        return f"kind cluster {CLUSTER_NAME}: not present"
    nodes = kube.kubectl(kubeconfig(), "get", "nodes", "-o", "wide", check=False)
    pods = kube.kubectl(kubeconfig(), "get", "pods", "-A", check=False)
    return f"kind cluster {CLUSTER_NAME}\n{nodes.stdout}{nodes.stderr}\n{pods.stdout}"


def load_images(images: Sequence[str]) -> None:
    subprocess.run([kind_binary(), "load", "docker-image", "--name", CLUSTER_NAME, *images], check=True)
