"""The model repository on disk (TF Serving layout) and what the server knows about each version.

    <base>/<name>/<version>/saved_model.pb      version = a directory named by an integer
    <base>/<name>/<version>/saved_model.pbtxt   (the text form; the runtime reads either)

A directory name is a version when TF Serving would read it as one
(file_system_storage_path_source.cc: `absl::SimpleAtoi`): decimal digits with an
optional sign and surrounding whitespace, within int64, so `00000123` is version 123
(the layout of TF Serving's own test data). The directory actually on disk is the one
loaded. Two directories naming the same version (`123`, `00000123`): the last by name
wins, with a warning, as in TF Serving (which keeps the last one it lists). Negative
versions are skipped: no URL can name them.

The server loads one version per model: the newest, or the pinned TFMS_MODEL_VERSION.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelserver.runtime import LoadedModel

log = logging.getLogger(__name__)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
VERSION_NAME = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
INT64_MAX = 2**63 - 1


class ModelNotFoundError(LookupError):
    pass


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


def available_versions(base_path: Path, name: str) -> dict[int, Path]:
    """Versions of `name` on disk (ascending) and the directory of each."""
    model_dir = base_path / name
    if not model_dir.is_dir():
        return {}
    found: dict[int, Path] = {}
    for entry in sorted(model_dir.iterdir()):
        version = parse_version(entry.name)
        if version is None or not holds_saved_model(entry):
            continue
        if version in found:
            log.warning(
                "model %s: directories %s and %s both hold version %d; loading %s",
                name,
                found[version].name,
                entry.name,
                version,
                entry.name,
            )
        found[version] = entry
    return dict(sorted(found.items()))


def select_version(base_path: Path, name: str, pinned: int | None) -> tuple[int, Path]:
    """The version to serve and its directory: the pinned one, else the newest."""
    versions = available_versions(base_path, name)
    if not versions:
        raise ModelNotFoundError(
            f"No versions of model {name} found under {base_path / name} "
            "(expected <version>/saved_model.pb directories)"
        )
    if pinned is None:
        newest = max(versions)
        return newest, versions[newest]
    if pinned not in versions:
        raise ModelNotFoundError(
            f"Version {pinned} of model {name} not found under {base_path / name} "
            f"(found {', '.join(map(str, versions))})"
        )
    return pinned, versions[pinned]


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
    """One configured model: its versions' status and, once loaded, the served version."""

    name: str
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    served: LoadedModel | None = None
    load_error: str | None = None


class ModelRegistry:
    """Every configured model, filled in by the loader thread and read by request handlers."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._entries = {name: ModelEntry(name) for name in names}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> ModelEntry | None:
        return self._entries.get(name)

    def set_status(self, name: str, status: VersionStatus) -> None:
        with self._lock:
            self._entries[name].statuses[status.version] = status

    def set_served(self, name: str, model: LoadedModel) -> None:
        with self._lock:
            self._entries[name].served = model

    def set_load_error(self, name: str, message: str) -> None:
        with self._lock:
            self._entries[name].load_error = message

    def all_ready(self) -> bool:
        """Every configured model is served (loaded and warmed up); zero configured models is not ready."""
        return bool(self._entries) and all(entry.served is not None for entry in self._entries.values())
