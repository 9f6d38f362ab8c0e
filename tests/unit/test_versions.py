"""Model versions, live: the availability-preserving policy, labels, swaps, failed loads, config reloads.

The policy and label resolution are checked directly; the rest on real servers (real
TensorFlow, real HTTP) whose model repository and config file the tests change while a
client keeps sending requests: every request must be answered 200.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest
from modelserver import errors
from modelserver.inference import ModelService
from modelserver.model_config import ModelConfig, ServerConfig
from modelserver.repository import ModelRegistry, VersionState, VersionStatus
from modelserver.runtime import LoadedModel
from modelserver.settings import Settings
from modelserver.versions import Action, next_action

from unit.conftest import FLOW_NORMAL
from unit.server_process import ServerProcess, metric_value, start_server

POLL = "0.2"
PREDICT = "/v1/models/anomaly:predict"
BODY = {"instances": [FLOW_NORMAL]}

# -- the policy (availability_preserving_policy.cc) ----------------------------------------


def test_a_new_version_loads_before_the_old_one_unloads():
    # latest {1}: version 2 appears while 1 serves -> load 2 first, 1 stays.
    assert next_action(available={1}, aspired={2}, loadable={2}) == Action("load", 2)
    # 2 is available: now 1 may go.
    assert next_action(available={1, 2}, aspired={2}, loadable=set()) == Action("unload", 1)
    assert next_action(available={2}, aspired={2}, loadable=set()) is None


def test_a_version_that_failed_to_load_leaves_the_old_one_serving():
    # 2 is aspired but failed (not loadable): nothing aspired serves, one unaspired does -> keep it.
    assert next_action(available={1}, aspired={2}, loadable=set()) is None


def test_no_aspired_version_unloads_and_several_unaspired_unload_lowest_first():
    assert next_action(available={1, 2}, aspired=set(), loadable=set()) == Action("unload", 1)
    assert next_action(available={1, 2}, aspired={3}, loadable={3}) == Action("unload", 1)
    assert next_action(available={2}, aspired={3}, loadable={3}) == Action("load", 3)


def test_the_newest_loadable_version_loads_first():
    assert next_action(available=set(), aspired={1, 2, 3}, loadable={1, 2, 3}) == Action("load", 3)


# -- label resolution ----------------------------------------------------------------------


def fake_model(version: int) -> LoadedModel:
    return LoadedModel("m", version, Path(f"/m/{version}"), {}, {}, 0.0)


@pytest.fixture
def service() -> ModelService:
    config = ModelConfig("m", Path("/m"), labels=MappingProxyType({"stable": 1, "canary": 2, "next": 3}))
    registry = ModelRegistry(ServerConfig((config,), "test"))
    entry = registry.models["m"]
    entry.publish({1: fake_model(1), 2: fake_model(2)})
    entry.set_labels({"stable": 1, "canary": 2})  # "next" waits for version 3
    entry.versions = {
        1: VersionStatus(1, VersionState.AVAILABLE),
        2: VersionStatus(2, VersionState.AVAILABLE),
        3: VersionStatus(3, VersionState.END, "INVALID_ARGUMENT", "bad export"),
    }
    return ModelService(Settings(), registry, None, None, lambda: 0, None)  # type: ignore[arg-type]


def test_labels_resolve_to_their_versions_and_latest_to_the_newest(service):
    assert service.resolve("m").version == 2
    assert service.resolve("m", label="stable").version == 1
    assert service.resolve("m", label="canary").version == 2
    assert service.resolve("m", version="1").version == 1


def test_unknown_and_waiting_labels_and_versions_answer_as_tf_serving(service):
    with pytest.raises(errors.ServingError) as unknown:
        service.resolve("m", label="beta")
    assert (unknown.value.status, unknown.value.message) == (400, "Unrecognized servable version label: beta")
    with pytest.raises(errors.ServingError) as waiting:
        service.resolve("m", label="next")
    assert waiting.value.status == 503 and "label next names version 3" in waiting.value.message
    assert "failed to load: bad export" in waiting.value.message
    with pytest.raises(errors.ServingError) as missing:
        service.resolve("m", version="9")
    assert (missing.value.status, missing.value.message) == (
        404,
        "Servable not found for request: Specific(m, 9)",
    )


# -- real servers ---------------------------------------------------------------------------


def copy_version(model_repo: Path, version: int, model_dir: Path, as_version: int | None = None) -> Path:
    """Publish a version as users should: copy beside it, then rename into place (atomic)."""
    target = model_dir / str(version if as_version is None else as_version)
    staging = model_dir / f".incoming-{target.name}"
    shutil.copytree(model_repo / "anomaly" / str(version), staging)
    staging.rename(target)
    return target


def write_config(path: Path, body: str, base_path: Path) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(
        f"model_config_list {{ config {{ name: 'anomaly' base_path: '{base_path}' "
        f"model_platform: 'tensorflow' {body} }} }}\n"
    )
    staging.rename(path)


@dataclass
class Load:
    """A client sending predictions back to back on its own thread, recording every answer."""

    url: str
    path: str = PREDICT
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set() and len(self.answers) < 20_000:
                response = client.post(self.path, json=BODY)
                self.answers.append(
                    (time.time(), response.status_code, response.headers.get("x-model-version"))
                )
                time.sleep(0.005)

    def failures(self) -> list[tuple[float, int, str | None]]:
        return [answer for answer in self.answers if answer[1] != 200]

    def versions(self) -> list[str | None]:
        return [version for _, _, version in self.answers]


@pytest.fixture
def load_on() -> Iterator:
    started: list[tuple[Load, threading.Thread]] = []

    def start(server: ServerProcess, path: str = PREDICT) -> Load:
        load = Load(server.url, path)
        thread = threading.Thread(target=load.run, daemon=True)
        thread.start()
        started.append((load, thread))
        return load

    yield start
    for load, thread in started:
        load.stop.set()
        thread.join(timeout=60)


def wait_for(description: str, predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting until {description}")


def status_of(client: httpx.Client) -> dict[str, tuple[str, str]]:
    statuses = client.get("/v1/models/anomaly").json()["model_version_status"]
    return {s["version"]: (s["state"], s["status"]["error_message"]) for s in statuses}


@pytest.fixture
def live_repo(tmp_path: Path, model_repo: Path) -> Path:
    """A repository holding anomaly version 1 only; the tests publish more into it."""
    model_dir = tmp_path / "repo" / "anomaly"
    model_dir.mkdir(parents=True)
    copy_version(model_repo, 1, model_dir)
    return model_dir


def test_a_published_version_takes_over_without_a_failed_request(live_repo, model_repo, log_dir, load_on):
    server = start_server(
        live_repo.parent, log_dir, "versions-swap", model_name="anomaly", file_system_poll_wait_seconds=POLL
    )
    try:
        server.wait_ready()
        load = load_on(server)
        wait_for("answers from version 1", lambda: "1" in load.versions())
        copy_version(model_repo, 2, live_repo)
        wait_for("answers from version 2", lambda: load.versions()[-1:] == ["2"])
        with server.client() as client:
            wait_for("version 1 unloaded", lambda: status_of(client).get("1", ("",))[0] == "END")
            assert status_of(client) == {"2": ("AVAILABLE", ""), "1": ("END", "")}
        time.sleep(0.5)
        load.stop.set()
        assert load.failures() == []
        versions = load.versions()
        flipped = versions.index("2")
        assert set(versions[:flipped]) == {"1"} and set(versions[flipped:]) == {"2"}, "v1 answered after v2"
        log = server.log()
        assert (
            log.index("version 2 available")
            < log.index("unloading version 1")
            < log.index("version 1 unloaded")
        ), "the old version was unloaded before the new one was available"
    finally:
        server.stop()


def test_a_version_that_fails_to_load_never_serves_and_is_reported(live_repo, model_repo, log_dir, load_on):
    server = start_server(
        live_repo.parent, log_dir, "versions-broken", model_name="anomaly", file_system_poll_wait_seconds=POLL
    )
    try:
        server.wait_ready()
        load = load_on(server)
        broken = live_repo / ".incoming-3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        broken.rename(live_repo / "3")
        with server.client() as client:
            wait_for("version 3 failed", lambda: status_of(client).get("3", ("",))[0] == "END")
            states = status_of(client)
            assert states["1"] == ("AVAILABLE", "")
            assert "DecodeError" in states["3"][1] or "Error" in states["3"][1], states
            raw = client.get("/v1/models/anomaly/versions/3").json()["model_version_status"][0]
            assert raw["status"]["error_code"] != "OK"
            ready = client.get("/v2/models/anomaly/versions/3/ready")
            assert ready.status_code == 503
            assert ready.json()["state"] == "END" and ready.json()["error"] == states["3"][1]
            assert client.get("/v2/models/anomaly/versions/1/ready").status_code == 200
            assert client.get("/v2/health/ready").status_code == 200, "a failed new version unreadied the pod"
            metrics = client.get("/metrics").text
            assert metric_value(metrics, "tfms_model_load_failures_total", model="anomaly", version="3") == 1
            assert metric_value(
                metrics, "tfms_model_version_state", model="anomaly", version="3", state="END"
            )
            time.sleep(1.0)  # several polls: the broken version is not retried while its files stay
            assert server.log().count("loading version 3") == 1
            # A fixed export (the files change) is tried again and takes over.
            shutil.rmtree(live_repo / "3")
            copy_version(model_repo, 2, live_repo, as_version=3)
            wait_for("version 3 serving", lambda: load.versions()[-1:] == ["3"])
        load.stop.set()
        assert load.failures() == []
        assert "failed to load and takes no traffic" in server.log()
        assert set(load.versions()) <= {"1", "3"}
    finally:
        server.stop()


def test_labels_and_policy_follow_the_config_file_without_a_restart(
    live_repo, model_repo, log_dir, load_on, tmp_path
):
    copy_version(model_repo, 2, live_repo)
    config = tmp_path / "models.config"
    labels = "version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 }"
    write_config(
        config, f"model_version_policy {{ specific {{ versions: 1 versions: 2 }} }} {labels}", live_repo
    )
    server = start_server(
        live_repo.parent,
        log_dir,
        "versions-labels",
        model_config_file=str(config),
        file_system_poll_wait_seconds=POLL,
        model_config_file_poll_wait_seconds=POLL,
    )
    try:
        server.wait_ready()
        pid = server.process.pid
        stable = load_on(server, "/v1/models/anomaly/labels/stable:predict")
        canary = load_on(server, "/v1/models/anomaly/labels/canary:predict")
        wait_for("both labels answer", lambda: stable.versions() and canary.versions())
        assert set(stable.versions()) == {"1"} and set(canary.versions()) == {"2"}
        with server.client() as client:
            assert client.post("/v1/models/anomaly/versions/1:predict", json=BODY).status_code == 200
            assert client.post("/v1/models/anomaly:predict", json=BODY).headers["x-model-version"] == "2"
            # Promote: stable -> 2 (the documented second config of serving_config.md).
            promoted = "version_labels { key: 'stable' value: 2 } version_labels { key: 'canary' value: 2 }"
            write_config(
                config,
                f"model_version_policy {{ specific {{ versions: 1 versions: 2 }} }} {promoted}",
                live_repo,
            )
            wait_for("stable names version 2", lambda: stable.versions()[-1:] == ["2"])
            # A config that cannot be parsed is refused whole: nothing changes.
            config.write_text("model_config_list { config { name: 'anomaly' ")
            wait_for(
                "the refusal counted",
                lambda: metric_value(
                    client.get("/metrics").text, "tfms_model_config_reloads_total", outcome="refused"
                ),
            )
            assert (
                client.post("/v1/models/anomaly/labels/stable:predict", json=BODY).headers["x-model-version"]
                == "2"
            )
            # Policy change: only version 2 -> version 1 is unloaded, "all" brings it back.
            write_config(
                config, f"model_version_policy {{ specific {{ versions: 2 }} }} {promoted}", live_repo
            )
            wait_for("version 1 unloaded", lambda: status_of(client).get("1", ("",))[0] == "END")
            assert client.post("/v1/models/anomaly/versions/1:predict", json=BODY).status_code == 503
            write_config(config, f"model_version_policy {{ all {{ }} }} {promoted}", live_repo)
            wait_for("version 1 back", lambda: status_of(client).get("1", ("",))[0] == "AVAILABLE")
            metrics = client.get("/metrics").text
            assert metric_value(
                metrics, "tfms_model_version_label", model="anomaly", label="stable", version="2"
            )
            assert metric_value(metrics, "tfms_model_config_reloads_total", outcome="applied") == 3
        stable.stop.set()
        canary.stop.set()
        assert stable.failures() == [] and canary.failures() == []
        assert server.process.pid == pid and server.process.poll() is None
    finally:
        server.stop()


def test_latest_two_serves_both_newest_versions(live_repo, model_repo, log_dir, tmp_path):
    copy_version(model_repo, 2, live_repo)
    copy_version(model_repo, 1, live_repo, as_version=0)
    config = tmp_path / "models.config"
    write_config(config, "model_version_policy { latest { num_versions: 2 } }", live_repo)
    server = start_server(live_repo.parent, log_dir, "versions-latest-2", model_config_file=str(config))
    try:
        server.wait_ready()
        with server.client() as client:
            wait_for(
                "two versions",
                lambda: len([s for s in status_of(client).values() if s[0] == "AVAILABLE"]) == 2,
            )
            assert set(status_of(client)) == {"1", "2"}
            assert client.get("/v2/models/anomaly").json()["versions"] == ["1", "2"]
            assert client.post("/v1/models/anomaly/versions/0:predict", json=BODY).status_code == 404
    finally:
        server.stop()
