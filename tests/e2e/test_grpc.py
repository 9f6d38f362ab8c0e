"""gRPC on the cluster: long-lived channels are rebalanced onto new pods, and rollouts drop no RPC.

One release (tests/e2e/values/grpc.yaml: 2 replicas, max connection age 10 s), its gRPC
port on a NodePort of the e2e pool. The load is harness.grpc_transport's prober:
GRPC_CHANNELS long-lived channels at grpcio's defaults, each pinned by kube-proxy to the
pod it reached when it connected, calling the Open Inference Protocol's ModelInfer at
RATE_PER_S in total. Each test asserts on the calls' records:

1. scale-up 2 -> 4 replicas: 0 failed calls, and every new pod answers calls within
   REBALANCE_BOUND_S of being Ready. A Service balances connections, not calls, so this
   holds only because the server sends each connection a GOAWAY at its max age and the
   channel reconnects through the Service. The deliberate failure:
   `--extra-values tests/e2e/values/grpc-no-max-age.yaml` turns the max age off, and
   the test fails naming the new pods that got none of the channels' calls.
2. rolling upgrade v1 -> v2 (maxSurge 1, maxUnavailable 0): 0 failed calls (each old
   pod serves through its drain delay, then GOAWAYs its channels and finishes the calls
   in flight), every call after the rollout is answered by v2, and every new pod answers
   calls within REBALANCE_BOUND_S of being Ready.
"""

from __future__ import annotations

import time

import pytest
from harness.cluster_events import pod_ready_at
from harness.prober import Target
from harness.prober_process import ProcessProber
from harness.scenario import Scenario
from kubernetes import client
from open_inference.grpc import protocol as oip

pytestmark = pytest.mark.grpc

SUITE_VALUES = ("grpc.yaml",)
INFER = "/inference.GRPCInferenceService/ModelInfer"
RATE_PER_S = 40
# Each reconnect lands on one of N pods at random (kube-proxy's iptables/nft rules):
# a given new pod of 4 is missed by one round of 8 reconnects with (3/4)^8 = 10 %, by the
# ~5 rounds in the bound with 1e-5.
GRPC_CHANNELS = 8
MAX_CONNECTION_AGE_S = 10
# Max age + its 10 % jitter per round, about 5 rounds.
REBALANCE_BOUND_S = 5 * MAX_CONNECTION_AGE_S * 1.1
STEADY_S = 6
CALL_TIMEOUT_S = 10
# From the end of a draining pod's delay to its GOAWAY reaching the channels' clients.
GOAWAY_SLACK_S = 2


def infer_body(rows: int = 1) -> bytes:
    request = oip.ModelInferRequest(model_name="anomaly")
    flows = [1.2, 20000, 2000, 30, 20, 1, 0.05, 0] * rows
    request.inputs.add(name="features", datatype="FP32", shape=[rows, 8]).contents.fp32_contents.extend(flows)
    return request.SerializeToString()


def expose_grpc(s: Scenario, files: tuple[str, ...], image_tag: str, cluster, kube) -> int:
    """Give the release's gRPC port a NodePort of the e2e pool (a Service-only change: no pod rolls)."""
    port = cluster.free_node_port(client.CoreV1Api(kube))
    s.release.upgrade(
        s.release.suite_values(files), image_tag=image_tag, settings={"service.grpcNodePort": port}
    )
    return port


def grpc_prober(s: Scenario, port: int) -> ProcessProber:
    target = Target(s.release.node_address, port, INFER, infer_body(), headers={})
    prober = s.probe(
        RATE_PER_S, target=target, timeout_s=CALL_TIMEOUT_S, name="grpc-channels", grpc_channels=GRPC_CHANNELS
    )
    prober.wait_for_requests(RATE_PER_S, timeout_s=30)
    return prober


def first_calls_after_ready(s: Scenario, new_pods: set[str], since: float) -> dict[str, float | None]:
    """Seconds from each new pod's Ready to the first call it answered (None: none yet)."""
    events = s.events("pod")
    first_answer: dict[str, float] = {}
    for record in s.requests():
        if record.ok and record.served_by in new_pods:
            first_answer.setdefault(record.served_by, record.finished_at)
    waited: dict[str, float | None] = {}
    for pod in sorted(new_pods):
        ready = pod_ready_at(events, pod, since)
        s.expect(ready is not None, f"new pod {pod} never became Ready")
        assert ready is not None
        answered = first_answer.get(pod)
        waited[pod] = None if answered is None else max(0.0, answered - ready)
    return waited


