"""The kubeadm configuration and the `kubeadm init` phases, run one by one.

This is what kind does inside its node (its kubeadm config template is the model for the
kubelet and kube-proxy settings below), minus systemd: `kubeadm init` would wait for a
kubelet that systemd restarts, so the phases that write files run first, then we start
the kubelet ourselves, then the phases that talk to the apiserver run.
Preflight is skipped as kind skips it: it checks systemd units and pulls images.
"""

from __future__ import annotations

import subprocess
import time

from ops import pins
from ops.local_cluster import layout, services
from ops.paths import kubernetes_binary

# Phases that only write files (certificates, kubeconfigs, kubelet config, static pods).
FILE_PHASES = (
    ("certs", "all"),
    ("kubeconfig", "all"),
    ("kubelet-start",),
    ("etcd", "local"),
    ("control-plane", "all"),
)
# Phases that need the running apiserver (and, for mark-control-plane, the registered node).
API_PHASES = (
    ("upload-config", "all"),
    ("mark-control-plane",),
    ("bootstrap-token",),
    ("kubelet-finalize", "all"),
    ("addon", "all"),
)


def render_config(node_ip: str) -> str:
    """InitConfiguration, ClusterConfiguration, KubeletConfiguration, KubeProxyConfiguration."""
    return f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: "{node_ip}"
  bindPort: {layout.API_PORT}
nodeRegistration:
  name: "{layout.NODE_NAME}"
  criSocket: "{layout.containerd_address()}"
  # Nothing can be pulled: every image is imported into containerd beforehand.
  imagePullPolicy: Never
  # A single node runs workloads too: no control-plane taint (kind removes it after init).
  taints: []
  kubeletExtraArgs:
    - name: node-ip
      value: "{node_ip}"
    # Two dead containers per container, as on kind (scripts/kind-config.yaml says why):
    # a restarted container's lastState must survive the kubelet's container GC.
    - name: maximum-dead-containers-per-container
      value: "2"
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: "{layout.CLUSTER_NAME}"
kubernetesVersion: "{pins.KUBERNETES_VERSION}"
imageRepository: "{pins.IMAGE_REPOSITORY}"
controlPlaneEndpoint: "{layout.CONTROL_PLANE_ENDPOINT}"
networking:
  dnsDomain: "{layout.DNS_DOMAIN}"
  podSubnet: "{layout.POD_SUBNET}"
  serviceSubnet: "{layout.SERVICE_SUBNET}"
etcd:
  local:
    dataDir: "{layout.etcd_dir()}"
apiServer:
  certSANs: ["127.0.0.1", "localhost", "{node_ip}", "{layout.NODE_NAME}"]
  extraArgs:
    - name: service-node-port-range
      value: "{layout.NODEPORT_RANGE}"
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
# Every container log lands in the run directory next to containerd's and the kubelet's.
podLogsDir: "{layout.pod_logs_dir()}"
# Images cannot be pulled again here, and the disk is shared with the host: no image GC,
# no disk-pressure evictions (kind's settings, for the same reasons).
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
serializeImagePulls: false
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
iptables:
  minSyncPeriod: 1s
  # NodePorts answer on 127.0.0.1 (kube-proxy sets route_localnet for this).
  localhostNodePorts: true
conntrack:
  # Leave the machine-wide nf_conntrack_max alone.
  maxPerCore: 0
"""


def write_config(node_ip: str) -> None:
    layout.kubeadm_config().parent.mkdir(parents=True, exist_ok=True)
    layout.kubeadm_config().write_text(render_config(node_ip))


def log_path() -> str:
    return str(services.log_path("kubeadm"))


def run_phase(*phase: str) -> float:
    """`kubeadm init phase <phase> --config <ours>`; output appended to logs/kubeadm.log."""
    kubeadm = kubernetes_binary("kubeadm")
    command = [str(kubeadm), "init", "phase", *phase, "--config", str(layout.kubeadm_config())]
    started = time.monotonic()
    with open(log_path(), "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False, timeout=300)
    if result.returncode != 0:
        raise services.ComponentFailed(
            f"kubeadm init phase {' '.join(phase)} failed (exit {result.returncode}); "
            f"last lines of {log_path()}:\n"
            f"{services.tail(services.log_path('kubeadm'))}"
        )
    return time.monotonic() - started


def write_files() -> None:
    layout.KUBERNETES_DIR.mkdir(parents=True, exist_ok=True)
    layout.OWNER_MARKER.write_text("created by tf-model-server's local cluster (scripts/ops/local_cluster)\n")
    for phase in FILE_PHASES:
        run_phase(*phase)


def finish_with_apiserver() -> None:
    for phase in API_PHASES:
        run_phase(*phase)
