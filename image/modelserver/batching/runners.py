"""The runners a model signature's requests go through, and the TensorFlow call they make.

`InferenceCaller` makes one call on the inference executor (one thread; TensorFlow
parallelizes inside the call with its intra-op threads) under the hang watch, so the
event loop never blocks and a call that never returns is seen (watchdog.py).
`BatchingRunner` feeds a `BatchQueue` and runs the batches it hands over;
`DirectRunner` makes one call per request (TFMS_BATCH_ENABLED=false).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modelserver import errors
from modelserver.batching.queue import BatchPolicy, BatchQueue, WorkItem
from modelserver.batching.rows import Tensors, leading_rows, split, stack
from modelserver.metrics import Metrics
from modelserver.runtime import Signature
from modelserver.watchdog import InferenceWatch

log = logging.getLogger(__name__)


class Runner(Protocol):
    def infer(self, inputs: Tensors) -> Awaitable[Tensors]: ...

    async def close(self, timeout: float) -> None: ...


def translate_error(error: BaseException) -> errors.ServingError:
    """An exception from a TensorFlow call, as the client should see it."""
    if isinstance(error, errors.ServingError):
        return error
    if hasattr(error, "error_code"):
        return errors.from_tensorflow(error)  # type: ignore[arg-type]
    if isinstance(error, (TypeError, ValueError)):
        return errors.invalid_argument(str(error))
    log.exception("inference failed", exc_info=error)
    return errors.internal(f"Inference failed: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class RunnerLabels:
    model: str
    version: str
    signature: str

    def __str__(self) -> str:
        return f"{self.model}/{self.version}:{self.signature}"


class InferenceCaller:
    """Makes one TensorFlow call on the executor, under the hang watch, and records it."""

    def __init__(
        self,
        signature: Signature,
        executor: Executor,
        metrics: Metrics,
        labels: RunnerLabels,
        watch: InferenceWatch,
    ) -> None:
        self.signature = signature
        self.executor = executor
        self.watch = watch
        self.what = str(labels)
        self.batch_size = metrics.batch_size.labels(labels.model, labels.version, labels.signature)
        self.batch_requests = metrics.batch_requests.labels(labels.model, labels.version, labels.signature)

    async def call(self, inputs: Mapping[str, np.ndarray], rows: int, requests: int) -> Tensors:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                self.executor, self.watch.run, self.what, self.signature.run, inputs
            )
        except Exception as error:
            raise translate_error(error) from error
        self.batch_size.observe(rows)
        self.batch_requests.observe(requests)
        return outputs


class DirectRunner:
    """One TensorFlow call per request (TFMS_BATCH_ENABLED=false), still off the event loop."""

    def __init__(
        self, caller: InferenceCaller, queue_size: int, metrics: Metrics, labels: RunnerLabels
    ) -> None:
        self.caller = caller
        self.queue_size = queue_size
        self.labels = labels
        self.waiting = 0
        self.closing = False
        metrics.watch_queue(labels.model, labels.version, labels.signature, lambda: self.waiting)

    async def infer(self, inputs: Tensors) -> Tensors:
        if self.closing:
            raise errors.unavailable("Server is shutting down")
        if self.waiting >= self.queue_size:
            raise errors.resource_exhausted(
                f"Too many requests queued for {self.labels.model} ({self.queue_size} waiting); retry later"
            )
        self.waiting += 1
        try:
            rows = leading_rows(inputs)
            return await self.caller.call(inputs, 1 if rows is None else rows, 1)
        finally:
            self.waiting -= 1

    async def close(self, timeout: float) -> None:
        """Refuse new requests; each one in flight awaits its own call (the drain timeout bounds it)."""
        self.closing = True


class BatchingRunner:
    """Requests of one signature through a `BatchQueue`; each batch shares calls where it can."""

    def __init__(
        self,
        caller: InferenceCaller,
        policy: BatchPolicy,
        labels: RunnerLabels,
        requests_in_flight: Callable[[], int],
    ) -> None:
        self.caller = caller
        self.labels = labels
        self.queue = BatchQueue(
            policy, str(labels), caller.signature.batchable, requests_in_flight, self.run_batch
        )

    def start(self, metrics: Metrics) -> None:
        labels = self.labels
        metrics.watch_queue(labels.model, labels.version, labels.signature, lambda: self.queue.depth)
        self.queue.start()

    def infer(self, inputs: Tensors) -> asyncio.Future[Tensors]:
        return self.queue.submit(inputs)

    async def close(self, timeout: float) -> None:
        await self.queue.close(timeout)

    async def run_batch(self, batch: list[WorkItem]) -> None:
        """Requests whose inputs match beyond dimension 0 share a call; the others run alone."""
        groups: dict[Hashable, list[WorkItem]] = {}
        for position, item in enumerate(batch):
            key = item.key if item.key is not None else ("alone", position)
            groups.setdefault(key, []).append(item)
        for group in groups.values():
            await self._run_group(group)

    async def _run_alone(self, item: WorkItem) -> None:
        try:
            outputs = await self.caller.call(item.inputs, item.rows, 1)
        except errors.ServingError as error:
            if not item.future.done():
                item.future.set_exception(error)
            return
        if not item.future.done():
            item.future.set_result(outputs)

    async def _run_group(self, group: list[WorkItem]) -> None:
        if len(group) == 1:
            await self._run_alone(group[0])
            return
        rows = [item.rows for item in group]
        try:
            outputs = await self.caller.call(stack([item.inputs for item in group]), sum(rows), len(group))
        except errors.ServingError:
            # One request's bad values must not fail the requests it was batched with.
            for item in group:
                await self._run_alone(item)
            return
        parts = split(outputs, rows)
        if parts is None:  # outputs without a batch dimension: each request needs its own call
            for item in group:
                await self._run_alone(item)
            return
        for item, part in zip(group, parts, strict=True):
            if not item.future.done():
                item.future.set_result(part)
