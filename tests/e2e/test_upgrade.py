"""Rolling upgrades, rollbacks, config rolls and broken releases under steady load.

As in Kubernetes' "should not disrupt … during rollout" and Knative's upgrade prober,
probers run through every change and the assertions read their record: any failed
request fails the test. Two probers run side by side, a new connection per request and
a keep-alive pool (harness.prober), and each must show 0 failed in every window, with
enough of its requests in each window to mean something. The four tests share one
release (3 replicas, the chart's own rollout and drain settings) in file order; each
one brings it to the state it needs. Rollbacks target revisions read from helm's history.
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
    return s.release.suite_values((*SUITE_VALUES, *extra))


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


def expect_keep_alive_handed_over(s: Scenario, probers, during: str) -> None:
    """The keep-alive prober reused its connections and the drain closed some: the path was exercised."""
    for prober in probers:
        stats = prober.ledger().stats
        if "connections_opened" not in stats:
            continue
        closed = stats["closed_by_server_answer"] + stats["closed_by_server_idle"]
        reused = sum(1 for record in prober.records() if record.reused)
        s.fact(f"{prober.name}_closed_by_server", closed)
        s.expect(
            closed >= 1 and reused > len(prober.records()) // 2,
            f"{prober.name}: {reused} of {len(prober.records())} requests reused a connection and the server "
            f"closed {closed} {during}: keep-alive connections were not handed over by a drain at all",
        )


def test_rolling_upgrade_v1_to_v2(deploy):
    s = deploy_upgrade_release(deploy)
    bring_to(s, "v1")
    old_pods = pod_names(s)
    probers = s.steady_load(RATE_PER_S, STEADY_S)

    started = s.mark("helm upgrade v1 → v2")
    s.release.upgrade(files(s), image_tag="v2")
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(old_pods)
    s.mark("rollout complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    ended = s.stop_load()

    records = s.requests()
    steady = s.window("before the upgrade", s.load_started_at, started)
    rollout = s.window("during the v1 → v2 rolling upgrade", started, settled)
    after = s.window("after the rollout completed", settled, ended)
    s.fact("rollout_s", f"{settled - started:.1f}")
    s.fact("p99_steady_ms", f"{slo.summarize(steady.of(records)).p99_ms:.0f}")
    s.fact("p99_rollout_ms", f"{slo.summarize(rollout.of(records)).p99_ms:.0f}")

    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(rollout)
    versions = slo.versions_served(records)
    s.expect(set(versions) <= {"1", "2"}, f"responses from unexpected model versions: {dict(versions)}")
    for name, inside in s.expect_populated(steady).items():
        s.expect(
            set(slo.versions_served(inside)) == {"1"},
            f"{name}: before the upgrade the release served {dict(slo.versions_served(inside))}",
        )
    for name, inside in s.expect_no_failures(after).items():
        after_versions = slo.versions_served(inside)
        s.expect(
            set(after_versions) == {"2"},
            f"{name}: after the rollout completed the Service still answered with {dict(after_versions)} "
            "(want only v2)",
            inside,
        )
    expect_keep_alive_handed_over(s, probers, "during the rolling upgrade")
    images = s.release.deployment().spec.template.spec.containers[0].image
    s.expect(images.endswith(":v2"), f"Deployment image is {images} after the upgrade")


def test_helm_rollback_to_v1(deploy):
    s = deploy_upgrade_release(deploy)
    if s.release.current.setting("image.tag") != "v2" or s.release.latest_revision_where(is_v1) is None:
        bring_to(s, "v1")
        bring_to(s, "v2")
    current = s.release.current
    # The target comes from helm's history: the newest earlier revision that ran v1.
    target = s.release.latest_revision_where(is_v1, before=current.revision)
    s.expect(
        target is not None,
        f"helm history has no v1 revision before {current.revision}: {s.release.revisions}",
    )
    assert target is not None
    new_pods = pod_names(s)
    s.steady_load(RATE_PER_S, STEADY_S)

    started = s.mark(f"helm rollback to revision {target.revision} (v1, {target.status})")
    restored = s.release.rollback(target.revision)
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(new_pods)
    s.mark("rollback complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    ended = s.stop_load()

    rollback = s.window("during helm rollback v2 → v1", started, settled)
    s.fact("rollback_s", f"{settled - started:.1f}")
    s.fact("p99_rollback_ms", f"{slo.summarize(rollback.of(s.requests())).p99_ms:.0f}")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(rollback)
    for name, inside in s.expect_no_failures(s.window("after the rollback", settled, ended)).items():
        after_versions = slo.versions_served(inside)
        s.expect(
            set(after_versions) == {"1"},
            f"{name}: after the rollback the Service answered with {dict(after_versions)} (want only v1)",
            inside,
        )
    history = s.release.revisions
    s.expect(
        restored.revision == history[-1].revision
        and restored.revision > current.revision
        and restored.setting("image.tag") == "v1"
        and restored.status == "deployed",
        f"after rolling back to {target.revision} helm's newest revision is {restored} (history: {history})",
    )
    s.expect(
        "Rollback to " + str(target.revision) in restored.description,
        f"helm's description of revision {restored.revision} does not name the rollback target: "
        f"{restored.description!r}",
    )


def is_v1(deployed) -> bool:
    return deployed.setting("image.tag") == "v1" and deployed.status in ("deployed", "superseded")


def test_config_change_rolls_pods_via_checksum(deploy):
    s = deploy_upgrade_release(deploy)
    tag = s.release.current.setting("image.tag") or "v1"
    current_wait = s.release.current.setting("server.batching.maxWaitMs")
    new_wait = "3" if current_wait != "3" else "4"
    before = s.release.deployment().spec.template.metadata.annotations["checksum/config"]
    old_pods = pod_names(s)
    probers = s.steady_load(RATE_PER_S, STEADY_S)

    started = s.mark(f"helm upgrade server.batching.maxWaitMs={new_wait}")
    s.release.upgrade(files(s), image_tag=tag, settings={"server.batching.maxWaitMs": new_wait})
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(old_pods)
    s.mark("config roll complete")
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    ended = s.stop_load()

    s.fact("roll_s", f"{settled - started:.1f}")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window("while a config-only change rolled the pods", started, settled))
    expect_keep_alive_handed_over(s, probers, "during the config roll")
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
    s.steady_load(RATE_PER_S, STEADY_S)

    started = s.mark("helm upgrade to a release that never becomes ready")
    upgrade_error = None
    try:
        s.release.upgrade(
            files(s, "broken.yaml"),
            image_tag=healthy.setting("image.tag") or "v1",
            settings=healthy.settings_under("server"),
            timeout_s=BROKEN_WAIT_S,
        )
    except Exception as exc:  # the helm failure is the expected outcome; its text goes to the report
        upgrade_error = f"{type(exc).__name__}: {exc}"
    gave_up = s.mark("helm upgrade gave up")
    newest = s.release.revisions[-1]
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
    ended = s.stop_load()

    records = s.requests()
    served_by = {record.served_by for record in records if record.ok}
    s.fact("upgrade_error", (upgrade_error or "none").splitlines()[0][:120], in_slo_line=False)
    s.fact("broken_pods", len(broken_pods))
    s.fact("restore_s", f"{time.time() - restore_started - AFTER_S:.1f}")
    s.expect(
        upgrade_error is not None, "helm upgrade --wait reported success for a release that cannot be ready"
    )
    s.expect(
        newest.revision > healthy.revision and newest.status == "failed",
        f"helm history does not record the broken upgrade as a failed revision after {healthy.revision}: "
        f"{s.release.revisions}",
    )
    s.expect(bool(broken_pods), "the broken upgrade created no new pod (nothing was tested)")
    s.expect(not ready_broken, f"broken pods became Ready: {ready_broken}")
    s.expect(not (served_by & broken_pods), f"broken pods answered requests: {served_by & broken_pods}")
    s.expect(
        still_ready_old == old_pods, f"old pods not all Ready during the broken upgrade: {still_ready_old}"
    )
    s.expect_no_failures(s.window("while the broken upgrade waited", started, gave_up))
    s.expect_no_failures(s.window("during the broken upgrade and its rollback", s.load_started_at, ended))
    s.expect(pod_names(s) == old_pods, f"rollback replaced the healthy pods: {pod_names(s)} vs {old_pods}")
