"""Pure parts of the e2e release layer (no cluster): request bodies and the revision record."""

from __future__ import annotations

import json
from pathlib import Path

from harness.release import Release, predict_body


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
    release = Release(
        name="r",
        namespace="ns",
        kubeconfig=Path("/k"),
        api_client=None,
        node_address="127.0.0.1",
        node_port=30081,
        base_values=(Path("base.yaml"),),
        extra_values=(Path("unsafe.yaml"),),
    )
    release.install([Path("suite.yaml")], image_tag="v1")
    release.upgrade([Path("suite.yaml")], image_tag="v2", settings={"server.logLevel": "debug"})
    restored = release.rollback()
    assert [r.revision for r in release.revisions] == [1, 2, 3]
    assert restored.setting("image.tag") == "v1" and restored.setting("server.logLevel") is None
    name, args, _ = calls[1]
    assert name == "upgrade"
    assert [str(p) for p in args[0]] == ["base.yaml", "suite.yaml", "unsafe.yaml"]  # extra values win
    assert args[1]["service.nodePort"] == "30081" and args[1]["image.tag"] == "v2"
    assert calls[2][0] == "rollback" and calls[2][1][0] == 1
