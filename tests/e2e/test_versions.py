"""Model versions live on a cluster: a PVC publish, a broken publish, labels moved by the config, a canary.

Every test runs the new-connection and the keep-alive prober through the Service and
asserts on their records (harness.guarantees: populated windows, 0 failed).

1. publish: three replicas serve anomaly version 1 from a claim (model.source: pvc) that
   a Job seeded from the server image; a Job copies version 2 into the claim (beside,
   then renamed into place). Every pod answers version 2 within PUBLISH_BOUND_S, 0
   failed, and each pod's X-Model-Version flips once, from 1 to 2, never back.
2. broken publish: a Job writes a corrupt version 3 into the same claim. It never
   answers, version 2 keeps answering (0 failed), every pod stays Ready, and the status
   through the Service shows version 3 END with its load error.
3. labels: model.config serves versions 1 and 2 with stable -> 1 and canary -> 2; probers
   on both labels. A `helm upgrade` that only moves stable to 2 changes the model
   config's ConfigMap, not the pods: no pod is replaced or restarted, stable answers 2
   from every pod within LABEL_BOUND_S (kubelet ConfigMap sync + the server's re-read),
   canary answered 2 throughout, 0 failed.
4. canary: 3 stable replicas on v1 and a canary Deployment of 1 replica on v2 behind the
   same Service: version 2's share of the new-connection prober's answers is 1/4 within
   Z_SIGMA binomial deviations; promote (image v2, canary off) and abandon (a v1 canary
   turned off) each with 0 failed and only the expected version afterwards.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
from harness import slo
from harness.prober import Target
from harness.release import Release, pod_is_ready
from harness.scenario import Scenario
from kubernetes import client
from ops import kube

RATE_PER_S = 20
STEADY_S = 8
AFTER_S = 6
PUBLISH_BOUND_S = 90
LABEL_BOUND_S = 150
Z_SIGMA = 4.0
CLAIM = "tfms-models"
PVC_VALUES = ("versions-pvc.yaml",)
LABEL_VALUES = ("versions-labels.yaml",)
CANARY_VALUES = ("versions-canary.yaml",)

pytestmark = pytest.mark.versions

JOB = """apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: publish
          image: tf-model-server:v2
          imagePullPolicy: IfNotPresent
          command: [python, -c, {script}]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          resources:
            requests: {{cpu: 10m, memory: 32Mi}}
            limits: {{memory: 128Mi}}
          volumeMounts:
            - {{name: models, mountPath: /seed}}
      volumes:
        - name: models
          persistentVolumeClaim: {{claimName: {claim}}}
