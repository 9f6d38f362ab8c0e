"""The bare batching server: the ceiling plus the least any batching server on our stack must add.

It answers the bench's TF Serving row-format request exactly as ours does (the same
bytes: `bench.inprocess` checks), with the ceiling's body read and parsing plus only
what batching cannot do without:

- a future per request, resolved by one batcher task;
- the batch stacked and split as ours does (`batching.rows`), and run on the server's own
  inference thread (its executor, the same `Signature.run` call, so the same flat call);
- each request's rows of the outputs encoded as ours encodes them.

Nothing else: no routing, admission, deadlines, metrics, version lookup, hang watch,
error handling or max-wait timer (a batch is cut when it is full or holds every request
in flight, which the in-process driver's requests always reach). What ours costs beyond
this is the price of its features; what this costs beyond the ceiling is the price of
batching on asyncio and an inference thread, a floor no feature work can go under.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from modelserver.asgi import Receive, Response, Scope, Send, read_body, send_response
from modelserver.batching.rows import Tensors, split, stack
from modelserver.protocols.json import dumps, loads_object, may_hold_booleans
from modelserver.protocols.tfserving import row_inputs, row_predictions
from modelserver.runtime import Signature

from bench.peers.ceiling.app import MAX_BODY_BYTES


class BareBatcher:
    def __init__(self, signature: Signature, executor: Executor, max_batch: int, version: str) -> None:
        self.signature = signature
        self.executor = executor
        self.max_batch = max_batch
        self.pending: list[tuple[Tensors, asyncio.Future[Tensors]]] = []
        self.in_flight = 0
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.headers = [(b"x-served-by", b"bare"), (b"x-model-version", version.encode())]

    def batch_ready(self) -> bool:
        count = len(self.pending)
        return count > 0 and (count >= self.max_batch or count >= self.in_flight)

    def wake_if_ready(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and self.batch_ready():
            waiter.set_result(None)

    async def run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.batch_ready():
                self.waiter = loop.create_future()
                await self.waiter
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            stacked = stack([inputs for inputs, _ in batch])
            outputs = await loop.run_in_executor(self.executor, self.signature.run, stacked)
            rows = [len(next(iter(inputs.values()))) for inputs, _ in batch]
            parts = split(outputs, rows)
            assert parts is not None, "the bench's models have a batch dimension on every output"
            for (_, future), part in zip(batch, parts, strict=True):
                future.set_result(part)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if self.task is None:
            self.task = loop.create_task(self.run_batches(), name="bare-batcher")
        self.in_flight += 1
        try:
            body = await read_body(scope, receive, MAX_BODY_BYTES)
            inputs = row_inputs(loads_object(body)["instances"], self.signature, may_hold_booleans(body))
            future: asyncio.Future[Tensors] = loop.create_future()
            self.pending.append((inputs, future))
            self.wake_if_ready()
            outputs = await future
            answer = Response(dumps({"predictions": row_predictions(outputs)}))
            await send_response(send, answer, self.headers)
        finally:
            self.in_flight -= 1
            self.wake_if_ready()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
