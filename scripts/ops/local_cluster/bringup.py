"""Bring-up, teardown and status of the local single-node cluster (ops.providers.local's engine).

Bring-up = clean whatever a previous (possibly killed) cluster left, start containerd,
import the component images, run kubeadm's file phases, start the kubelet (which runs
etcd and the control plane as static pods), run kubeadm's API phases (CoreDNS and the
kube-proxy DaemonSet) and tune CoreDNS for one node. What every cluster gets afterwards
(nodes Ready, metrics-server, the default StorageClass) is ops.actions, run by
ops.cluster. A second `up` on a healthy cluster changes nothing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ops import k8s_build, kube
from ops.local_cluster import (
    cleanup,
    cni,
    containerd,
    coredns,
    host,
    iptables,
    kubeadm,
    kubelet,
    layout,
    services,
)
from ops.progress import Steps

APISERVER_TIMEOUT = 180
READY_TIMEOUT = 180
# Its own workloads (metrics-server and storage are ops.actions', checked there).
SYSTEM_WORKLOADS = ("kube-system/deployment/coredns", "kube-system/daemonset/kube-proxy")
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def log(message: str) -> None:
    print(f"[local] {message}", flush=True)


# ---------------------------------------------------------------------------- status


def kubeconfig() -> Path:
    return layout.kubeconfig()


def static_pod_log(component: str) -> Path | None:
    logs = sorted(
        layout.pod_logs_dir().glob(f"kube-system_{component}-{layout.NODE_NAME}_*/{component}/*.log"),
        key=lambda path: path.stat().st_mtime,
    )
    return logs[-1] if logs else None


def component_logs(components: tuple[str, ...] = STATIC_PODS) -> str:
    parts = []
    for component in components:
        path = static_pod_log(component)
        if path is not None:
            parts.append(f"--- {component} ({path}), last lines:\n{services.tail(path)}")
        else:
            parts.append(f"--- {component}: no container log yet")
    return "\n".join(parts)


def apiserver_ready(config: Path) -> bool:
    return config.exists() and kube.succeeds(config, "get", "--raw=/readyz", timeout=10)


def node_ready(config: Path) -> bool:
    result = kube.kubectl(
        config,
        "get",
        "node",
        layout.NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return result.stdout.strip() == "True"


def workloads_ready(config: Path) -> bool:
    for workload in SYSTEM_WORKLOADS:
        namespace, kind, name = workload.split("/")
        status = kube.kubectl(
            config,
            "-n",
            namespace,
            "rollout",
            "status",
            f"{kind}/{name}",
            "--timeout=1s",
            check=False,
            timeout=20,
        )
        if status.returncode != 0:
            return False
    return True


def forget_discovery_cache() -> None:
    """kubectl caches API discovery per host:port for hours; every bring-up is a new cluster at the
    same address, and a cache written before metrics-server registered makes `kubectl top` fail."""
    host = layout.CONTROL_PLANE_ENDPOINT.replace(":", "_")
    shutil.rmtree(Path.home() / ".kube" / "cache" / "discovery" / host, ignore_errors=True)


def healthy() -> bool:
    """Processes alive and every layer answering: the definition of "up"."""
    if not (services.running(containerd.NAME) and services.running(kubelet.NAME)):
        return False
    config = kubeconfig()
    return apiserver_ready(config) and node_ready(config) and workloads_ready(config)


def status() -> str:
    lines = []
    for name in (containerd.NAME, kubelet.NAME):
        process = services.service_process(name)
        lines.append(f"{name}: {'running, pid ' + str(process.pid) if process else 'not running'}")
    config = kubeconfig()
    if apiserver_ready(config):
        lines.append(kube.kubectl(config, "get", "nodes", "-o", "wide", check=False).stdout.rstrip())
        lines.append(kube.kubectl(config, "get", "pods", "-A", "-o", "wide", check=False).stdout.rstrip())
    else:
        lines.append("apiserver: not answering")
    lines.append(f"logs: {layout.logs_dir()}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- up / down


def wait(check: Callable[[], bool], timeout: float, what: str, control_plane: bool = False) -> None:
    """Wait for check() while watching containerd and the kubelet; fail with the relevant logs."""
    deadline = time.monotonic() + timeout
    dead: list[str] = []
    while time.monotonic() < deadline:
        if check():
            return
        dead = [name for name in (containerd.NAME, kubelet.NAME) if not services.running(name)]
        if dead:
            break
        time.sleep(1)
    details = [f"{what}: {', '.join(dead)} exited" if dead else f"{what}: not within {timeout:.0f}s"]
    for name in dead or [kubelet.NAME]:
        details.append(
            f"--- {name} ({services.log_path(name)}), last lines:\n{services.tail(services.log_path(name))}"
        )
    if control_plane:
        details.append(component_logs())
    raise services.ComponentFailed("\n".join(details))


def fresh_run_dir() -> None:
    """Keep the previous run's logs one generation back; start an empty run directory."""
    previous = layout.base_dir() / "run.previous"
    if layout.run_dir().exists():
        shutil.rmtree(previous, ignore_errors=True)
        layout.run_dir().rename(previous)
    layout.logs_dir().mkdir(parents=True)
    layout.pids_dir().mkdir(parents=True)


