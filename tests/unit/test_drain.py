"""SIGTERM drain on a real server process with genuinely slow requests in flight."""

from __future__ import annotations

import concurrent.futures
import signal
import socket
import time
from pathlib import Path

import httpx

from unit.server_process import start_server

DRAIN_DELAY = 1.5
DRAIN_TIMEOUT = 10.0
SLOW_SECONDS = 3.0


def slow_predict(url: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.post(f"{url}/v1/models/slow:predict", json={"instances": [SLOW_SECONDS]})


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_in_flight_requests_and_exits_zero(model_repo: Path, log_dir: Path):
    server = start_server(
        model_repo,
        log_dir,
        "drain",
        model_name="slow",
        drain_delay_seconds=str(DRAIN_DELAY),
        drain_timeout_seconds=str(DRAIN_TIMEOUT),
    )
    try:
        server.wait_ready()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            in_flight = [pool.submit(slow_predict, server.url) for _ in range(4)]
            time.sleep(0.5)
            assert not any(f.done() for f in in_flight)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.2)

            # During the delay: not ready, still live, still serving new connections.
            with httpx.Client(base_url=server.url, timeout=10) as client:
                ready = client.get("/v2/health/ready")
                assert ready.status_code == 503 and ready.json()["reason"] == "draining"
                assert client.get("/v2/health/live").status_code == 200
                served = client.get("/v1/models/slow")
                assert served.status_code == 200
                assert served.headers["connection"] == "close"  # keep-alive clients move elsewhere
            assert time.monotonic() - signalled < DRAIN_DELAY

            # After the delay: new connections are refused while the slow calls still run.
            time.sleep(max(0.0, DRAIN_DELAY + 0.5 - (time.monotonic() - signalled)))
            assert connection_refused(server.port)
            assert not all(f.done() for f in in_flight), "slow requests finished before the listener closed"

            responses = [f.result() for f in in_flight]
        assert [r.status_code for r in responses] == [200] * 4
        # Each really ran its busy-wait to the end, through the drain.
        assert all(r.json()["predictions"][0]["elapsed"] >= SLOW_SECONDS * 0.95 for r in responses)
        server.process.wait(timeout=DRAIN_TIMEOUT)
        exited_after = time.monotonic() - signalled
        assert server.process.returncode == 0, server.log()[-2000:]
        assert exited_after < DRAIN_TIMEOUT
        assert "drained cleanly" in server.log()
    finally:
        server.stop()


def test_sigterm_before_ever_ready_exits_at_once(model_repo: Path, log_dir: Path):
    server = start_server(model_repo, log_dir, "drain-unready", model_name="", drain_delay_seconds="5")
    try:
        server.wait_listening()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=10)
        assert server.process.returncode == 0
        assert time.monotonic() - signalled < 3, "waited out the drain delay with no traffic to drain"
    finally:
        server.stop()
