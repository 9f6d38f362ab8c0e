"""Load the server images from Docker into the cluster that is up (`make load`, `ops.image load`).

kind: `kind load docker-image`. local: `docker save | ctr images import` into the cluster's
containerd (namespace k8s.io, where the kubelet's CRI looks); images whose ID the node
already has are skipped. existing: nothing can be loaded into an arbitrary cluster; the
images must come from a registry its nodes can pull from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from ops import cluster, docker, kind_cluster
from ops.local_cluster import containerd

IMAGES = ("tf-model-server:0.1.0", "tf-model-server:v1", "tf-model-server:v2")


def log(message: str) -> None:
    print(f"[load] {message}", flush=True)


def docker_image_id(image: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def node_image_id(image: str) -> str | None:
    """The image ID the local cluster's CRI has under this name (None when absent)."""
    result = containerd.crictl("inspecti", "-o", "json", image, check=False)
    if result.returncode != 0:
        return None
    return str(json.loads(result.stdout)["status"]["id"])


def load_into_local(images: Sequence[str]) -> list[str]:
    stale = [image for image in images if node_image_id(image) != docker_image_id(image)]
    if stale:
        containerd.import_stream(["docker", "save", *stale])
    return stale


def load(images: Sequence[str] = IMAGES, provider: str = "auto") -> None:
    started = time.monotonic()
    current = cluster.resolve(provider)
    if current is None:
        raise SystemExit("no cluster is up: run `make cluster-up` first")
    docker.ensure_daemon()
    missing = [image for image in images if docker_image_id(image) is None]
    if missing:
        raise SystemExit(f"not in Docker: {', '.join(missing)}; build them with `make image`")
    if current.provider == "kind":
        kind_cluster.load_images(images)
        loaded = list(images)
    elif current.provider == "local":
        loaded = load_into_local(images)
    else:
        log(
            "existing cluster: images cannot be loaded into it from here; push "
            f"{', '.join(images)} to a registry its nodes pull from (chart value image.repository)"
        )
        return
    skipped = [image for image in images if image not in loaded]
    log(
        f"{current.provider}: loaded {', '.join(loaded) or 'nothing'}"
        + (f"; already present: {', '.join(skipped)}" if skipped else "")
        + f" ({time.monotonic() - started:.1f}s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops.image_load", description=__doc__)
    parser.add_argument("images", nargs="*", default=list(IMAGES))
    parser.add_argument("--provider", choices=cluster.PROVIDERS, default="auto")
    args = parser.parse_args(argv)
    load(args.images, args.provider)
    return 0


if __name__ == "__main__":
    sys.exit(main())
