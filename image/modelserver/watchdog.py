"""The hang watch: which inference call is running on the inference thread, and since when.

TensorFlow runs on one dedicated thread. A call that never returns (a deadlocked op, a
custom op spinning) leaves every later request to time out with 504 while the process
still answers HTTP, so liveness alone would never restart it. The watch records each
call's start on that thread; once a call has run longer than `hung_after_seconds`
(far beyond the request timeout) the server reports itself not live (health.py), the
kubelet restarts the container, and the stuck thread's Python stack is logged once per
stuck call so the log says where it hangs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class RunningCall(NamedTuple):  # a tuple: made once per TensorFlow call, on the hot path
    what: str
    started: float
    thread_id: int
    thread_name: str


def thread_stack(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "(thread has no Python frame)"
    return "".join(traceback.format_stack(frame)).rstrip()


class InferenceWatch:
    def __init__(self, hung_after_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.hung_after_seconds = hung_after_seconds
        self.clock = clock
        self.current: RunningCall | None = None  # written by the inference thread only
        self.reported: RunningCall | None = None

    def run(self, what: str, function: Callable[..., Result], *args: Any) -> Result:
        """Call `function(*args)` on this (the inference) thread, recorded as the running call."""
        thread = threading.current_thread()
        self.current = RunningCall(what, self.clock(), thread.ident or 0, thread.name)
        try:
            return function(*args)
        finally:
            self.current = None

    def hung_call(self) -> tuple[RunningCall, float] | None:
        """The call running longer than the limit and for how long, else None; logs its stack once."""
        call = self.current
        if call is None:
            return None
        running_for = self.clock() - call.started
        if running_for <= self.hung_after_seconds:
            return None
        if self.reported is not call:
            self.reported = call
            log.error(
                "inference call %s has been running for %.0fs (limit %gs, TFMS_HUNG_INFERENCE_SECONDS): "
                "liveness now fails so the container is restarted. Stack of thread %s:\n%s",
                call.what,
                running_for,
                self.hung_after_seconds,
                call.thread_name,
                thread_stack(call.thread_id),
            )
        return call, running_for