"""
CLAIM_MANIFEST = f"""apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {CLAIM}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
"""
# Each Job publishes as a user should: copy beside the target, then rename into place.
COPY_VERSION = (
    "import os, shutil; os.makedirs('/seed/anomaly', exist_ok=True); "
    "shutil.copytree('/models/anomaly/{source}', '/seed/anomaly/.incoming-{target}'); "
    "os.rename('/seed/anomaly/.incoming-{target}', '/seed/anomaly/{target}')"
)
CORRUPT_VERSION = (
    "import os; os.makedirs('/seed/anomaly/.incoming-3/variables'); "
    "open('/seed/anomaly/.incoming-3/saved_model.pb', 'wb').write(b'not a SavedModel'); "
    "os.rename('/seed/anomaly/.incoming-3', '/seed/anomaly/3')"
)


def run_job(release: Release, name: str, script: str) -> None:
    manifest = JOB.format(name=name, script=repr(script), claim=CLAIM)
    kube.kubectl(release.kubeconfig, "-n", release.namespace, "apply", "-f", "-", input_text=manifest)
    kube.kubectl(
        release.kubeconfig,
        "-n",
        release.namespace,
        "wait",
        "--for=condition=complete",
        f"job/{name}",
        "--timeout=180s",
        timeout=200,
    )


def seed_claim(release: Release) -> None:
    kube.kubectl(release.kubeconfig, "-n", release.namespace, "apply", "-f", "-", input_text=CLAIM_MANIFEST)
    run_job(release, "seed-version-1", COPY_VERSION.format(source=1, target=1))


def pvc_release(deploy) -> Scenario:
    return deploy("versions-pvc", PVC_VALUES, image_tag="v2", before_install=seed_claim)


def latest_version_by_pod(records) -> dict[str, str]:
    latest: dict[str, tuple[float, str]] = {}
    for record in records:
        if record.ok and record.served_by and record.sent_at >= latest.get(record.served_by, (0.0, ""))[0]:
            latest[record.served_by] = (record.sent_at, record.model_version or "?")
    return {pod: version for pod, (_, version) in latest.items()}


def get_json(release: Release, path: str) -> tuple[int, dict]:
    """A GET through the Service's NodePort on 127.0.0.1, its status and JSON body."""
    try:
        with urllib.request.urlopen(f"{release.base_url}{path}", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# -- 1. publish ------------------------------------------------------------------------------


def test_a_version_copied_into_the_claim_is_served_by_every_pod(deploy):
    s = pvc_release(deploy)
    pods = {pod.metadata.name for pod in s.release.ready_pods()}
    s.steady_load(RATE_PER_S, STEADY_S)
    published = s.mark("Job copies version 2 into the claim")
    run_job(s.release, "publish-version-2", COPY_VERSION.format(source=2, target=2))
    s.mark("Job done")

    def every_pod_on_2() -> bool:
        latest = latest_version_by_pod(r for r in s.requests() if r.sent_at > published)
        return pods <= latest.keys() and all(latest[pod] == "2" for pod in pods)

    s.wait_until("every pod answers version 2", every_pod_on_2, PUBLISH_BOUND_S, poll_s=1)
    flipped = s.mark("every pod answers version 2")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    s.fact("all_pods_on_v2_s", f"{flipped - published:.1f}")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    before = s.expect_populated(s.window("before the publish", s.load_started_at, published))
    for name, inside in before.items():
        s.expect(
            set(slo.versions_served(inside)) == {"1"},
            f"{name}: before the publish: {slo.versions_served(inside)}",
        )
    for name, inside in s.expect_no_failures(s.window("after every pod flipped", flipped, ended)).items():
        s.expect(set(slo.versions_served(inside)) == {"2"}, f"{name}: after: {slo.versions_served(inside)}")
    # Pod by pod: each pod's answers go 1...1 2...2, never back.
    sequences: dict[str, list[str]] = defaultdict(list)
    for record in s.requests():
        if record.ok and record.served_by in pods:
            sequences[record.served_by].append(record.model_version or "?")
    for pod, versions in sequences.items():
        first_two = versions.index("2") if "2" in versions else len(versions)
        s.expect(
            set(versions[:first_two]) <= {"1"} and set(versions[first_two:]) <= {"2"},
            f"{pod} answered {versions[first_two:].count('1')} times from version 1 after answering 2",
        )
    s.fact("pods", len(pods))


# -- 2. broken publish -----------------------------------------------------------------------


def test_a_corrupt_version_never_serves_and_the_status_shows_why(deploy):
    s = pvc_release(deploy)
    if get_json(s.release, "/v1/models/anomaly/versions/2")[0] != 200:  # run on its own
        s.mark("prepare: publish version 2")
        run_job(s.release, "publish-version-2", COPY_VERSION.format(source=2, target=2))
        s.wait_until(
            "version 2 answers", lambda: get_json(s.release, "/v1/models/anomaly/versions/2")[0] == 200, 90
        )
    pods = {pod.metadata.name for pod in s.release.ready_pods()}
    s.steady_load(RATE_PER_S, STEADY_S)
    published = s.mark("Job writes a corrupt version 3 into the claim")
    run_job(s.release, "publish-corrupt-3", CORRUPT_VERSION)

    def status_of_3() -> dict | None:
        code, body = get_json(s.release, "/v1/models/anomaly/versions/3")
        return body if code == 200 else None

    def every_pod_refused_it() -> bool:
        # Through the Service: enough reads that every pod is asked (kube-proxy picks at random).
        answers = [status_of_3() for _ in range(4 * len(pods))]
        return all(
            a is not None
            and a["model_version_status"][0]["state"] == "END"
            and a["model_version_status"][0]["status"]["error_message"]
            for a in answers
        )

    s.wait_until("every pod reports version 3 failed", every_pod_refused_it, PUBLISH_BOUND_S, poll_s=2)
    reported = s.mark("version 3 reported END with its error")
    status = status_of_3()
    assert status is not None
    s.fact("error", status["model_version_status"][0]["status"]["error_code"])
    time.sleep(AFTER_S)
    ended = s.stop_load()
    s.fact("reported_s", f"{reported - published:.1f}")
    for name, inside in s.expect_no_failures(
        s.window("from the publish to the end", published, ended)
    ).items():
        s.expect(set(slo.versions_served(inside)) == {"2"}, f"{name}: answered {slo.versions_served(inside)}")
    # Deployment events record changes only: none in the window means the count held.
    lowest_ready = min(
        (e.detail["ready"] for e in s.events("deployment") if published <= e.at <= ended), default=len(pods)
    )
    s.expect(lowest_ready >= len(pods), f"ready replicas fell to {lowest_ready} after the publish")
    s.expect({p.metadata.name for p in s.release.ready_pods()} == pods, "pods were replaced or unready")


# -- 3. labels -------------------------------------------------------------------------------


def label_target(s: Scenario, label: str) -> Target:
    base = s._target_factory()
    return Target(base.host, base.port, f"/v1/models/anomaly/labels/{label}:predict", base.body)


def restarts(s: Scenario) -> dict[str, int]:
    return {
        pod.metadata.name: sum(c.restart_count for c in pod.status.container_statuses or [])
        for pod in s.release.pods()
    }


def test_a_config_change_moves_a_label_without_a_restart(deploy):
    s = deploy("versions-labels", LABEL_VALUES, image_tag="v2")
    before_pods = restarts(s)
    stable = [s.probe(RATE_PER_S, name="stable", target=label_target(s, "stable"))]
    canary = [s.probe(RATE_PER_S, name="canary", target=label_target(s, "canary"))]
    stable.append(
        s.probe(RATE_PER_S, name="stable-keep-alive", target=label_target(s, "stable"), keep_alive=4)
    )
    for prober in [*stable, *canary]:
        prober.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)
    moved = s.mark("helm upgrade: stable -> version 2 (model config only)")
    files = s.release.suite_values((*LABEL_VALUES, "versions-labels-promoted.yaml"))
    s.release.upgrade(files, image_tag="v2")

    def stable_everywhere_on_2() -> bool:
        latest = latest_version_by_pod(r for p in stable[:1] for r in p.records() if r.sent_at > moved)
        return set(before_pods) <= latest.keys() and set(latest.values()) == {"2"}

    s.wait_until("stable answers version 2 from every pod", stable_everywhere_on_2, LABEL_BOUND_S, poll_s=1)
    done = s.mark("stable answers 2 from every pod")
    time.sleep(AFTER_S)
    ended = s.stop_load()
    s.fact("label_moved_s", f"{done - moved:.1f}")
    whole = s.window("from the first request to the last", s.load_started_at, ended)
    s.expect_no_failures(whole)
    for name, inside in s.expect_populated(
        s.window("before the change", s.load_started_at, moved), stable
    ).items():
        s.expect(set(slo.versions_served(inside)) == {"1"}, f"{name} before: {slo.versions_served(inside)}")
    for name, inside in s.expect_no_failures(s.window("after the label moved", done, ended), stable).items():
        s.expect(set(slo.versions_served(inside)) == {"2"}, f"{name} after: {slo.versions_served(inside)}")
    for name, inside in s.expect_no_failures(whole, canary).items():
        s.expect(set(slo.versions_served(inside)) == {"2"}, f"{name}: {slo.versions_served(inside)}")
    s.expect(restarts(s) == before_pods, f"pods were replaced or restarted: {before_pods} -> {restarts(s)}")


