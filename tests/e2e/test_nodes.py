"""Several nodes under steady load: spread, a drain, a node lost without warning, upgrades across nodes.

The suite needs at least two schedulable nodes (kind's default here: a control-plane and
two workers; only the workers take pods) and fails at once, naming the reason, on a
cluster with fewer. The four tests share one release (3 replicas, the chart's default
topology spread, PodDisruptionBudget and node-failure tolerations) in file order; each
first brings its replicas onto more than one node (outside the measured window). Every
test runs the new-connection and the keep-alive prober and asserts on their records:

1. spread: the replicas land on >= 2 nodes and every node holding one answers its share;
2. drain: `kubectl drain` of a worker holding replicas: 0 failed, the PDB refuses an
   eviction that would break it and allows it once a replacement is Ready elsewhere;
3. node loss: the worker's container is SIGKILLed (no drain). Failures are bounded by
   what could have been routed to its pods until the Service stopped routing to them
   (harness.guarantees.bounded_loss: a whole-Service outage breaks that bound), and
   after that by the collisions of new connections with the stale NAT entries the dead
   pods' unanswered connections left, for as long as those live (120 s);
   replacements are Ready on the surviving nodes within REPLACEMENT_BOUND_S (what
   `nodeFailureTolerationSeconds` buys: with Kubernetes' 300 s default this fails); the
   node is started again, rejoins and, once the stale entries are gone, takes pods again
   in a rolling restart, 0 failed;
4. upgrade and scaling: v1 -> v2 rolling upgrade, then 3 -> 5 replicas, new pods on
   more than one node, 0 failed.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator

import pytest
from harness import providers
from harness.cluster_events import ClusterEvent, endpoint_left_at, pod_ready_at
from harness.guarantees import Loss
from harness.scenario import Scenario
from kubernetes import client
from ops import kube

RATE_PER_S = 30
STEADY_S = 8
AFTER_S = 6
REPLICAS = 3
SUITE_VALUES = ("three-replicas.yaml",)
# Node loss. The node lifecycle controller marks a silent node's pods not Ready after its
# node-monitor-grace-period (Kubernetes v1.32: 50 s), which takes them out of the Service;
# kube-proxy follows within 2 s. Beyond that the Service would be routing to a dead node.
NODE_EXPOSURE_CAP_S = 75
# Replacements: grace period (50 s) + the chart's nodeFailureTolerationSeconds (30 s) +
# scheduling, TensorFlow start and warm-up on a busy 2-core machine (measured 20-40 s).
# Kubernetes' default toleration (300 s) alone is past this bound.
REPLACEMENT_BOUND_S = 180
# Each stale entry lives 120 s after its last SYN; collisions refresh a few (harness.guarantees).
STALE_NAT_WAIT_S = 420
NODE_READY_BOUND_S = 180
DRAIN_TIMEOUT_S = 300
PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget"
CLOCK_SLACK_S = 1.0
Z_SIGMA = 4.0

pytestmark = pytest.mark.nodes


# -- the cluster's nodes -------------------------------------------------------------------


def schedulable_nodes(core: client.CoreV1Api) -> list[str]:
    """Ready nodes that take ordinary pods (no NoSchedule/NoExecute taint, not cordoned)."""
    names = []
    for node in core.list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        tainted = any(t.effect in ("NoSchedule", "NoExecute") for t in node.spec.taints or [])
        if ready and not tainted and not node.spec.unschedulable:
            names.append(node.metadata.name)
    return sorted(names)


@pytest.fixture(scope="module")
def workers(cluster: providers.Cluster, kube) -> list[str]:
    nodes = schedulable_nodes(client.CoreV1Api(kube))
    if len(nodes) < 2:
        pytest.fail(
            f"the nodes suite needs at least 2 schedulable nodes; the {cluster.provider} cluster has "
            f"{len(nodes)} ({', '.join(nodes) or 'none'}). Run it on kind: make e2e CLUSTER=kind "
            "PYTEST_ARGS='-m nodes' (KIND_WORKERS=2 by default)",
            pytrace=False,
        )
    return nodes


def node_of(events: Iterable[ClusterEvent]) -> dict[str, str]:
    """pod -> node, from everything the recorder saw (pods deleted since included)."""
    return {e.name: e.detail["node"] for e in events if e.kind == "pod" and e.detail.get("node")}


def pods_by_node(s: Scenario) -> dict[str, list[str]]:
    placement: dict[str, list[str]] = {}
    for pod in s.release.ready_pods():
        placement.setdefault(pod.spec.node_name, []).append(pod.metadata.name)
    return placement


def rollout_restart(s: Scenario) -> None:
    kube.kubectl(
        s.release.kubeconfig,
        "-n",
        s.namespace,
        "rollout",
        "restart",
        f"deployment/{s.release.deployment().metadata.name}",
    )
    time.sleep(1)
    s.release.wait_rolled_out(timeout_s=300)


def spread_over_nodes(s: Scenario) -> dict[str, list[str]]:
    """Preparation outside the measured window: replicas on >= 2 nodes (a rolling restart if not)."""
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 240)
    for _ in range(3):
        placement = pods_by_node(s)
        if len(placement) >= 2:
            return placement
        s.mark(f"prepare: all replicas on {sorted(placement)}: rolling restart to spread them")
        rollout_restart(s)
    s.fail(f"the replicas stay on one node after 3 rolling restarts: {pods_by_node(s)}")
    raise AssertionError  # unreachable: fail raises


def start(deploy) -> Scenario:
    return deploy("nodes", SUITE_VALUES, image_tag="v1")


def binomial_lower(trials: int, p: float, z: float = Z_SIGMA) -> int:
    return math.floor(trials * p - z * math.sqrt(trials * p * (1.0 - p)))


# -- 1. spread ----------------------------------------------------------------------------


def test_replicas_spread_over_nodes_and_every_node_answers(deploy, workers):
    s = start(deploy)
    placement = spread_over_nodes(s)
    s.steady_load(RATE_PER_S, settle_s=0)
    began = time.time()
    time.sleep(STEADY_S * 2)
    ended = s.stop_load()

    window = s.window("under steady load", began, ended)
    answered = s.expect_no_failures(window)
    nodes = node_of(s.events())
    s.fact("placement", " ".join(f"{node}={len(pods)}" for node, pods in sorted(placement.items())))
    s.expect(len(placement) >= 2, f"{REPLICAS} replicas on one node only: {placement}")
    for prober, records in answered.items():
        by_node = Counter(nodes.get(r.served_by or "", "?") for r in records)
        s.fact(f"{prober}_answers_by_node", " ".join(f"{n}={c}" for n, c in sorted(by_node.items())))
        if prober != "new-connection":
            # A keep-alive pool's 4 connections land where kube-proxy sent them once: its
            # split follows those few draws, not the replicas' share (no per-request balancing).
            continue
        for node, pods in placement.items():
            share = len(pods) / REPLICAS
            floor = max(1, binomial_lower(len(records), share))
            s.expect(
                by_node[node] >= floor,
                f"{prober}: node {node} holds {len(pods)} of {REPLICAS} replicas but answered "
                f"{by_node[node]} of {len(records)} requests (at least {floor} expected)",
            )


# -- 2. drain -----------------------------------------------------------------------------


def drain(s: Scenario, node: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        s.release.kubeconfig,
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={DRAIN_TIMEOUT_S}s",
        check=False,
        timeout=DRAIN_TIMEOUT_S + 30,
    )


def terminating_since(events: Iterable[ClusterEvent], pod: str) -> float | None:
    return next((e.at for e in events if e.kind == "pod" and e.name == pod and e.detail["terminating"]), None)


def test_drain_of_a_worker_honours_the_pdb_and_drops_nothing(deploy, workers):
    s = start(deploy)
    placement = spread_over_nodes(s)
    node, drained = max(placement.items(), key=lambda item: len(item[1]))
    original = {pod.metadata.name for pod in s.release.pods()}
    s.steady_load(RATE_PER_S, STEADY_S)

    began = s.mark(f"kubectl drain {node} ({len(drained)} replicas: {', '.join(sorted(drained))})")
    try:
        result = drain(s, node)
        drained_at = s.mark(f"drain of {node} finished (exit {result.returncode})")
        s.wait_until(
            f"{REPLICAS} pods Ready off {node}",
            lambda: sum(1 for pod in s.release.ready_pods() if pod.spec.node_name != node) == REPLICAS,
            240,
        )
        ready_at = s.mark(f"{REPLICAS} replicas Ready elsewhere")
        time.sleep(AFTER_S)
        ended = s.stop_load()
    finally:
        kube.kubectl(s.release.kubeconfig, "uncordon", node, check=False)
        s.mark(f"uncordon {node}")

    output = result.stdout + result.stderr
    s.fact("drain_s", f"{drained_at - began:.1f}")
    s.fact("pdb_refusals", output.count(PDB_REFUSAL))
    s.fact("elsewhere_ready_s", f"{ready_at - began:.1f}")
    s.expect(result.returncode == 0, f"kubectl drain {node} failed:\n{output[-2000:]}")
    s.expect_no_failures(s.window(f"while {node} was drained", began, ended))
    # With maxUnavailable 1, evicting the node's replicas together must be refused for all
    # but one until a replacement is Ready; kubectl drain retries the refused ones.
    if len(drained) >= 2:
        s.expect(
            PDB_REFUSAL in output, f"the PDB never refused an eviction during the drain:\n{output[-2000:]}"
        )
        evicted = sorted(
            (at, pod) for pod in drained if (at := terminating_since(s.events(), pod)) is not None
        )
        s.expect(len(evicted) == len(drained), f"not every pod of {node} was evicted: {evicted}")
        first_replacement = min(
            (
                at
                for e in s.events("pod")
                if e.name not in original
                and (at := pod_ready_at(s.events(), e.name, after=evicted[0][0])) is not None
            ),
            default=None,
        )
        s.expect(first_replacement is not None, "no replacement pod was ever Ready during the drain")
        assert first_replacement is not None
        s.mark_at(first_replacement, "first replacement Ready")
        s.expect(
            evicted[1][0] >= first_replacement - CLOCK_SLACK_S,
            f"{evicted[1][1]} was evicted at t={evicted[1][0] - s.record.started_at:.1f}s, before the "
            f"first replacement was Ready (t={first_replacement - s.record.started_at:.1f}s): "
            "the PDB did not hold",
        )
    ready = [e.detail["ready"] for e in s.events("deployment") if began <= e.at <= ready_at]
    s.expect(
        min(ready, default=REPLICAS) >= REPLICAS - 1,
        f"ready replicas fell to {min(ready, default=None)} during the drain (PDB maxUnavailable 1)",
    )
    s.expect(
        all(pod.spec.node_name != node for pod in s.release.ready_pods()),
        f"a pod is still Ready on drained {node}",
    )


# -- 3. node loss -------------------------------------------------------------------------


def all_nodes_ready(core: client.CoreV1Api) -> bool:
    return all(
        any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        for node in core.list_node().items
    )


@pytest.fixture
def node_faults(cluster: providers.Cluster, kube) -> Iterator[providers.NodeFaults]:
    """The provider's node faults; whatever the test did, every node runs and is Ready afterwards.

    A failed node-loss test must not leave the next tests a cluster with a node missing:
    each node is started (`docker start` of a running container changes nothing) and
    waited for, bounded, before the next test begins.
    """
    faults = cluster.node_faults
    if faults is None:
        pytest.fail(
            f"the {cluster.provider} provider cannot kill a node from here (kind's nodes are containers)",
            pytrace=False,
        )
    yield faults
    core = client.CoreV1Api(kube)
    for node in core.list_node().items:
        faults.start_node(node.metadata.name)
    deadline = time.monotonic() + NODE_READY_BOUND_S
    while not all_nodes_ready(core):
        if time.monotonic() > deadline:
            pytest.fail(f"not every node was Ready {NODE_READY_BOUND_S}s after being started again")
        time.sleep(2)


def test_lost_node_bounded_failures_replacements_elsewhere_node_rejoins(
    deploy, workers, node_faults, release_pool
):
    s = start(deploy)
    # Only this release's pods on the nodes: the others would all restart on the survivor at once.
    s.fact("other_e2e_pods_removed", release_pool.retire_all_but(s.release), in_slo_line=False)
    core = client.CoreV1Api(s.release.api_client)
    placement = spread_over_nodes(s)
    # The victim holds replicas but not all of them: the Service must keep answering.
    victim, lost = min(placement.items(), key=lambda item: len(item[1]))
    s.steady_load(RATE_PER_S, STEADY_S)
    before = s.window("before the node loss", s.load_started_at, time.time())

    lost_at = s.mark(f"kill node {victim} (docker kill; {len(lost)} replicas: {', '.join(sorted(lost))})")
    node_faults.kill_node(victim)
    s.wait_until(
        f"the Service stops routing to {sorted(lost)}",
        lambda: not (set(lost) & ready_endpoints(s)),
        NODE_EXPOSURE_CAP_S + 30,
        poll_s=0.5,
    )
    left = [endpoint_left_at(s.events(), pod, after=lost_at) for pod in lost]
    unrouted_at = max(at for at in left if at is not None) if all(left) else time.time()
    s.mark_at(unrouted_at, f"Service stops routing to {victim}'s pods")

    def replacements_ready() -> bool:
        return sum(1 for pod in s.release.ready_pods() if pod.spec.node_name != victim) >= REPLICAS

    deadline = lost_at + REPLACEMENT_BOUND_S
    while not replacements_ready():
        if time.time() > deadline:
            tolerations = s.release.deployment().spec.template.spec.tolerations or []
            seconds = {t.key: t.toleration_seconds for t in tolerations if t.effect == "NoExecute"}
            s.fail(
                f"replacements for {sorted(lost)} not Ready on the surviving nodes within "
                f"{REPLACEMENT_BOUND_S}s of losing {victim}: the pods tolerate a lost node for "
                f"{seconds or 'the Kubernetes default (300 s)'} (chart value nodeFailureTolerationSeconds)"
            )
        time.sleep(1)
    replaced_at = s.mark(f"{REPLICAS} replicas Ready on the surviving nodes")

    started_at = s.mark(f"start node {victim} again (docker start)")
    node_faults.start_node(victim)
    s.wait_until(f"{victim} is Ready again", lambda: victim in schedulable_nodes(core), NODE_READY_BOUND_S, 2)
    rejoined_at = s.mark(f"{victim} Ready again")
    # Until the lost pods' stale NAT entries expire, a new connection may still collide with one
    # (bounded below); the rejoined node's part is judged after that, at 0 failed. A hit refreshes
    # an entry, so they are counted on the node where they live rather than assumed gone.
    lost_ips = {e.detail["ip"] for e in s.events("pod") if e.name in lost and e.detail.get("ip")}
    s.wait_until(
        f"no stale NAT entry to {sorted(lost_ips)} is left on the control-plane node",
        lambda: node_faults.stale_nat_entries(sorted(lost_ips)) == 0,
        STALE_NAT_WAIT_S,
        poll_s=5,
    )
    stale_gone = s.mark("the lost pods' stale NAT entries have expired")
    rollout_restart(s)
    restarted_at = s.mark("rolling restart done")
    on_victim = [pod.metadata.name for pod in s.release.ready_pods() if pod.spec.node_name == victim]
    time.sleep(AFTER_S)
    ended = s.stop_load()

    s.fact("lost_pods", len(lost))
    s.fact("unrouted_after_s", f"{unrouted_at - lost_at:.1f}")
    s.fact("replaced_after_s", f"{replaced_at - lost_at:.1f}")
    s.fact("bound_s", REPLACEMENT_BOUND_S)
    s.fact("rejoined_after_s", f"{rejoined_at - started_at:.1f}")
    s.fact("stale_nat_gone_after_s", f"{stale_gone - unrouted_at:.0f}")
    loss = Loss(f"the loss of node {victim}", frozenset(lost), lost_at, unrouted_at)
    for budget in s.expect_loss_bounded(loss, before, max_exposure_s=NODE_EXPOSURE_CAP_S):
        s.fact(f"{budget.prober}_loss", budget.describe())
    s.expect_no_failures(
        s.window(
            "once the lost pods' stale NAT entries had expired, through the rolling restart",
            stale_gone,
            ended,
        )
    )
    s.expect(bool(on_victim), f"the rejoined node {victim} took no pod in the rolling restart {restarted_at}")
    s.fact("pods_on_rejoined_node", len(on_victim))


def ready_endpoints(s: Scenario) -> set[str]:
    slices = client.DiscoveryV1Api(s.release.api_client).list_namespaced_endpoint_slice(s.namespace)
    return {
        e.target_ref.name
        for slice_ in slices.items
        for e in slice_.endpoints or []
        if e.target_ref is not None and e.conditions is not None and e.conditions.ready
    }


# -- 4. upgrade and scaling across nodes ---------------------------------------------------


def test_rolling_upgrade_and_scale_up_across_nodes(deploy, workers):
    s = start(deploy)
    if s.release.current.setting("image.tag") != "v1":
        s.mark("prepare: back to v1")
        s.release.upgrade(s.release.suite_values(SUITE_VALUES), image_tag="v1")
        s.release.wait_rolled_out()
    spread_over_nodes(s)
    files = s.release.suite_values(SUITE_VALUES)
    old = {pod.metadata.name for pod in s.release.pods()}
    s.steady_load(RATE_PER_S, STEADY_S)

    began = s.mark("helm upgrade v1 → v2")
    s.release.upgrade(files, image_tag="v2")
    s.release.wait_rolled_out(timeout_s=300)
    settled = s.wait_unrouted(old)
    s.mark("rollout complete")
    upgraded = pods_by_node(s)
    before_scale = {pod for pods in upgraded.values() for pod in pods}
    s.mark("helm upgrade replicaCount 3 → 5")
    s.release.upgrade(files, image_tag="v2", settings={"replicaCount": 5})
    s.release.wait_rolled_out(timeout_s=300)
    scaled = pods_by_node(s)
    s.mark("5 replicas Ready")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    ended = s.stop_load()

    s.fact("after_upgrade", " ".join(f"{n}={len(p)}" for n, p in sorted(upgraded.items())))
    s.fact("after_scale", " ".join(f"{n}={len(p)}" for n, p in sorted(scaled.items())))
    s.fact("rollout_s", f"{settled - began:.1f}")
    s.expect_no_failures(s.window("through the v1 → v2 upgrade and the scale-up to 5", began, ended))
    s.expect(len(upgraded) >= 2, f"after the upgrade every replica is on one node: {upgraded}")
    s.expect(
        sum(len(p) for p in scaled.values()) == 5 and len(scaled) >= 2,
        f"after scaling to 5 the replicas are {scaled}",
    )
    added_on = {node for node, pods in scaled.items() for pod in pods if pod not in before_scale}
    s.fact("scale_up_landed_on", " ".join(sorted(added_on)))
    s.expect(bool(added_on), f"the scale-up to 5 added no Ready pod: {scaled}")
