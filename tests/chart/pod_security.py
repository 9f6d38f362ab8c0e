"""Pod Security Standard "restricted" (Kubernetes v1.32 `latest`) checked on a pod spec.

There is no Pod Security Admission library for Python; this encodes the policy's controls
(https://kubernetes.io/docs/concepts/security/pod-security-standards/) for the fields a
chart can set, so a regression fails in `make test` long before a cluster rejects the pod.
The cluster smoke test later runs the real admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """Every way pod_spec breaks "restricted" (baseline included); empty when it passes."""
    problems: list[str] = []
    pod_context = pod_spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"pod: {field} is true")
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: type {sorted(kinds)} not allowed")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl['name']} not allowed")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod: runAsUser is 0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        problems.append(f"pod: seccompProfile {pod_seccomp}")
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    for container in containers:
        problems += container_violations(container, pod_context)
    return problems


def container_violations(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    name = container["name"]
    context = container.get("securityContext") or {}
    problems: list[str] = []
    if context.get("privileged"):
        problems.append(f"{name}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation must be false")
    run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if run_as_non_root is not True:
        problems.append(f"{name}: runAsNonRoot must be true (pod or container)")
    if context.get("runAsUser") == 0:
        problems.append(f"{name}: runAsUser is 0")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:
        problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append(f"{name}: capabilities must drop ALL")
    added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
    if added:
        problems.append(f"{name}: capabilities add {sorted(added)}")
    if context.get("procMount", "Default") != "Default":
        problems.append(f"{name}: procMount {context['procMount']}")
    for port in container.get("ports", []):
        if port.get("hostPort"):
            problems.append(f"{name}: hostPort {port['hostPort']}")
    return problems
