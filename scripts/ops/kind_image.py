"""kind's node image, built offline with kind's own `kind build node-image` (`make kind-image`).

Where the public node image (pins.KIND_PUBLIC_NODE_IMAGE) cannot be pulled, this builds
an equivalent from what ops.k8s_build produces, in three steps, nothing pulled:

1. **Base image** (``pins.KIND_OFFLINE_BASE_IMAGE``): scripts/kind/base.Dockerfile over a
   debootstrapped bookworm root with the packages kind's base Dockerfile installs plus
   Debian's containerd, runc and CNI plugins, kind's own ``images/base/files`` (from the
   kind module's source in Go's module cache) and the project's crictl.
2. **Node image, kind's way**: `kind build node-image --type file K.tar.gz --base-image B`,
   where K.tar.gz holds what kind reads (pkg/build/nodeimage/internal/kube/builder_tarball.go):
   ``kubernetes/version``, ``kubernetes/server/bin/{kubeadm,kubelet,kubectl}`` and the
   four component images as archives with Docker's manifest.json. kind installs the
   binaries, writes its CNI and storage manifests, imports the archives and tries to
   fetch the other images it wants (those fetches fail here, as warnings).
3. **The other images**, imported the way kind imports its own (`ctr images import
   --all-platforms --no-unpack --digests`, pinned) into a container of that image, which
   is then committed with kind's entrypoint: etcd, CoreDNS, pause, metrics-server, kind's
   local-path provisioner and helper (under kind's names), flannel.

The result is ``pins.KIND_OFFLINE_NODE_IMAGE`` in Docker's image store (outside the
clone), labelled with a hash of its inputs: a second build with the same inputs does
nothing, and `make cluster-down` never removes it.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops import debian, docker, docker_caps, k8s_build, tools
from ops.paths import REPO_ROOT, kubernetes_binary, tool_dir
from ops.pins import (
    COREDNS_IMAGE,
    CRICTL_VERSION,
    ETCD_IMAGE,
    FLANNEL_IMAGE,
    KIND_OFFLINE_BASE_IMAGE,
    KIND_OFFLINE_NODE_IMAGE,
    KIND_STORAGE_IMAGES,
    KIND_VERSION,
    KUBE_COMPONENT_IMAGES,
    KUBERNETES_VERSION,
    METRICS_SERVER_IMAGE,
    PAUSE_IMAGE,
)
from ops.progress import Steps

BASE_DOCKERFILE = REPO_ROOT / "scripts" / "kind" / "base.Dockerfile"
# kind's images/base/Dockerfile's packages, plus what it downloads (containerd, runc, CNI plugins).
BASE_PACKAGES = (
    "systemd",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "containerd",
    "runc",
    "containernetworking-plugins",
)
ROOTFS_IMAGE = "tfms.local/kind-base-rootfs:bookworm"
STAGE_IMAGE = "tfms.local/kind-node:stage"
RECIPE_LABEL = "tf-model-server.recipe"
KIND_ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'
# Images kind's build does not get from the tarball: imported in step 3.
EXTRA_IMAGES = (
    ETCD_IMAGE,
    COREDNS_IMAGE,
    PAUSE_IMAGE,
    METRICS_SERVER_IMAGE,
    KIND_STORAGE_IMAGES["provisioner"],
    KIND_STORAGE_IMAGES["helper"],
    FLANNEL_IMAGE,
)
CONTAINERD_START_TIMEOUT_SECONDS = 30


def log(message: str) -> None:
    print(f"[kind-image] {message}", flush=True)


def run(command: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=True, text=True, **kwargs)  # type: ignore[call-overload]


def image_label(image: str, label: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def kind_module_dir() -> Path:
    return tools.module_source_dir(tools.KIND)


def digest_of(paths: Sequence[Path], texts: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
    for path in paths:
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
        digest.update(str(int(path.stat().st_mtime)).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- 1. base image


def base_context(directory: Path) -> None:
    """Build context: kind's files (scripts 0755, the rest 0644), crictl, the Dockerfile."""
    files = directory / "files"
    shutil.copytree(kind_module_dir() / "images" / "base" / "files", files)
    for path in files.rglob("*"):
        executable = path.is_dir() or path.parent.name == "bin"
        path.chmod(0o755 if executable else 0o644)
    crictl = tool_dir("crictl", CRICTL_VERSION) / "bin" / "crictl"
    shutil.copyfile(crictl, directory / "crictl")
    (directory / "crictl").chmod(0o755)
    shutil.copyfile(BASE_DOCKERFILE, directory / "Dockerfile")


