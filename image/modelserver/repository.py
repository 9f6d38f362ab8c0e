"""The model repository on disk (TF Serving layout) and what the server knows about each version.

    <base>/<name>/<version>/saved_model.pb      version = a directory named by an integer

The server loads one version per model: the newest, or the pinned TFMS_MODEL_VERSION.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelserver.runtime import LoadedModel

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class ModelNotFoundError(LookupError):
    pass


def is_version_dir(path: Path) -> bool:
    return path.is_dir() and path.name.isdigit() and any((path / f).is_file() for f in SAVED_MODEL_FILES)


def available_versions(base_path: Path, name: str) -> list[int]:
    """Versions of `name` on disk, ascending."""
    model_dir = base_path / name
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_dir.iterdir() if is_version_dir(entry))


def select_version(base_path: Path, name: str, pinned: int | None) -> tuple[int, Path]:
    """The version to serve and its directory: the pinned one, else the newest."""
    versions = available_versions(base_path, name)
    if not versions:
        raise ModelNotFoundError(
            f"No versions of model {name} found under {base_path / name} "
            "(expected <version>/saved_model.pb directories)"
        )
    if pinned is None:
        return versions[-1], base_path / name / str(versions[-1])
    if pinned not in versions:
        raise ModelNotFoundError(
            f"Version {pinned} of model {name} not found under {base_path / name} "
            f"(found {', '.join(map(str, versions))})"
        )
    return pinned, base_path / name / str(pinned)


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
