"""Kubernetes, etcd, CoreDNS, metrics-server, crictl and pause: binaries and component images.

The offline single-node cluster runs upstream components, so everything a kind node
carries is produced here and cached under ``<cache>/tools/<name>-<version>/``:

* Kubernetes v1.32 (kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler,
  kubelet, kube-proxy, kubectl): the release download first (dl.k8s.io, sha256-checked),
  else a wrapper Go module that pins k8s.io/kubernetes and replaces its staging modules.
  Versions are stamped via ldflags: kubeadm refuses unversioned control planes and helm's
  ``kubeVersion`` checks read the apiserver's version.
* etcd, CoreDNS, metrics-server, crictl, local-path-provisioner (kind's default
  StorageClass), flannel (the kind cluster's pod network here) and a pause binary, from
  the Go module proxy.
* Component images under the names kubeadm v1.32 expects (``kubeadm config images
  list``) and kind's node image expects, written as OCI archives (with a docker-style
  manifest.json too, which `kind build node-image` reads): each static binary on an empty
  root; kube-proxy and flanneld on a small Debian root because they exec iptables,
  ip6tables and conntrack (the same root, alone, is local-path-provisioner's helper
  image: its helper pods run sh, mkdir and rm).

``python -m ops.k8s_build {kubectl,binaries,images,all}``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops import apt, debian, oci
from ops.paths import cache_root, kubernetes_binary, tool_dir
from ops.pins import (
    COREDNS_IMAGE,
    COREDNS_VERSION,
    CRICTL_VERSION,
    ETCD_IMAGE,
    ETCD_VERSION,
    FLANNEL_IMAGE,
    FLANNEL_VERSION,
    KIND_STORAGE_IMAGES,
    KUBE_COMPONENT_IMAGES,
    KUBERNETES_VERSION,
    LOCAL_PATH_HELPER_IMAGE,
    LOCAL_PATH_IMAGE,
    LOCAL_PATH_VERSION,
    METRICS_SERVER_IMAGE,
    METRICS_SERVER_VERSION,
    PAUSE_IMAGE,
    PAUSE_VERSION,
)
from ops.toolcache import download, go_build_module, go_env, go_install, link_into_bin, log

# k8s.io/kubernetes requires its staging repos at v0.0.0 and replaces them with ./staging;
# a wrapper module must replace each with the matching published version instead.
KUBERNETES_STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
KUBERNETES_BINARIES = (
    "kubeadm",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
# Every binary is static: they run in empty images and on hosts without matching libcs.
STATIC_ENV = {"CGO_ENABLED": "0"}
# kube-proxy and flanneld exec iptables/ip6tables (and kube-proxy conntrack) from their image.
NETWORK_BASE_PACKAGES = ("iptables", "conntrack")

# The pause container: PID 1 of every pod sandbox. Sleeps, reaps zombies, exits 0 on
# SIGINT/SIGTERM (what build/pause/linux/pause.c does, in Go because Go is already here).
PAUSE_SOURCE = """package main

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tsignals := make(chan os.Signal, 16)
\tsignal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
\tfor sig := range signals {
\t\tif sig != syscall.SIGCHLD {
\t\t\tos.Exit(0)
\t\t}
\t\tfor {
\t\t\tpid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
\t\t\tif pid <= 0 || err != nil {
\t\t\t\tbreak
\t\t\t}
\t\t}
\t}
}
"""


def go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def kubernetes_dir() -> Path:
    return tool_dir("kubernetes", KUBERNETES_VERSION)


def _binary_ready(directory: Path, name: str) -> bool:
    return (directory / "bin" / name).is_file() and (directory / f".complete-{name}").exists()


def _mark_binary(directory: Path, name: str) -> None:
    (directory / f".complete-{name}").write_text("ok\n")


def kubernetes_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in stamps.items()]
    return " ".join(flags)


def kubernetes_go_mod() -> str:
    replaces = "\n".join(
        f"\tk8s.io/{name} => k8s.io/{name} v0{KUBERNETES_VERSION.removeprefix('v1')}"
        for name in KUBERNETES_STAGING_MODULES
    )
    return (
        "module tfms/kubernetes\n\ngo 1.23.0\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n{replaces}\n)\n"
    )


def _sha256(path: Path) -> str:
    return oci.file_digest(path).split(":", 1)[1]


def download_kubernetes_binary(name: str, dest: Path) -> bool:
    """The official release binary, checked against its published sha256."""
    url = f"https://dl.k8s.io/release/{KUBERNETES_VERSION}/bin/linux/{go_arch()}/{name}"
    checksum_file = dest.with_name(f"{name}.sha256")
    if not download(f"{url}.sha256", checksum_file):
        return False
    if not download(url, dest):
        return False
    expected = checksum_file.read_text().split()[0]
    checksum_file.unlink()
    if _sha256(dest) != expected:
        dest.unlink()
        log(f"{url}: checksum mismatch; falling back to a build")
        return False
    dest.chmod(0o755)
    return True


def ensure_kubernetes(names: Sequence[str] = KUBERNETES_BINARIES) -> Path:
    """The named Kubernetes binaries in the cache (downloaded, else built); returns their dir."""
    directory = kubernetes_dir()
    bin_dir = directory / "bin"
    missing = [name for name in names if not _binary_ready(directory, name)]
    if not missing:
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in list(missing):
        if download_kubernetes_binary(name, bin_dir / name):
            _mark_binary(directory, name)
            missing.remove(name)
        else:
            break  # this machine cannot reach dl.k8s.io: build the rest in one go
    if missing:
        started = time.monotonic()
        log(f"building Kubernetes {KUBERNETES_VERSION}: {', '.join(missing)}")
        go_build_module(
            directory / "src",
            kubernetes_go_mod(),
            [f"k8s.io/kubernetes/cmd/{name}" for name in missing],
            bin_dir,
            ldflags=kubernetes_ldflags(),
            # Untrimmed, so a plain `go build` of the same graph warms this build's cache.
            trimpath=False,
            extra_env=STATIC_ENV,
        )
        for name in missing:
            _mark_binary(directory, name)
        log(f"Kubernetes {', '.join(missing)} built in {time.monotonic() - started:.0f}s")
    return bin_dir


def ensure_etcd() -> Path:
    directory = tool_dir("etcd", ETCD_VERSION)
    if not _binary_ready(directory, "etcd"):
        go_mod = f"module tfms/etcd\n\ngo 1.22\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n"
        out = directory / "out"
        go_build_module(
            directory / "src",
            go_mod,
            ["go.etcd.io/etcd/server/v3"],
            out,
            ldflags="-s -w",
            extra_env=STATIC_ENV,
        )
        (directory / "bin").mkdir(parents=True, exist_ok=True)
        (out / "server").replace(directory / "bin" / "etcd")  # go names it after ".../server" (drops /v3)
        _mark_binary(directory, "etcd")
    return directory / "bin" / "etcd"


def _go_install_tool(name: str, version: str, package: str, binary: str, ldflags: str = "-s -w") -> Path:
    directory = tool_dir(name, version)
    if not _binary_ready(directory, binary):
        go_install(package, version, directory / "bin", extra_env=STATIC_ENV, ldflags=ldflags)
        _mark_binary(directory, binary)
    return directory / "bin" / binary


def ensure_coredns() -> Path:
    return _go_install_tool("coredns", COREDNS_VERSION, "github.com/coredns/coredns", "coredns")


def ensure_crictl() -> Path:
    stamp = f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION.removeprefix('v')}"
    return _go_install_tool("crictl", CRICTL_VERSION, "sigs.k8s.io/cri-tools/cmd/crictl", "crictl", stamp)


def ensure_metrics_server() -> Path:
    stamp = f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={METRICS_SERVER_VERSION}"
    return _go_install_tool(
        "metrics-server",
        METRICS_SERVER_VERSION,
        "sigs.k8s.io/metrics-server/cmd/metrics-server",
        "metrics-server",
        stamp,
    )


def ensure_local_path_provisioner() -> Path:
    stamp = f"-s -w -X main.VERSION={LOCAL_PATH_VERSION}"
    return _go_install_tool(
        "local-path-provisioner",
        LOCAL_PATH_VERSION,
        "github.com/rancher/local-path-provisioner",
        "local-path-provisioner",
        stamp,
    )


# flannel's tencentvpc backend requires tencentcloud-sdk-go/tencentcloud/vpc v1.3.188, which the
# module proxy refuses (403); v1.0.1100 is served and compiles. That backend is never used here.
TENCENT_VPC_MODULE = "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc"
FLANNEL_GO_MOD = (
    f"module tfms/flannel\n\ngo 1.24\n\nrequire github.com/flannel-io/flannel {FLANNEL_VERSION}\n\n"
    f"replace {TENCENT_VPC_MODULE} => {TENCENT_VPC_MODULE} v1.0.1100\n"
)


def ensure_flannel() -> Path:
    """flanneld, built as upstream builds it (cgo on: its udp backend is C); runs on a Debian root."""
    directory = tool_dir("flannel", FLANNEL_VERSION)
    if not _binary_ready(directory, "flanneld"):
        if shutil.which("gcc") is None:
            apt.install(["gcc", "libc6-dev"], "flanneld is built with cgo (its udp backend is C)")
        out = directory / "out"
        go_build_module(
            directory / "src",
            FLANNEL_GO_MOD,
            ["github.com/flannel-io/flannel"],
            out,
            ldflags=f"-s -w -X github.com/flannel-io/flannel/pkg/version.Version={FLANNEL_VERSION}",
            extra_env={"CGO_ENABLED": "1"},
        )
        (directory / "bin").mkdir(parents=True, exist_ok=True)
        (out / "flannel").replace(directory / "bin" / "flanneld")
        _mark_binary(directory, "flanneld")
    return directory / "bin" / "flanneld"


def ensure_pause() -> Path:
    directory = tool_dir("pause", PAUSE_VERSION)
    if not _binary_ready(directory, "pause"):
        src = directory / "src"
        src.mkdir(parents=True, exist_ok=True)
        (src / "go.mod").write_text("module tfms/pause\n\ngo 1.22\n")
        (src / "main.go").write_text(PAUSE_SOURCE)
        (directory / "bin").mkdir(exist_ok=True)
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(directory / "bin" / "pause"), "."],
            check=True,
            cwd=src,
            env=go_env() | STATIC_ENV,
        )
        _mark_binary(directory, "pause")
    return directory / "bin" / "pause"


def ensure_binaries() -> None:
    for ensure in (
        ensure_pause,
        ensure_crictl,
        ensure_etcd,
        ensure_coredns,
        ensure_metrics_server,
        ensure_local_path_provisioner,
        ensure_flannel,
    ):
        started = time.monotonic()
        path = ensure()
        log(f"{path.name}: {path} ({time.monotonic() - started:.0f}s)")
    started = time.monotonic()
    ensure_kubernetes()
    log(f"kubernetes {KUBERNETES_VERSION}: {kubernetes_dir() / 'bin'} ({time.monotonic() - started:.0f}s)")
    link_tools()


def link_tools() -> None:
    for path in (kubernetes_binary("kubectl"), tool_dir("crictl", CRICTL_VERSION) / "bin" / "crictl"):
        if path.exists():
            link_into_bin(path)


# ---------------------------------------------------------------------------- images


def images_dir() -> Path:
    # "-2": archives carry Docker's manifest.json too (kind reads it); older caches lack it.
    return cache_root() / "images" / f"kubernetes-{KUBERNETES_VERSION}-2"


def archive_path(image: str) -> Path:
    return images_dir() / (image.replace("/", "_").replace(":", "_") + ".oci.tar")


@dataclass(frozen=True)
class ComponentImage:
    """One image: name, the binary at its in-image path (if any), and the command it starts with."""

    name: str
    binary: Path | None
    path_in_image: str
    entrypoint: tuple[str, ...]
    debian_base: bool = False


def _binary(name: str, version: str, binary: str | None = None) -> Path:
    return tool_dir(name, version) / "bin" / (binary or name)


def component_images() -> list[ComponentImage]:
    """Every image a kubeadm v1.32 control plane, CoreDNS, metrics-server, storage and flannel need."""
    k8s = [
        ComponentImage(
            image,
            kubernetes_binary(name),
            f"/usr/local/bin/{name}",
            (f"/usr/local/bin/{name}",),
            debian_base=name == "kube-proxy",
        )
        for name, image in KUBE_COMPONENT_IMAGES.items()
    ]
    provisioner = _binary("local-path-provisioner", LOCAL_PATH_VERSION)
    provisioner_path = "/usr/local/bin/local-path-provisioner"
    return [
        *k8s,
        ComponentImage(ETCD_IMAGE, _binary("etcd", ETCD_VERSION), "/usr/local/bin/etcd", ("etcd",)),
        ComponentImage(COREDNS_IMAGE, _binary("coredns", COREDNS_VERSION), "/coredns", ("/coredns",)),
        ComponentImage(PAUSE_IMAGE, _binary("pause", PAUSE_VERSION), "/pause", ("/pause",)),
        ComponentImage(
            METRICS_SERVER_IMAGE,
            _binary("metrics-server", METRICS_SERVER_VERSION),
            "/metrics-server",
            ("/metrics-server",),
        ),
        ComponentImage(LOCAL_PATH_IMAGE, provisioner, provisioner_path, (provisioner_path,)),
        ComponentImage(LOCAL_PATH_HELPER_IMAGE, None, "", ("/bin/sh",), debian_base=True),
        # kind's node image names the same two images its own way (its default StorageClass).
        ComponentImage(
            KIND_STORAGE_IMAGES["provisioner"], provisioner, provisioner_path, (provisioner_path,)
        ),
        ComponentImage(KIND_STORAGE_IMAGES["helper"], None, "", ("/bin/sh",), debian_base=True),
        ComponentImage(
            FLANNEL_IMAGE,
            _binary("flannel", FLANNEL_VERSION, "flanneld"),
            "/opt/bin/flanneld",
            ("/opt/bin/flanneld",),
            debian_base=True,
        ),
    ]


def ensure_image(image: ComponentImage) -> Path:
    dest = archive_path(image.name)
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory(dir=images_dir()) as scratch:
        layers = [debian.rootfs_tarball(NETWORK_BASE_PACKAGES)] if image.debian_base else []
        if image.binary is not None:
            files = {image.path_in_image: image.binary}
            layers.append(oci.files_layer(Path(scratch) / "binary.tar", files, ("tmp",)))
        oci.write_archive(oci.ImageSpec(image.name, layers, entrypoint=image.entrypoint), dest)
    log(f"image {image.name}: {dest} ({dest.stat().st_size / 1e6:.0f} MB)")
    return dest


def ensure_images() -> dict[str, Path]:
    """Build (or reuse) every component image archive; returns image name -> archive."""
    ensure_binaries()
    images_dir().mkdir(parents=True, exist_ok=True)
    return {image.name: ensure_image(image) for image in component_images()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ops.k8s_build", description=__doc__)
    parser.add_argument(
        "what",
        choices=("kubectl", "binaries", "images", "all"),
        help="kubectl only (for `make tools`); every binary; binaries + component images (= all)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.what == "kubectl":
        ensure_kubernetes(["kubectl"])
        link_tools()
    elif args.what == "binaries":
        ensure_binaries()
    else:
        ensure_images()
    log(f"k8s_build {args.what}: done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
