"""PodDisruptionBudgets against the Eviction API, under steady load.

Two budgets: the healing suite's `minAvailable: 2` (one eviction, then 429 until the
replacement is Ready), and the chart's default (`maxUnavailable: 1` on 3 replicas) under
drain-style evictions of every pod at once, as `kubectl drain` of a node holding them
all would do. Ordering is judged on the harness's own clock: eviction answers and the
recorder's watch of pod readiness and the Deployment's ready count. Both probers (new
connection, keep-alive) must show 0 failed: evicted pods drain.
"""

from __future__ import annotations

import itertools
import time

import pytest
from harness import faults
from harness.cluster_events import pod_ready_at
from kubernetes import client

RATE_PER_S = 30
STEADY_S = 4
AFTER_S = 4
REPLICAS = 3
RETRY_EVERY_S = 0.5
# Eviction answers and the recorder's watch are both a few ms behind the API server; the
# PodDisruptionBudget's status follows a pod's readiness after the disruption controller's
# next sync. An eviction allowed before a replacement was Ready would come ~0.5 s after the
# previous one (the next retry), many seconds before any TensorFlow server is Ready.
CLOCK_SLACK_S = 1.0
# The budget must free up soon after the replacement is Ready (liveness, not safety).
BUDGET_FREED_WITHIN_S = 10.0
DRAIN_RETRY_S = 1.0  # kubectl drain retries every 5 s; faster here, same semantics
DRAIN_TIMEOUT_S = 300

pytestmark = pytest.mark.disruption


def budget(s) -> client.V1PodDisruptionBudget:
    policy = client.PolicyV1Api(s.release.api_client)
    items = policy.list_namespaced_pod_disruption_budget(s.namespace, label_selector=s.release.selector)
    s.expect(len(items.items) == 1, f"expected one PodDisruptionBudget, found {len(items.items)}")
    return items.items[0]


def min_ready_between(s, start: float, end: float) -> int | None:
    """The lowest ready count of the Deployment the recorder saw in [start, end]."""
    ready = [e.detail["ready"] for e in s.events("deployment") if start <= e.at <= end]
    return min(ready, default=None)


def replacement_ready_after(s, original: set[str], after: float) -> tuple[str, float] | None:
    """The first pod not in `original`, created after `after`, seen Ready: (name, when)."""
    seen = [
        (pod_ready_at(s.events(), e.name, after=after), e.name)
        for e in s.events("pod")
        if e.name not in original and e.change == "ADDED" and e.at >= after - CLOCK_SLACK_S
    ]
    ready = sorted((at, name) for at, name in seen if at is not None)
    return (ready[0][1], ready[0][0]) if ready else None


def test_pdb_allows_one_eviction_and_refuses_the_next_until_the_replacement_is_ready(deploy):
    s = deploy("healing", ("healing.yaml",))  # the healing release already has the budget: reuse it
    core = client.CoreV1Api(s.release.api_client)
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 120)
    s.expect(budget(s).spec.min_available == 2, f"PDB spec is {budget(s).spec}")
    s.wait_until(
        "the PDB allows exactly one disruption", lambda: budget(s).status.disruptions_allowed == 1, 60
    )

    s.steady_load(RATE_PER_S, STEADY_S)
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
    s.wait_until(f"{REPLICAS} pods Ready again", lambda: len(s.release.ready_pods()) == REPLICAS, 180)
    all_ready = s.mark(f"{REPLICAS} pods Ready again")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    refusals = attempts[:-1]
    replacement = replacement_ready_after(s, set(original), allowed.at)
    s.fact("refused_429", len(refusals))
    s.fact("second_eviction_allowed_after_s", f"{final.at - allowed.at:.1f}")
    s.expect(bool(refusals), f"the second eviction was not refused: {attempts[0]}")
    s.expect(all(a.status == 429 for a in refusals), f"unexpected refusals: {refusals}")
    s.expect(final.status == 201, f"the second eviction never succeeded: {final}")
    s.expect(replacement is not None, f"no replacement for {first} was seen Ready")
    assert replacement is not None
    name, ready_at = replacement
    s.mark_at(ready_at, f"replacement {name} Ready")
    s.fact("replacement_ready_s", f"{ready_at - allowed.at:.1f}")
    # Safety: the second eviction only once the replacement was Ready, so that at least
    # minAvailable pods were Ready throughout. Liveness: it was allowed soon after.
    s.expect(
        final.at >= ready_at - CLOCK_SLACK_S,
        f"the second eviction was allowed at t={final.at - allowed.at:.1f}s after the first, before the "
        f"replacement {name} was Ready (t={ready_at - allowed.at:.1f}s): the budget did not hold",
    )
    s.expect(
        refusals[0].at < ready_at and final.at - ready_at <= BUDGET_FREED_WITHIN_S,
        f"the budget refused from t={refusals[0].at - allowed.at:.1f}s to t={final.at - allowed.at:.1f}s; "
        f"the replacement was Ready at t={ready_at - allowed.at:.1f}s (want refusals only before, and the "
        f"eviction allowed within {BUDGET_FREED_WITHIN_S:g}s after)",
    )
    low = min_ready_between(s, allowed.at, all_ready)
    s.expect(low is None or low >= 2, f"ready replicas fell to {low}, below the budget's minAvailable 2")
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(
        s.window("while pods were evicted within the disruption budget", allowed.at, all_ready)
    )


