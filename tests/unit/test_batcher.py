"""The batcher in-process (no TensorFlow): who waits for whom, and who gets which rows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import uvloop
from modelserver.batching.queue import BatchPolicy
from modelserver.batching.runners import BatchingRunner, RunnerLabels
from modelserver.errors import ServingError
from modelserver.metrics import Metrics

LABELS = RunnerLabels("fake", "1", "serving_default")
# A machine up for about 49.7 days: uvloop's clock is libuv's millisecond count since boot.
LONG_UPTIME_MS = 2**32


class LongUptimeLoop(uvloop.Loop):  # type: ignore[misc]
    """uvloop with its clock where it is after LONG_UPTIME_MS of uptime (still whole milliseconds).

    At this magnitude `t + 0.002` and the loop's reading 2 ms later are often a float ulp
    apart, so a batcher that trusts a comparison with loop.time() over its timer strands.
    """

    def time(self) -> float:
        return (round(super().time() * 1000) + LONG_UPTIME_MS) / 1000


# The server runs on uvloop (its timers are rounded to milliseconds); asyncio's own loop
# is what most tests elsewhere use. Every scenario here runs on each.
LOOPS = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
    "uvloop-long-uptime": LongUptimeLoop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Run a scenario coroutine to completion on the loop under test."""

    def run_on_loop(coroutine):
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(coroutine)

    return run_on_loop


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


def started(
    caller: FakeCaller, max_wait_s: float, in_flight: list[int], max_size: int = 32
) -> BatchingRunner:
    policy = BatchPolicy(max_size, max_wait_s, 16)
    batcher = BatchingRunner(caller, policy, LABELS, lambda: in_flight[0])  # type: ignore[arg-type]
    batcher.start(Metrics())
    return batcher


def request(value: float) -> dict[str, np.ndarray]:
    return {"x": np.asarray([value], dtype=np.float32)}


def test_a_lone_request_is_not_held_for_max_wait(run):
    async def scenario() -> float:
        batcher = started(FakeCaller(), max_wait_s=5.0, in_flight=[1])
        began = time.monotonic()
        result = await batcher.infer(request(1.0))
        assert result["y"].tolist() == [2.0]
        await batcher.close(timeout=5)
        return time.monotonic() - began

    assert run(scenario()) < 1.0


def test_a_request_arriving_within_max_wait_shares_the_call_and_each_gets_its_own_rows(run):
    async def scenario() -> FakeCaller:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=2.0, in_flight=[2])
        first = asyncio.ensure_future(batcher.infer(request(1.0)))
        await asyncio.sleep(0.05)
        second = await batcher.infer(request(3.0))
        assert (await first)["y"].tolist() == [2.0]
        assert second["y"].tolist() == [6.0]
        await batcher.close(timeout=5)
        return caller

    assert run(scenario()).calls == [[1.0, 3.0]]


def test_the_oldest_request_waits_at_most_max_wait_for_company(run):
    async def scenario() -> float:
        batcher = started(FakeCaller(), max_wait_s=0.2, in_flight=[2])  # the other request never comes
        began = time.monotonic()
        await batcher.infer(request(1.0))
        await batcher.close(timeout=5)
        return time.monotonic() - began

    # uvloop's clock counts whole milliseconds: the wait can end up to 1 ms short of 0.2 s.
    assert 0.199 <= run(scenario()) < 1.5


def test_requests_queued_behind_a_call_form_the_next_batch(run):
    async def scenario() -> FakeCaller:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=0.0, in_flight=[8])
        results = await asyncio.gather(*(batcher.infer(request(float(v))) for v in range(8)))
        assert [r["y"].tolist() for r in results] == [[2.0 * v] for v in range(8)]
        await batcher.close(timeout=5)
        return caller

    calls = run(scenario()).calls
    assert sorted(v for call in calls for v in call) == [float(v) for v in range(8)]
    assert len(calls) < 8, calls


def test_close_refuses_new_requests_after_finishing_the_queue(run):
    async def scenario() -> None:
        batcher = started(FakeCaller(), max_wait_s=0.0, in_flight=[1])
        assert (await batcher.infer(request(2.0)))["y"].tolist() == [4.0]
        await batcher.close(timeout=5)
        with pytest.raises(Exception, match="shutting down"):
            await batcher.infer(request(1.0))

    run(scenario())


