"""The models to serve: TF Serving's model config file, or the single-model settings as shorthand.

`TFMS_MODEL_CONFIG_FILE` names a `ModelServerConfig` in protobuf text format, the file
TF Serving's `--model_config_file` reads, parsed with TF Serving's own generated protos
(tensorflow-serving-api) and protobuf's `text_format`:

    model_config_list {
      config {
        name: "anomaly"
        base_path: "/models/anomaly"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }

Checked as TF Serving's ServerCore checks it (server_core.cc): a model listed once,
base paths absolute, the platform `tensorflow` (or the deprecated `model_type:
TENSORFLOW`, never both). What this server does not do is refused with the field's name
instead of being ignored: `custom_model_config`, `logging_config`, remote base paths
(`gs://`, `s3://`), other platforms. An empty `model_platform` is accepted (TF Serving
refuses it) and means TensorFlow, and `specific {}` without versions is refused (TF
Serving warns and serves nothing, so the model never becomes available).

Without a config file, `TFMS_MODEL_NAME` (names, comma-separated) under
`TFMS_MODEL_BASE_PATH` is the config TF Serving builds from `--model_name` and
`--model_base_path`: each model's newest version (`latest {}`), or `specific` with the
pinned `TFMS_MODEL_VERSION`.

The protos import only google.protobuf, not TensorFlow, so the config is read (and a bad
one refused, exit code 2) before TensorFlow starts importing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from modelserver.settings import Settings

TENSORFLOW_PLATFORM = "tensorflow"
# A model name and a label travel in URL paths (/v1/models/{m}/labels/{l}).
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ModelConfigError(ValueError):
    """The model config cannot be served; the message names the file and the field."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve: TF Serving's ServableVersionPolicy."""

    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, on_disk: Collection[int]) -> set[int]:
        """The versions to serve (aspired) among those on disk."""
        if self.kind == "all":
            return set(on_disk)
        if self.kind == "specific":
            return self.versions & set(on_disk)
        return set(sorted(on_disk)[-self.num_versions :])

    def describe(self) -> str:
        if self.kind == "specific":
            return "specific {" + ", ".join(map(str, sorted(self.versions))) + "}"
        if self.kind == "all":
            return "all"
        return f"latest {self.num_versions}"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    # Where it came from, for logs and errors: the file, or the settings.
    origin: str
    # The file to re-read (TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS), if any.
    file: Path | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(model.name for model in self.models)

    def model(self, name: str) -> ModelConfig | None:
        return next((model for model in self.models if model.name == name), None)


def shorthand(settings: Settings) -> ServerConfig:
    """TFMS_MODEL_NAME / TFMS_MODEL_BASE_PATH / TFMS_MODEL_VERSION as a one-config-per-name list."""
    policy = (
        VersionPolicy()
        if settings.model_version is None
        else VersionPolicy("specific", versions=frozenset({settings.model_version}))
    )
    models = tuple(
        ModelConfig(name, settings.model_base_path / name, policy) for name in settings.model_names
    )
    return ServerConfig(models, "TFMS_MODEL_NAME")


def server_config(settings: Settings) -> ServerConfig:
    """The models the settings ask for: the config file when one is named, else the shorthand."""
    if settings.model_config_file is None:
        return shorthand(settings)
    return read_file(settings.model_config_file)


def read_file(path: Path) -> ServerConfig:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelConfigError(f"model config file {path}: cannot be read: {error}") from None
    return parse(text, str(path), path)


def parse(text: str, origin: str, file: Path | None = None) -> ServerConfig:
    """A ModelServerConfig in text format, checked; ModelConfigError says what is wrong and where."""
    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ModelConfigError(f"{origin}: not a ModelServerConfig in text format: {error}") from None
    which = message.WhichOneof("config")
    if which == "custom_model_config":
        raise ModelConfigError(f"{origin}: custom_model_config is not supported (use model_config_list)")
    models: list[ModelConfig] = []
    for index, entry in enumerate(message.model_config_list.config):
        model = model_config(entry, f"{origin}: model_config_list.config[{index}]")
        if any(known.name == model.name for known in models):
            # server_core.cc ValidateModelConfigList
            raise ModelConfigError(
                f"{origin}: Illegal to list model {model.name} multiple times in config list"
            )
        models.append(model)
    return ServerConfig(tuple(models), origin, file)


def model_config(entry: model_server_config_pb2.ModelConfig, where: str) -> ModelConfig:
    name = entry.name
    if not NAME.fullmatch(name):
        raise ModelConfigError(
            f"{where}: name {name!r} must be letters, digits, '_', '-' or '.' (not first): it goes in URLs"
        )
    where = f"{where} (model {name})"
    check_platform(entry, where)
    if entry.HasField("logging_config"):
        raise ModelConfigError(f"{where}: logging_config (request logging) is not supported")
    base_path = entry.base_path
    if URI_SCHEME.match(base_path):
        raise ModelConfigError(f"{where}: base_path {base_path!r}: only local paths are supported, not URIs")
    if not PurePosixPath(base_path).is_absolute():
        raise ModelConfigError(
            f"{where}: Expected model {name} to have an absolute path or URI; got base_path()={base_path!r}"
        )
    labels: dict[str, int] = {}
    for label, version in sorted(entry.version_labels.items()):
        if not NAME.fullmatch(label):
            raise ModelConfigError(
                f"{where}: version label {label!r} must be letters, digits, '_', '-' or '.' (not first)"
            )
        if version < 0:
            raise ModelConfigError(f"{where}: version label {label} names version {version}, not a version")
        labels[label] = version
    return ModelConfig(name, Path(base_path), version_policy(entry, where), MappingProxyType(labels))


def check_platform(entry: model_server_config_pb2.ModelConfig, where: str) -> None:
    """server_core.cc GetPlatform, with an empty platform meaning TensorFlow."""
    if entry.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if entry.model_platform:
            raise ModelConfigError(
                f"{where}: Illegal setting both model_type (deprecated) and model_platform"
            )
        if entry.model_type != model_server_config_pb2.TENSORFLOW:
            raise ModelConfigError(
                f"{where}: model_type {entry.model_type} is not supported (only TENSORFLOW)"
            )
        return
    if entry.model_platform not in ("", TENSORFLOW_PLATFORM):
        raise ModelConfigError(
            f"{where}: model_platform {entry.model_platform!r} is not supported "
            f"(only {TENSORFLOW_PLATFORM!r})"
        )


def version_policy(entry: model_server_config_pb2.ModelConfig, where: str) -> VersionPolicy:
    policy = entry.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        versions = frozenset(policy.specific.versions)
        if not versions:
            raise ModelConfigError(f"{where}: model_version_policy specific {{}} lists no versions")
        if min(versions) < 0:
            raise ModelConfigError(f"{where}: model_version_policy specific lists a negative version")
        return VersionPolicy("specific", versions=versions)
    # Unset is latest; file_system_storage_path_source.cc serves max(num_versions, 1).
    return VersionPolicy("latest", num_versions=max(policy.latest.num_versions, 1))
