"""One runner's queue and its timing: admission (429), the batch being collected, drain.

`BatchQueue` lives as long as its model version is served; `CollectingBatch` from the
first request of a batch until the batch is handed to the runner. A request's future is
always answered: with its outputs, its error, or 503 when the queue closes before its
turn (see `close`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from modelserver import errors
from modelserver.batching.rows import Tensors, leading_rows, stacking_key

log = logging.getLogger(__name__)

RunBatch = Callable[[list["WorkItem"]], Awaitable[None]]
CLOSE_POLL_SECONDS = 0.005


@dataclass(eq=False, slots=True)
class WorkItem:
    inputs: Tensors
    rows: int
    key: Hashable | None  # None: this request runs alone
    future: asyncio.Future[Tensors]
    enqueued_at: float


@dataclass(frozen=True)
class BatchPolicy:
    max_size: int
    max_wait_seconds: float
    queue_size: int


class CollectingBatch:
    """The batch being filled: its requests, rows, deadline and whether its max wait is over."""

    __slots__ = ("deadline", "expired", "items", "rows", "timer")

    def __init__(self, first: WorkItem, max_wait_seconds: float) -> None:
        self.items = [first]
        self.rows = first.rows
        self.deadline = first.enqueued_at + max_wait_seconds
        # Set by the max-wait timer itself: the timer firing is what ends the wait, not a
        # comparison of `deadline` with a clock that may read a float ulp short of it.
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None

    def add(self, item: WorkItem) -> None:
        self.items.append(item)
        self.rows += item.rows


def answer_unavailable(items: list[WorkItem], message: str) -> int:
    """Fail every still-waiting future with 503; returns how many there were."""
    count = 0
    for item in items:
        if not item.future.done():
            item.future.set_exception(errors.unavailable(message))
            count += 1
    return count


class BatchQueue:
    def __init__(
        self,
        policy: BatchPolicy,
        name: str,
        batchable: bool,
        requests_in_flight: Callable[[], int],
        run_batch: RunBatch,
    ) -> None:
        self.policy = policy
        self.name = name
        self.batchable = batchable
        # HTTP requests in flight in the whole server: when the batch already holds all of
        # them, nobody can join it and waiting `max_wait` would only add latency.
        self.requests_in_flight = requests_in_flight
        self.run_batch = run_batch
        self.pending: collections.deque[WorkItem] = collections.deque()
        self.pending_rows = 0
        # The batcher waits for the next request on this future (set by `submit`), not on
        # an asyncio.Event: one plain future per wait instead of Event bookkeeping per request.
        self.waiter: asyncio.Future[None] | None = None
        self.collecting: CollectingBatch | None = None
        self.carried: WorkItem | None = None  # taken, but too big for the batch before
        self.running: list[WorkItem] = []  # the batch handed to the runner
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def depth(self) -> int:
        return len(self.pending)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run_forever(), name=f"batcher-{self.name}")

    def submit(self, inputs: Tensors) -> asyncio.Future[Tensors]:
        """The request's future, resolved with its rows of the outputs (no coroutine of its own)."""
        if self.closing:
            raise errors.unavailable("Server is shutting down")
        if len(self.pending) >= self.policy.queue_size:
            raise errors.resource_exhausted(
                f"Batch queue for {self.name} is full "
                f"({self.policy.queue_size} requests waiting); retry later"
            )
        loop = self.loop
        assert loop is not None, "start() runs before requests"
        rows = leading_rows(inputs) if self.batchable else None
        key = stacking_key(inputs) if rows is not None else None
        future = loop.create_future()
        item = WorkItem(inputs, 1 if rows is None else rows, key, future, loop.time())
        self.pending.append(item)
        self.pending_rows += item.rows
        if self.waiter is not None and self._ends_wait():
            self._wake_batcher()
        return future

    # ------------------------------------------------------------------ the batcher task

    def _ends_wait(self) -> bool:
        batch = self.collecting
        if batch is None:
            return True  # idle: any request starts a batch
        return batch.rows + self.pending_rows >= self.policy.max_size or self.requests_in_flight() <= len(
            batch.items
        ) + len(self.pending)

    def _wake_batcher(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _max_wait_over(self, batch: CollectingBatch) -> None:
        batch.expired = True
        if batch is self.collecting:
            self._wake_batcher()

    async def _arrival(self) -> None:
        """Until `submit` (or the max-wait timer) wakes the batcher."""
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
            await self._arrival()
        return self._take()

    async def _collect(self, first: WorkItem) -> CollectingBatch:
        loop = self.loop
        assert loop is not None
        batch = self.collecting = CollectingBatch(first, self.policy.max_wait_seconds)
        try:
            while batch.rows < self.policy.max_size:
                if not self.pending:
                    if (
                        batch.expired
                        or batch.deadline <= loop.time()
                        or self.requests_in_flight() <= len(batch.items)
                    ):
                        break
                    if batch.timer is None:
                        batch.timer = loop.call_at(batch.deadline, self._max_wait_over, batch)
                    await self._arrival()
                    continue
                if batch.rows + self.pending[0].rows > self.policy.max_size:
                    self.carried = self._take()
                    break
                batch.add(self._take())
        finally:
            if batch.timer is not None:
                batch.timer.cancel()
            self.collecting = None
        return batch

    async def _run_forever(self) -> None:
        while True:
            first = await self._next_item()
            self.running = [first]
            try:
                batch = await self._collect(first)
                self.running = [item for item in batch.items if not item.future.done()]
                if self.running:
                    await self.run_batch(self.running)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let one bad batch stop the batcher
                log.exception("batcher for %s failed", self.name)
                for item in self.running:
                    if not item.future.done():
                        item.future.set_exception(
                            errors.internal(f"Batch failed: {type(error).__name__}: {error}")
                        )
            finally:
                self.running = []

    # ------------------------------------------------------------------ shutdown

    def idle(self) -> bool:
        return not self.pending and self.carried is None and not self.running

    async def close(self, timeout: float) -> None:
        """Refuse new requests, finish the queued ones within `timeout`, answer the rest with 503."""
        self.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.idle() and loop.time() < deadline:
            await asyncio.sleep(CLOSE_POLL_SECONDS)
        collecting = self.collecting.items if self.collecting is not None else []
        carried = [self.carried] if self.carried is not None else []
        unfinished = [*self.running, *collecting, *carried, *self.pending]
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        cut = answer_unavailable(unfinished, "Server is shutting down: the drain timeout ran out")
        if cut:
            log.warning(
                "batcher %s closed with %d request(s) unanswered after %.1fs", self.name, cut, timeout
            )
        self.pending.clear()
        self.pending_rows = 0
        self.carried = None
