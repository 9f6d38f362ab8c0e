"""Scaling: the HPA under CPU load, replicaCount changes (HPA off), helm upgrades with the HPA on,
and the HPA turned on for a running release.

Every test asserts 0 failed requests, per prober and per window, through scale-up and
scale-down: pods that go away drain, so neither the new-connection prober nor the
keep-alive one may lose a request.
"""

from __future__ import annotations

import time

import pytest
from harness.prober import Target
from harness.release import predict_body
from kubernetes import client

RATE_PER_S = 30
STEADY_S = 6
AFTER_S = 6
SCALE_UP_BOUND_S = 120
# Back to the minimum once the load stops: metrics-server's next samples (~15-30 s), the
# HPA's 15 s sync period and the 15 s scale-down stabilization window in hpa.yaml.
SCALE_DOWN_BOUND_S = 150
# CPU load: TF Serving predict requests carrying a batch of rows, at a rate the 2-core node
# can serve; with a 50m request per pod this is several times the 50 % target for one pod.
LOAD_RATE_PER_S = 40
LOAD_ROWS = 64
LOAD_TIMEOUT_S = 5
LOAD_MAX_S = SCALE_UP_BOUND_S + 30
# The HPA test's background probers: light enough not to hold the HPA above its minimum
# (50 % of a 50m request), frequent enough to populate the scale-down window.
IDLE_RATE_PER_S = 2
IDLE_KEEP_ALIVE_CONNECTIONS = 2

pytestmark = pytest.mark.scaling


def hpa(s) -> client.V2HorizontalPodAutoscaler:
    items = client.AutoscalingV2Api(s.release.api_client).list_namespaced_horizontal_pod_autoscaler(
        s.namespace, label_selector=s.release.selector
    )
    s.expect(len(items.items) == 1, f"expected one HorizontalPodAutoscaler, found {len(items.items)}")
    return items.items[0]


def hpa_has_cpu_metric(s) -> bool:
    metrics = hpa(s).status.current_metrics or []
    return any(m.resource is not None and m.resource.current.average_utilization is not None for m in metrics)


def deployment_counts(s) -> tuple[int, int]:
    deployment = s.release.deployment()
    return deployment.spec.replicas or 0, deployment.status.ready_replicas or 0


def replica_counts_since(s, since: float) -> tuple[list[int], list[int]]:
    """Desired and ready replicas of every Deployment change the recorder saw since `since`."""
    changes = [e for e in s.events("deployment") if e.at >= since]
    return [e.detail["spec_replicas"] or 0 for e in changes], [e.detail["ready"] for e in changes]


def test_hpa_scales_up_under_cpu_load_and_back_down(deploy):
    s = deploy("hpa", ("hpa.yaml",), fresh=True)
    s.wait_until("the HPA reads CPU metrics of its pod", lambda: hpa_has_cpu_metric(s), 120, poll_s=2)
    s.expect(deployment_counts(s) == (1, 1), f"replicas before load: {deployment_counts(s)} (want 1 ready)")
    idle = s.steady_load(IDLE_RATE_PER_S, settle_s=2, keep_alive=IDLE_KEEP_ALIVE_CONNECTIONS)
    metadata = s.release.model_metadata()
    load_target = Target(
        s.release.node_address,
        s.release.node_port,
        "/v1/models/anomaly:predict",
        predict_body(metadata, LOAD_ROWS),
    )

    load_started = s.mark(f"CPU load starts ({LOAD_RATE_PER_S} req/s x {LOAD_ROWS} rows)")
    load = s.probe(
        LOAD_RATE_PER_S,
        name="cpu-load",
        target=load_target,
        timeout_s=LOAD_TIMEOUT_S,
        max_duration_s=LOAD_MAX_S,
    )
    s.wait_until(
        "at least 3 replicas are Ready under load",
        lambda: deployment_counts(s)[1] >= 3,
        SCALE_UP_BOUND_S,
        poll_s=1,
    )
    scaled_at = s.mark("≥3 replicas Ready")
    load.stop()
    load_stopped = s.mark("CPU load stops")
    s.wait_until(
        "the HPA is back at its minimum of 1 replica",
        lambda: deployment_counts(s) == (1, 1) and len(s.release.pods()) == 1,
        SCALE_DOWN_BOUND_S,
        poll_s=1,
    )
    down_at = s.mark("back to 1 replica")
    time.sleep(2)
    ended = s.stop_load()

    peak = max((e.detail["spec_replicas"] or 0) for e in s.events("deployment"))
    s.fact("scale_up_s", f"{scaled_at - load_started:.1f}")
    s.fact("peak_replicas", peak)
    s.fact("scale_down_s", f"{down_at - load_stopped:.1f}")
    s.expect(scaled_at - load_started <= SCALE_UP_BOUND_S, "scale-up took longer than the bound")
    assert load.started_at is not None
    scale_up = s.window("while the HPA scaled up under CPU load", load.started_at, scaled_at)
    s.expect_no_failures(scale_up, [*idle, load])
    s.expect_no_failures(s.window("while the HPA scaled back down to 1", load_stopped, down_at), idle)
    idle_started = max(p.started_at for p in idle if p.started_at is not None)
    s.expect_no_failures(s.window("from the first request to the last", idle_started, ended), idle)


