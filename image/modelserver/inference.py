"""What both protocols ask of the server: find a model version and signature, run it.

Version labels: this server loads one version per model, so the labels it knows all
name that version: `stable` and `latest`. Any other label (e.g. `canary`) is 404 — run a
canary as a second Helm release, and let the Service split traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from modelserver import errors
from modelserver.batching.queue import BatchPolicy
from modelserver.batching.rows import Tensors
from modelserver.batching.runners import BatchingRunner, DirectRunner, InferenceCaller, Runner, RunnerLabels
from modelserver.metrics import Metrics
from modelserver.repository import ModelRegistry
from modelserver.runtime import DEFAULT_SIGNATURE, INIT_OP_SIGNATURE, LoadedModel, Signature
from modelserver.settings import Settings
from modelserver.watchdog import InferenceWatch

VERSION_LABELS = ("stable", "latest")


def servable_spec(name: str, version: str | None, label: str | None) -> str:
    """How TF Serving names a request in its errors: Latest(m), Specific(m, 2), Label(m, x)."""
    if version is not None:
        return f"Specific({name}, {version})"
    if label is not None:
        return f"Label({name}, {label})"
    return f"Latest({name})"


class ModelService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics,
        executor: Executor,
        requests_in_flight: Callable[[], int],
        watch: InferenceWatch,
    ) -> None:
        self.settings = settings
        self.watch = watch
        self.requests_in_flight = requests_in_flight
        self.registry = registry
        self.metrics = metrics
        self.executor = executor
        self.runners: dict[tuple[str, int, str], Runner] = {}

    def resolve(self, name: str, version: str | None = None, label: str | None = None) -> LoadedModel:
        entry = self.registry.entry(name)
        spec = servable_spec(name, version, label)
        if entry is None:
            raise errors.not_found(f"Servable not found for request: {spec}")
        model = entry.served
        if model is None:
            reason = f"failed to load: {entry.load_error}" if entry.load_error else "is still loading"
            raise errors.unavailable(f"Servable not available for request: {spec}: model {name} {reason}")
        if version is not None and int(version) != model.version:
            raise errors.not_found(
                f"Servable not found for request: {spec} "
                f"(this server serves version {model.version} of {name})"
            )
        if label is not None and label not in VERSION_LABELS:
            raise errors.not_found(
                f"Unrecognized servable version label: {label} (known labels: {', '.join(VERSION_LABELS)}, "
                f"both naming version {model.version})"
            )
        return model

    @staticmethod
    def signature(model: LoadedModel, name: str | None) -> Signature:
        signature_name = name or DEFAULT_SIGNATURE
        signature = model.signatures.get(signature_name)
        reason = model.unavailable.get(signature_name)
        if reason is not None:
            error = errors.invalid_argument(
                f'Serving signature name: "{signature_name}" of model {model.name} version {model.version} '
                f"cannot be served by this server: {reason}"
            )
            error.model_version = model.version_text
            raise error
        if signature is None or signature_name == INIT_OP_SIGNATURE:
            available = ", ".join(sorted(s for s in model.signatures if s != INIT_OP_SIGNATURE))
            error = errors.invalid_argument(
                f'Serving signature name: "{signature_name}" not found in signature def '
                f"(available: {available})"
            )
            error.model_version = model.version_text
            raise error
        return signature

    def start_runners(self, model: LoadedModel) -> None:
        """Create the model's runners (on the event loop) before requests can reach it."""
        policy = BatchPolicy(
            max_size=self.settings.batch_max_size,
            max_wait_seconds=self.settings.batch_max_wait_ms / 1000,
            queue_size=self.settings.batch_queue_size,
        )
        for signature in model.signatures.values():
            labels = RunnerLabels(model.name, model.version_text, signature.name)
            caller = InferenceCaller(signature, self.executor, self.metrics, labels, self.watch)
            runner: Runner
            if self.settings.batch_enabled:
                batching = BatchingRunner(caller, policy, labels, self.requests_in_flight)
                batching.start(self.metrics)
                runner = batching
            else:
                runner = DirectRunner(caller, self.settings.batch_queue_size, self.metrics, labels)
            self.runners[(model.name, model.version, signature.name)] = runner

    def infer(self, model: LoadedModel, signature: Signature, inputs: Tensors) -> Awaitable[Tensors]:
        """The runner's answer, to await. Errors are the runner's: callers tag them with the version."""
        return self.runners[(model.name, model.version, signature.name)].infer(inputs)

    async def close(self, timeout: float) -> None:
        """Stop every runner; each answers what it still holds within `timeout`."""
        await asyncio.gather(*(runner.close(timeout) for runner in self.runners.values()))
