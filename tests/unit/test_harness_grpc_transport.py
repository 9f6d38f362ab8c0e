"""harness.grpc_transport in a prober process, against a real server's gRPC port on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import guarantees
from harness.prober import Target
from harness.prober_process import ProcessProber, transport_for
from open_inference.grpc import protocol as oip

from unit.conftest import FLOW_NORMAL
from unit.server_process import ServerProcess

INFER = "/inference.GRPCInferenceService/ModelInfer"


def infer_body(model: str = "anomaly") -> bytes:
    request = oip.ModelInferRequest(model_name=model)
    features = request.inputs.add(name="features", datatype="FP32", shape=[1, 8])
    features.contents.fp32_contents.extend(FLOW_NORMAL)
    return request.SerializeToString()


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections to 127.0.0.1:`port` (grpcio uses IPv4-mapped IPv6 sockets)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and remote.endswith(f"0100007F:{port:04X}"):
                count += 1
    return count


def grpc_target(server: ServerProcess, body: bytes) -> Target:
    return Target("127.0.0.1", server.grpc_port, INFER, body, headers={})


def test_grpc_channels_in_the_child_record_the_pod_and_version_of_every_call(main_server):
    prober = ProcessProber(
        grpc_target(main_server, infer_body()), rate_per_s=50, max_duration_s=20, name="grpc", grpc_channels=3
    )
    before = established_to(main_server.grpc_port)
    with prober:
        prober.wait_for_requests(30, timeout_s=15)
        connections = established_to(main_server.grpc_port) - before
    records = prober.records()
    ledger = prober.ledger()
    assert connections == 3, f"3 channels made {connections} connection(s): they must not share one"
    assert ledger.transport == "3 long-lived gRPC channels" and ledger.scheduled == len(records) >= 30
    assert all(r.ok and r.served_by == "unit-main" and r.model_version == "2" for r in records)
    assert {r.connection for r in records} == {0, 1, 2}  # every channel carried calls
    guarantees.sound(ledger)


def test_a_refused_call_is_a_failed_record_naming_the_status(main_server):
    prober = ProcessProber(
        grpc_target(main_server, infer_body("no-such-model")), rate_per_s=40, max_duration_s=20,
        name="grpc-missing", grpc_channels=1,
    )  # fmt: skip
    with prober:
        prober.wait_for_requests(5, timeout_s=15)
    records = prober.records()
    assert records and not any(r.ok for r in records)
    assert all(r.error is not None and r.error.startswith("grpc NOT_FOUND") for r in records)


def test_one_prober_uses_one_transport():
    with pytest.raises(ValueError, match="not both"):
        transport_for(keep_alive=2, grpc_channels=2)
