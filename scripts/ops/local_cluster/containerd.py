"""The cluster's own containerd: config, start, image import, and CRI housekeeping.

It never shares anything with a system or Docker containerd: its own root (the image
cache), state dir, socket, runc root and CNI config dir; netns mounts under its state dir.
The sandbox image is the locally built pause (containerd 1.6 defaults to pause:3.6,
which cannot be pulled here).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops import pins
from ops.local_cluster import layout, services
from ops.paths import tool_dir

NAME = "containerd"
CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
K8S_NAMESPACE = "k8s.io"


def render_config() -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{layout.containerd_root()}"
state = "{layout.CONTAINERD_STATE}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{layout.CONTAINERD_SOCKET}"

[{cri}]
  sandbox_image = "{pins.PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE, so nothing may lower an oom_score_adj below ours
  # (the pause container's -998 fails in runc otherwise); kind sets this when rootless.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{layout.RUNC_ROOT}"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.cni_conf_dir()}"
  max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd_root() / "opt"}"
"""


def ctr(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload]
        [CTR, "--address", str(layout.CONTAINERD_SOCKET), "--namespace", K8S_NAMESPACE, *args],
        check=check,
        text=True,
        **kwargs,
    )


def crictl(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    binary = tool_dir("crictl", pins.CRICTL_VERSION) / "bin" / "crictl"
    endpoint = layout.containerd_address()
    return subprocess.run(
        [
            str(binary),
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "30s",
            *args,
        ],
        check=check,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def answers() -> bool:
    if not layout.CONTAINERD_SOCKET.exists():
        return False
    result = ctr("version", check=False, capture_output=True, timeout=10)
    return result.returncode == 0


def cri_ready() -> bool:
    result = crictl("info", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
    runtime = [c for c in conditions if c.get("type") == "RuntimeReady"]
    return bool(runtime) and runtime[0].get("status") is True


def start() -> None:
    for directory in (
        layout.containerd_root(),
        layout.CONTAINERD_STATE,
        layout.RUNC_ROOT,
        layout.cni_conf_dir(),
    ):
        directory.mkdir(parents=True, exist_ok=True)
    layout.containerd_config().write_text(render_config())
    services.start(NAME, [CONTAINERD, "--config", str(layout.containerd_config())])
    services.wait_for(NAME, answers, timeout=30, what="containerd answering on its socket")
    services.wait_for(NAME, cri_ready, timeout=30, what="containerd's CRI plugin ready")


def stop() -> None:
    services.stop_service(NAME)


def image_digests() -> dict[str, str]:
    """Image name -> manifest digest for everything in the k8s.io namespace."""
    result = ctr("images", "ls", capture_output=True)
    digests = {}
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            digests[fields[0]] = fields[2]
    return digests


def archive_digest(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        return str(json.load(member)["manifests"][0]["digest"])


def import_archives(archives: Mapping[str, Path]) -> list[str]:
    """Import the archives whose image is missing or differs; returns the names imported."""
    present = image_digests()
    imported = []
    for name, archive in archives.items():
        if present.get(name) == archive_digest(archive):
            continue
        ctr("images", "import", str(archive), capture_output=True)
        imported.append(name)
    return imported


def import_stream(command: Sequence[str]) -> None:
    """Pipe an image archive producer (e.g. `docker save ...`) into `ctr images import`."""
    producer = subprocess.Popen(list(command), stdout=subprocess.PIPE)
    try:
        ctr("images", "import", "-", stdin=producer.stdout, capture_output=True)
    finally:
        if producer.stdout is not None:
            producer.stdout.close()
        if producer.wait() != 0:
            raise RuntimeError(f"{' '.join(command)} failed with exit code {producer.returncode}")


def remove_all_pods() -> None:
    """Stop and remove every pod sandbox (CNI DEL frees addresses and iptables rules)."""
    crictl("rmp", "--all", "--force", check=False, timeout=180)
    crictl("rm", "--all", "--force", check=False, timeout=60)
