"""Self-healing under steady load: a deleted pod, a SIGKILLed server, failing liveness, every pod gone,
a hung TensorFlow call.

The first four tests share one release (3 replicas, fault injection on, the chart's drain
settings) in file order; each starts from three Ready pods. The hung-inference test has
a release of its own (healing-hang.yaml: a 2 s request timeout, hung after 6 s). Two
probers run side by side, a new connection per request and a keep-alive pool
(harness.prober): a pod that drains must cost neither of them a request; a pod that dies
without draining (SIGKILL) may cost each only its own share of the traffic while the
Service still routed to it (harness.guarantees.bounded_loss), which a whole-Service
outage breaks.
"""

from __future__ import annotations

import time

import pytest
from harness import faults, slo
from harness.cluster_events import endpoint_left_at
from harness.guarantees import KUBE_PROXY_PROPAGATION_S, Loss
from harness.release import pod_is_ready
from harness.scenario import Scenario
from kubernetes import client

RATE_PER_S = 30
STEADY_S = 6
AFTER_S = 6
REPLICAS = 3
SUITE_VALUES = ("healing.yaml",)
HANG_VALUES = (*SUITE_VALUES, "healing-hang.yaml")
# Hung after 6 s, then the liveness probe (every 3 s, 2 failures) and the restart.
HANG_RESTART_BOUND_S = 60
# Every pod deleted at once: new pods are scheduled at once, the image is on the node, and
# TensorFlow's import, the model load and warm-up take 5-30 s on a busy 2-core node.
RECOVERY_BOUND_S = 60
# A SIGKILLed server: the kubelet's PLEG notices the dead container within ~1 s and the
# EndpointSlice follows (measured 0.4-0.7 s), then kube-proxy (2 s). Longer is a failure.
KILL_EXPOSURE_CAP_S = 5.0

pytestmark = pytest.mark.healing


def start(deploy) -> tuple[Scenario, client.CoreV1Api]:
    s = deploy("healing", SUITE_VALUES)
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 120)
    return s, client.CoreV1Api(s.release.api_client)


def server_status(pod: client.V1Pod) -> client.V1ContainerStatus:
    return next(status for status in pod.status.container_statuses if status.name == "server")


def steady_load(s: Scenario):
    return s.steady_load(RATE_PER_S, STEADY_S)


def test_deleted_pod_is_replaced_without_failed_requests(deploy):
    s, core = start(deploy)
    victim = s.release.ready_pods()[0].metadata.name
    steady_load(s)

    deleted = s.mark(f"delete pod {victim}")
    core.delete_namespaced_pod(victim, s.namespace)
    replacement = s.wait_until(
        "a replacement pod is Ready",
        lambda: next(
            (
                pod.metadata.name
                for pod in s.release.ready_pods()
                if pod.metadata.creation_timestamp.timestamp() >= deleted - 1 and pod.metadata.name != victim
            ),
            None,
        ),
        timeout_s=120,
    )
    ready_at = s.mark(f"replacement {replacement} Ready")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    s.fact("replacement_ready_s", f"{ready_at - deleted:.1f}")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window(f"while pod {victim} was deleted and replaced", deleted, ready_at))
    s.expect(len(s.release.ready_pods()) == REPLICAS, f"not {REPLICAS} Ready pods after the replacement")


def test_sigkilled_server_restarts_losing_only_requests_on_that_pod(deploy):
    s, core = start(deploy)
    pod = s.release.ready_pods()[0]
    victim = pod.metadata.name
    restarts_before = server_status(pod).restart_count
    agent_namespace = faults.ensure_agent_namespace(core, s.namespace)
    steady_load(s)

    before = s.window("before the kill", s.load_started_at, time.time())
    kill = faults.sigkill_container(
        core, agent_namespace, s.namespace, victim, "server", image=pod.spec.containers[0].image
    )
    s.mark_at(kill.killed_at, f"SIGKILL server in {victim} (host pid {kill.host_pid})")

    def restarted_and_ready() -> bool:
        current = core.read_namespaced_pod(victim, s.namespace)
        return server_status(current).restart_count > restarts_before and pod_is_ready(current)

    s.wait_until(f"{victim} restarted its server container and is Ready again", restarted_and_ready, 120)
    ready_at = s.mark(f"{victim} Ready again")
    time.sleep(AFTER_S)
    ended = s.stop_load()
    core.delete_namespace(agent_namespace)

    left_at = endpoint_left_at(s.events(), victim, after=kill.killed_at)
    s.expect(left_at is not None, f"the Service never stopped routing to {victim} after the kill")
    assert left_at is not None
    s.mark_at(left_at, f"Service stops routing to {victim}")
    final = server_status(core.read_namespaced_pod(victim, s.namespace))
    terminated = final.last_state.terminated if final.last_state else None
    s.fact("in_flight_at_kill", len(slo.in_flight_at(s.requests(), kill.killed_at)))
    s.fact("unrouted_after_s", f"{left_at - kill.killed_at:.1f}")
    s.fact("ready_again_s", f"{ready_at - kill.killed_at:.1f}")
    loss = Loss(f"the SIGKILL of {victim}'s server", frozenset({victim}), kill.killed_at, left_at)
    budgets = s.expect_loss_bounded(loss, before, max_exposure_s=KILL_EXPOSURE_CAP_S)
    for budget in budgets:
        s.fact(f"{budget.prober}_loss", budget.describe())
    s.expect_no_failures(s.window(f"after {victim} was Ready again", ready_at, ended))
    s.expect(
        final.restart_count == restarts_before + 1,
        f"restartCount {final.restart_count}, want {restarts_before + 1}",
    )
    s.expect(
        terminated is not None and terminated.exit_code == 137,
        f"last termination was not SIGKILL (exit 137): {terminated}",
    )


