"""The existing provider: whatever $KUBECONFIG points at, never created or deleted from here.

Images cannot be loaded into an arbitrary cluster: they must come from a registry its
nodes pull from (chart value image.repository).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ops import kube


def log(message: str) -> None:
    print(f"[existing] {message}", flush=True)


class ExistingProvider:
    name = "existing"
    pod_subnet = ""
    service_subnet = ""
    needs_pod_network = False
    expected_nodes = 0
    host_volumes_dir: Path | None = None

    def kubeconfig(self) -> Path:
        value = os.environ.get("KUBECONFIG", "")
        path = Path(value.split(os.pathsep)[0]) if value else Path.home() / ".kube" / "config"
        if not path.exists():
            raise SystemExit(
                f"CLUSTER=existing needs KUBECONFIG pointing at a kubeconfig; {path} does not exist"
            )
        return path

    def can_run(self) -> tuple[bool, str]:
        return True, "uses $KUBECONFIG"

    def healthy(self) -> bool:
        return kube.succeeds(self.kubeconfig(), "get", "--raw=/readyz")

    def up(self) -> Path:
        config = self.kubeconfig()
        if not self.healthy():
            raise RuntimeError(f"the cluster in {config} does not answer /readyz")
        log(f"existing cluster at {config} answers")
        return config

    def down(self) -> None:
        log("existing cluster: left as it is (never deleted from here)")

    def status(self) -> str:
        result = kube.kubectl(self.kubeconfig(), "get", "nodes", "-o", "wide", check=False)
        return result.stdout + result.stderr

    def load_images(self, images: Sequence[str]) -> list[str]:
        log(
            "images cannot be loaded into an existing cluster from here; push "
            f"{', '.join(images)} to a registry its nodes pull from (chart value image.repository)"
        )
        return []