def test_arrivals_that_cannot_end_the_wait_do_not_wake_the_batcher(run):
    async def scenario() -> tuple[FakeCaller, int]:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=0.3, in_flight=[100])  # others in flight: worth waiting
        collecting_waits = 0
        queue = batcher.queue
        arrival = queue._arrival

        async def counted() -> None:
            nonlocal collecting_waits
            collecting_waits += queue.collecting is not None
            await arrival()

        queue._arrival = counted  # type: ignore[method-assign]
        futures = []
        for value in range(5):
            futures.append(batcher.infer(request(float(value))))
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*futures)
        assert [r["y"].tolist() for r in results] == [[2.0 * v] for v in range(5)]
        await batcher.close(timeout=5)
        return caller, collecting_waits

    caller, collecting_waits = run(scenario())
    assert caller.calls == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    assert collecting_waits == 1, "the batcher was woken by arrivals that could not end its wait"


def test_the_arrival_that_fills_the_batch_ends_the_wait_at_once(run):
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
        await batcher.close(timeout=5)
        return caller, elapsed

    caller, elapsed = run(scenario())
    assert caller.calls == [[0.0, 1.0, 2.0, 3.0]]
    assert elapsed < 1.0


def test_no_request_waits_much_longer_than_max_wait_while_another_is_in_flight(run):
    """The max-wait timer must end the batch even when the loop's clock is coarser than the wait."""
    max_wait = 0.002
    bound = 25 * max_wait  # scheduling noise on a shared 2-core machine stays well under it

    async def scenario() -> list[float]:
        # One other request is always in flight, so every batch waits out its max wait.
        batcher = started(FakeCaller(), max_wait_s=max_wait, in_flight=[2])
        waits = []
        for value in range(300):
            began = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batcher.infer(request(float(value))), timeout=0.5)
            waits.append(time.monotonic() - began)
        await batcher.close(timeout=5)
        return waits

    waits = run(scenario())
    late = [round(w * 1000, 1) for w in waits if w > bound]
    assert not late, f"{len(late)} of {len(waits)} requests waited over {bound * 1000:g} ms (ms): {late[:10]}"


@dataclass
class BlockingCaller(FakeCaller):
    """A call that does not return until released (a long TensorFlow call in progress)."""

    release: asyncio.Event | None = None

    async def call(self, inputs: dict[str, np.ndarray], rows: int, requests: int) -> dict[str, np.ndarray]:
        self.calls.append(inputs["x"].tolist())
        assert self.release is not None
        await self.release.wait()
        return {"y": inputs["x"] * 2}


def test_close_answers_every_waiting_request_within_its_budget(run):
    async def scenario() -> tuple[float, list[str]]:
        caller = BlockingCaller(release=asyncio.Event())
        batcher = started(caller, max_wait_s=0.0, in_flight=[100], max_size=2)
        # One batch in its call, one request carried over (too big for it), others queued.
        futures = [batcher.infer(request(1.0)), batcher.infer(request(2.0))]
        await asyncio.sleep(0.01)
        futures.append(batcher.infer({"x": np.asarray([3.0, 4.0], dtype=np.float32)}))
        futures += [batcher.infer(request(float(v))) for v in range(5, 8)]
        began = time.monotonic()
        await batcher.close(timeout=0.3)
        took = time.monotonic() - began
        outcomes = []
        for future in futures:
            assert future.done(), "a request was left without an answer"
            error = future.exception()
            outcomes.append(f"{error.status}" if isinstance(error, ServingError) else repr(error))
        return took, outcomes

    took, outcomes = run(scenario())
    assert 0.3 <= took < 1.0
    assert outcomes == ["503"] * 6


def test_close_finishes_the_queue_when_the_budget_allows(run):
    async def scenario() -> list[list[float]]:
        batcher = started(FakeCaller(), max_wait_s=0.0, in_flight=[100], max_size=2)
        futures = [batcher.infer(request(float(v))) for v in range(5)]
        await batcher.close(timeout=5)
        return [future.result()["y"].tolist() for future in futures]

    assert run(scenario()) == [[2.0 * v] for v in range(5)]


def test_a_zero_row_request_shares_a_call_and_gets_zero_rows(run):
    async def scenario() -> tuple[FakeCaller, list[list[float]]]:
        caller = FakeCaller()
        batcher = started(caller, max_wait_s=0.5, in_flight=[3])
        futures = [
            batcher.infer(request(1.0)),
            batcher.infer({"x": np.zeros((0,), dtype=np.float32)}),
            batcher.infer(request(2.0)),
        ]
        results = [(await future)["y"].tolist() for future in futures]
        await batcher.close(timeout=5)
        return caller, results

    caller, results = run(scenario())
    assert results == [[2.0], [], [4.0]]
    assert caller.calls == [[1.0, 2.0]], "the batch was re-run request by request"
