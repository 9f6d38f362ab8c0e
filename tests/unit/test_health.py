"""Liveness, readiness, fault injection and the metrics endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from unit.server_process import ServerProcess, metric_value, start_server


@pytest.fixture(scope="module")
def no_model_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    """Zero models configured, fault injection on."""
    server = start_server(model_repo, log_dir, "no-model", model_name="", fault_injection="true")
    server.wait_listening()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def missing_model_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(model_repo, log_dir, "missing-model", model_name="ghost")
    server.wait_listening()
    yield server
    server.stop()


def test_not_ready_until_the_models_are_loaded(main_server):
    statuses = [status for status in main_server.startup_statuses if status is not None]
    assert statuses[0] == 503, f"readiness statuses seen during start: {main_server.startup_statuses}"
    assert statuses[-1] == 200


def test_zero_models_is_live_but_never_ready(no_model_server):
    with no_model_server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
        time.sleep(1.0)
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "reason": "no models"}
        assert client.get("/v2/models/anomaly").status_code == 404


def test_missing_model_is_live_but_not_ready_and_says_why(missing_model_server):
    with missing_model_server.client() as client:
        time.sleep(0.5)
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        status = client.get("/v1/models/ghost")
        assert status.status_code == 404
        assert "Could not find any versions of model ghost" in status.json()["error"]
        assert "Could not find base path" in status.json()["error"]
        infer = client.post("/v1/models/ghost:predict", json={"instances": [[1]]})
        assert infer.status_code == 503
        assert "Could not find base path" in infer.json()["error"]


def test_fault_injection_fails_liveness_only_when_enabled(no_model_server, client):
    assert client.post("/debug/fault/liveness").status_code == 404  # main_server: injection off
    assert client.get("/v2/health/live").status_code == 200
    with no_model_server.client() as faulty:
        assert faulty.post("/debug/fault/liveness").status_code == 200
        assert faulty.get("/v2/health/live").status_code == 503
        assert faulty.get("/v2").status_code == 200  # still serving everything else


def test_metrics_cover_requests_latency_batching_and_loading(main_server, client):
    client.post("/v1/models/anomaly:predict", json={"instances": [[0.0] * 8]})
    client.post("/v1/models/anomaly:predict", json={"instances": [[0.0] * 3]})
    client.post("/v1/models/ghost-of-a-model:predict", json={})
    response = httpx.get(f"{main_server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    ok = {"protocol": "tfserving", "model": "anomaly", "version": "2", "status": "200"}
    assert metric_value(text, "tfms_requests_total", **ok) >= 1
    assert metric_value(text, "tfms_requests_total", **{**ok, "status": "400"}) >= 1
    assert (
        metric_value(text, "tfms_requests_total", protocol="tfserving", model="_unknown", status="404") >= 1
    )
    assert (
        metric_value(text, "tfms_request_duration_seconds_count", protocol="tfserving", model="anomaly") >= 1
    )
    assert metric_value(text, "tfms_model_load_seconds", model="anomaly", version="2") > 0
    assert metric_value(text, "tfms_model_load_seconds", model="heavy", version="1") > 0
    assert "tfms_batch_size_bucket" in text
    assert "tfms_batch_queue_depth{" in text
    assert metric_value(text, "tfms_requests_in_flight") >= 1  # the scrape itself
    assert metric_value(text, "tfms_ready") == 1
