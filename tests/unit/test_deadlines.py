"""The request timeout's sweep cancels exactly the requests that ran out of time."""

import asyncio

from modelserver.deadlines import RequestDeadlines


def test_only_expired_requests_are_cancelled_and_their_cancellation_is_undone():
    async def scenario():
        deadlines = RequestDeadlines(timeout=0.2, resolution=0.02)
        outcomes: dict[str, str] = {}

        async def request(name: str, seconds: float) -> None:
            task = deadlines.start()
            try:
                await asyncio.sleep(seconds)
                outcomes[name] = "answered"
            except asyncio.CancelledError:
                outcomes[name] = "cancelled"
            finally:
                if deadlines.finish(task):
                    outcomes[name] += " by the timeout"
                    assert task.cancelling() == 0

        await asyncio.gather(request("fast", 0.01), request("slow", 5.0), request("just-in-time", 0.1))
        return outcomes, deadlines

    outcomes, deadlines = asyncio.run(scenario())
    assert outcomes == {
        "fast": "answered",
        "slow": "cancelled by the timeout",
        "just-in-time": "answered",
    }
    assert not deadlines.deadlines and not deadlines.expired and deadlines.sweeper is None


def test_the_timeout_still_fires_when_the_same_deadlines_serve_a_new_event_loop():
    deadlines = RequestDeadlines(timeout=0.1, resolution=0.02)

    async def request() -> str:
        task = deadlines.start()
        try:
            await asyncio.sleep(5.0)
            return "answered"
        except asyncio.CancelledError:
            return "cancelled" if deadlines.finish(task) else "cancelled otherwise"

    async def abandoned() -> None:  # leaves a request and an armed sweeper on the first loop
        deadlines.start()

    asyncio.run(abandoned())
    assert deadlines.sweeper is not None
    assert asyncio.run(asyncio.wait_for(request(), 2.0)) == "cancelled"
