"""TF Serving's model config file, read with its own protos (g3doc/serving_config.md's examples)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelserver.model_config import ModelConfigError, VersionPolicy, parse, server_config, shorthand
from modelserver.settings import Settings

# g3doc/serving_config.md, "Model Server Config File": the model_config_list example.
DOC_MODEL_CONFIG_LIST = """model_config_list {
  config {
    name: 'my_first_model'
    base_path: '/tmp/my_first_model/'
    model_platform: 'tensorflow'
  }
  config {
    name: 'my_second_model'
    base_path: '/tmp/my_second_model/'
    model_platform: 'tensorflow'
  }
}
"""

# g3doc/serving_config.md, "Assigning String Labels to Model Versions": its policy and labels,
# inside a model's config as the page describes.
DOC_LABELS = """model_version_policy {
  specific {
    versions: 42
    versions: 43
  }
}
version_labels {
  key: 'stable'
  value: 42
}
version_labels {
  key: 'canary'
  value: 43
}
"""


SEVEN = frozenset({7})


def one_model(body: str, name: str = "m", base_path: str = "/models/m") -> str:
    return f"model_config_list {{ config {{ name: '{name}' base_path: '{base_path}' {body} }} }}"


def test_the_documented_model_config_list():
    config = parse(DOC_MODEL_CONFIG_LIST, "models.config")
    assert config.names == ("my_first_model", "my_second_model")
    first = config.models[0]
    assert first.base_path == Path("/tmp/my_first_model")
    assert first.policy == VersionPolicy("latest", num_versions=1)
    assert dict(first.labels) == {}


def test_the_documented_labels_and_specific_policy():
    model = parse(one_model("model_platform: 'tensorflow' " + DOC_LABELS), "models.config").models[0]
    assert model.policy == VersionPolicy("specific", versions=frozenset({42, 43}))
    assert dict(model.labels) == {"canary": 43, "stable": 42}


@pytest.mark.parametrize(
    ("body", "policy"),
    [
        ("", VersionPolicy("latest", num_versions=1)),
        ("model_version_policy { latest { } }", VersionPolicy("latest", num_versions=1)),
        # file_system_storage_path_source.cc: max(num_versions, 1)
        ("model_version_policy { latest { num_versions: 0 } }", VersionPolicy("latest", num_versions=1)),
        ("model_version_policy { latest { num_versions: 3 } }", VersionPolicy("latest", num_versions=3)),
        ("model_version_policy { all { } }", VersionPolicy("all")),
        ("model_version_policy { specific { versions: 7 } }", VersionPolicy("specific", versions=SEVEN)),
    ],
)
def test_version_policies(body, policy):
    assert parse(one_model(body), "f").models[0].policy == policy


def test_each_policy_selects_what_tf_serving_aspires():
    on_disk = [1, 2, 5, 9]
    assert VersionPolicy("latest", num_versions=1).select(on_disk) == {9}
    assert VersionPolicy("latest", num_versions=2).select(on_disk) == {5, 9}
    assert VersionPolicy("latest", num_versions=10).select(on_disk) == {1, 2, 5, 9}
    assert VersionPolicy("all").select(on_disk) == {1, 2, 5, 9}
    assert VersionPolicy("specific", versions=frozenset({2, 3})).select(on_disk) == {2}
    assert VersionPolicy("latest").select([]) == set()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("model_config_list { config { name: 'm' base_path: '/m' } } nonsense", "not a ModelServerConfig"),
        (
            "model_config_list { config { name: 'm' base_path: '/m' } config { name: 'm' base_path: '/n' } }",
            "Illegal to list model m multiple times",
        ),
        (one_model("", base_path="models/m"), "absolute path"),
        (one_model("", base_path="gs://bucket/m"), "only local paths"),
        (one_model("model_platform: 'tflite'"), "model_platform 'tflite' is not supported"),
        (one_model("model_type: TENSORFLOW model_platform: 'tensorflow'"), "Illegal setting both"),
        (one_model("model_version_policy { specific { } }"), "specific {} lists no versions"),
        (one_model("logging_config { }"), "logging_config (request logging) is not supported"),
        (one_model("version_labels { key: 'a/b' value: 1 }"), "version label 'a/b'"),
        (one_model("", name="a:b"), "name 'a:b'"),
        ("custom_model_config { }", "custom_model_config is not supported"),
    ],
)
def test_what_is_refused_names_the_field(text, error):
    with pytest.raises(ModelConfigError) as raised:
        parse(text, "models.config")
    assert error in str(raised.value) and "models.config" in str(raised.value)


def test_the_deprecated_model_type_tensorflow_is_accepted():
    assert parse(one_model("model_type: TENSORFLOW"), "f").names == ("m",)


def test_the_single_model_settings_are_a_one_model_config_each(tmp_path):
    settings = Settings(model_base_path=tmp_path, model_names=("a", "b"), model_version=None)
    assert [(m.name, m.base_path, m.policy) for m in shorthand(settings).models] == [
        ("a", tmp_path / "a", VersionPolicy()),
        ("b", tmp_path / "b", VersionPolicy()),
    ]
    pinned = shorthand(Settings(model_base_path=tmp_path, model_names=("a",), model_version=3))
    assert pinned.models[0].policy == VersionPolicy("specific", versions=frozenset({3}))


def test_a_config_file_replaces_the_single_model_settings(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(DOC_MODEL_CONFIG_LIST)
    config = server_config(Settings(model_names=("anomaly",), model_config_file=path))
    assert config.names == ("my_first_model", "my_second_model") and config.file == path
    path.write_text("model_config_list {")
    with pytest.raises(ModelConfigError, match=str(path)):
        server_config(Settings(model_config_file=path))
    with pytest.raises(ModelConfigError, match="cannot be read"):
        server_config(Settings(model_config_file=tmp_path / "missing.config"))