def ensure_base(steps: Steps) -> str:
    rootfs = debian.rootfs_tarball(BASE_PACKAGES)
    recipe = digest_of([rootfs], [BASE_DOCKERFILE.read_text(), KIND_VERSION, CRICTL_VERSION])
    if image_label(KIND_OFFLINE_BASE_IMAGE, RECIPE_LABEL) == recipe:
        log(f"{KIND_OFFLINE_BASE_IMAGE}: present (recipe {recipe})")
        return recipe
    with steps.step(f"docker import {rootfs.name} as {ROOTFS_IMAGE}"):
        run(["docker", "import", str(rootfs), ROOTFS_IMAGE], capture_output=True)
    with (
        steps.step(f"docker build {KIND_OFFLINE_BASE_IMAGE} (scripts/kind/base.Dockerfile)"),
        tempfile.TemporaryDirectory(prefix="tfms-kind-base-") as context,
    ):
        base_context(Path(context))
        client = docker.build_client()
        run(
            [
                client.binary,
                "build",
                "--build-arg",
                f"ROOTFS_IMAGE={ROOTFS_IMAGE}",
                "--label",
                f"{RECIPE_LABEL}={recipe}",
                "--tag",
                KIND_OFFLINE_BASE_IMAGE,
                context,
            ],
            env=client.env,
        )
    run(["docker", "image", "rm", ROOTFS_IMAGE], capture_output=True)
    return recipe


# ---------------------------------------------------------------------------- 2. kind build node-image


def kubernetes_tarball(dest: Path, archives: Mapping[str, Path]) -> Path:
    """The tarball `kind build node-image --type file` reads: version, binaries, component images."""
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        version = dest.parent / "version"
        version.write_text(KUBERNETES_VERSION + "\n")
        tar.add(version, "kubernetes/version")
        for name in ("kubeadm", "kubelet", "kubectl"):
            tar.add(kubernetes_binary(name), f"kubernetes/server/bin/{name}")
        for name, image in KUBE_COMPONENT_IMAGES.items():
            tar.add(archives[image], f"kubernetes/server/bin/{name}.tar")
    return dest


def kind_build_node_image(archives: Mapping[str, Path]) -> None:
    kind = str(tools.ensure(tools.KIND))
    log(
        "kind tries to fetch the images the tarball lacks; with no registry here those fetches "
        "fail (kind prints them as warnings) and the next step imports the images instead"
    )
    with tempfile.TemporaryDirectory(prefix="tfms-kind-node-") as scratch:
        tarball = kubernetes_tarball(Path(scratch) / "kubernetes-server.tar.gz", archives)
        run(
            [
                kind,
                "build",
                "node-image",
                "--type",
                "file",
                str(tarball),
                "--base-image",
                KIND_OFFLINE_BASE_IMAGE,
                "--image",
                STAGE_IMAGE,
            ]
        )


# ---------------------------------------------------------------------------- 3. the other images


