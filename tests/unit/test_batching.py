"""Batching shares TensorFlow calls; its queue is bounded (429); slow calls time out (504)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN
from unit.server_process import ServerProcess, metric_value, start_server

REQUEST_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def slow_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """The busy-waiting model, a queue of one request and a 2 s request timeout."""
    server = start_server(
        model_repo,
        log_dir,
        "slow",
        model_name="slow",
        batch_queue_size="1",
        batch_max_wait_ms="0",
        request_timeout_seconds=str(REQUEST_TIMEOUT),
    )
    server.wait_ready()
    yield server
    server.stop()


def calls_and_requests(server: ServerProcess, model: str, version: str) -> tuple[float, float]:
    text = httpx.get(f"{server.url}/metrics").text
    labels = {"model": model, "version": version, "signature": "serving_default"}
    return (
        metric_value(text, "tfms_batch_requests_count", **labels),
        metric_value(text, "tfms_batch_requests_sum", **labels),
    )


def post_concurrently(url: str, bodies: list[dict]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))

    def post(body: dict) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            return client.post(url, json=body)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_concurrent_requests_share_tensorflow_calls(main_server):
    calls_before, requests_before = calls_and_requests(main_server, "anomaly", "2")
    flows = [
        [value * (1 + index / 10) for value in (FLOW_NORMAL if index % 2 else FLOW_PORT_SCAN)]
        for index in range(24)
    ]
    responses = post_concurrently(
        f"{main_server.url}/v1/models/anomaly:predict", [{"instances": [flow]} for flow in flows]
    )
    assert [r.status_code for r in responses] == [200] * len(flows)
    calls_after, requests_after = calls_and_requests(main_server, "anomaly", "2")
    assert requests_after - requests_before == len(flows)
    assert calls_after - calls_before < len(flows), "every request made its own TensorFlow call"
    # Each request got its own rows back out of the shared call.
    expected = httpx.post(f"{main_server.url}/v1/models/anomaly:predict", json={"instances": flows}).json()
    for response, prediction in zip(responses, expected["predictions"], strict=True):
        [got] = response.json()["predictions"]
        assert got["is_anomaly"] == prediction["is_anomaly"]
        assert got["anomaly_score"] == pytest.approx(prediction["anomaly_score"], rel=1e-5, abs=1e-7)


def test_batch_size_metric_records_rows(main_server):
    text = httpx.get(f"{main_server.url}/metrics").text
    labels = {"model": "anomaly", "version": "2", "signature": "serving_default"}
    assert metric_value(text, "tfms_batch_size_count", **labels) > 0
    assert metric_value(text, "tfms_batch_size_bucket", le="1.0", **labels) < metric_value(
        text, "tfms_batch_size_count", **labels
    ), "no TensorFlow call ever took more than one row"


def test_batching_disabled_makes_one_call_per_request(v1_unbatched_server):
    calls_before, requests_before = calls_and_requests(v1_unbatched_server, "anomaly", "1")
    responses = post_concurrently(
        f"{v1_unbatched_server.url}/v1/models/anomaly:predict", [{"instances": [FLOW_NORMAL]}] * 8
    )
    assert [r.status_code for r in responses] == [200] * 8
    calls_after, requests_after = calls_and_requests(v1_unbatched_server, "anomaly", "1")
    assert (calls_after - calls_before, requests_after - requests_before) == (8, 8)


def slow_predict(server: ServerProcess, seconds: float) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.post(f"{server.url}/v1/models/slow:predict", json={"instances": [seconds]})


def test_full_queue_answers_429_and_the_queued_work_still_completes(slow_server):
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(slow_predict, slow_server, 1.2)
        time.sleep(0.4)  # the first call is now inside TensorFlow; the queue is empty
        queued = pool.submit(slow_predict, slow_server, 0.1)
        time.sleep(0.2)  # ...and now the queue (size 1) holds the second request
        refused = slow_predict(slow_server, 0.1)
        assert refused.status_code == 429
        assert "full" in refused.json()["error"]
        assert running.result().status_code == 200
        assert queued.result().status_code == 200
    assert slow_predict(slow_server, 0.0).status_code == 200


def test_request_timeout_answers_504_while_the_event_loop_stays_responsive(slow_server):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(slow_predict, slow_server, REQUEST_TIMEOUT + 1.0)
        time.sleep(0.5)
        # TensorFlow is busy in the inference thread; the event loop must still answer.
        with httpx.Client(base_url=slow_server.url, timeout=5) as client:
            probe_started = time.monotonic()
            assert client.get("/v2/health/live").status_code == 200
            assert time.monotonic() - probe_started < 0.5
        response = slow.result()
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert "TFMS_REQUEST_TIMEOUT_SECONDS" in response.json()["error"]
    assert REQUEST_TIMEOUT <= elapsed < REQUEST_TIMEOUT + 1.0
    assert slow_predict(slow_server, 0.0).status_code == 200
