"""Rolling upgrades, rollbacks, config rolls and broken releases under steady load.

As in Kubernetes' "should not disrupt … during rollout" and Knative's upgrade prober, a
prober runs through every change and the assertions read its record: any failed
request fails the test. The four tests share one release (3 replicas, the chart's own
rollout and drain settings) in file order; each one brings it to the state it needs.
"""

from __future__ import annotations

import time

import pytest
from harness import slo
from harness.scenario import Scenario
from kubernetes import client

RATE_PER_S = 30
STEADY_S = 10
AFTER_S = 8
SUITE_VALUES = ("three-replicas.yaml",)
BROKEN_WAIT_S = 40

pytestmark = pytest.mark.upgrade


def files(s: Scenario, *extra: str) -> list:
    return [s.release.base_values[0].parent / name for name in (*SUITE_VALUES, *extra)]


def pod_names(s: Scenario) -> set[str]:
    return {pod.metadata.name for pod in s.release.pods()}


def deploy_upgrade_release(deploy) -> Scenario:
    return deploy("upgrade", SUITE_VALUES, image_tag="v1")


def bring_to(s: Scenario, tag: str, settings: dict | None = None) -> None:
    """Preparation outside the measured window (only when a test runs on its own)."""
    current = s.release.current
    if current.setting("image.tag") != tag or any(
        current.setting(k) != str(v) for k, v in (settings or {}).items()
    ):
        s.mark(f"prepare: upgrade to {tag}")
        s.release.upgrade(files(s), image_tag=tag, settings=settings)
        s.release.wait_rolled_out()


