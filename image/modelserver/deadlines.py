"""The request timeout, enforced by one periodic sweep instead of a timer per request.

`asyncio.timeout()` arms and cancels an event-loop timer for every request, which cost
about as much as the rest of the request's routing and bookkeeping together. Every
request shares the same timeout, so deadlines expire in arrival order: an
insertion-ordered dict of the tasks in flight, swept from its oldest end every
`resolution` seconds, cancels exactly the requests that have run out of time (at most
`resolution` late) with O(1) work per request.
"""

from __future__ import annotations

import asyncio

DEFAULT_RESOLUTION_SECONDS = 0.05


class RequestDeadlines:
    def __init__(self, timeout: float, resolution: float = DEFAULT_RESOLUTION_SECONDS) -> None:
        self.timeout = timeout
        self.resolution = min(resolution, timeout / 4)
        self.deadlines: dict[asyncio.Task[object], float] = {}
        self.expired: set[asyncio.Task[object]] = set()
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.Task[object]:
        """Put the current request's task under the timeout; pass it to `finish`."""
        # asyncio.current_task() looks the running loop up (a getpid() syscall in CPython);
        # with the loop of the last request it is a dict lookup, None if the loop changed.
        loop = self.loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is None:
            running = asyncio.get_running_loop()
            if running is not loop:
                self.sweeper = None  # armed on a loop that is gone
            loop = self.loop = running
            task = asyncio.current_task(loop)
        assert loop is not None and task is not None, "a request runs in a task"
        self.deadlines[task] = loop.time() + self.timeout
        if self.sweeper is None:
            self.sweeper = loop.call_later(self.resolution, self.sweep)
        return task

    def finish(self, task: asyncio.Task[object]) -> bool:
        """Release the task; True when the timeout cancelled it (its cancellation is then undone)."""
        self.deadlines.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            task.uncancel()
            return True
        return False

    def sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.deadlines:
            task, deadline = next(iter(self.deadlines.items()))
            if deadline > now:
                break
            del self.deadlines[task]
            self.expired.add(task)
            task.cancel()
        self.sweeper = loop.call_later(self.resolution, self.sweep) if self.deadlines else None
