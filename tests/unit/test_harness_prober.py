"""The e2e prober against a tiny HTTP server on 127.0.0.1 (no cluster)."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from harness import slo
from harness.prober import Prober, RequestRecord, Target


class FakeModelServer(BaseHTTPRequestHandler):
    """Answers like the model server: 200 with version/pod headers, or what the test asks for."""

    mode = "ok"
    delay_s = 0.0
    bodies: list[bytes] = []  # noqa: RUF012 - shared on purpose, reset per test
    clients: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).bodies.append(body)
        type(self).clients.append(self.client_address[0])
        time.sleep(type(self).delay_s)
        status = 503 if type(self).mode == "unavailable" else 200
        payload = b'{"predictions": [[0.1]]}' if status == 200 else b'{"error": "draining"}'
        self.send_response(status)
        self.send_header("X-Model-Version", "2")
        self.send_header("X-Served-By", "pod-a")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, *_args: object) -> None:
        pass  # the client timing out and hanging up is what some tests do on purpose


@pytest.fixture
def server() -> Iterator[QuietServer]:
    FakeModelServer.mode = "ok"
    FakeModelServer.delay_s = 0.0
    FakeModelServer.bodies = []
    FakeModelServer.clients = []
    httpd = QuietServer(("127.0.0.1", 0), FakeModelServer)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def target_for(httpd: ThreadingHTTPServer) -> Target:
    return Target(
        host="127.0.0.1",
        port=httpd.server_address[1],
        path="/v1/models/anomaly:predict",
        body=b'{"instances": [[0.0]]}',
    )


def test_records_every_request_with_headers(server):
    with Prober(target_for(server), rate_per_s=100, max_duration_s=5, name="t") as prober:
        prober.wait_for_requests(20, timeout_s=5)
    records = prober.records()
    assert len(records) >= 20
    assert all(record.ok for record in records)
    assert {record.model_version for record in records} == {"2"}
    assert {record.served_by for record in records} == {"pod-a"}
    assert [record.seq for record in records] == list(range(len(records)))
    assert all(body == b'{"instances": [[0.0]]}' for body in FakeModelServer.bodies)


def test_keeps_a_steady_rate():
    def instant(target: Target, seq: int, scheduled_at: float, _timeout: float) -> RequestRecord:
        now = time.time()
        return RequestRecord(seq, scheduled_at, now, 0.001, 200, "1", "p", None)

    target = Target("127.0.0.1", 1, "/", b"")
    prober = Prober(target, rate_per_s=50, max_duration_s=10, send=instant).start()
    time.sleep(0.6)
    records = prober.stop()
    assert 25 <= len(records) <= 35
    lags = [record.sent_at - record.scheduled_at for record in records]
    assert max(lags) < 0.1


def test_stops_by_itself_at_its_bounds(server):
    prober = Prober(target_for(server), rate_per_s=200, max_duration_s=30, max_requests=15).start()
    deadline = time.monotonic() + 5
    while prober.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not prober.running
    assert len(prober.stop()) == 15

    short = Prober(target_for(server), rate_per_s=20, max_duration_s=0.3).start()
    time.sleep(0.6)
    assert not short.running
    assert len(short.stop()) <= 8


def test_http_errors_are_failures(server):
    FakeModelServer.mode = "unavailable"
    with Prober(target_for(server), rate_per_s=50, max_duration_s=5) as prober:
        prober.wait_for_requests(5, timeout_s=5)
    records = prober.records()
    assert records and not any(record.ok for record in records)
    assert all(record.status == 503 and "draining" in (record.error or "") for record in records)
    assert slo.error_kinds(records) == {"HTTP 503": len(records)}


def test_refused_connections_are_failures_not_retried():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    # Nothing listens on `port` now.
    target = Target("127.0.0.1", port, "/", b"{}")
    with Prober(target, rate_per_s=50, max_duration_s=5) as prober:
        prober.wait_for_requests(5, timeout_s=5)
    records = prober.records()
    assert all(record.status is None for record in records)
    assert all("ConnectionRefusedError" in (record.error or "") for record in records)


def test_timeouts_are_failures_and_the_stall_shows_as_lag(server):
    FakeModelServer.delay_s = 0.5
    prober = Prober(target_for(server), rate_per_s=40, max_duration_s=5, timeout_s=0.2, concurrency=2).start()
    time.sleep(0.6)
    records = prober.stop()
    assert records
    assert all("timed out" in (record.error or "") for record in records)
    assert max(record.sent_at - record.scheduled_at for record in records) > 0.2


def test_sends_from_the_given_loopback_address(server):
    target = dataclasses.replace(target_for(server), source_address="127.0.0.7")
    with Prober(target, rate_per_s=50, max_duration_s=5) as prober:
        prober.wait_for_requests(5, timeout_s=5)
    assert all(record.ok for record in prober.records())
    assert set(FakeModelServer.clients) == {"127.0.0.7"}
