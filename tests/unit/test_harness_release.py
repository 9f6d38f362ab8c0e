"""Parts of the e2e release layer that need no cluster: request bodies, revisions read from
helm's history, and the wait for a fresh NodePort (against a local HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import threading
import time
import types
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


class FakeHelm:
    """helm as far as the release layer uses it: a history of revisions and their values.

    Like helm, a rollback is a new revision carrying the target's values, and a failed
    upgrade is recorded too; the values are what `--set` and the files gave (only --set here).
    """

    def __init__(self) -> None:
        self.history_entries: list[dict] = []
        self.values: dict[int, dict] = {}
        self.calls: list[tuple[str, tuple, dict]] = []

    def _record(self, status: str, description: str, values: dict) -> None:
        for entry in self.history_entries:
            if entry["status"] == "deployed" and status == "deployed":
                entry["status"] = "superseded"
        revision = len(self.history_entries) + 1
        self.history_entries.append({"revision": revision, "status": status, "description": description})
        self.values[revision] = values

    @staticmethod
    def nested(sets: dict) -> dict:
        values: dict = {}
        for key, text in sets.items():
            *parents, leaf = key.split(".")
            cursor = values
            for part in parents:
                cursor = cursor.setdefault(part, {})
            cursor[leaf] = int(text) if text.isdigit() else text
        return values

    def install(self, files, sets, **kwargs) -> None:
        self.calls.append(("install", (files, sets), kwargs))
        self._record("deployed", "Install complete", self.nested(sets))

    def upgrade(self, files, sets, **kwargs) -> None:
        self.calls.append(("upgrade", (files, sets), kwargs))
        failed = sets.get("server.modelName") == "no-such-model"
        self._record("failed" if failed else "deployed", "Upgrade complete", self.nested(sets))

    def rollback(self, revision, **kwargs) -> None:
        self.calls.append(("rollback", (revision,), kwargs))
        self._record("deployed", f"Rollback to {revision}", self.values[revision])

    def history(self) -> list[dict]:
        return [dict(entry) for entry in self.history_entries]

    def helm(self, *args: str):
        assert args[:2] == ("get", "values") and args[3] == "--revision", args
        return types.SimpleNamespace(stdout=json.dumps(self.values[int(args[4])]))


def test_revisions_are_read_from_helm_history_and_rollbacks_target_them(monkeypatch):
    helm = FakeHelm()
    monkeypatch.setattr(Release, "helm", property(lambda self: helm))
    monkeypatch.setattr(Release, "wait_reachable", lambda self: None)
    release = release_on(30081)
    release.install([Path("suite.yaml")], image_tag="v1")
    release.upgrade([Path("suite.yaml")], image_tag="v2", settings={"server.logLevel": "debug"})
    release.upgrade([Path("suite.yaml")], image_tag="v2", settings={"server.modelName": "no-such-model"})

    assert [(r.revision, r.status) for r in release.revisions] == [
        (1, "superseded"),
        (2, "deployed"),
        (3, "failed"),
    ]
    assert release.current.revision == 2 and release.current.setting("image.tag") == "v2"
    assert release.current.settings_under("server") == {"server.logLevel": "debug"}
    v1 = release.latest_revision_where(lambda r: r.setting("image.tag") == "v1")
    assert v1 is not None and v1.revision == 1 and v1.setting("service.nodePort") == "30081"

    restored = release.rollback(v1.revision)
    assert helm.calls[-1][:2] == ("rollback", (1,))
    assert (restored.revision, restored.status, restored.description) == (4, "deployed", "Rollback to 1")
    assert restored.setting("image.tag") == "v1" and restored.setting("server.logLevel") is None
    with pytest.raises(ValueError, match="has no revision 9"):
        release.rollback(9)

    name, args, _ = helm.calls[1]
    assert name == "upgrade"
    assert [str(p) for p in args[0]] == ["base.yaml", "suite.yaml", "unsafe.yaml"]  # extra values win
    assert args[1]["service.nodePort"] == "30081" and args[1]["image.tag"] == "v2"


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
