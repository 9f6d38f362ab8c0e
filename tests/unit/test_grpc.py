"""The gRPC port on real server processes: shared batches, limits, timeout and metrics with REST,
the drain, the max connection age, the health service, malformed messages.

Clients are grpcio with the official stubs (TF Serving's, the Open Inference Protocol's
open-inference-grpc, grpc.health.v1's); the protocol conversions themselves are proven
against peers' clients in tests/compat.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from open_inference.grpc import protocol as oip
from open_inference.grpc.service import GRPCInferenceServiceStub
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis.prediction_service_pb2_grpc import PredictionServiceStub

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN
from unit.server_process import ServerProcess, metric_value, start_server

PREDICT = "/tensorflow.serving.PredictionService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(model: str, name: str, rows: np.ndarray, datatype: str = "FP32") -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=rows.shape)
    request.raw_input_contents.append(rows.tobytes())
    return request


def anomaly_request(rows: int = 1) -> oip.ModelInferRequest:
    flows = np.asarray([FLOW_NORMAL, FLOW_PORT_SCAN] * rows, dtype=np.float32)[:rows]
    return infer_request("anomaly", "features", flows)


@pytest.fixture(scope="module")
def channel(main_server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(main_server.grpc_target) as opened:
        grpc.channel_ready_future(opened).result(timeout=30)
        yield opened


@pytest.fixture(scope="module")
def oip_stub(channel) -> GRPCInferenceServiceStub:
    return GRPCInferenceServiceStub(channel)


def test_answers_carry_the_pod_and_the_version_in_trailing_metadata(oip_stub):
    response, call = oip_stub.ModelInfer.with_call(anomaly_request(2), timeout=10)
    trailers = dict(call.trailing_metadata())
    assert trailers == {"x-served-by": "unit-main", "x-model-version": "2"}
    assert response.model_version == "2" and len(response.raw_output_contents) == 2
    with pytest.raises(grpc.RpcError) as refused:
        oip_stub.ModelInfer(infer_request("anomaly", "nope", np.zeros((1, 8), np.float32)), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(refused.value.trailing_metadata()) == {"x-served-by": "unit-main", "x-model-version": "2"}


@pytest.mark.parametrize(
    ("method", "payload"),
    [(PREDICT, b"\xff\xff\xff"), (INFER, b"\x0a\x05ano"), ("/grpc.health.v1.Health/Check", b"\x0a\xff")],
)
def test_malformed_messages_are_invalid_argument_and_the_server_keeps_serving(
    channel, oip_stub, method, payload
):
    raw = channel.unary_unary(method)  # bytes in, bytes out: no serializer to stop the garbage
    with pytest.raises(grpc.RpcError) as refused:
        raw(payload, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Malformed" in refused.value.details()
    assert oip_stub.ModelInfer(anomaly_request(), timeout=10).model_name == "anomaly"


def test_unknown_models_are_not_found_on_both_services(channel, oip_stub):
    with pytest.raises(grpc.RpcError) as oip_refused:
        oip_stub.ModelInfer(oip.ModelInferRequest(model_name="nope"), timeout=10)
    assert oip_refused.value.code() == grpc.StatusCode.NOT_FOUND
    prediction = PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as tfs_refused:
        prediction.Predict(request, timeout=10)
    assert tfs_refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Servable not found for request" in tfs_refused.value.details()


def test_a_model_not_loaded_yet_is_unavailable_until_readiness(model_repo, log_dir):
    """Between the port opening and the model being loaded, calls get UNAVAILABLE (clients retry)."""
    server = start_server(model_repo, log_dir, "grpc-starting", model_name="anomaly,heavy")
    try:
        server.wait_listening()
        with grpc.insecure_channel(server.grpc_target) as early:
            grpc.channel_ready_future(early).result(timeout=30)
            stub = GRPCInferenceServiceStub(early)
            codes: list[grpc.StatusCode] = []
            with httpx.Client(base_url=server.url, timeout=5) as http:
                deadline = time.monotonic() + 60
                while http.get("/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
                    try:
                        stub.ModelInfer(anomaly_request(), timeout=10)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as refused:
                        codes.append(refused.code())
                    time.sleep(0.05)
            assert codes, "the server was ready before the first call could be sent"
            assert grpc.StatusCode.UNAVAILABLE in codes, codes
            assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK}, set(codes)
            assert stub.ModelInfer(anomaly_request(), timeout=10).model_name == "anomaly"
    finally:
        server.stop()


def test_unknown_methods_are_unimplemented(channel):
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary("/tensorflow.serving.ModelService/HandleReloadConfigRequest")(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_check_follows_readiness(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService", "tensorflow.serving.PredictionService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_grpc_calls_are_counted_with_rest_under_protocol_grpc(main_server, oip_stub, client):
    def count() -> float:
        text = client.get("/metrics").text
        return metric_value(
            text, "tfms_requests_total", protocol="grpc", model="anomaly", version="2", status="200"
        )

    before = count()
    for _ in range(3):
        oip_stub.ModelInfer(anomaly_request(), timeout=10)
    assert count() == before + 3
    with pytest.raises(grpc.RpcError):
        oip_stub.ModelInfer(oip.ModelInferRequest(model_name="nope"), timeout=10)
    unknown = metric_value(
        client.get("/metrics").text, "tfms_requests_total", protocol="grpc", model="_unknown", status="404"
    )
    assert unknown >= 1


def test_grpc_and_rest_requests_share_one_batch(main_server, client):
    """heavy, 20 ms max wait: REST and gRPC requests in flight together go into the same TensorFlow calls."""

    def batch_counts() -> tuple[float, float]:
        text = client.get("/metrics").text
        labels = {"model": "heavy", "version": "1", "signature": "serving_default"}
        return (
            metric_value(text, "tfms_batch_requests_count", **labels),
            metric_value(text, "tfms_batch_requests_sum", **labels),
        )

    rows = np.full((1, 512), 0.25, dtype=np.float32)
    calls_before, requests_before = batch_counts()
    start = threading.Barrier(8)

    def rest() -> int:
        with httpx.Client(base_url=main_server.url, timeout=30) as http:
            start.wait()
            return http.post("/v1/models/heavy:predict", json={"instances": rows.tolist()}).status_code

    def over_grpc() -> str:
        with grpc.insecure_channel(main_server.grpc_target) as own:
            stub = GRPCInferenceServiceStub(own)
            grpc.channel_ready_future(own).result(timeout=10)
            start.wait()
            return stub.ModelInfer(infer_request("heavy", "x", rows), timeout=30).model_name

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(rest) for _ in range(4)] + [pool.submit(over_grpc) for _ in range(4)]
        results = [future.result() for future in futures]
    assert results == [200] * 4 + ["heavy"] * 4
    calls, requests = batch_counts()
    assert requests - requests_before == 8
    # Requests in flight on either transport keep a batch open for the others (one in-flight count):
    # fewer calls than requests, and no call can have held only one transport's four.
    assert calls - calls_before < 4, f"{calls - calls_before} TensorFlow calls for 8 concurrent requests"


@pytest.fixture(scope="module")
def tight_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """slow and anomaly, small limits: 2 concurrent requests, a 3 s timeout, 64 KiB messages."""
    server = start_server(
        model_repo,
        log_dir,
        "grpc-tight",
        model_name="slow,anomaly",
        max_concurrent_requests="2",
        request_timeout_seconds="3",
        grpc_max_message_bytes=str(64 * 1024),
        drain_delay_seconds="0",
    )
    server.wait_ready()
    yield server
    server.stop()


def slow_call(target: str, seconds: float, timeout: float = 30) -> oip.ModelInferResponse:
    with grpc.insecure_channel(target) as own:
        rows = np.asarray([seconds], dtype=np.float32)
        return GRPCInferenceServiceStub(own).ModelInfer(
            infer_request("slow", "seconds", rows), timeout=timeout
        )


def test_over_the_concurrency_limit_is_resource_exhausted(tight_server):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(slow_call, tight_server.grpc_target, 1.0) for _ in range(2)]
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as refused:
            slow_call(tight_server.grpc_target, 0.0)
        assert all(future.result().model_name == "slow" for future in holding)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "TFMS_MAX_CONCURRENT_REQUESTS" in refused.value.details()


def test_a_message_over_the_limit_is_refused_by_grpc(tight_server):
    with grpc.insecure_channel(tight_server.grpc_target) as own:
        stub = GRPCInferenceServiceStub(own)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(infer_request("anomaly", "features", np.zeros((4096, 8), np.float32)), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ModelInfer(anomaly_request(), timeout=10).model_name == "anomaly"


def test_the_request_timeout_is_deadline_exceeded(tight_server):
    with pytest.raises(grpc.RpcError) as late:
        slow_call(tight_server.grpc_target, 6.0)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "TFMS_REQUEST_TIMEOUT_SECONDS" in late.value.details()


class ConnectionCounter:
    """A TCP relay in front of the gRPC port that counts the connections a client opens through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.closing = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closing = True
        self.listener.close()


