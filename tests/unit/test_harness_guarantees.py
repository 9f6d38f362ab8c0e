"""The e2e guarantees judged on recorded data (no cluster): each check fails where it must.

Two kinds of record: runs of the real Prober (against a local HTTP server, or a transport
that reproduces a throttle), and records shaped like a test's at 30 requests/s through a
3-pod Service (served_by in turn, failures where the scenario puts them): a honest
SIGKILL of one pod, a whole-Service outage, an empty window.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import guarantees
from harness.guarantees import Loss, SLOViolation, Window
from harness.prober import NewConnections, Prober, RequestRecord, Target
from harness.scenario import Scenario, ScenarioFailure
from kubernetes import client

from unit import test_harness_prober
from unit.test_harness_prober import run_for, target_for

server = test_harness_prober.server  # the same fake model server fixture
ORIGIN = 1_700_000_000.0
RATE = 30.0
PODS = ("pod-a", "pod-b", "pod-c")
REFUSED = "ConnectionRefusedError: [Errno 111] Connection refused"


def recorded(
    seconds: float, failing: Callable[[float, str], bool] = lambda t, pod: False, rate: float = RATE
) -> list[RequestRecord]:
    """`seconds` of a prober's record at `rate`/s through the 3 pods; `failing(t, pod)` marks failures."""
    records = []
    for seq in range(int(seconds * rate)):
        t = seq / rate
        pod = PODS[seq % len(PODS)]
        at = ORIGIN + t
        if failing(t, pod):
            records.append(RequestRecord(seq, at, at, 0.001, None, None, None, REFUSED, "steady"))
        else:
            records.append(RequestRecord(seq, at, at, 0.004, 200, "2", pod, None, "steady"))
    return records


def window(label: str, start_s: float, end_s: float) -> Window:
    return Window(label, ORIGIN + start_s, ORIGIN + end_s)


KILL = Loss(
    "the SIGKILL of pod-a's server", frozenset({"pod-a"}), lost_at=ORIGIN + 10.0, unrouted_at=ORIGIN + 10.6
)
BEFORE = window("before the kill", 0.0, 9.0)
EXPOSURE_CAP_S = 5.0


PORTS = 28232  # Linux's default ip_local_port_range, 32768-60999


def bound(records: list[RequestRecord], loss: Loss = KILL) -> guarantees.LossBudget:
    return guarantees.bounded_loss(records, loss, RATE, "steady", BEFORE, EXPOSURE_CAP_S, source_ports=PORTS)


# -- windows need a population --------------------------------------------------------


def test_an_empty_window_fails_naming_it():
    records = recorded(20.0)  # the prober stopped at t=20
    rollout = window("during the v1 → v2 rolling upgrade", 25.0, 40.0)
    with pytest.raises(SLOViolation) as failure:
        guarantees.no_failures(records, rollout, RATE, "steady")
    assert str(failure.value) == (
        "steady: only 0 requests were sent during the v1 → v2 rolling upgrade "
        "(15.0s at 30/s needs at least 360): the window proves nothing"
    )


def test_a_thin_window_fails_and_a_full_one_passes():
    records = recorded(20.0)
    thinned = [r for r in records if not (5.0 <= r.sent_at - ORIGIN < 10.0 and r.seq % 2)]
    with pytest.raises(
        SLOViolation, match=r"only 75 requests were sent while pods drained \(5.0s at 30/s needs"
    ):
        guarantees.populated(thinned, window("while pods drained", 5.0, 10.0), RATE, "steady")
    assert (
        len(guarantees.no_failures(records, window("while pods drained", 5.0, 10.0), RATE, "steady")) == 150
    )


def test_a_short_window_still_needs_the_floor():
    assert guarantees.required_population(2.0, window("w", 0.0, 3.0)) == guarantees.POPULATION_FLOOR


def test_failures_in_a_populated_window_fail_it():
    records = recorded(20.0, failing=lambda t, pod: 12.0 <= t < 12.2)
    with pytest.raises(SLOViolation, match=r"^steady: 6 of 300 requests failed during the upgrade \(SLO: 0"):
        guarantees.no_failures(records, window("during the upgrade", 5.0, 15.0), RATE, "steady")


# -- the SIGKILL bound ----------------------------------------------------------------


