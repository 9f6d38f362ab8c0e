"""Load the server images from Docker into the cluster that is up (`make load`).

kind: `kind load docker-image` onto every node. local: `docker save | ctr images import`
into the cluster's containerd, skipping images whose ID the node already has. existing:
nothing can be loaded into an arbitrary cluster; the images must come from a registry its
nodes can pull from. (Each is its provider's `load_images`.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ops import cluster, docker

IMAGES = ("tf-model-server:0.1.0", "tf-model-server:v1", "tf-model-server:v2")


def log(message: str) -> None:
    print(f"[load] {message}", flush=True)


def load(images: Sequence[str] = IMAGES, provider: str = "auto") -> None:
    started = time.monotonic()
    docker.ensure_daemon()
    missing = [image for image in images if docker.image_id(image) is None]
    if missing:
        raise SystemExit(f"not in Docker: {', '.join(missing)}; build them with `make image`")
    name, loaded = cluster.load_images(images, provider)
    skipped = [image for image in images if image not in loaded]
    log(
        f"{name}: loaded {', '.join(loaded) or 'nothing'}"
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
