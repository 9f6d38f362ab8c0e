"""Getting requests to TensorFlow: adaptive batching, or one call per request.

Both runners hand the blocking TensorFlow call to the inference executor (one thread;
TensorFlow parallelizes inside the call with its intra-op threads), so the event loop
never blocks. A runner exists per (model, version, signature).

Batching: requests wait in a bounded queue; the batcher takes the oldest, then keeps
taking until it has `max_size` rows or the oldest has waited `max_wait` (it does not
wait when every request in flight is already in the batch), stacks the
inputs along dimension 0 (only requests whose other dimensions and dtypes match), makes
one TensorFlow call and hands each request its slice of the outputs. While a call runs,
new requests queue up, so under load batches grow by themselves and nobody waits longer
than one call plus `max_wait`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modelserver import errors
from modelserver.metrics import Metrics
from modelserver.runtime import Signature

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]


class Runner(Protocol):
    def infer(self, inputs: Tensors) -> Awaitable[Tensors]: ...

    async def close(self) -> None: ...


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


class InferenceCaller:
    """Makes one TensorFlow call on the executor and records it."""

    def __init__(
        self, signature: Signature, executor: Executor, metrics: Metrics, labels: RunnerLabels
    ) -> None:
        self.signature = signature
        self.executor = executor
        self.batch_size = metrics.batch_size.labels(labels.model, labels.version, labels.signature)
        self.batch_requests = metrics.batch_requests.labels(labels.model, labels.version, labels.signature)

    async def call(self, inputs: Mapping[str, np.ndarray], rows: int, requests: int) -> Tensors:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self.executor, self.signature.run, inputs)
        except Exception as error:
            raise translate_error(error) from error
        self.batch_size.observe(rows)
        self.batch_requests.observe(requests)
        return outputs


def leading_rows(inputs: Mapping[str, np.ndarray]) -> int | None:
    """Dimension 0 shared by every input, or None when they disagree (or one is a scalar)."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
            return None
        rows = array.shape[0]
    return rows


def stacking_key(inputs: Mapping[str, np.ndarray]) -> Hashable:
    """Requests can share a call only when every input matches beyond dimension 0."""
    if len(inputs) == 1:
        ((name, array),) = inputs.items()
        return name, array.shape[1:], array.dtype.str
    return tuple((name, array.shape[1:], array.dtype.str) for name, array in sorted(inputs.items()))


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
            return await self.caller.call(inputs, leading_rows(inputs) or 1, 1)
        finally:
            self.waiting -= 1

    async def close(self) -> None:
        self.closing = True


@dataclass(eq=False, slots=True)
class WorkItem:
    inputs: Tensors
    rows: int
    key: Hashable | None
    future: asyncio.Future[Tensors]
    enqueued_at: float


@dataclass
class BatchPolicy:
    max_size: int
    max_wait_seconds: float
    queue_size: int


def wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class Batcher:
    caller: InferenceCaller
    policy: BatchPolicy
    labels: RunnerLabels
    # HTTP requests in flight in the whole server: when the batch already holds all of
    # them, nobody can join it and waiting `max_wait` would only add latency.
    requests_in_flight: Callable[[], int]
    pending: collections.deque[WorkItem] = field(default_factory=collections.deque)
    # The batcher waits for the next request on this future (set by `infer`), not on an
    # asyncio.Event: one plain future per wait instead of Event bookkeeping per request.
    waiter: asyncio.Future[None] | None = None
    # While a batch is being collected: (requests, rows) already in it. An arriving request
    # then wakes the batcher only if that ends the wait (the batch is full, or every request
    # in flight is in it); otherwise the max-wait timer does, once per batch.
    collected: tuple[int, int] | None = None
    pending_rows: int = 0
    busy: bool = False  # taken requests not yet answered
    carried: WorkItem | None = None
    closing: bool = False
    task: asyncio.Task[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.batchable = self.caller.signature.batchable

    def start(self, metrics: Metrics) -> None:
        metrics.watch_queue(
            self.labels.model, self.labels.version, self.labels.signature, lambda: len(self.pending)
        )
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run_forever(), name=f"batcher-{self.labels}")

    def infer(self, inputs: Tensors) -> asyncio.Future[Tensors]:
        """The request's future, resolved with its rows of the outputs (no coroutine of its own)."""
        if self.closing:
            raise errors.unavailable("Server is shutting down")
        if len(self.pending) >= self.policy.queue_size:
            raise errors.resource_exhausted(
                f"Batch queue for {self.labels.model} is full "
                f"({self.policy.queue_size} requests waiting); retry later"
            )
        loop = self.loop
        assert loop is not None, "start() runs before requests"
        rows = leading_rows(inputs) if self.batchable else None
        key = stacking_key(inputs) if rows is not None else None
        future = loop.create_future()
        item = WorkItem(inputs, rows or 1, key, future, loop.time())
        self.pending.append(item)
        self.pending_rows += item.rows
        if self.waiter is not None and self._ends_wait():
            self._wake_batcher()
        return future

    def _ends_wait(self) -> bool:
        if self.collected is None:
            return True  # idle: any request starts a batch
        requests, rows = self.collected
        return (
            rows + self.pending_rows >= self.policy.max_size
            or self.requests_in_flight() <= requests + len(self.pending)
        )

    def _wake_batcher(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            wake(waiter)

    async def _arrival(self) -> None:
        """Until `infer` (or the max-wait timer) wakes the batcher."""
        assert self.loop is not None
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _take(self) -> WorkItem:
        item = self.pending.popleft()
        self.pending_rows -= item.rows
        return item

    async def _next_item(self) -> WorkItem:
        if self.carried is not None:
            item, self.carried = self.carried, None
            return item
        while not self.pending:
            self.busy = False
            await self._arrival()
        self.busy = True
        return self._take()

    async def _collect(self, first: WorkItem) -> list[WorkItem]:
        loop = self.loop
        assert loop is not None
        batch, rows = [first], first.rows
        deadline = first.enqueued_at + self.policy.max_wait_seconds
        timer: asyncio.TimerHandle | None = None
        try:
            while rows < self.policy.max_size:
                if not self.pending:
                    if deadline <= loop.time() or self.requests_in_flight() <= len(batch):
                        break
                    if timer is None:
                        timer = loop.call_at(deadline, self._wake_batcher)
                    self.collected = (len(batch), rows)
                    try:
                        await self._arrival()
                    finally:
                        self.collected = None
                    continue
                if rows + self.pending[0].rows > self.policy.max_size:
                    self.carried = self._take()
                    break
                item = self._take()
                batch.append(item)
                rows += item.rows
        finally:
            if timer is not None:
                timer.cancel()
        return [item for item in batch if not item.future.done()]

    async def _run_forever(self) -> None:
        while True:
            first = await self._next_item()
            batch: list[WorkItem] = []
            try:
                batch = await self._collect(first)
                groups: dict[Hashable, list[WorkItem]] = {}
                for position, item in enumerate(batch):
                    groups.setdefault(item.key if item.key is not None else ("alone", position), []).append(
                        item
                    )
                for group in groups.values():
                    await self._run_group(group)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let one bad batch stop the batcher
                log.exception("batcher for %s failed", self.labels)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(translate_error(error))

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
        names = list(group[0].inputs)
        stacked = {name: np.concatenate([item.inputs[name] for item in group]) for name in names}
        total = sum(item.rows for item in group)
        try:
            outputs = await self.caller.call(stacked, total, len(group))
        except errors.ServingError:
            # One request's bad values must not fail the requests it was batched with.
            for item in group:
                await self._run_alone(item)
            return
        if any(value.ndim == 0 or value.shape[0] != total for value in outputs.values()):
            for item in group:
                await self._run_alone(item)
            return
        start = 0
        for item in group:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result({name: value[start:end] for name, value in outputs.items()})
            start = end

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self.closing = True
        try:
            async with asyncio.timeout(5):
                while self.pending or self.carried is not None or self.busy:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.warning("batcher %s closed with %d requests still queued", self.labels, len(self.pending))
        if self.task is not None:
            self.task.cancel()
        for item in self.pending:
            if not item.future.done():
                item.future.set_exception(errors.unavailable("Server is shutting down"))
