"""The e2e prober against a tiny HTTP/1.1 server on 127.0.0.1 (no cluster): both transports."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from harness import slo
from harness.prober import LOAD_NICENESS, KeepAlivePool, NewConnections, Prober, RequestRecord, Target


class FakeModelServer(BaseHTTPRequestHandler):
    """Answers like the model server (keep-alive capable), or misbehaves the way a test asks.

    Modes: ok; unavailable (503); close (answers carry `Connection: close`, as the server's
    drain does); close-silently (the connection is closed after each answer without a word,
    as an idle close looks); drop-reused (a request on a reused connection is read and the
    connection closed without an answer).
    """

    protocol_version = "HTTP/1.1"
    mode = "ok"
    delay_s = 0.0
    bodies: list[bytes] = []  # noqa: RUF012 - shared on purpose, reset per test
    clients: list[str] = []  # noqa: RUF012
    connections = 0
    received = 0
    lock = threading.Lock()  # handler threads count concurrently

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle holds the body for the
        # client's delayed ACK (40 ms) on every reused connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            type(self).connections += 1
        self.served_here = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        cls = type(self)
        with cls.lock:
            cls.received += 1
        cls.bodies.append(body)
        cls.clients.append(self.client_address[0])
        if cls.mode == "drop-reused" and self.served_here >= 1:
            self.close_connection = True
            return
        self.served_here += 1
        time.sleep(cls.delay_s)
        status = 503 if cls.mode == "unavailable" else 200
        payload = b'{"predictions": [[0.1]]}' if status == 200 else b'{"error": "draining"}'
        self.send_response(status)
        self.send_header("X-Model-Version", "2")
        self.send_header("X-Served-By", "pod-a")
        self.send_header("Content-Length", str(len(payload)))
        if cls.mode == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        if cls.mode == "close-silently":
            self.close_connection = True

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
    FakeModelServer.connections = 0
    FakeModelServer.received = 0
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


class InstantTransport(NewConnections):
    description = "instant answers"

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
        return RequestRecord(seq, scheduled_at, time.time(), 0.001, 200, "1", "p", None)


def run_for(prober: Prober, seconds: float) -> list[RequestRecord]:
    prober.start()
    time.sleep(seconds)
    return prober.stop()


def test_records_every_request_with_headers(server):
    with Prober(target_for(server), rate_per_s=100, max_duration_s=5, name="t") as prober:
        prober.wait_for_requests(20, timeout_s=5)
    records = prober.records()
    ledger = prober.ledger()
    assert len(records) >= 20 and ledger.scheduled == len(records)
    assert all(record.ok and record.prober == "t" for record in records)
    assert {record.model_version for record in records} == {"2"}
    assert {record.served_by for record in records} == {"pod-a"}
    assert [record.seq for record in records] == list(range(len(records)))
    assert all(body == b'{"instances": [[0.0]]}' for body in FakeModelServer.bodies)
    assert FakeModelServer.connections == len(records)  # one connection per request


def test_keeps_a_steady_rate():
    target = Target("127.0.0.1", 1, "/", b"")
    records = run_for(Prober(target, rate_per_s=50, max_duration_s=10, transport=InstantTransport()), 0.6)
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
    for transport in (NewConnections(), KeepAlivePool(2)):
        with Prober(Target("127.0.0.1", port, "/", b"{}"), 50, 5, transport=transport) as prober:
            prober.wait_for_requests(5, timeout_s=5)
        records = prober.records()
        assert all(record.status is None for record in records)
        assert all("ConnectionRefusedError" in (record.error or "") for record in records)


def test_a_stalled_backend_does_not_slow_the_schedule(server):
    """Open loop: no concurrency cap, so a stall shows as timeouts on time, never as lag."""
    FakeModelServer.delay_s = 0.5
    records = run_for(Prober(target_for(server), rate_per_s=40, max_duration_s=5, timeout_s=0.2), 0.6)
    assert len(records) >= 20
    assert all("timed out" in (record.error or "") for record in records)
    assert max(record.sent_at - record.scheduled_at for record in records) < 0.1


def test_an_exception_in_a_worker_becomes_a_failed_record():
    class Flaky(InstantTransport):
        def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
            if seq == 3:
                raise RuntimeError("boom")
            return super().send(target, seq, scheduled_at, timeout_s)

    prober = Prober(Target("127.0.0.1", 1, "/", b""), rate_per_s=50, max_duration_s=5, transport=Flaky())
    records = run_for(prober, 0.3)
    assert [record.seq for record in records] == list(range(prober.ledger().scheduled))
    assert records[3].error == "ProberError: RuntimeError: boom" and records[3].prober_fault


def test_a_request_still_in_flight_at_stop_is_recorded_as_failed():
    release = threading.Event()

    class Hanging(InstantTransport):
        def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
            if seq == 0:
                release.wait(10)
            return super().send(target, seq, scheduled_at, timeout_s)

    target = Target("127.0.0.1", 1, "/", b"")
    prober = Prober(target, 20, 5, timeout_s=0.1, transport=Hanging(), stop_grace_s=0.4)
    prober.start()
    time.sleep(0.2)
    started = time.monotonic()
    records = prober.stop()
    release.set()
    assert time.monotonic() - started < 1.5
    assert records[0].seq == 0 and "still in flight when the prober stopped" in (records[0].error or "")
    assert [record.seq for record in records] == list(range(prober.ledger().scheduled))


def test_sends_from_the_given_loopback_address(server):
    target = dataclasses.replace(target_for(server), source_address="127.0.0.7")
    for transport in (NewConnections(), KeepAlivePool(2)):
        FakeModelServer.clients = []
        with Prober(target, rate_per_s=50, max_duration_s=5, transport=transport) as prober:
            prober.wait_for_requests(5, timeout_s=5)
        assert all(record.ok for record in prober.records())
        assert set(FakeModelServer.clients) == {"127.0.0.7"}


# -- the keep-alive pool -------------------------------------------------------------------


def test_keep_alive_pool_reuses_its_connections_in_turn(server):
    pool = KeepAlivePool(2)
    records = run_for(Prober(target_for(server), 50, 5, transport=pool), 0.6)
    assert len(records) >= 25 and all(record.ok for record in records)
    assert FakeModelServer.connections == 2
    assert {record.connection for record in records} == {0, 1}
    assert [record.connection for record in records[:4]] == [0, 1, 0, 1]  # each carries its share
    assert [record.reused for record in records[:3]] == [False, False, True]
    assert all(record.reused for record in records[2:])
    assert pool.stats()["connections_opened"] == 2


def test_keep_alive_pool_reconnects_when_answers_say_connection_close(server):
    FakeModelServer.mode = "close"  # what a draining server answers
    pool = KeepAlivePool(2)
    records = run_for(Prober(target_for(server), 50, 5, transport=pool), 0.4)
    assert records and all(record.ok and not record.reused for record in records)
    assert FakeModelServer.connections == len(records)
    assert pool.stats()["closed_by_server_answer"] == len(records)


def test_keep_alive_pool_notices_a_connection_the_server_closed_while_idle(server):
    FakeModelServer.mode = "close-silently"
    pool = KeepAlivePool(2)
    records = run_for(Prober(target_for(server), 20, 5, transport=pool), 0.5)
    assert len(records) >= 8 and all(record.ok for record in records)
    assert pool.stats()["closed_by_server_idle"] >= len(records) - 2
    assert FakeModelServer.received == len(records)


def test_a_request_lost_on_a_reused_connection_is_a_failure_and_never_retried(server):
    FakeModelServer.mode = "drop-reused"  # reads the request, closes without an answer
    records = run_for(Prober(target_for(server), 20, 5, transport=KeepAlivePool(1)), 0.5)
    assert [record.ok for record in records[:4]] == [True, False, True, False]
    lost = records[1]
    assert lost.reused and lost.connection == 0 and lost.status is None
    assert "RemoteDisconnected" in (lost.error or "")
    assert FakeModelServer.received == len(records)  # every request reached the server exactly once


def test_keep_alive_pool_opens_an_extra_connection_instead_of_waiting(server):
    FakeModelServer.delay_s = 0.3
    pool = KeepAlivePool(1)
    records = run_for(Prober(target_for(server), 20, 5, transport=pool), 0.5)
    assert all(record.ok for record in records)
    assert max(record.sent_at - record.scheduled_at for record in records) < 0.1
    assert pool.stats()["overflow_connections"] >= 3
    assert {record.connection for record in records} - {0}  # overflow connections have their own numbers


PRIORITISE_AND_SHOW = (
    "from harness.prober import prioritise_load; from pathlib import Path; "
    "print(prioritise_load()); print(Path('/proc/self/autogroup').read_text().strip())"
)


def test_the_load_priority_covers_the_sessions_autogroup():
    """A thread's nice orders it only within its session's autogroup: the group is raised too.

    Run in a session of its own (its own autogroup), so the test process's group is untouched.
    """
    result = subprocess.run(
        [sys.executable, "-c", PRIORITISE_AND_SHOW],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    line, autogroup = result.stdout.splitlines()
    autogroups_on = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    if os.geteuid() != 0:
        assert line.startswith("probers at default CPU priority"), line
    elif autogroups_on:
        assert autogroup.endswith(f"nice {LOAD_NICENESS}"), (line, autogroup)
        assert "autogroup too" in line, line
    else:
        assert "autogroup" not in line, line
