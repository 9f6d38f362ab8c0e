"""Parts of the e2e release layer that need no cluster: request bodies, the revision record,
and the wait for a fresh NodePort (against a local HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from harness.release import Release, predict_body


def release_on(port: int) -> Release:
    return Release(
        name="r",
        namespace="ns",
        kubeconfig=Path("/k"),
        api_client=None,
        node_address="127.0.0.1",
        node_port=port,
        base_values=(Path("base.yaml"),),
        extra_values=(Path("unsafe.yaml"),),
    )


def test_predict_body_matches_the_models_first_input():
    metadata = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]}
    assert json.loads(predict_body(metadata)) == {"instances": [[0.5, 0.5, 0.5, 0.5]]}
    assert len(json.loads(predict_body(metadata, rows=3))["instances"]) == 3
    unknown = {"inputs": [{"name": "x", "shape": [-1, None, 2]}]}
    assert json.loads(predict_body(unknown)) == {"instances": [[[0.5, 0.5]]]}


def test_revisions_follow_upgrades_and_rollbacks(monkeypatch):
    calls = []

    class FakeHelm:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args, kwargs))

    monkeypatch.setattr(Release, "helm", property(lambda self: FakeHelm()))
    monkeypatch.setattr(Release, "wait_reachable", lambda self: calls.append(("wait_reachable", (), {})))
    release = release_on(30081)
    release.install([Path("suite.yaml")], image_tag="v1")
    release.upgrade([Path("suite.yaml")], image_tag="v2", settings={"server.logLevel": "debug"})
    restored = release.rollback()
    assert [r.revision for r in release.revisions] == [1, 2, 3]
    assert restored.setting("image.tag") == "v1" and restored.setting("server.logLevel") is None
    assert [call[0] for call in calls] == ["install", "wait_reachable", "upgrade", "rollback"]
    name, args, _ = calls[2]
    assert name == "upgrade"
    assert [str(p) for p in args[0]] == ["base.yaml", "suite.yaml", "unsafe.yaml"]  # extra values win
    assert args[1]["service.nodePort"] == "30081" and args[1]["image.tag"] == "v2"
    assert calls[3][1][0] == 1


class Readiness(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/v2/health/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def late_server() -> Iterator[tuple[int, list[ThreadingHTTPServer]]]:
    """A port that refuses connections for 0.6 s, then answers ready (a NodePort before kube-proxy syncs)."""
    port = free_port()
    started: list[ThreadingHTTPServer] = []

    def serve_later() -> None:
        time.sleep(0.6)
        httpd = ThreadingHTTPServer(("127.0.0.1", port), Readiness)
        started.append(httpd)
        httpd.serve_forever()

    threading.Thread(target=serve_later, daemon=True).start()
    yield port, started
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def test_a_fresh_release_waits_until_the_node_port_answers(late_server):
    port, _ = late_server
    waited = release_on(port).wait_reachable(timeout_s=10)
    assert 0.5 < waited < 5


def test_a_node_port_that_never_answers_ready_fails_naming_the_url():
    class NotReady(Readiness):
        status = 503

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotReady)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        with pytest.raises(TimeoutError, match=rf"127.0.0.1:{port}/v2/health/ready did not answer 200"):
            release_on(port).wait_reachable(timeout_s=1)
    finally:
        httpd.shutdown()
        httpd.server_close()