def test_replica_count_upgrade_scales_without_failed_requests(deploy):
    s = deploy("replicas", (), settings={"replicaCount": 1}, fresh=True)
    values = []
    tag = s.release.current.setting("image.tag") or "v2"
    first_pod = {pod.metadata.name for pod in s.release.pods()}
    s.steady_load(RATE_PER_S, STEADY_S)

    up = s.mark("helm upgrade replicaCount=3")
    s.release.upgrade(values, image_tag=tag, settings={"replicaCount": 3})
    s.release.wait_rolled_out()
    s.mark("3 replicas Ready")
    three = {pod.metadata.name for pod in s.release.pods()}
    time.sleep(STEADY_S)
    down = s.mark("helm upgrade replicaCount=1")
    s.release.upgrade(values, image_tag=tag, settings={"replicaCount": 1})
    s.release.wait_rolled_out()
    gone = three - {pod.metadata.name for pod in s.release.pods()}
    settled = s.wait_unrouted(gone)
    s.mark("1 replica")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    ended = s.stop_load()

    s.fact("up_s", f"{down - up:.1f}")
    s.fact("served_by_pods", len({r.served_by for r in s.requests() if r.ok}))
    s.expect(
        len(three) == 3 and first_pod <= three, f"scale-up replaced the running pod: {first_pod} → {three}"
    )
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window("while helm upgrade scaled 1 → 3", up, down))
    s.expect_no_failures(s.window("while helm upgrade scaled 3 → 1 and the two pods drained", down, settled))
    s.expect(deployment_counts(s) == (1, 1), f"after scaling down: {deployment_counts(s)}")


def test_helm_upgrade_with_hpa_on_keeps_the_replica_count(deploy):
    s = deploy("hpa-min-three", ("hpa-min-three.yaml",), settings={"replicaCount": 1}, fresh=True)
    s.wait_until("the HPA holds 3 Ready replicas", lambda: deployment_counts(s) == (3, 3), 180)
    tag = s.release.current.setting("image.tag") or "v2"
    s.steady_load(RATE_PER_S, STEADY_S)

    upgraded = s.mark("helm upgrade (replicaCount=2, config change) with the HPA on")
    s.release.upgrade(
        s.release.suite_values(("hpa-min-three.yaml",)),
        image_tag=tag,
        settings={"replicaCount": 2, "server.batching.maxWaitMs": 3},
    )
    s.release.wait_rolled_out()
    rolled = s.mark("rollout complete")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    desired_after = [
        e.detail["spec_replicas"] for e in s.events("deployment") if e.at >= upgraded and e.change != "LISTED"
    ]
    s.fact("min_desired_after_upgrade", min(desired_after, default=None))
    s.expect(bool(desired_after), "no Deployment change observed after the upgrade")
    s.expect(
        min(desired_after) >= 3,
        f"helm upgrade reset the HPA's replica count: spec.replicas went {desired_after}",
    )
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window("during a helm upgrade with the HPA on", upgraded, rolled))


def test_enabling_autoscaling_on_a_running_release_keeps_its_replicas(deploy):
    """HPA off → on with `helm upgrade`: helm's three-way merge would delete spec.replicas
    (the API server then defaults it to 1); the chart renders the live count instead."""
    s = deploy("hpa-turned-on", ("three-replicas.yaml",), fresh=True)
    s.wait_until("3 replicas are Ready", lambda: deployment_counts(s) == (3, 3), 120)
    tag = s.release.current.setting("image.tag") or "v2"
    pods_before = {pod.metadata.name for pod in s.release.pods()}
    s.steady_load(RATE_PER_S, STEADY_S)

    values = s.release.suite_values(("three-replicas.yaml", "hpa-turned-on.yaml"))
    turned_on = s.mark("helm upgrade: autoscaling.enabled=true")
    s.release.upgrade(values, image_tag=tag)
    time.sleep(AFTER_S)
    s.mark("helm upgrade again with the HPA on (autoscaling.maxReplicas=5)")
    s.release.upgrade(values, image_tag=tag, settings={"autoscaling.maxReplicas": 5})
    time.sleep(AFTER_S)
    ended = s.stop_load()

    desired, ready = replica_counts_since(s, turned_on)
    # The Deployment's watch reports changes only: none means the counts held where they were.
    held = deployment_counts(s)
    desired_range = f"{min(desired)}..{max(desired)}" if desired else f"unchanged ({held[0]})"
    s.fact("desired_after_upgrades", desired_range)
    s.fact("min_ready_after_upgrades", min(ready) if ready else f"unchanged ({held[1]})")
    s.expect(len(hpa(s).spec.metrics or []) >= 1, "the upgrade created no working HorizontalPodAutoscaler")
    s.expect(
        hpa(s).spec.max_replicas == 5, f"the second upgrade did not reach the HPA: {hpa(s).spec.max_replicas}"
    )
    s.expect(
        deployment_counts(s) == (3, 3) and (not desired or min(desired) >= 3),
        "turning the HPA on changed the replica count: spec.replicas went "
        f"{desired or [deployment_counts(s)[0]]} (want 3 throughout; helm deletes spec.replicas "
        "unless the chart renders the live count)",
    )
    s.expect(not ready or min(ready) >= 3, f"ready replicas dropped while the HPA was turned on: {ready}")
    s.expect(
        {pod.metadata.name for pod in s.release.pods()} == pods_before,
        "turning the HPA on replaced or removed pods",
    )
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(
        s.window("while the HPA was turned on and the release upgraded again", turned_on, ended)
    )