def test_rolling_upgrade_v1_to_v2(deploy):
    s = deploy_upgrade_release(deploy)
    bring_to(s, "v1")
    old_pods = pod_names(s)
    probe = s.probe(RATE_PER_S)
    probe.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)

    started = s.mark("helm upgrade v1 → v2")
    s.release.upgrade(files(s), image_tag="v2")
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(old_pods)
    s.mark("rollout complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    probe.stop()

    records = s.requests()
    steady = slo.summarize(slo.sent_between(records, 0, started))
    rollout = slo.summarize(slo.sent_between(records, started, settled))
    after = slo.sent_between(records, settled, float("inf"))
    s.fact("rollout_s", f"{settled - started:.1f}")
    s.fact("p99_steady_ms", f"{steady.p99_ms:.0f}")
    s.fact("p99_rollout_ms", f"{rollout.p99_ms:.0f}")

    s.expect_no_failures(records, "during the v1 → v2 rolling upgrade")
    versions = slo.versions_served(records)
    s.expect(set(versions) <= {"1", "2"}, f"responses from unexpected model versions: {dict(versions)}")
    s.expect(steady.versions.keys() == {"1"}, f"before the upgrade the release served {steady.versions}")
    after_versions = slo.versions_served(after)
    s.expect(
        bool(after) and set(after_versions) == {"2"},
        f"after the rollout completed the Service still answered with {dict(after_versions)} (want only v2)",
        after,
    )
    images = s.release.deployment().spec.template.spec.containers[0].image
    s.expect(images.endswith(":v2"), f"Deployment image is {images} after the upgrade")


def test_helm_rollback_to_v1(deploy):
    s = deploy_upgrade_release(deploy)
    revisions = s.release.revisions
    if not (len(revisions) >= 2 and revisions[-1].setting("image.tag") == "v2"):
        bring_to(s, "v1")
        bring_to(s, "v2")
    previous = s.release.revisions[-2]
    s.expect(previous.setting("image.tag") == "v1", f"previous revision is not v1: {previous}")
    new_pods = pod_names(s)
    probe = s.probe(RATE_PER_S)
    probe.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)

    started = s.mark(f"helm rollback to revision {previous.revision} (v1)")
    restored = s.release.rollback(previous.revision)
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(new_pods)
    s.mark("rollback complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    probe.stop()

    records = s.requests()
    rollout = slo.summarize(slo.sent_between(records, started, settled))
    s.fact("rollback_s", f"{settled - started:.1f}")
    s.fact("p99_rollback_ms", f"{rollout.p99_ms:.0f}")
    s.expect_no_failures(records, "during helm rollback v2 → v1")
    after = slo.sent_between(records, settled, float("inf"))
    after_versions = slo.versions_served(after)
    s.expect(
        bool(after) and set(after_versions) == {"1"},
        f"after the rollback the Service answered with {dict(after_versions)} (want only v1)",
        after,
    )
    s.expect(restored.setting("image.tag") == "v1", f"rollback restored {restored}")


def test_config_change_rolls_pods_via_checksum(deploy):
    s = deploy_upgrade_release(deploy)
    tag = s.release.current.setting("image.tag") or "v1"
    current_wait = s.release.current.setting("server.batching.maxWaitMs")
    new_wait = "3" if current_wait != "3" else "4"
    before = s.release.deployment().spec.template.metadata.annotations["checksum/config"]
    old_pods = pod_names(s)
    probe = s.probe(RATE_PER_S)
    probe.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)

    started = s.mark(f"helm upgrade server.batching.maxWaitMs={new_wait}")
    s.release.upgrade(files(s), image_tag=tag, settings={"server.batching.maxWaitMs": new_wait})
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(old_pods)
    s.mark("config roll complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    probe.stop()

    records = s.requests()
    s.fact("roll_s", f"{settled - started:.1f}")
    s.expect_no_failures(records, "while a config-only change rolled the pods")
    after = s.release.deployment().spec.template.metadata.annotations["checksum/config"]
    s.expect(after != before, "checksum/config did not change with the server setting")
    s.expect(
        not (pod_names(s) & old_pods), f"pods not replaced by the config change: {pod_names(s) & old_pods}"
    )
    configmaps = client.CoreV1Api(s.release.api_client).list_namespaced_config_map(
        s.namespace, label_selector=s.release.selector
    )
    values = {cm.metadata.name: (cm.data or {}).get("TFMS_BATCH_MAX_WAIT_MS") for cm in configmaps.items}
    s.expect(
        new_wait in values.values(), f"ConfigMap does not carry TFMS_BATCH_MAX_WAIT_MS={new_wait}: {values}"
    )


def test_broken_release_never_takes_traffic_and_is_rolled_back(deploy):
    s = deploy_upgrade_release(deploy)
    healthy = s.release.current
    old_pods = pod_names(s)
    probe = s.probe(RATE_PER_S)
    probe.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)

    s.mark("helm upgrade to a release that never becomes ready")
    upgrade_error = None
    try:
        s.release.upgrade(
            files(s, "broken.yaml"),
            image_tag=healthy.setting("image.tag") or "v1",
            settings={k: v for k, v in healthy.set_values if k.startswith("server.")},
            timeout_s=BROKEN_WAIT_S,
        )
    except Exception as exc:  # the helm failure is the expected outcome; its text goes to the report
        upgrade_error = f"{type(exc).__name__}: {exc}"
    s.mark("helm upgrade gave up")
    broken_pods = pod_names(s) - old_pods
    ready_broken = sorted(
        {e.name for e in s.events("pod") if e.name in broken_pods and e.detail["ready"]}
        | {pod.metadata.name for pod in s.release.ready_pods() if pod.metadata.name in broken_pods}
    )
    still_ready_old = {pod.metadata.name for pod in s.release.ready_pods()} & old_pods

    restore_started = s.mark(f"harness restores: helm rollback to revision {healthy.revision}")
    s.release.rollback(healthy.revision)
    s.release.wait_rolled_out()
    s.mark("restored")
    time.sleep(AFTER_S)
    probe.stop()

    records = s.requests()
    served_by = {record.served_by for record in records if record.ok}
    s.fact("upgrade_error", (upgrade_error or "none").splitlines()[0][:120], in_slo_line=False)
    s.fact("broken_pods", len(broken_pods))
    s.fact("restore_s", f"{time.time() - restore_started - AFTER_S:.1f}")
    s.expect(
        upgrade_error is not None, "helm upgrade --wait reported success for a release that cannot be ready"
    )
    s.expect(bool(broken_pods), "the broken upgrade created no new pod (nothing was tested)")
    s.expect(not ready_broken, f"broken pods became Ready: {ready_broken}")
    s.expect(not (served_by & broken_pods), f"broken pods answered requests: {served_by & broken_pods}")
    s.expect(
        still_ready_old == old_pods, f"old pods not all Ready during the broken upgrade: {still_ready_old}"
    )
    s.expect_no_failures(records, "during the broken upgrade and its rollback")
    s.expect(pod_names(s) == old_pods, f"rollback replaced the healthy pods: {pod_names(s)} vs {old_pods}")
