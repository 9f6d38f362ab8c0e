"""`make up` / `make down`: from nothing to a curl that works, and back.

up:   cluster (ops.cluster; CLUSTER=auto picks kind when it can run, else local), the server
      images (`ops.image build`), loaded into the cluster, the chart installed as release
      "tf-model-server" in a Pod-Security-restricted namespace with its Service on NodePort
      30080 (published on 127.0.0.1 by kind's config, by kube-proxy on the local cluster),
      then one prediction through that port, and the curl that does the same.
down: delete the cluster (CLUSTER=existing: only uninstall the release and its namespace).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ops import cluster, image_load, predict
from ops.paths import REPO_ROOT
from ops.release import Release

RELEASE = "tf-model-server"
NAMESPACE = "tf-model-server"
NODE_PORT = 30080


def log(message: str) -> None:
    print(f"[up] {message}", flush=True)


def up(provider: str) -> None:
    started = time.monotonic()
    current = cluster.up(provider)
    log("building the images (ops.image build) ...")
    subprocess.run(
        [sys.executable, "-m", "ops.image", "build"],
        check=True,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=f"{REPO_ROOT / 'scripts'}:{REPO_ROOT / 'image'}"),
    )
    image_load.load(image_load.IMAGES, current.provider)
    release = Release(RELEASE, NAMESPACE, current.kubeconfig)
    log(f"helm upgrade --install {RELEASE} chart/ (namespace {NAMESPACE}, NodePort {NODE_PORT}) ...")
    release.apply(set_values={"service.type": "NodePort", "service.nodePort": NODE_PORT})
    log(predict.check(predict.predict(NODE_PORT)))
    log(f"ready in {time.monotonic() - started:.0f}s ({current.provider} cluster). Try it:")
    print(f"export KUBECONFIG={current.kubeconfig}")
    print(predict.curl_command(NODE_PORT))


def down(provider: str) -> None:
    current = cluster.resolve(provider)
    if current is not None and current.provider == "existing":
        release = Release(RELEASE, NAMESPACE, current.kubeconfig)
        release.uninstall()
        release.delete_namespace()
        log(f"uninstalled {RELEASE} and deleted namespace {NAMESPACE}; the cluster itself stays")
        return
    cluster.down(provider)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ops.quickstart", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--provider", choices=cluster.PROVIDERS, default=os.environ.get("CLUSTER", "auto"))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.provider)
        else:
            down(args.provider)
    # RuntimeError covers ReleaseError and the local cluster's ComponentFailed.
    except (RuntimeError, AssertionError, subprocess.CalledProcessError) as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
