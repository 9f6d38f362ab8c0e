"""Which Kubernetes the tests run on, and its lifecycle: the one place providers and actions compose.

Providers (ops.providers):
  kind      users' default: 1 control-plane + KIND_WORKERS workers (default 2) in Docker
  local     the offline single-node cluster from upstream binaries (ops.local_cluster)
  existing  whatever $KUBECONFIG points at (never created or deleted here)
  auto      the cluster an earlier `up` started if it is still up; else kind when kind can
            run (Docker answers and the pinned node image is present or pullable, or the
            offline node image is built); else local. Says which and why.

`up` = provider.up(), then the actions every cluster gets, in order: the pod network
(only where the provider comes up without one), every node Ready, metrics-server, a
default StorageClass. Each action is idempotent, so `up` on a cluster that is up
changes nothing. `up` records the provider in <cache>/cluster/current.json, so `down`,
`status`, `kubeconfig` and image loading with `auto` act on the cluster that is up.

``python -m ops.cluster {up,down,status,kubeconfig} [--provider auto|kind|local|existing]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops import providers
from ops.actions import metrics_server, nodes, pod_network, storage
from ops.paths import cache_root
from ops.progress import Steps
from ops.providers import Provider

PROVIDERS = ("auto", *providers.NAMES)


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


@dataclass(frozen=True)
class Current:
    provider: str
    kubeconfig: Path


def state_file() -> Path:
    return cache_root() / "cluster" / "current.json"


def record(current: Current) -> None:
    state_file().parent.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps({"provider": current.provider, "kubeconfig": str(current.kubeconfig)}))


def recorded() -> Current | None:
    try:
        data = json.loads(state_file().read_text())
        return Current(data["provider"], Path(data["kubeconfig"]))
    except (OSError, ValueError, KeyError):
        return None


def forget() -> None:
    state_file().unlink(missing_ok=True)


def choose_for_up(requested: str) -> Provider:
    if requested != "auto":
        log(f"provider {requested} (requested)")
        return providers.get(requested)
    current = recorded()
    if current is not None and current.provider != "existing":
        provider = providers.get(current.provider)
        if provider.healthy():
            log(f"provider {current.provider}: already up (recorded by an earlier cluster-up)")
            return provider
    kind = providers.get("kind")
    ok, reason = kind.can_run()
    if ok:
        log(f"provider kind: {reason}")
        return kind
    log(f"provider local: kind cannot run here because {reason}")
    return providers.get("local")


def resolve(requested: str) -> Current | None:
    """The cluster an operation acts on: the requested provider, or with auto the recorded one."""
    if requested == "auto":
        return recorded()
    return Current(requested, providers.get(requested).kubeconfig())


def run_actions(provider: Provider, kubeconfig: Path) -> None:
    """What every cluster gets after its provider brought it up (ops.actions), in order."""
    steps = Steps(log)
    if provider.needs_pod_network:
        with steps.step("pod network: flannel"):
            pod_network.install(kubeconfig, provider.pod_subnet, provider.service_subnet)
    if provider.expected_nodes:
        with steps.step(f"{provider.expected_nodes} node(s) Ready"):
            nodes.wait_ready(kubeconfig, provider.expected_nodes)
    with steps.step("metrics-server answering (kubectl top)"):
        metrics_server.install(kubeconfig)
    with steps.step("default StorageClass"):
        storage.ensure_default(kubeconfig, provider.host_volumes_dir)
    log(f"actions:\n{steps.summary()}")


def up(requested: str) -> Current:
    provider = choose_for_up(requested)
    config = provider.up()
    if provider.name != "existing":
        run_actions(provider, config)
    current = Current(provider.name, config)
    record(current)
    return current


def down(requested: str) -> None:
    current = resolve(requested)
    if current is None:
        local = providers.LocalProvider()
        if local.left_state():
            log("no cluster recorded, but a local cluster left state behind: cleaning it")
            local.down()
        else:
            log("no cluster recorded as up: nothing to do")
        return
    providers.get(current.provider).down()
    forget()


def status(requested: str) -> int:
    current = resolve(requested)
    if current is None:
        print("no cluster is up (make cluster-up)")
        return 1
    provider = providers.get(current.provider)
    print(f"provider: {current.provider}\nkubeconfig: {current.kubeconfig}")
    print(provider.status())
    return 0 if provider.healthy() else 1


def current_kubeconfig(requested: str = "auto") -> Path:
    """The kubeconfig of the cluster that is up (for other ops modules and the test harness)."""
    current = resolve(requested)
    if current is None or not current.kubeconfig.exists():
        raise SystemExit("no cluster is up: run `make cluster-up` (or set CLUSTER=existing KUBECONFIG=...)")
    return current.kubeconfig


def load_images(images: Sequence[str], requested: str = "auto") -> tuple[str, list[str]]:
    """Load local Docker images into the cluster that is up; returns (provider, images loaded)."""
    current = resolve(requested)
    if current is None:
        raise SystemExit("no cluster is up: run `make cluster-up` first")
    return current.provider, providers.get(current.provider).load_images(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ops.cluster", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down", "status", "kubeconfig"))
    parser.add_argument("--provider", choices=PROVIDERS, default=os.environ.get("CLUSTER", "auto"))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            current = up(args.provider)
            log(f"{current.provider} cluster is up. To use it:")
            print(f"export KUBECONFIG={current.kubeconfig}")
        elif args.command == "down":
            down(args.provider)
        elif args.command == "status":
            return status(args.provider)
        else:
            print(current_kubeconfig(args.provider))
    # RuntimeError: a component that did not come up (with its log lines), a host that
    # cannot run the local cluster, kind that cannot run here; each says why.
    except (RuntimeError, subprocess.CalledProcessError) as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