@pytest.mark.parametrize(("age", "reconnects"), [("1", True), ("0", False)], ids=["age-1s", "age-off"])
def test_max_connection_age_makes_a_long_lived_channel_reconnect(model_repo, log_dir, age, reconnects):
    server = start_server(
        model_repo, log_dir, f"grpc-age-{age}", model_name="anomaly", grpc_max_connection_age_seconds=age
    )
    relay = None
    try:
        server.wait_ready()
        relay = ConnectionCounter(server.grpc_port)
        failed = 0
        with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as one_channel:
            stub = GRPCInferenceServiceStub(one_channel)
            deadline = time.monotonic() + 4.0
            sent = 0
            while time.monotonic() < deadline:
                try:
                    stub.ModelInfer(anomaly_request(), timeout=5)
                except grpc.RpcError:
                    failed += 1
                sent += 1
                time.sleep(0.02)
        assert failed == 0, f"{failed} of {sent} calls failed across connection ages"
        if reconnects:
            assert relay.accepted >= 3, (
                f"one channel opened {relay.accepted} connections in 4 s with a 1 s max age"
            )
        else:
            assert relay.accepted == 1, (
                f"without a max age the channel reconnected {relay.accepted - 1} times"
            )
    finally:
        if relay is not None:
            relay.close()
        server.stop()


