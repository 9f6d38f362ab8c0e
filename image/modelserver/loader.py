"""What runs on the loader thread: load and warm up a version, let go of one, look at the disk.

The loader thread is not the inference thread: a version loads and warms up while the
others keep answering (TensorFlow's own thread pools are shared; the load competes for
CPU, never for the inference thread). TensorFlow is imported here on first use.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from modelserver.cpu import ThreadCounts, detect_thread_counts
from modelserver.repository import available_versions, fingerprint
from modelserver.runtime import LoadedModel, configure_threads, load_model, warm_up
from modelserver.settings import Settings

log = logging.getLogger(__name__)


def thread_counts(settings: Settings) -> ThreadCounts:
    counts = detect_thread_counts(
        settings.intra_op_threads, settings.inter_op_threads, settings.cpu_request_millicores
    )
    log.info("TensorFlow thread sizing: %s", counts.describe())
    return counts


def load_and_warm_up(counts: ThreadCounts, name: str, version: int, path: Path) -> tuple[LoadedModel, float]:
    configure_threads(counts)
    model = load_model(name, version, path)
    return model, warm_up(model)


def release(model: LoadedModel) -> None:
    """Let go of a version nothing serves any more (its runners are closed, its calls done).

    A TF1 session is closed (it holds its graph's memory); the caller then drops its last
    reference and calls `collect`, since restored TF2 objects hold reference cycles.
    """
    close = getattr(model.owner, "close", None)
    if model.format != "TF2" and callable(close):
        close()


def collect() -> None:
    gc.collect()


@dataclass(frozen=True)
class DiskScan:
    """A model's base path as one poll saw it."""

    exists: bool
    versions: dict[int, Path]
    # Of the versions asked about (the ones that failed to load): their files now.
    fingerprints: dict[int, tuple[tuple[str, int, int], ...]]


def scan(base_path: Path, fingerprint_versions: frozenset[int] = frozenset()) -> DiskScan:
    if not base_path.is_dir():
        return DiskScan(False, {}, {})
    versions = available_versions(base_path)
    prints = {version: fingerprint(versions[version]) for version in fingerprint_versions & versions.keys()}
    return DiskScan(True, versions, prints)
