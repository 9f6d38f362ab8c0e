"""A default StorageClass "standard" backed by local-path-provisioner, so PVCs bind as they do on kind.

kind installs its own (kind's default-storage manifest, its images preloaded in the node
image); a cluster without a default StorageClass gets scripts/manifests/local-path-storage.yaml
with its volumes in the directory the provider names. Done when the provisioner is rolled out.
"""

from __future__ import annotations

import json
from pathlib import Path

from ops import kube
from ops.paths import REPO_ROOT

MANIFEST = REPO_ROOT / "scripts" / "manifests" / "local-path-storage.yaml"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
ROLLOUT_TIMEOUT_SECONDS = 180


def log(message: str) -> None:
    print(f"[storage] {message}", flush=True)


def default_class(kubeconfig: Path) -> str | None:
    classes = json.loads(kube.kubectl(kubeconfig, "get", "storageclass", "-o", "json").stdout)["items"]
    for item in classes:
        if (item["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
            return str(item["metadata"]["name"])
    return None


def ensure_default(kubeconfig: Path, host_volumes_dir: Path | None) -> None:
    existing = default_class(kubeconfig)
    if existing is None:
        if host_volumes_dir is None:
            raise RuntimeError(
                "the cluster has no default StorageClass and its provider names no volume directory"
            )
        host_volumes_dir.mkdir(parents=True, exist_ok=True)
        kube.apply_manifest(kubeconfig, MANIFEST.read_text().replace("VOLUMES_DIR", str(host_volumes_dir)))
        log(f"StorageClass standard (local-path, volumes in {host_volumes_dir}) installed")
    else:
        log(f"default StorageClass {existing} present")
    kube.kubectl(
        kubeconfig,
        "-n",
        "local-path-storage",
        "rollout",
        "status",
        "deployment/local-path-provisioner",
        f"--timeout={ROLLOUT_TIMEOUT_SECONDS}s",
        timeout=ROLLOUT_TIMEOUT_SECONDS + 20,
    )
