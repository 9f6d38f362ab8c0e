"""A hung TensorFlow call fails liveness (so the kubelet restarts the container) and logs its stack."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from unit.server_process import ServerProcess, start_server

REQUEST_TIMEOUT = 1.0
HUNG_AFTER = 2.0


@pytest.fixture(scope="module")
def watched_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """The busy-waiting model, a 1 s request timeout, a call hung after 2 s, fault injection on."""
    server = start_server(
        model_repo,
        log_dir,
        "watched",
        model_name="slow",
        request_timeout_seconds=str(REQUEST_TIMEOUT),
        hung_inference_seconds=str(HUNG_AFTER),
        fault_injection="true",
        drain_delay_seconds="0",
        drain_timeout_seconds="3",
    )
    server.wait_ready()
    yield server
    server.stop()


def slow_predict(server: ServerProcess, seconds: float) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.post(f"{server.url}/v1/models/slow:predict", json={"instances": [seconds]})


def wait_for(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


def test_a_call_running_far_beyond_the_timeout_fails_liveness_and_logs_its_stack(watched_server):
    with watched_server.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        hanging = pool.submit(slow_predict, watched_server, HUNG_AFTER + 3.0)
        time.sleep(0.5)
        assert client.get("/v2/health/live").status_code == 200, "a slow call is not yet a hung one"
        failed_after = 0.5 + wait_for(lambda: client.get("/v2/health/live").status_code == 503, 10)
        live = client.get("/v2/health/live")
        assert live.json()["live"] is False
        assert (
            "running for" in live.json()["reason"] and "TFMS_HUNG_INFERENCE_SECONDS" in live.json()["reason"]
        )
        assert client.get("/v2/health/ready").status_code == 503, "a hung pod must leave the Service too"
        assert hanging.result().status_code == 504  # its own request timed out long ago
        # The call returned: the process serves again (the kubelet may have restarted it meanwhile).
        wait_for(lambda: client.get("/v2/health/live").status_code == 200, 10)
        assert client.get("/v2/health/ready").status_code == 200
    assert HUNG_AFTER <= failed_after < HUNG_AFTER + 2.5
    log = watched_server.log()
    assert log.count("liveness now fails so the container is restarted") == 1, "logged once per stuck call"
    stack = log[log.index("Stack of thread tf-inference") :]
    assert "modelserver/watchdog.py" in stack and "modelserver/runtime.py" in stack, stack[:2000]


def test_an_injected_hang_fails_liveness_for_good(watched_server):
    with watched_server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.post("/debug/fault/hang-inference").status_code == 200
        wait_for(lambda: client.get("/v2/health/live").status_code == 503, HUNG_AFTER + 3)
        assert "fault: injected hang" in client.get("/v2/health/live").json()["reason"]
        assert client.post("/v1/models/slow:predict", json={"instances": [0.0]}).status_code == 504
        time.sleep(1.5)
        assert client.get("/v2/health/live").status_code == 503
    assert "threading.py" in watched_server.log()  # the stack shows where it waits