def test_liveness_failure_restarts_container_while_service_answers(deploy):
    s, core = start(deploy)
    restarts_before = {p.metadata.name: server_status(p).restart_count for p in s.release.ready_pods()}
    steady_load(s)

    injected = s.mark("POST /debug/fault/liveness")
    fault = faults.trigger_liveness_fault(s.release.node_address, s.release.node_port)
    s.expect(fault.status == 200 and fault.served_by in restarts_before, f"fault injection answered {fault}")
    victim = fault.served_by
    s.mark(f"{victim} liveness now failing")

    def restarted() -> bool:
        return (
            server_status(core.read_namespaced_pod(victim, s.namespace)).restart_count
            > restarts_before[victim]
        )

    s.wait_until(f"kubelet restarts {victim}'s server container", restarted, 90)
    restarted_at = s.mark(f"{victim} restarted")
    s.wait_until(
        f"{victim} is Ready again", lambda: pod_is_ready(core.read_namespaced_pod(victim, s.namespace)), 120
    )
    ready_at = s.mark(f"{victim} Ready again")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    liveness_events = [
        e
        for e in s.events("event")
        if e.detail["reason"] == "Unhealthy" and "Liveness" in e.detail["message"]
    ]
    s.fact("restart_after_s", f"{restarted_at - injected:.1f}")
    s.fact("ready_again_s", f"{ready_at - injected:.1f}")
    # A restarted container keeps its pod, so the Service drops it only when readiness fails
    # after SIGTERM; the server must still be serving then (its drain delay must outlast that).
    killing = [
        e.at for e in s.events("event") if e.detail["reason"] == "Killing" and victim in e.detail["object"]
    ]
    left_at = endpoint_left_at(s.events(), victim, after=killing[0]) if killing else None
    if killing and left_at is not None:
        s.mark_at(killing[0], "kubelet: SIGTERM (Killing)")
        s.mark_at(left_at, "Service stops routing to it")
        s.fact("sigterm_to_unrouted_s", f"{left_at - killing[0]:.1f}")
    s.expect(bool(liveness_events), "no 'Liveness probe failed' event: the restart had another cause")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(
        s.window(f"while the kubelet restarted {victim} for failing liveness", injected, ready_at)
    )
    s.expect(
        server_status(core.read_namespaced_pod(victim, s.namespace)).restart_count
        == restarts_before[victim] + 1,
        f"{victim} restarted more than once",
    )


def test_every_pod_deleted_service_answers_again_within_bound(deploy):
    s, core = start(deploy)
    old_pods = {pod.metadata.name for pod in s.release.pods()}
    steady_load(s)

    deleted = s.mark("delete every pod")
    core.delete_collection_namespaced_pod(s.namespace, label_selector=s.release.selector)
    s.wait_until(
        f"{REPLICAS} new pods are Ready",
        lambda: len([p for p in s.release.ready_pods() if p.metadata.name not in old_pods]) == REPLICAS,
        180,
    )
    s.mark(f"{REPLICAS} new pods Ready")
    # Ready is not routed (seen: 16 SYNs refused in the 0.5 s after all three pods turned Ready
    # at once): the judged window starts once the EndpointSlices list them and kube-proxy has
    # had its propagation time, as for leaving pods (Loss).
    new_pods = {pod.metadata.name for pod in s.release.ready_pods()} - old_pods
    routed_from = s.mark_at(s.wait_routed(new_pods), "kube-proxy routes to the new pods")
    time.sleep(max(0.0, routed_from - time.time()) + AFTER_S)
    ended = s.stop_load()

    # Every prober kept sending through the outage (the window is populated); for each the
    # Service answered again within the bound, and once kube-proxy could route to the new pods
    # it failed only where the outage's stale NAT entries explain it (harness.guarantees: a
    # localhost NodePort's REJECTed SYNs leave them; keep-alive connections opened later never
    # meet them).
    outage = s.window(
        "between deleting every pod and kube-proxy routing to the new Ready pods", deleted, routed_from
    )
    s.expect_populated(outage)
    recoveries = s.expect_recovered(
        outage, s.window("once kube-proxy could route to the new pods", routed_from, ended)
    )
    for recovery in recoveries:
        answered_after_s = recovery.answers_again_at - deleted
        s.fact(f"{recovery.prober}_failed", recovery.outage_failed + recovery.late_failed)
        s.fact(f"{recovery.prober}_answers_again_after_s", f"{answered_after_s:.1f}")
        s.fact(f"{recovery.prober}_stale_nat", f"{recovery.late_failed}/{recovery.late_allowed}")
        s.expect(
            answered_after_s <= RECOVERY_BOUND_S,
            f"{recovery.prober}: the Service answered again {answered_after_s:.1f}s after every pod was "
            f"deleted (bound {RECOVERY_BOUND_S}s)",
        )
    s.mark_at(deleted + max(r.answers_again_at - deleted for r in recoveries), "Service answers again")
    s.fact("bound_s", RECOVERY_BOUND_S)


