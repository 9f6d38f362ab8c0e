"""PodDisruptionBudget (3 replicas, minAvailable 2) against the Eviction API, under steady load."""

from __future__ import annotations

import time

import pytest
from harness import faults, slo
from harness.release import pod_is_ready
from kubernetes import client

RATE_PER_S = 30
STEADY_S = 4
AFTER_S = 4
REPLICAS = 3
SUITE_VALUES = ("healing.yaml",)  # the healing release already has the budget: reuse it
RETRY_EVERY_S = 0.5

pytestmark = pytest.mark.disruption


def test_pdb_allows_one_eviction_and_refuses_the_next_until_the_replacement_is_ready(deploy):
    s = deploy("healing", SUITE_VALUES)
    core = client.CoreV1Api(s.release.api_client)
    policy = client.PolicyV1Api(s.release.api_client)
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 120)

    def budget() -> client.V1PodDisruptionBudget:
        items = policy.list_namespaced_pod_disruption_budget(s.namespace, label_selector=s.release.selector)
        s.expect(len(items.items) == 1, f"expected one PodDisruptionBudget, found {len(items.items)}")
        return items.items[0]

    s.expect(budget().spec.min_available == 2, f"PDB spec is {budget().spec}")
    s.wait_until(
        "the PDB allows exactly one disruption", lambda: budget().status.disruptions_allowed == 1, 60
    )

    probe = s.probe(RATE_PER_S)
    probe.wait_for_requests(RATE_PER_S, timeout_s=30)
    time.sleep(STEADY_S)
    original = sorted(pod.metadata.name for pod in s.release.ready_pods())
    first, second = original[0], original[1]

    allowed = faults.evict(core, s.namespace, first)
    s.mark(f"evict {first}: {allowed.status}")
    s.expect(allowed.status == 201, f"the first eviction was refused: {allowed}")
    attempts: list[faults.EvictionAttempt] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        attempt = faults.evict(core, s.namespace, second)
        attempts.append(attempt)
        if attempt.status != 429:
            break
        time.sleep(RETRY_EVERY_S)
    final = attempts[-1]
    s.mark(f"evict {second}: {final.status} after {len(attempts) - 1} refusals")

    replacements = [
        pod
        for pod in s.release.pods(include_terminating=True)
        if pod.metadata.name not in original and pod.metadata.creation_timestamp.timestamp() <= final.at
    ]
    ready_times = [
        next(c.last_transition_time.timestamp() for c in pod.status.conditions if c.type == "Ready")
        for pod in replacements
        if pod_is_ready(pod)
    ]
    replacement_ready_at = min(ready_times, default=None)
    if replacement_ready_at is not None:
        s.mark_at(replacement_ready_at, "replacement Ready")
    s.wait_until(f"{REPLICAS} pods Ready again", lambda: len(s.release.ready_pods()) == REPLICAS, 180)
    time.sleep(AFTER_S)
    probe.stop()

    refusals = attempts[:-1]
    s.fact("refused_429", len(refusals))
    s.fact("second_eviction_allowed_after_s", f"{final.at - allowed.at:.1f}")
    s.expect(bool(refusals), f"the second eviction was not refused: {attempts[0]}")
    s.expect(all(a.status == 429 for a in refusals), f"unexpected refusals: {refusals}")
    s.expect(final.status == 201, f"the second eviction never succeeded: {final}")
    s.expect(
        replacement_ready_at is not None, "no replacement pod was Ready when the second eviction succeeded"
    )
    # Ready's lastTransitionTime has whole-second resolution: it can only read early, never late.
    s.expect(
        refusals[-1].at >= allowed.at and final.at >= replacement_ready_at,
        f"second eviction allowed at {final.at:.1f}, replacement Ready at {replacement_ready_at:.1f}",
    )
    s.expect_no_failures(s.requests(), "while pods were evicted within the disruption budget")
    s.fact("failed", len(slo.failures(s.requests())), in_slo_line=False)
