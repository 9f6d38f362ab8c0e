"""Loading the configured models at start, off the event loop, one after another."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from pathlib import Path

from modelserver import PROCESS_STARTED
from modelserver.cpu import ThreadCounts, detect_thread_counts
from modelserver.inference import ModelService
from modelserver.metrics import Metrics
from modelserver.repository import (
    ModelNotFoundError,
    ModelRegistry,
    VersionState,
    VersionStatus,
    select_version,
)
from modelserver.runtime import LoadedModel, configure_threads, load_model, warm_up
from modelserver.settings import Settings

log = logging.getLogger(__name__)


def load_and_warm_up(counts: ThreadCounts, name: str, version: int, path: Path) -> tuple[LoadedModel, float]:
    """Runs on the inference thread: TensorFlow is imported here on first use."""
    configure_threads(counts)
    model = load_model(name, version, path)
    return model, warm_up(model)


async def load_all(
    settings: Settings, registry: ModelRegistry, service: ModelService, metrics: Metrics, executor: Executor
) -> None:
    if not registry.names:
        log.warning("no models configured (TFMS_MODEL_NAME is empty): the server will never be ready")
        return
    loop = asyncio.get_running_loop()
    counts = detect_thread_counts(
        settings.intra_op_threads, settings.inter_op_threads, settings.cpu_request_millicores
    )
    log.info("TensorFlow thread sizing: %s", counts.describe())
    for name in registry.names:
        try:
            version, path = select_version(settings.model_base_path, name, settings.model_version)
        except ModelNotFoundError as error:
            registry.set_load_error(name, str(error))
            log.error("model %s: %s", name, error)
            continue
        registry.set_status(name, VersionStatus(version, VersionState.LOADING))
        log.info("loading model %s version %d from %s", name, version, path)
        try:
            model, warmup_seconds = await loop.run_in_executor(
                executor, load_and_warm_up, counts, name, version, path
            )
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            registry.set_status(name, VersionStatus(version, VersionState.END, "UNKNOWN", message))
            registry.set_load_error(name, message)
            log.exception("model %s version %d failed to load", name, version)
            continue
        service.start_runners(model)
        registry.set_served(name, model)
        registry.set_status(name, VersionStatus(version, VersionState.AVAILABLE))
        metrics.model_load_seconds.labels(name, model.version_text).set(model.load_seconds)
        metrics.model_warmup_seconds.labels(name, model.version_text).set(warmup_seconds)
        log.info(
            "model %s version %d ready: loaded in %.2fs, warmed up in %.2fs; signatures %s",
            name,
            version,
            model.load_seconds,
            warmup_seconds,
            ", ".join(sorted(model.signatures)),
        )
    if registry.all_ready():
        log.info(
            "all models ready %.2fs after start: %s",
            time.monotonic() - PROCESS_STARTED,
            ", ".join(registry.names),
        )
