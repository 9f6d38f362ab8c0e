"""The model repository on disk (TF Serving layout) and what the server knows about each version.

    <base_path>/<version>/saved_model.pb      version = a directory named by an integer
    <base_path>/<version>/saved_model.pbtxt   (the text form; the runtime reads either)

A directory name is a version when TF Serving would read it as one
(file_system_storage_path_source.cc: `absl::SimpleAtoi`): decimal digits with an
optional sign and surrounding whitespace, within int64, so `00000123` is version 123
(the layout of TF Serving's own test data). The directory actually on disk is the one
loaded. Two directories naming the same version (`123`, `00000123`): the last by name
wins, with a warning, as in TF Serving (which keeps the last one it lists). Negative
versions are skipped: no URL can name them. A directory without saved_model.pb(txt) is
not a version yet (a copy still under way).

The registry is what requests read: each model's versions and their states (TF
Serving's ModelVersionStatus), and the versions that serve. It is changed only on the
event loop (by versions.VersionManager), and the parts requests read (`serving`,
`latest`, `labels`) are replaced whole, never changed in place, so a request sees one
consistent state with no lock and one dict lookup.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import KeysView, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from modelserver.model_config import ModelConfig, ServerConfig

if TYPE_CHECKING:
    from modelserver.runtime import LoadedModel

log = logging.getLogger(__name__)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
VERSION_NAME = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None when TF Serving would skip it."""
    match = VERSION_NAME.fullmatch(name)
    if match is None:
        return None
    version = int(match.group(1))
    if not 0 <= version <= INT64_MAX:
        return None
    return version


def holds_saved_model(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in SAVED_MODEL_FILES)


def available_versions(model_dir: Path) -> dict[int, Path]:
    """Versions under a model's base path (ascending) and the directory of each."""
    if not model_dir.is_dir():
        return {}
    found: dict[int, Path] = {}
    for entry in sorted(model_dir.iterdir()):
        version = parse_version(entry.name)
        if version is None or not holds_saved_model(entry):
            continue
        if version in found:
            log.warning(
                "%s: directories %s and %s both hold version %d; loading %s",
                model_dir,
                found[version].name,
                entry.name,
                version,
                entry.name,
            )
        found[version] = entry
    return dict(sorted(found.items()))


def fingerprint(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file under a version directory with its size and mtime: changes when the files do."""
    found = []
    for path in sorted(version_dir.rglob("*")):
        try:
            info = path.stat()
        except OSError:
            continue
        if path.is_file():
            found.append((str(path.relative_to(version_dir)), info.st_size, info.st_mtime_ns))
    return tuple(found)


class VersionState(enum.Enum):
    """TF Serving's ModelVersionStatus.State names."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass
class VersionStatus:
    version: int
    state: VersionState
    error_code: str = "OK"
    error_message: str = ""

    def as_tfserving(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "state": self.state.value,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass
class ModelEntry:
    """One configured model: every version the server knows, and the ones that serve."""

    config: ModelConfig
    # Every version seen, by state (the status APIs); END ones are kept for a while.
    versions: dict[int, VersionStatus] = field(default_factory=dict)
    # Read by every request, replaced whole: AVAILABLE versions, the newest of them, and
    # the labels that name an available version (label -> version).
    serving: Mapping[int, LoadedModel] = field(default_factory=lambda: MappingProxyType({}))
    latest: LoadedModel | None = None
    labels: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Whether readiness waits for this model: the models configured at start do; a model a
    # config reload adds does once it has been available (adding one never unreadies a pod).
    gates_readiness: bool = True
    # Why the model has nothing to load (base path missing, no versions), if so.
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def publish(self, serving: Mapping[int, LoadedModel]) -> None:
        self.serving = MappingProxyType(dict(sorted(serving.items())))
        self.latest = self.serving[max(self.serving)] if self.serving else None

    def set_labels(self, labels: Mapping[str, int]) -> None:
        self.labels = MappingProxyType(dict(sorted(labels.items())))


class ModelRegistry:
    """Every configured model; changed on the event loop only (see the module docstring)."""

    def __init__(self, config: ServerConfig) -> None:
        self.models: dict[str, ModelEntry] = {model.name: ModelEntry(model) for model in config.models}
        # Set once every version the config asks for at start has been loaded (or failed), so
        # a labelled request never meets a version still loading on a pod that is ready.
        self.started = False

    @property
    def names(self) -> KeysView[str]:
        return self.models.keys()

    def entry(self, name: str) -> ModelEntry | None:
        return self.models.get(name)

    def all_ready(self) -> bool:
        """Started, and every model that gates readiness has an available version (zero models: not ready)."""
        entries = self.models.values()
        return (
            self.started
            and any(entry.latest is not None for entry in entries)
            and all(entry.latest is not None for entry in entries if entry.gates_readiness)
        )