# -- 4. canary -------------------------------------------------------------------------------


def deployments_ready(release: Release) -> bool:
    apps = client.AppsV1Api(release.api_client)
    items = apps.list_namespaced_deployment(release.namespace, label_selector=release.selector).items
    return all(
        (d.status.observed_generation or 0) >= (d.metadata.generation or 0)
        and (d.status.ready_replicas or 0) == (d.spec.replicas or 0) == (d.status.replicas or 0)
        and (d.status.updated_replicas or 0) == (d.spec.replicas or 0)
        for d in items
    ) and all(pod_is_ready(pod) for pod in release.pods())


def canary_step(s: Scenario, label: str, files: list[Path], tag: str, settings: dict) -> tuple[float, float]:
    old = {pod.metadata.name for pod in s.release.pods()}
    started = s.mark(label)
    s.release.upgrade(files, image_tag=tag, settings=settings)
    s.wait_until(f"{label}: rolled out", lambda: deployments_ready(s.release), 300, poll_s=1)
    gone = old - {pod.metadata.name for pod in s.release.pods()}
    settled = s.wait_unrouted(gone) if gone else time.time()
    time.sleep(max(0.0, settled - time.time()) + AFTER_S)
    return started, time.time()


def test_a_canary_deployment_gets_its_share_then_is_promoted_and_abandoned(deploy):
    files = [Path(__file__).parent / "values" / name for name in CANARY_VALUES]
    s = deploy(
        "versions-canary",
        CANARY_VALUES,
        image_tag="v1",
        settings={"canary.enabled": "true", "canary.image.tag": "v2"},
    )
    s.wait_until("stable and canary ready", lambda: deployments_ready(s.release), 240)
    probers = s.steady_load(RATE_PER_S, STEADY_S * 2)
    split = s.window("with the canary on", s.load_started_at, s.mark("split measured"))

    promote = canary_step(s, "promote: image v2, canary off", files, "v2", {"canary.enabled": "false"})
    abandon_setup = canary_step(
        s, "a v1 canary beside v2", files, "v2", {"canary.enabled": "true", "canary.image.tag": "v1"}
    )
    abandon = canary_step(s, "abandon: canary off", files, "v2", {"canary.enabled": "false"})
    ended = s.stop_load()
    records = s.requests()

    # Judged only now: judging a window stops the probers, and the promotion needs the load.
    fresh = s.expect_no_failures(split)[probers[0].name]
    share = sum(1 for r in fresh if r.model_version == "2") / len(fresh)
    n, p = len(fresh), 1 / 4
    sigma = math.sqrt(n * p * (1 - p))
    s.fact("canary_share", f"{share:.3f}")
    s.expect(
        abs(share * n - n * p) <= Z_SIGMA * sigma,
        f"the canary (1 of 4 ready pods) answered {share:.1%} of {n} new connections "
        f"(expected 25% ± {Z_SIGMA * sigma / n:.1%})",
    )
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window("during the promotion", *promote))
    s.expect_no_failures(s.window("during the abandon", *abandon))
    after_promote = slo.versions_served(
        r for r in records if promote[1] - AFTER_S <= r.sent_at < abandon_setup[0]
    )
    s.expect(set(after_promote) == {"2"}, f"after the promotion: {dict(after_promote)}")
    after_abandon = slo.versions_served(r for r in records if abandon[1] - AFTER_S <= r.sent_at < ended)
    s.expect(set(after_abandon) == {"2"}, f"after the abandon: {dict(after_abandon)}")
