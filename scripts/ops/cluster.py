"""Which Kubernetes the tests run on, and its lifecycle: up, down, status, kubeconfig.

Providers:
  kind      users' default: a kind cluster (Docker, pinned node image), see ops.kind_cluster
  local     the offline single-node cluster from upstream binaries, see ops.local_cluster
  existing  whatever $KUBECONFIG points at (never created or deleted here)
  auto      kind when kind can run (Docker answers and the pinned node image is present or
            pullable), else local; says which and why

`up` records the provider in <cache>/cluster/current.json, so `down`, `status`,
`kubeconfig` and image loading with `auto` act on the cluster that is actually up.

``python -m ops.cluster {up,down,status,kubeconfig} [--provider auto|kind|local|existing]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ops import kind_cluster, kube
from ops.local_cluster import provider as local
from ops.paths import cache_root

PROVIDERS = ("auto", "kind", "local", "existing")


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


def existing_kubeconfig() -> Path:
    value = os.environ.get("KUBECONFIG", "")
    path = Path(value.split(os.pathsep)[0]) if value else Path.home() / ".kube" / "config"
    if not path.exists():
        raise SystemExit(f"CLUSTER=existing needs KUBECONFIG pointing at a kubeconfig; {path} does not exist")
    return path


def still_up(current: Current) -> bool:
    if current.provider == "local":
        return local.healthy()
    if current.provider == "kind":
        return kind_cluster.exists()
    return False


def choose_for_up(requested: str) -> str:
    if requested != "auto":
        log(f"provider {requested} (requested)")
        return requested
    current = recorded()
    if current is not None and still_up(current):
        log(f"provider {current.provider}: already up (recorded by an earlier cluster-up)")
        return current.provider
    ok, reason = kind_cluster.can_run()
    if ok:
        log(f"provider kind: {reason}")
        return "kind"
    log(f"provider local: kind cannot run here because {reason}")
    return "local"


def resolve(requested: str) -> Current | None:
    """The cluster an operation acts on: the requested provider, or with auto the recorded one."""
    if requested == "existing":
        return Current("existing", existing_kubeconfig())
    current = recorded()
    if requested == "auto":
        return current
    if requested == "kind":
        return Current("kind", kind_cluster.kubeconfig())
    return Current("local", local.kubeconfig())


def up(requested: str) -> Current:
    name = choose_for_up(requested)
    if name == "kind":
        config = kind_cluster.up()
    elif name == "local":
        config = local.up()
    else:
        config = existing_kubeconfig()
        if not kube.succeeds(config, "get", "--raw=/readyz"):
            raise SystemExit(f"the cluster in {config} does not answer /readyz")
        log(f"existing cluster at {config} answers")
    current = Current(name, config)
    record(current)
    return current


def down(requested: str) -> None:
    current = resolve(requested)
    if current is None:
        if local.layout.OWNER_MARKER.exists() or local.layout.STATE_DIR.exists():
            log("no cluster recorded, but a local cluster left state behind: cleaning it")
            local.down()
        else:
            log("no cluster recorded as up: nothing to do")
        return
    if current.provider == "kind":
        kind_cluster.down()
    elif current.provider == "local":
        local.down()
    else:
        log("existing cluster: left as it is (never deleted from here)")
    forget()


def status(requested: str) -> int:
    current = resolve(requested)
    if current is None:
        print("no cluster is up (make cluster-up)")
        return 1
    print(f"provider: {current.provider}\nkubeconfig: {current.kubeconfig}")
    if current.provider == "local":
        print(local.status())
        return 0 if local.healthy() else 1
    if current.provider == "kind":
        print(kind_cluster.status())
        return 0
    result = kube.kubectl(current.kubeconfig, "get", "nodes", "-o", "wide", check=False)
    print(result.stdout + result.stderr)
    return result.returncode


def current_kubeconfig(requested: str = "auto") -> Path:
    """The kubeconfig of the cluster that is up (for other ops modules and the test harness)."""
    current = resolve(requested)
    if current is None or not current.kubeconfig.exists():
        raise SystemExit("no cluster is up: run `make cluster-up` (or set CLUSTER=existing KUBECONFIG=...)")
    return current.kubeconfig


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