def starved(waited: dict[str, float | None]) -> list[str]:
    return [pod for pod, after in waited.items() if after is None or after > REBALANCE_BOUND_S]


def wait_rebalanced(s: Scenario, new_pods: set[str], since: float) -> None:
    """Keep the load on until every new pod answered a call, or the bound has passed for all of them."""
    deadline = time.time() + REBALANCE_BOUND_S + 30
    while starved(first_calls_after_ready(s, new_pods, since)) and time.time() < deadline:
        time.sleep(2)


def expect_rebalanced(s: Scenario, new_pods: set[str], since: float) -> None:
    waited = first_calls_after_ready(s, new_pods, since)
    for pod, after in waited.items():
        s.fact(f"first_call_after_ready_s[{pod}]", "none" if after is None else f"{after:.1f}")
    hungry = starved(waited)
    s.expect(
        not hungry,
        f"new pods starved of the long-lived channels' calls for more than {REBALANCE_BOUND_S:.0f}s after "
        f"Ready: {', '.join(hungry)} (is server.grpc.maxConnectionAgeSeconds 0?)",
    )


def test_scale_up_moves_long_lived_channels_onto_new_pods(deploy, cluster, kube):
    s = deploy("grpc", SUITE_VALUES, fresh=True)
    port = expose_grpc(s, SUITE_VALUES, "v2", cluster, kube)
    s.fact("max_connection_age_s", s.release.current.setting("server.grpc.maxConnectionAgeSeconds"))
    before = {pod.metadata.name for pod in s.release.pods()}
    prober = grpc_prober(s, port)
    time.sleep(STEADY_S)

    up = s.mark("helm upgrade replicaCount=4")
    s.release.upgrade(
        s.release.suite_values(SUITE_VALUES),
        image_tag="v2",
        settings={"replicaCount": 4, "service.grpcNodePort": port},
    )
    s.release.wait_rolled_out()
    new_pods = {pod.metadata.name for pod in s.release.pods()} - before
    s.mark(f"4 replicas Ready (new: {', '.join(sorted(new_pods))})")
    wait_rebalanced(s, new_pods, up)
    ended = s.stop_load()

    s.expect(len(new_pods) == 2, f"scale-up 2 -> 4 made new pods {sorted(new_pods)}")
    s.expect_no_failures(s.window("from the first call to the last", prober.started_at or up, ended))
    expect_rebalanced(s, new_pods, up)
    s.fact("served_by_pods", len({r.served_by for r in s.requests() if r.ok}))


def test_rolling_upgrade_drops_no_rpc_and_new_pods_get_calls(deploy, cluster, kube):
    s = deploy("grpc-upgrade", SUITE_VALUES, image_tag="v1", fresh=True)
    port = expose_grpc(s, SUITE_VALUES, "v1", cluster, kube)
    old = {pod.metadata.name for pod in s.release.pods()}
    prober = grpc_prober(s, port)
    time.sleep(STEADY_S)

    upgraded = s.mark("helm upgrade v1 -> v2")
    s.release.upgrade(
        s.release.suite_values(SUITE_VALUES), image_tag="v2", settings={"service.grpcNodePort": port}
    )
    s.release.wait_rolled_out()
    settled = s.wait_unrouted(old)
    new_pods = {pod.metadata.name for pod in s.release.pods()} - old
    s.mark(f"rolled out (new: {', '.join(sorted(new_pods))})")
    time.sleep(max(0.0, settled - time.time()) + STEADY_S)
    wait_rebalanced(s, new_pods, upgraded)
    ended = s.stop_load()

    s.expect_no_failures(s.window("from the first call to the last", prober.started_at or upgraded, ended))
    s.expect_no_failures(s.window("while the rollout replaced every pod", upgraded, settled))
    # An old pod out of the endpoints still answers the channels it holds until its drain
    # delay ends with a GOAWAY; after that every call must reach version 2.
    drain_s = float(s.release.current.setting("server.drain.delaySeconds") or 0)
    goaway_by = settled + drain_s + GOAWAY_SLACK_S
    old_answers = [r for r in s.requests() if r.ok and r.model_version != "2"]
    if old_answers:
        s.fact("last_v1_answer_after_unrouted_s", f"{max(r.finished_at for r in old_answers) - settled:.1f}")
    late = [r for r in old_answers if r.sent_at > goaway_by]
    s.expect(
        not late,
        f"{len(late)} calls sent over the drain delay ({drain_s:g}s) + {GOAWAY_SLACK_S:g}s after the old "
        "pods left the endpoints were answered by version 1",
        late,
    )
    expect_rebalanced(s, new_pods, upgraded)
