"""Faults the healing and disruption suites inject, each through the Kubernetes API only.

Evictions go through the Eviction API, one call (`evict`) or drain-style (`drain_evictions`:
every pod at once, retried while the PodDisruptionBudget refuses, as `kubectl drain` does).

Killing a container's main process with SIGKILL is the subtle one. The server is PID 1
of its container's PID namespace, and the kernel ignores SIGKILL sent to a namespace's
init from inside that namespace (`kubectl exec … kill -9 1` does nothing). A signal from
an ancestor PID namespace is always delivered, so the harness starts a short-lived
"node agent" pod with `hostPID: true` on the target pod's node, in its own namespace
labelled for the privileged Pod Security level (the test namespace stays "restricted").
The agent finds the container's init process by its container ID in /proc/<pid>/cgroup
(the ID appears in the path with both the cgroupfs and the systemd cgroup driver),
checks that its innermost PID is 1, sends SIGKILL and prints what it did as JSON. It
uses the server image (already on every node), so it works the same on kind, the local
cluster or any cluster that admits privileged pods: no crictl, docker exec or SSH.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

AGENT_NAMESPACE_PREFIX = "tfms-e2e-node-agent"

# Runs inside the agent pod (host PID namespace): argv[1] is the bare container ID.
KILL_SCRIPT = r"""
import json, os, signal, sys, time
container_id = sys.argv[1]
matches = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/cgroup") as cgroup:
            if container_id not in cgroup.read():
                continue
        with open(f"/proc/{entry}/status") as status:
            nspid = next(line.split()[1:] for line in status if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        continue
    matches.append((int(entry), nspid))
init = [pid for pid, nspid in matches if nspid[-1] == "1"]
if len(init) != 1:
    print(json.dumps({"error": "container init not found", "matches": matches}))
    sys.exit(1)
killed_at = time.time()
os.kill(init[0], signal.SIGKILL)
print(json.dumps({"host_pid": init[0], "killed_at": killed_at, "processes_in_container": len(matches)}))
"""


@dataclass(frozen=True)
class KillResult:
    pod: str
    container_id: str
    host_pid: int
    killed_at: float


def ensure_agent_namespace(core: client.CoreV1Api, run_id: str) -> str:
    name = f"{AGENT_NAMESPACE_PREFIX}-{run_id}"
    labels = {
        "pod-security.kubernetes.io/enforce": "privileged",
        "app.kubernetes.io/part-of": "tf-model-server-e2e",
    }
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    return name


def sigkill_container(
    core: client.CoreV1Api,
    agent_namespace: str,
    namespace: str,
    pod_name: str,
    container: str,
    image: str,
    timeout_s: float = 60,
) -> KillResult:
    """SIGKILL the main process of `container` in `pod_name` from the node's PID namespace."""
    pod = core.read_namespaced_pod(pod_name, namespace)
    status = next(s for s in pod.status.container_statuses or [] if s.name == container)
    if not status.container_id:
        raise RuntimeError(f"{pod_name}/{container} has no container ID yet (not running?)")
    container_id = status.container_id.split("://", 1)[-1]
    agent_name = f"sigkill-{uuid.uuid4().hex[:8]}"
    agent = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=agent_name, labels={"app.kubernetes.io/name": "tfms-e2e-node-agent"}
        ),
        spec=client.V1PodSpec(
            node_name=pod.spec.node_name,
            host_pid=True,
            restart_policy="Never",
            active_deadline_seconds=int(timeout_s),
            termination_grace_period_seconds=0,
            containers=[
                client.V1Container(
                    name="agent",
                    image=image,
                    image_pull_policy="IfNotPresent",
                    command=["python", "-c", KILL_SCRIPT, container_id],
                    security_context=client.V1SecurityContext(run_as_user=0, run_as_group=0),
                )
            ],
        ),
    )
    core.create_namespaced_pod(agent_namespace, agent)
    deadline = time.monotonic() + timeout_s
    phase = "Pending"
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod(agent_name, agent_namespace).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.2)
    output = ""
    try:
        output = core.read_namespaced_pod_log(agent_name, agent_namespace)
    finally:
        core.delete_namespaced_pod(agent_name, agent_namespace, grace_period_seconds=0)
    if phase != "Succeeded":
        raise RuntimeError(f"node agent {agent_namespace}/{agent_name} ended {phase}: {output.strip()}")
    result = json.loads(output.strip().splitlines()[-1])
    return KillResult(pod_name, container_id, int(result["host_pid"]), float(result["killed_at"]))


@dataclass(frozen=True)
class FaultResponse:
    status: int
    served_by: str | None
    body: str


def trigger_liveness_fault(host: str, port: int, timeout_s: float = 5) -> FaultResponse:
    """`POST /debug/fault/liveness` through the Service: whichever pod answers turns unhealthy."""
    return trigger_fault(host, port, "liveness", timeout_s)


def trigger_fault(host: str, port: int, fault: str, timeout_s: float = 5) -> FaultResponse:
    """`POST /debug/fault/<fault>` through the Service (liveness, hang-inference): whichever pod answers."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("POST", f"/debug/fault/{fault}", body=b"", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
        return FaultResponse(response.status, response.getheader("X-Served-By"), body)
    finally:
        connection.close()


@dataclass(frozen=True)
class EvictionAttempt:
    at: float
    pod: str
    status: int  # 201 allowed, 429 refused by the disruption budget
    reason: str


def evict(core: client.CoreV1Api, namespace: str, pod: str) -> EvictionAttempt:
    """One call to the Eviction API (policy/v1)."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
    try:
        core.create_namespaced_pod_eviction(pod, namespace, body)
        return EvictionAttempt(time.time(), pod, 201, "evicted")
    except ApiException as exc:
        reason = exc.reason or ""
        with contextlib.suppress(ValueError):
            reason = json.loads(exc.body or "{}").get("message", reason)
        return EvictionAttempt(time.time(), pod, exc.status, reason)


def drain_evictions(
    core: client.CoreV1Api,
    namespace: str,
    pods: Sequence[str],
    retry_every_s: float,
    timeout_s: float,
) -> list[EvictionAttempt]:
    """Evict `pods` the way `kubectl drain` does: all at once, each retried while the budget refuses.

    kubectl drain (k8s.io/kubectl/pkg/drain) starts one eviction per pod concurrently and
    retries a pod on 429 (the PodDisruptionBudget allows no disruption now) every 5 s
    until it is evicted or the timeout passes; a 404 means the pod is gone already. Returns
    every attempt, in time order; raises TimeoutError naming the pods never evicted.
    """
    attempts: list[EvictionAttempt] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s
    unevicted: set[str] = set(pods)

    def evict_until_allowed(pod: str) -> None:
        while time.monotonic() < deadline:
            attempt = evict(core, namespace, pod)
            with lock:
                attempts.append(attempt)
            if attempt.status in (201, 404):
                with lock:
                    unevicted.discard(pod)
                return
            time.sleep(retry_every_s)

    workers = [threading.Thread(target=evict_until_allowed, args=(pod,), daemon=True) for pod in pods]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()) + retry_every_s + 30)
    ordered = sorted(attempts, key=lambda attempt: attempt.at)
    if unevicted:
        raise TimeoutError(
            f"not evicted within {timeout_s:.0f}s: {sorted(unevicted)} "
            f"(last answers: {[a for a in ordered if a.pod in unevicted][-3:]})"
        )
    return ordered