def test_default_pdb_lets_a_drain_evict_one_pod_at_a_time(deploy):
    s = deploy("default-pdb", ("three-replicas.yaml",))
    core = client.CoreV1Api(s.release.api_client)
    s.wait_until(f"{REPLICAS} pods are Ready", lambda: len(s.release.ready_pods()) == REPLICAS, 120)
    spec = budget(s).spec
    s.expect(
        spec.max_unavailable == 1 and spec.min_available is None,
        f"the chart's default PDB should be maxUnavailable 1: {spec}",
    )
    s.wait_until(
        "the PDB allows exactly one disruption", lambda: budget(s).status.disruptions_allowed == 1, 60
    )

    probers = s.steady_load(RATE_PER_S, STEADY_S)
    original = sorted(pod.metadata.name for pod in s.release.ready_pods())
    drain_started = s.mark(f"drain-style evictions of {len(original)} pods (retry every {DRAIN_RETRY_S:g}s)")
    attempts = faults.drain_evictions(
        core, s.namespace, original, retry_every_s=DRAIN_RETRY_S, timeout_s=DRAIN_TIMEOUT_S
    )
    allowed = [a for a in attempts if a.status == 201]
    for attempt in allowed:
        s.mark_at(attempt.at, f"evicted {attempt.pod}")
    s.wait_until(
        f"{REPLICAS} new pods are Ready",
        lambda: len([p for p in s.release.ready_pods() if p.metadata.name not in original]) == REPLICAS,
        180,
    )
    all_ready = s.mark(f"{REPLICAS} new pods Ready")
    time.sleep(AFTER_S)
    ended = s.stop_load()

    first_round: dict[str, faults.EvictionAttempt] = {}
    for attempt in attempts:  # in time order: keep each pod's first attempt
        first_round.setdefault(attempt.pod, attempt)
    refused = [a for a in attempts if a.status == 429]
    s.fact("evictions_allowed", len(allowed))
    s.fact("refused_429", len(refused))
    s.fact("drain_s", f"{allowed[-1].at - drain_started:.1f}" if allowed else "n/a")
    s.expect(
        sorted(a.pod for a in allowed) == original and all(a.status in (201, 429) for a in attempts),
        f"every pod evicted once, nothing but 201 or 429 on the way: {attempts}",
    )
    s.expect(
        sorted(a.status for a in first_round.values()) == [201, 429, 429],
        "of three evictions at once the budget must allow exactly one: "
        f"{ {pod: a.status for pod, a in first_round.items()} }",
    )
    # One at a time: each later eviction only after a replacement of the previous pod was Ready.
    ready_seen: list[str] = []
    for previous, current in itertools.pairwise(allowed):
        replacement = replacement_ready_after(s, set(original) | set(ready_seen), previous.at)
        s.expect(
            replacement is not None and current.at >= replacement[1] - CLOCK_SLACK_S,
            f"{current.pod} was evicted at t={current.at - drain_started:.1f}s, before any replacement of "
            f"{previous.pod} (evicted at t={previous.at - drain_started:.1f}s) was Ready "
            f"({replacement}): the default budget did not hold one pod at a time",
        )
        assert replacement is not None
        ready_seen.append(replacement[0])
        s.mark_at(replacement[1], f"replacement {replacement[0]} Ready")
    low = min_ready_between(s, drain_started, all_ready)
    s.fact("min_ready_during_drain", low)
    s.expect(
        low is None or low >= REPLICAS - 1,
        f"ready replicas fell to {low} during the drain "
        f"(maxUnavailable 1 of {REPLICAS} allows {REPLICAS - 1})",
    )
    s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    s.expect_no_failures(s.window("while a drain evicted every pod, one at a time", drain_started, all_ready))
    for prober in probers:
        stats = prober.ledger().stats
        if "connections_opened" in stats:
            s.fact(
                f"{prober.name}_closed_by_server",
                stats["closed_by_server_answer"] + stats["closed_by_server_idle"],
            )