def test_an_honest_sigkill_is_within_the_bound():
    # The dead pod's share fails until the Service stops routing to it (+ kube-proxy's 2 s).
    records = recorded(20.0, failing=lambda t, pod: pod == "pod-a" and 10.0 <= t < 12.6)
    budget = bound(records)
    assert budget.share == pytest.approx(1 / 3)
    assert (budget.failed, budget.exposed) == (26, 78)
    assert budget.allowed == 43  # 26 + 4 sigma (16.7), rounded up; nothing in flight at the kill


def test_a_whole_service_outage_breaks_the_sigkill_bound():
    # 3 s of every request failing, starting at the kill: the example.
    records = recorded(20.0, failing=lambda t, pod: 10.0 <= t < 13.0)
    with pytest.raises(SLOViolation) as failure:
        bound(records)
    # The 12 after the exposure window could be collisions with the 78 stale NAT entries the
    # outage left, but the 78 inside it are far more than the dead pod's share.
    assert str(failure.value).startswith(
        "steady: 78 requests failed after the SIGKILL of pod-a's server, more than the 43 that could have "
        "been on pod-a"
    )


def test_failures_after_the_stale_nat_lifetime_are_unexplained():
    records = recorded(
        150.0,
        failing=lambda t, pod: (pod == "pod-a" and 10.0 <= t < 12.6) or (t > 140.0 and pod == "pod-b"),
    )
    stale_nat = r"could not have been on pod-a: .* nor a fresh connection within 120s of a stale NAT"
    with pytest.raises(SLOViolation, match=stale_nat):
        bound(records)


NODE_LOSS = Loss("the loss of node worker-2", frozenset({"pod-a"}), ORIGIN + 10.0, ORIGIN + 60.0)
NODE_CAP_S = 75.0


def node_bound(records: list[RequestRecord]) -> guarantees.LossBudget:
    return guarantees.bounded_loss(records, NODE_LOSS, RATE, "steady", BEFORE, NODE_CAP_S, source_ports=PORTS)


def test_a_node_loss_allows_collisions_with_its_stale_nat_entries():
    # What the kind cluster showed: the lost pod's third fails for the 52 s it stays routed
    # (520 stale SYN_SENT entries), then about 520/28232 = 1.8 % of new connections collide.
    def failing(t: float, pod: str) -> bool:
        return (pod == "pod-a" and 10.0 <= t < 62.0) or (62.0 <= t < 182.0 and int(t * RATE) % 55 == 0)

    budget = node_bound(recorded(190.0, failing=failing))
    assert budget.stale_entries == 520
    assert 0 < budget.late_failed <= budget.late_allowed


def test_a_whole_service_outage_after_a_node_loss_breaks_the_stale_nat_bound():
    # The node loss of the test above, then 3 s in which every request fails.
    def failing(t: float, pod: str) -> bool:
        return (pod == "pod-a" and 10.0 <= t < 62.0) or (100.0 <= t < 103.0)

    outage = r"fresh connections failed 35-40s after .* the Service failed beyond"
    with pytest.raises(SLOViolation, match=outage):
        node_bound(recorded(190.0, failing=failing))


def test_a_node_loss_with_more_late_failures_than_stale_entries_explain_fails():
    def failing(t: float, pod: str) -> bool:
        return (pod == "pod-a" and 10.0 <= t < 62.0) or (62.0 <= t < 182.0 and int(t * RATE) % 10 == 0)

    with pytest.raises(SLOViolation, match=r"more than the \d+ that its 520 stale NAT entries explain"):
        node_bound(recorded(190.0, failing=failing))


# -- every pod replaced: recovery and the outage's stale NAT ---------------------------

OUTAGE = window("between deleting every pod and the new pods being Ready", 10.0, 22.8)
READY = window("after the new pods were Ready", 22.8, 30.0)


def outage_then(late: Callable[[float, str], bool]) -> list[RequestRecord]:
    """What the local cluster showed: old pods drain for 3.5 s, 8 s of refusals, then `late`."""
    return recorded(30.0, failing=lambda t, pod: 13.5 <= t < 21.5 or (t >= 21.5 and late(t, pod)))


def recover(records: list[RequestRecord]) -> guarantees.Recovery:
    return guarantees.recovered(records, OUTAGE, READY, RATE, "steady", source_ports=PORTS)


def test_refusals_after_the_new_pods_are_ready_are_the_outages_stale_nat():
    # Seen in 2 runs of 6: one in five fresh connections refused for 7 s after Ready.
    recovery = recover(outage_then(lambda t, pod: t >= 22.8 and int(t * RATE) % 5 == 0))
    assert recovery.stale_entries == 240
    assert recovery.answers_again_at == ORIGIN + 21.5
    assert 0 < recovery.late_failed <= recovery.late_allowed


