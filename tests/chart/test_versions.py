"""model.config (TF Serving's model config in a ConfigMap the server re-reads) and the canary Deployment."""

from __future__ import annotations

from modelserver.model_config import VersionPolicy, parse

from chart.render import notes, template, template_error

SELECTOR = {"app.kubernetes.io/name": "tf-model-server", "app.kubernetes.io/instance": "demo"}
MODELS = {
    "config": [
        {
            "name": "anomaly",
            "versionPolicy": {"specific": {"versions": [1, 2]}},
            "versionLabels": {"stable": 1, "canary": 2},
        },
        {"name": "heavy", "basePath": "/data/heavy", "versionPolicy": {"latest": {"numVersions": 2}}},
        {"name": "all", "versionPolicy": {"all": {}}},
    ]
}


def config_maps(rendered) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in rendered.of_kind("ConfigMap")}


def deployments(rendered) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in rendered.of_kind("Deployment")}


def test_model_config_renders_a_file_the_server_reads_as_tf_serving_would():
    rendered = template({"model": MODELS})
    text = config_maps(rendered)["demo-tf-model-server-models"]["data"]["models.config"]
    config = parse(text, "the rendered ConfigMap")
    anomaly, heavy, every = config.models
    assert (anomaly.name, str(anomaly.base_path)) == ("anomaly", "/models/anomaly")
    assert anomaly.policy == VersionPolicy("specific", versions=frozenset({1, 2}))
    assert dict(anomaly.labels) == {"stable": 1, "canary": 2}
    assert (str(heavy.base_path), heavy.policy) == ("/data/heavy", VersionPolicy("latest", num_versions=2))
    assert every.policy == VersionPolicy("all")


def test_the_model_config_is_mounted_as_a_directory_and_named_to_the_server():
    rendered = template({"model": MODELS})
    settings = config_maps(rendered)["demo-tf-model-server"]["data"]
    assert settings["TFMS_MODEL_CONFIG_FILE"] == "/etc/tf-model-server/models.config"
    mounts = {m["name"]: m for m in rendered.server_container["volumeMounts"]}
    # No subPath: the kubelet updates a subPath mount never, a directory mount in place.
    assert mounts["model-config"] == {
        "name": "model-config",
        "mountPath": "/etc/tf-model-server",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in rendered.pod_spec["volumes"]}
    assert volumes["model-config"]["configMap"]["name"] == "demo-tf-model-server-models"
    assert "TFMS_MODEL_CONFIG_FILE" in settings and template().config["TFMS_MODEL_CONFIG_FILE"] == ""


def test_a_model_config_change_reaches_running_pods_or_rolls_them_when_not_re_read():
    promoted = {"config": [{**MODELS["config"][0], "versionLabels": {"stable": 2, "canary": 2}}]}
    before = template({"model": MODELS}).deployment["spec"]["template"]
    after = template({"model": promoted}).deployment["spec"]["template"]
    assert before == after, "with the config re-read, a label change must not roll the pods"
    once = {"server": {"modelConfigFilePollWaitSeconds": 0}}
    rolled = template({**once, "model": MODELS}).deployment["spec"]["template"]["metadata"]["annotations"]
    moved = template({**once, "model": promoted}).deployment["spec"]["template"]["metadata"]["annotations"]
    assert rolled["checksum/model-config"] != moved["checksum/model-config"]


def test_model_config_mistakes_are_refused_with_the_value_named():
    both = template_error({"model": MODELS, "server": {"modelConfigFile": "/etc/mine.config"}})
    assert "model.config and server.modelConfigFile" in both
    twice = template_error({"model": {"config": [{"name": "a"}, {"name": "a"}]}})
    assert "lists model a twice" in twice
    assert "versionPolicy" in template_error(
        {"model": {"config": [{"name": "a", "versionPolicy": {"newest": {}}}]}}
    )
    assert "versions" in template_error(
        {"model": {"config": [{"name": "a", "versionPolicy": {"specific": {"versions": []}}}]}}
    )


CANARY = {
    "replicaCount": 3,
    "canary": {"enabled": True, "replicaCount": 1, "image": {"tag": "v2"}, "server": {"modelVersion": 2}},
}


def test_the_canary_is_a_second_deployment_behind_the_same_service():
    rendered = template(CANARY)
    found = deployments(rendered)
    stable, canary = found["demo-tf-model-server"], found["demo-tf-model-server-canary"]
    assert stable["spec"]["replicas"] == 3 and canary["spec"]["replicas"] == 1
    assert stable["spec"]["selector"]["matchLabels"] == {**SELECTOR, "track": "stable"}
    assert canary["spec"]["selector"]["matchLabels"] == {**SELECTOR, "track": "canary"}
    service_selector = rendered.one("Service")["spec"]["selector"]
    assert service_selector == SELECTOR
    for deployment in (stable, canary):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service_selector.items() <= labels.items()
    images = {name: d["spec"]["template"]["spec"]["containers"][0]["image"] for name, d in found.items()}
    assert images == {
        "demo-tf-model-server": "tf-model-server:0.1.0",
        "demo-tf-model-server-canary": "tf-model-server:v2",
    }
    maps = config_maps(rendered)
    assert maps["demo-tf-model-server"]["data"]["TFMS_MODEL_VERSION"] == ""
    assert maps["demo-tf-model-server-canary"]["data"]["TFMS_MODEL_VERSION"] == "2"
    env_from = canary["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"configMapRef": {"name": "demo-tf-model-server-canary"}}]


def test_with_a_canary_the_hpa_scales_the_stable_track_and_the_pdb_covers_both():
    rendered = template({**CANARY, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "demo-tf-model-server"
    stable = deployments(rendered)["demo-tf-model-server"]
    # The HPA counts the pods its target's selector matches: the stable track's only.
    assert stable["spec"]["selector"]["matchLabels"]["track"] == "stable"
    assert "replicas" not in stable["spec"]
    assert deployments(rendered)["demo-tf-model-server-canary"]["spec"]["replicas"] == 1
    single = template({"replicaCount": 1, "canary": {"enabled": True}})
    assert single.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == SELECTOR
    assert not template({"replicaCount": 1}).has("PodDisruptionBudget")


def test_the_canary_s_server_values_are_checked_by_the_schema():
    assert "canary.server" in template_error({"canary": {"enabled": True, "server": {"modelVersoin": 2}}})


def test_notes_tell_how_to_promote_and_abandon_the_canary():
    text = notes(CANARY)
    assert "Canary: 1 pod(s) of tf-model-server:v2" in text
    assert "--set image.tag=v2 --set canary.enabled=false" in text
    assert "Abandon: helm upgrade demo ... --set canary.enabled=false" in text
    assert "Canary" not in notes({})