def wait_for_containerd(container: str) -> None:
    deadline = time.monotonic() + CONTAINERD_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["docker", "exec", container, "ctr", "version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"containerd in {container} did not answer within {CONTAINERD_START_TIMEOUT_SECONDS}s")


def node_images(container: str) -> set[str]:
    listed = run(
        ["docker", "exec", container, "ctr", "-n", "k8s.io", "images", "list", "-q"], capture_output=True
    )
    return set(listed.stdout.split())


def import_extra_images(archives: Mapping[str, Path], recipe: str) -> None:
    """Import the images kind did not, as kind imports its own, and commit the final node image."""
    container = run(
        [
            "docker",
            "run",
            "-d",
            "--entrypoint",
            "sleep",
            "--security-opt",
            "seccomp=unconfined",
            STAGE_IMAGE,
            "infinity",
        ],
        capture_output=True,
    ).stdout.strip()
    try:
        run(["docker", "exec", container, "bash", "-c", "nohup containerd > /dev/null 2>&1 &"])
        wait_for_containerd(container)
        for image in EXTRA_IMAGES:
            with archives[image].open("rb") as archive:
                run(
                    [
                        "docker",
                        "exec",
                        "-i",
                        container,
                        "ctr",
                        "--namespace=k8s.io",
                        "images",
                        "import",
                        "--label=io.cri-containerd.pinned=pinned",
                        "--all-platforms",
                        "--no-unpack",
                        "--digests",
                        "-",
                    ],
                    stdin=archive,
                    capture_output=True,
                )
        present = node_images(container)
        wanted = {*EXTRA_IMAGES, *KUBE_COMPONENT_IMAGES.values()}
        missing = sorted(
            image for image in wanted if image not in present and f"docker.io/{image}" not in present
        )
        if missing:
            raise RuntimeError(f"the node image lacks {', '.join(missing)} (has {sorted(present)})")
        run(["docker", "exec", container, "pkill", "containerd"])
        run(
            [
                "docker",
                "commit",
                "--change",
                f"ENTRYPOINT {KIND_ENTRYPOINT}",
                "--change",
                f"LABEL {RECIPE_LABEL}={recipe}",
                container,
                KIND_OFFLINE_NODE_IMAGE,
            ],
            capture_output=True,
        )
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True, check=False)
    subprocess.run(["docker", "image", "rm", STAGE_IMAGE], capture_output=True, check=False)


# ---------------------------------------------------------------------------- the whole build


def present() -> bool:
    return image_label(KIND_OFFLINE_NODE_IMAGE, RECIPE_LABEL) is not None


def ensure_node_image() -> str:
    """Build (or reuse) the offline node image; returns its name."""
    started = time.monotonic()
    steps = Steps(log)
    with steps.step("Docker daemon"):
        docker.ensure_daemon()
    with steps.step("Kubernetes binaries and component images (ops.k8s_build, cached)"):
        archives = k8s_build.ensure_images()
    base_recipe = ensure_base(steps)
    binaries = [kubernetes_binary(name) for name in ("kubeadm", "kubelet", "kubectl")]
    recipe = digest_of([*sorted(archives.values()), *binaries], [base_recipe])
    if image_label(KIND_OFFLINE_NODE_IMAGE, RECIPE_LABEL) == recipe:
        log(f"{KIND_OFFLINE_NODE_IMAGE}: present (recipe {recipe}); nothing to build")
        return KIND_OFFLINE_NODE_IMAGE
    # kind's build runs `docker exec --privileged` in its build container.
    with steps.step("privileged containers (kind's build and nodes need them)"):
        docker_caps.ensure_privileged_containers(KIND_OFFLINE_BASE_IMAGE)
    with steps.step(f"kind build node-image --type file (Kubernetes {KUBERNETES_VERSION})"):
        kind_build_node_image(archives)
    with steps.step(f"import {len(EXTRA_IMAGES)} more images, commit {KIND_OFFLINE_NODE_IMAGE}"):
        import_extra_images(archives, recipe)
    log(f"node image steps:\n{steps.summary()}")
    log(f"{KIND_OFFLINE_NODE_IMAGE} built in {time.monotonic() - started:.0f}s")
    return KIND_OFFLINE_NODE_IMAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ops.kind_image", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=("build",), nargs="?", default="build")
    parser.parse_args(argv)
    print(ensure_node_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