def test_sigterm_serves_grpc_through_the_delay_then_goaway_and_finishes_in_flight(model_repo, log_dir):
    server = start_server(
        model_repo,
        log_dir,
        "grpc-drain",
        model_name="slow",
        drain_delay_seconds="1.5",
        drain_timeout_seconds="10",
    )
    try:
        server.wait_ready()
        with (
            grpc.insecure_channel(server.grpc_target) as kept,
            concurrent.futures.ThreadPoolExecutor(4) as pool,
        ):
            stub = GRPCInferenceServiceStub(kept)
            slow = infer_request("slow", "seconds", np.asarray([3.0], dtype=np.float32))
            in_flight = [pool.submit(stub.ModelInfer, slow, timeout=30) for _ in range(3)]
            time.sleep(0.5)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            # During the delay: NOT_SERVING, but calls are still answered on the same channel.
            health = health_pb2_grpc.HealthStub(kept)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
                health_pb2.HealthCheckResponse.NOT_SERVING
            )
            # (metadata: a call into the model would queue behind the slow ones on the one inference thread)
            assert stub.ModelMetadata(oip.ModelMetadataRequest(name="slow"), timeout=5).name == "slow"
            assert time.monotonic() - signalled < 1.5
            # After it: the listener is closed while the slow calls are still running.
            time.sleep(max(0.0, 2.0 - (time.monotonic() - signalled)))
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.grpc_port), timeout=1).close()
            assert not all(future.done() for future in in_flight)
            answers = [future.result() for future in in_flight]
        assert [answer.model_name for answer in answers] == ["slow"] * 3
        server.process.wait(timeout=10)
        assert server.process.returncode == 0, server.log()[-2000:]
        assert "GOAWAY to every connection" in server.log()
    finally:
        server.stop()


def test_a_taken_grpc_port_stops_the_server(model_repo, log_dir):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = start_server(model_repo, log_dir, "grpc-taken", model_name="anomaly", grpc_port=str(port))
        try:
            assert server.process.wait(timeout=60) == 3
            assert f"gRPC cannot listen on 127.0.0.1:{port}" in server.log()
        finally:
            server.stop()