def test_hung_inference_fails_liveness_restarts_and_other_replicas_lose_nothing(deploy):
    s = deploy("healing-hang", HANG_VALUES)
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 120)
    core = client.CoreV1Api(s.release.api_client)
    restarts_before = {p.metadata.name: server_status(p).restart_count for p in s.release.ready_pods()}
    s.steady_load(RATE_PER_S, STEADY_S)

    injected = s.mark("POST /debug/fault/hang-inference")
    fault = faults.trigger_fault(s.release.node_address, s.release.node_port, "hang-inference")
    s.expect(fault.status == 200 and fault.served_by in restarts_before, f"fault injection answered {fault}")
    victim = fault.served_by
    s.mark(f"{victim}: inference thread blocked for good")

    def restarted() -> bool:
        return (
            server_status(core.read_namespaced_pod(victim, s.namespace)).restart_count
            > restarts_before[victim]
        )

    s.wait_until(f"kubelet restarts {victim}'s server container", restarted, HANG_RESTART_BOUND_S)
    restarted_at = s.mark(f"{victim} restarted")
    s.wait_until(
        f"{victim} is Ready again", lambda: pod_is_ready(core.read_namespaced_pod(victim, s.namespace)), 120
    )
    ready_at = s.mark(f"{victim} Ready again")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    s.expect_populated(s.window(f"while {victim} hung and restarted", injected, ready_at))
    after_injection = s.window("after the hang", injected, ended).of(s.requests())
    others = [r for r in after_injection if r.served_by is not None and r.served_by != victim]
    on_victim = [r for r in after_injection if r.served_by == victim]
    # A request that got no answer at all (a refused or reset connection) names no pod: it
    # can only have been on the victim if it was sent while the Service still routed to it.
    left_at = endpoint_left_at(s.events(), victim, after=injected)
    s.expect(left_at is not None, f"the Service never stopped routing to {victim} once it hung")
    routed_until = left_at + KUBE_PROXY_PROPAGATION_S
    unattributed = [
        r
        for r in slo.failures(after_injection)
        if r.served_by is None and not injected <= r.sent_at <= routed_until
    ]
    previous_log = core.read_namespaced_pod_log(victim, s.namespace, container="server", previous=True)
    liveness_events = [
        e
        for e in s.events("event")
        if e.detail["reason"] == "Unhealthy"
        and "Liveness" in e.detail["message"]
        and victim in e.detail["object"]
    ]
    s.fact("restart_after_s", f"{restarted_at - injected:.1f}")
    s.fact("unrouted_after_s", f"{left_at - injected:.1f}")
    s.fact("ready_again_s", f"{ready_at - injected:.1f}")
    s.fact("answered_by_others", len(others))
    s.fact("failed_on_victim", len(slo.failures(on_victim)))
    s.expect(len(others) >= RATE_PER_S * 10, f"only {len(others)} requests reached the other replicas")
    s.expect(
        not slo.failures(others),
        f"{len(slo.failures(others))} requests failed on the replicas other than {victim} while it hung",
        others,
    )
    s.expect(
        not unattributed,
        f"{len(unattributed)} unanswered requests sent after {victim} was unrouted",
        unattributed,
    )
    s.expect(
        bool(liveness_events), f"no 'Liveness probe failed' event for {victim}: the restart had another cause"
    )
    s.expect(
        "liveness now fails so the container is restarted" in previous_log
        and "Stack of thread tf-inference" in previous_log,
        f"{victim}'s log before the restart does not show the hung call and its stack",
    )
    s.expect(
        server_status(core.read_namespaced_pod(victim, s.namespace)).restart_count
        == restarts_before[victim] + 1,
        f"{victim} restarted more than once",
    )
