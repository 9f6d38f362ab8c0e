"""The batcher in-process (no TensorFlow): who waits for whom, and who gets which rows."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from modelserver.batching import Batcher, BatchPolicy, RunnerLabels
from modelserver.metrics import Metrics

LABELS = RunnerLabels("fake", "1", "serving_default")


@dataclass
class FakeSignature:
    batchable: bool = True


@dataclass
class FakeCaller:
    """Doubles its input; records the rows of every call."""

    signature: FakeSignature = field(default_factory=FakeSignature)
    calls: list[list[float]] = field(default_factory=list)

    async def call(self, inputs: dict[str, np.ndarray], rows: int, requests: int) -> dict[str, np.ndarray]:
        self.calls.append(inputs["x"].tolist())
        await asyncio.sleep(0)
        return {"y": inputs["x"] * 2}


def started(caller: FakeCaller, max_wait_s: float, in_flight: list[int], max_size: int = 32) -> Batcher:
    policy = BatchPolicy(max_size, max_wait_s, 16)
    batcher = Batcher(caller, policy, LABELS, lambda: in_flight[0])  # type: ignore[arg-type]
    batcher.start(Metrics())
    return batcher


def request(value: float) -> dict[str, np.ndarray]:
    return {"x": np.asarray([value], dtype=np.float32)}


def test_a_lone_request_is_not_held_for_max_wait():
    async def scenario() -> float:
        batcher = started(FakeCaller(), max_wait_s=5.0, in_flight=[1])
        began = time.monotonic()
        result = await batcher.infer(request(1.0))
        assert result["y"].tolist() == [2.0]
        await batcher.close()
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1.0


def test_a_request_arriving_within_max_wait_shares_the_call_and_each_gets_its_own_rows():
    async def scenario() -> FakeCaller:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=2.0, in_flight=[2])
        first = asyncio.ensure_future(batcher.infer(request(1.0)))
        await asyncio.sleep(0.05)
        second = await batcher.infer(request(3.0))
        assert (await first)["y"].tolist() == [2.0]
        assert second["y"].tolist() == [6.0]
        await batcher.close()
        return caller

    assert asyncio.run(scenario()).calls == [[1.0, 3.0]]


def test_the_oldest_request_waits_at_most_max_wait_for_company():
    async def scenario() -> float:
        batcher = started(FakeCaller(), max_wait_s=0.2, in_flight=[2])  # the other request never comes
        began = time.monotonic()
        await batcher.infer(request(1.0))
        await batcher.close()
        return time.monotonic() - began

    assert 0.2 <= asyncio.run(scenario()) < 1.5


def test_requests_queued_behind_a_call_form_the_next_batch():
    async def scenario() -> FakeCaller:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=0.0, in_flight=[8])
        results = await asyncio.gather(*(batcher.infer(request(float(v))) for v in range(8)))
        assert [r["y"].tolist() for r in results] == [[2.0 * v] for v in range(8)]
        await batcher.close()
        return caller

    calls = asyncio.run(scenario()).calls
    assert sorted(v for call in calls for v in call) == [float(v) for v in range(8)]
    assert len(calls) < 8, calls


def test_close_refuses_new_requests_after_finishing_the_queue():
    async def scenario() -> None:
        batcher = started(FakeCaller(), max_wait_s=0.0, in_flight=[1])
        assert (await batcher.infer(request(2.0)))["y"].tolist() == [4.0]
        await batcher.close()
        with pytest.raises(Exception, match="shutting down"):
            await batcher.infer(request(1.0))

    asyncio.run(scenario())


def test_arrivals_that_cannot_end_the_wait_do_not_wake_the_batcher():
    async def scenario() -> tuple[FakeCaller, int]:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=0.3, in_flight=[100])  # others in flight: worth waiting
        collecting_waits = 0
        arrival = batcher._arrival

        async def counted() -> None:
            nonlocal collecting_waits
            collecting_waits += batcher.collected is not None
            await arrival()

        batcher._arrival = counted  # type: ignore[method-assign]
        futures = []
        for value in range(5):
            futures.append(batcher.infer(request(float(value))))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*futures)
        assert [r["y"].tolist() for r in results] == [[2.0 * v] for v in range(5)]
        await batcher.close()
        return caller, collecting_waits

    caller, collecting_waits = asyncio.run(scenario())
    assert caller.calls == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    assert collecting_waits == 1, "the batcher was woken by arrivals that could not end its wait"


def test_the_arrival_that_fills_the_batch_ends_the_wait_at_once():
    async def scenario() -> tuple[FakeCaller, float]:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=5.0, in_flight=[100], max_size=4)
        began = time.monotonic()
        futures = []
        for value in range(4):
            futures.append(batcher.infer(request(float(value))))
            await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - began
        await batcher.close()
        return caller, elapsed

    caller, elapsed = asyncio.run(scenario())
    assert caller.calls == [[0.0, 1.0, 2.0, 3.0]]
    assert elapsed < 1.0