def up() -> Path:
    steps = Steps(log)
    with steps.step("host: root, packages, kernel settings"):
        host.require_root()
        host.check_not_foreign_install()
        host.ensure_packages()
        host.prepare_kernel()
    if healthy():
        log("already up and healthy: nothing changed")
        return kubeconfig()
    with steps.step("clean leftovers of any previous cluster"):
        report = cleanup.clean()
        log(report.summary())
    with steps.step("binaries and component images (cached)"):
        archives = k8s_build.ensure_images()
    with steps.step("host: free ports, node address"):
        host.check_ports_free()
        address = host.node_address()
        log(f"node address {address.ip} ({address.interface})")
        fresh_run_dir()
        host.save_sysctls()
    with steps.step("containerd"):
        containerd.start()
    with steps.step("import component images into containerd"):
        imported = containerd.import_archives(archives)
        log(f"imported {len(imported)} image(s), {len(archives) - len(imported)} already present")
        containerd.remove_all_pods()  # sandboxes a killed cluster left in containerd's metadata
    with steps.step("kubeadm: certificates, kubeconfigs, kubelet config, static pod manifests"):
        kubeadm.write_config(address.ip)
        kubeadm.write_files()
    with steps.step("pod network config (CNI bridge) and our filter rules"):
        cni.write_config()
        iptables.install_guards()
    with steps.step("kubelet"):
        kubelet.start()
    with steps.step("control plane (etcd, apiserver as static pods) answering"):
        wait(lambda: apiserver_ready(layout.SUPER_ADMIN_CONF), APISERVER_TIMEOUT, "apiserver /readyz", True)
    with steps.step("kubeadm: upload-config, mark-control-plane, bootstrap-token, CoreDNS, kube-proxy"):
        kubeadm.finish_with_apiserver()
        shutil.copyfile(layout.ADMIN_CONF, kubeconfig())
        kubeconfig().chmod(0o600)
    with steps.step("CoreDNS: one replica, no upstream forwarding"):
        coredns.configure(kubeconfig())
    with steps.step("node Ready"):
        wait(lambda: node_ready(kubeconfig()), READY_TIMEOUT, "node Ready")
        forget_discovery_cache()
    log(f"bring-up steps:\n{steps.summary()}")
    return kubeconfig()


def down() -> None:
    started = time.monotonic()
    host.require_root()
    if layout.KUBERNETES_DIR.exists() and not layout.OWNER_MARKER.exists():
        host.check_not_foreign_install()
    report = cleanup.clean()
    forget_discovery_cache()
    log(report.summary())
    remaining = cleanup.leftovers()
    if remaining:
        raise services.ComponentFailed("cluster-down left these behind:\n  " + "\n  ".join(remaining))
    log(f"down in {time.monotonic() - started:.1f}s; nothing left behind")
