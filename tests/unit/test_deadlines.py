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