def test_a_second_outage_after_the_new_pods_are_ready_fails():
    with pytest.raises(
        SLOViolation, match=r"fresh connections in a row failed after the new pods were Ready"
    ):
        recover(outage_then(lambda t, pod: 26.0 <= t < 26.5))


def test_other_failures_after_the_new_pods_are_ready_are_unexplained():
    def failing(records: list[RequestRecord]) -> list[RequestRecord]:
        at = ORIGIN + 25.0
        late = RequestRecord(750, at, at, 0.001, 503, "2", "pod-a", None, "steady")
        return [late if record.seq == 750 else record for record in records]

    with pytest.raises(
        SLOViolation, match=r"^steady: 1 requests failed after the new pods were Ready that no"
    ):
        recover(failing(outage_then(lambda t, pod: False)))


def test_refusals_on_reused_connections_are_unexplained():
    records = outage_then(lambda t, pod: False)
    records[750] = dataclasses.replace(records[750], status=None, error=REFUSED, reused=True)
    with pytest.raises(SLOViolation, match=r"1 requests failed after the new pods were Ready"):
        recover(records)


def test_a_recovery_with_too_few_requests_after_ready_proves_nothing():
    short = window("after the new pods were Ready", 22.8, 23.0)
    with pytest.raises(SLOViolation, match=r"only 6 requests were sent after the new pods were Ready"):
        guarantees.recovered(
            outage_then(lambda t, pod: False), OUTAGE, short, RATE, "steady", source_ports=PORTS
        )


def test_the_longest_failing_run_is_found_wherever_it_is():
    records = recorded(3.0, failing=lambda t, pod: 0.5 <= t < 0.6 or t >= 2.5)
    run = guarantees.longest_failing_run(list(reversed(records)))
    assert [r.seq for r in run] == list(range(75, 90))
    assert guarantees.longest_failing_run(recorded(1.0)) == []


def test_a_whole_service_outage_inside_the_exposure_window_breaks_the_bound_too():
    records = recorded(20.0, failing=lambda t, pod: 10.0 <= t < 12.6)
    with pytest.raises(SLOViolation) as failure:
        bound(records)
    assert str(failure.value).startswith(
        "steady: 78 requests failed after the SIGKILL of pod-a's server, more than the 43 that could have "
        "been on pod-a: their share of the traffic before (33% of before the kill) of the 78 sent while "
        "the Service could still route to pod-a (2.6s) + 4 sigma + 0 in flight at the loss."
    )


def test_a_service_that_keeps_routing_to_a_dead_pod_breaks_the_cap():
    late = dataclasses.replace(KILL, unrouted_at=ORIGIN + 14.0)
    records = recorded(20.0, failing=lambda t, pod: pod == "pod-a" and 10.0 <= t < 16.0)
    with pytest.raises(
        SLOViolation, match=r"could still route to pod-a for 6.0s \(EndpointSlice update 4.0s"
    ):
        bound(records, late)


def test_requests_in_flight_at_the_kill_are_allowed():
    records = recorded(20.0, failing=lambda t, pod: pod == "pod-a" and 10.0 <= t < 12.6)
    slow = records[299]  # sent at t=9.97 to pod-b... as if it had gone to pod-a and hung
    records[299] = dataclasses.replace(slow, latency_s=0.2, status=None, served_by=None, error="timed out")
    budget = bound(records)
    assert (budget.in_flight, budget.failed, budget.allowed) == (1, 27, 44)


def test_a_node_loss_takes_the_share_of_every_pod_on_it():
    node = Loss("node worker-2 lost", frozenset({"pod-a", "pod-b"}), ORIGIN + 10.0, ORIGIN + 10.6)
    records = recorded(20.0, failing=lambda t, pod: pod in node.pods and 10.0 <= t < 12.6)
    budget = bound(records, node)
    assert budget.share == pytest.approx(2 / 3) and budget.failed == 52 <= budget.allowed


# -- the prober must be sound ---------------------------------------------------------


def test_a_sound_run_passes(server):
    prober = Prober(target_for(server), 50, 5)
    run_for(prober, 0.4)
    guarantees.sound(prober.ledger())


