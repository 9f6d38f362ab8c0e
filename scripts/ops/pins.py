"""Every pinned version and image name the scripts use, in one place (data only, no imports of ops).

Bumping a component is an edit here; the builders, providers and images read it.
"""

from __future__ import annotations

# ---------------------------------------------------------------- Kubernetes and what it runs

KUBERNETES_VERSION = "v1.32.9"
ETCD_VERSION = "v3.5.16"
COREDNS_VERSION = "v1.11.3"
METRICS_SERVER_VERSION = "v0.7.2"
CRICTL_VERSION = "v1.34.0"  # v1.32.x is not on the module proxy; v1.34 speaks CRI v1 to containerd 1.6
PAUSE_VERSION = "3.10"
# kind's default StorageClass ("standard", rancher.io/local-path); kind v0.26 ships v0.0.30.
LOCAL_PATH_VERSION = "v0.0.30"
# The kind cluster's pod network here (kind's own kindnetd module is not served by the proxy).
FLANNEL_VERSION = "v0.28.10"
DEBIAN_SUITE = "bookworm"

IMAGE_REPOSITORY = "registry.k8s.io"
# Names and tags exactly as kubeadm v1.32 derives them (cmd/kubeadm/app/images, constants).
KUBE_COMPONENT_IMAGES = {
    name: f"{IMAGE_REPOSITORY}/{name}:{KUBERNETES_VERSION}"
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
}
ETCD_IMAGE = f"{IMAGE_REPOSITORY}/etcd:{ETCD_VERSION.removeprefix('v')}-0"
COREDNS_IMAGE = f"{IMAGE_REPOSITORY}/coredns/coredns:{COREDNS_VERSION}"
PAUSE_IMAGE = f"{IMAGE_REPOSITORY}/pause:{PAUSE_VERSION}"
METRICS_SERVER_IMAGE = f"{IMAGE_REPOSITORY}/metrics-server/metrics-server:{METRICS_SERVER_VERSION}"
# Not kubeadm's: names of our own, never pulled (the local cluster imports them).
LOCAL_PATH_IMAGE = f"tfms.local/local-path-provisioner:{LOCAL_PATH_VERSION}"
LOCAL_PATH_HELPER_IMAGE = f"tfms.local/local-path-helper:{DEBIAN_SUITE}"  # sh, mkdir, rm for its helper pods
FLANNEL_IMAGE = f"tfms.local/flannel:{FLANNEL_VERSION}"

# ---------------------------------------------------------------- kind

KIND_VERSION = "v0.26.0"
KIND_CLUSTER_NAME = "tf-model-server"
# kind v0.26.0's default node image (pkg/apis/config/defaults/image.go), by digest: what users pull.
KIND_PUBLIC_NODE_IMAGE = (
    "kindest/node:v1.32.0@sha256:c48c62eac5da28cdadcf560d1d8616cfa6783b58f0d94cf63ad1bf49600cb027"
)
# Built here from the pieces above when the public image cannot be pulled (`make kind-image`).
KIND_OFFLINE_BASE_IMAGE = f"tfms.local/kind-base:{KIND_VERSION}"
KIND_OFFLINE_NODE_IMAGE = f"tfms.local/kind-node:{KUBERNETES_VERSION}-kind{KIND_VERSION}"
# Images kind v0.26.0's node image build expects besides kubeadm's (pkg/build/nodeimage/const_*.go):
# its default StorageClass's provisioner and helper, preloaded here under exactly these names.
KIND_STORAGE_IMAGES = {
    "provisioner": "docker.io/kindest/local-path-provisioner:v20241212-8ac705d0",
    "helper": "docker.io/kindest/local-path-helper:v20241212-8ac705d0",
}
# Workers besides the control-plane node (KIND_WORKERS overrides it).
KIND_DEFAULT_WORKERS = 2
