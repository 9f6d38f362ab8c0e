"""What both protocols ask of the server: find a model version and signature, run it.

A request names a model and, optionally, a version or a label (TF Serving's
ServableRequest): no version means the newest available one (Latest), a label means the
version the model config's `version_labels` give it once that version is available
(versions.py). Finding it is dict lookups in the registry's current state, no lock.

Between `resolve` and the runner's `infer` a handler never awaits, so once the version
manager has taken a version out of the registry, every request that found it is already
in its runners, which finish it before the version is let go (`stop_runners`).
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
from modelserver.repository import ModelEntry, ModelRegistry
from modelserver.runtime import DEFAULT_SIGNATURE, INIT_OP_SIGNATURE, LoadedModel, Signature
from modelserver.settings import Settings
from modelserver.watchdog import InferenceWatch


def servable_spec(name: str, version: str | None, label: str | None) -> str:
    """How TF Serving names a request in its errors: Latest(m), Specific(m, 2), Label(m, x)."""
    if version is not None:
        return f"Specific({name}, {version})"
    if label is not None:
        return f"Label({name}, {label})"
    return f"Latest({name})"


def state_of(entry: ModelEntry, version: int) -> str:
    """A version's state in words, with the load error if it failed."""
    status = entry.versions.get(version)
    if status is None:
        return "not on disk or not in the model's version policy"
    if status.error_message:
        return f"{status.state.value}: failed to load: {status.error_message}"
    return status.state.value


def not_available(entry: ModelEntry) -> str:
    if entry.problem:
        return f"model {entry.name}: {entry.problem}"
    failed = [s for s in entry.versions.values() if s.error_message]
    if failed:
        newest = max(failed, key=lambda status: status.version)
        return f"model {entry.name} version {newest.version} failed to load: {newest.error_message}"
    return f"model {entry.name} is still loading"


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
        if version is None and label is None:
            model = entry.latest
            if model is None:
                raise errors.unavailable(
                    f"Servable not available for request: {spec}: {not_available(entry)}"
                )
            return model
        if label is not None:
            labelled = entry.labels.get(label)
            if labelled is None:
                pending = entry.config.labels.get(label)
                if pending is None:
                    # server_core.cc GetModelVersionForLabel: InvalidArgument
                    raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
                raise errors.unavailable(
                    f"Servable not available for request: {spec}: label {label} names version {pending}, "
                    f"which is {state_of(entry, pending)}"
                )
            number = labelled
        else:
            number = int(version or 0)
        model = entry.serving.get(number)
        if model is None:
            if number not in entry.versions:
                raise errors.not_found(f"Servable not found for request: {spec}")
            raise errors.unavailable(
                f"Servable not available for request: {spec}: version {number} is {state_of(entry, number)}"
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

    async def stop_runners(self, model: LoadedModel) -> None:
        """Finish what the version's runners hold and every call already on the inference thread."""
        runners = [self.runners[key] for key in self.runner_keys(model) if key in self.runners]
        # A retired version's queued requests get the request timeout to finish, as any request.
        budget = self.settings.request_timeout_seconds
        await asyncio.gather(*(runner.close(budget) for runner in runners))
        # The inference thread runs calls in order: once this no-op has run, so have they.
        await asyncio.get_running_loop().run_in_executor(self.executor, int)
        for key in self.runner_keys(model):
            self.runners.pop(key, None)

    @staticmethod
    def runner_keys(model: LoadedModel) -> list[tuple[str, int, str]]:
        return [(model.name, model.version, name) for name in model.signatures]

    def infer(self, model: LoadedModel, signature: Signature, inputs: Tensors) -> Awaitable[Tensors]:
        """The runner's answer, to await. Errors are the runner's: callers tag them with the version."""
        runner = self.runners.get((model.name, model.version, signature.name))
        if runner is None:  # unloaded in between (see the module docstring: not expected)
            raise errors.unavailable(f"Version {model.version} of {model.name} was just unloaded; retry")
        return runner.infer(inputs)

    async def close(self, timeout: float) -> None:
        """Stop every runner; each answers what it still holds within `timeout`."""
        await asyncio.gather(*(runner.close(timeout) for runner in self.runners.values()))