def test_a_dropped_record_is_caught(server):
    prober = Prober(target_for(server), 50, 5)
    run_for(prober, 0.4)
    ledger = prober.ledger()
    dropped = dataclasses.replace(ledger, records=tuple(r for r in ledger.records if r.seq != 7))
    with pytest.raises(SLOViolation) as failure:
        guarantees.sound(dropped)
    n = ledger.scheduled
    assert str(failure.value) == (
        f"prober probe (a new connection per request) cannot be believed: 1 of {n} scheduled requests have "
        f"no record (seq 7): dropped; sent {n} != recorded {n - 1}: sequence numbers are not 0..n-1"
    )


def test_a_prober_still_running_is_not_judged(server):
    prober = Prober(target_for(server), 50, 5).start()
    try:
        with pytest.raises(SLOViolation, match="it is still running, so its record is incomplete"):
            guarantees.sound(prober.ledger())
    finally:
        prober.stop()


class Throttled(NewConnections):
    """What `BoundedSemaphore(n)` in front of every request did to the old prober under a stall:
    a request waits for a free slot before it is sent, so the schedule slips."""

    description = "a new connection per request, at most 2 in flight"

    def __init__(self, stall_s: float) -> None:
        self.slots = threading.BoundedSemaphore(2)
        self.stall_s = stall_s

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
        with self.slots:
            sent_at = time.time()
            time.sleep(self.stall_s)  # the backend stalls until the client's timeout
            return RequestRecord(
                seq, scheduled_at, sent_at, self.stall_s, None, None, None, "TimeoutError: timed out"
            )


def test_a_semaphore_throttled_stall_is_caught():
    prober = Prober(Target("127.0.0.1", 1, "/", b""), 50, 0.8, transport=Throttled(stall_s=0.1))
    prober.start()
    while prober.running:
        time.sleep(0.05)
    prober.stop()
    with pytest.raises(SLOViolation) as failure:
        guarantees.sound(prober.ledger())
    message = str(failure.value)
    assert message.startswith(
        "prober probe (a new connection per request, at most 2 in flight) cannot be believed: "
    )
    assert re.search(
        r"\d+ requests left more than 1s after their scheduled time \(worst: seq \d+, \d\.\ds late\)", message
    )
    assert message.endswith(
        "the prober fell behind its schedule, so it was not open loop (a concurrency cap or a starved "
        "scheduler) and did not apply the load the SLO assumes"
    )


def test_requests_the_prober_itself_refused_are_caught():
    prober = Prober(Target("127.0.0.1", 1, "/", b""), 50, 0.3, transport=Throttled(0.5), max_in_flight=3)
    prober.start()
    while prober.running:
        time.sleep(0.05)
    prober.stop()
    with pytest.raises(
        SLOViolation, match=r"requests were never sent by the prober itself \(ProberOverload \d+\)"
    ):
        guarantees.sound(prober.ledger())


# -- the same checks through a Scenario, as the suites call them --------------------------


def offline_scenario(target: Target, reports: Path) -> Scenario:
    """A Scenario whose cluster side is never started (no API calls): only its probers run."""
    release = types.SimpleNamespace(namespace="unit")
    return Scenario("tests/e2e/test_x.py::test_y", client.ApiClient(), release, lambda: target, reports)


def test_a_scenario_window_after_the_load_stopped_fails(server, tmp_path):
    s = offline_scenario(target_for(server), tmp_path)
    s.steady_load(20, settle_s=0.5, keep_alive=2)
    ended = s.stop_load()
    with pytest.raises(ScenarioFailure) as failure:
        s.expect_no_failures(s.window("after the rollout completed", ended - 0.2, ended + 5))
    headline = str(failure.value).splitlines()[0]
    assert headline.startswith("prober new-connection did not run through the whole window after the rollout")


def test_a_scenario_judges_each_prober_in_each_window(server, tmp_path):
    s = offline_scenario(target_for(server), tmp_path)
    probers = s.steady_load(20, settle_s=1.2, keep_alive=2)
    ended = s.stop_load()
    inside = s.expect_no_failures(s.window("from the first request to the last", s.load_started_at, ended))
    assert set(inside) == {"new-connection", "keep-alive"} and all(len(v) >= 20 for v in inside.values())
    assert probers[1].ledger().stats["connections_opened"] == 2
    with pytest.raises(ScenarioFailure, match=r"^keep-alive: only \d+ requests were sent in the last 0.4s"):
        s.expect_no_failures(s.window("in the last 0.4s", ended - 0.4, ended), probers[1:])
