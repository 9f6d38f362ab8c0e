"""A Prober in a process of its own, as the e2e suites run them.

The probers stand for clients on other machines. In the test process they share one
interpreter with everything else the test does: the cluster watches, the Kubernetes
client's deserialisation, the garbage collector over the test's whole heap. During a
busy moment (three pods restarting at once), all of that held both probers back by up
to 1.5 s at the same instant, and guarantees.sound rightly refused to believe them. In a
child process a prober has its own interpreter, its own lock and a heap of nothing but
its records.

The child runs the ordinary harness.prober.Prober and streams each finished record back
over a queue; `stop()` has it stop, seal its record (requests still unanswered become
failed records) and send its ledger, which then replaces what was streamed. Whatever the
parent asks for in between (`records()`, `wait_for_requests`) comes from what has
arrived. A child that dies without a ledger leaves the records it sent and an unsealed
ledger, which guarantees.sound refuses by name.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from harness.grpc_transport import GrpcChannels
from harness.prober import (
    MAX_IN_FLIGHT,
    STOP_GRACE_S,
    KeepAlivePool,
    Ledger,
    NewConnections,
    Prober,
    RequestRecord,
    Target,
    Transport,
    wait_for_records,
)

# spawn, not fork: the test process has threads (watches, log followers), and a forked
# child inherits their locks in whatever state they were.
CONTEXT = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 60.0
LEDGER_SLACK_S = 30.0


@dataclass(frozen=True)
class ProberSpec:
    target: Target
    rate_per_s: float
    max_duration_s: float
    max_requests: int | None
    timeout_s: float
    name: str
    keep_alive: int
    grpc_channels: int
    max_in_flight: int
    stop_grace_s: float


def transport_for(keep_alive: int, grpc_channels: int) -> Transport:
    """gRPC channels, a keep-alive pool, or a new connection per request (the default)."""
    if keep_alive and grpc_channels:
        raise ValueError("a prober uses either keep-alive HTTP connections or gRPC channels, not both")
    if grpc_channels:
        return GrpcChannels(grpc_channels)
    return KeepAlivePool(keep_alive) if keep_alive else NewConnections()


def run_child(spec: ProberSpec, out: Any, stop: Connection) -> None:
    """The child's whole life: start, stream records, stop on request or at its bound, send the ledger."""
    transport = transport_for(spec.keep_alive, spec.grpc_channels)
    prober = Prober(
        spec.target,
        rate_per_s=spec.rate_per_s,
        max_duration_s=spec.max_duration_s,
        max_requests=spec.max_requests,
        timeout_s=spec.timeout_s,
        name=spec.name,
        transport=transport,
        max_in_flight=spec.max_in_flight,
        stop_grace_s=spec.stop_grace_s,
        on_record=lambda record: out.put(("record", record)),
    )
    prober.start()
    out.put(("started", prober.started_at))
    # Stopped by a message (or the parent's end of the pipe closing), never by a shared lock:
    # a process killed while waiting on a multiprocessing.Event leaves it unusable.
    while prober.running and not stop.poll(0.2):
        pass
    prober.stop()
    out.put(("ledger", prober.ledger()))


class ProcessProber:
    """harness.prober.Prober's interface, the prober itself running in a child process."""

    def __init__(
        self,
        target: Target,
        rate_per_s: float,
        max_duration_s: float,
        max_requests: int | None = None,
        timeout_s: float = 10.0,
        name: str = "probe",
        keep_alive: int = 0,
        grpc_channels: int = 0,
        max_in_flight: int = MAX_IN_FLIGHT,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.target = target
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self.stop_grace_s = stop_grace_s
        self.name = name
        self.keep_alive = keep_alive
        self.grpc_channels = grpc_channels
        self.description = transport_for(keep_alive, grpc_channels).description
        self._spec = ProberSpec(
            target, rate_per_s, max_duration_s, max_requests, timeout_s, name, keep_alive,
            grpc_channels, max_in_flight, stop_grace_s,
        )  # fmt: skip
        self._queue = CONTEXT.Queue()
        self._stop_reader, self._stop_writer = CONTEXT.Pipe(duplex=False)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._ledger: Ledger | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self.started_at: float | None = None

    def __enter__(self) -> ProcessProber:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> ProcessProber:
        if self._process is not None:
            raise RuntimeError("prober already started")
        self._process = CONTEXT.Process(
            target=run_child,
            args=(self._spec, self._queue, self._stop_reader),
            name=f"prober-{self.name}",
            daemon=True,
        )
        self._process.start()
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        if not self._started.wait(START_TIMEOUT_S) or self.started_at is None:
            self._process.kill()
            raise RuntimeError(
                f"prober {self.name}: its process did not start within {START_TIMEOUT_S:.0f}s "
                f"(exit code {self._process.exitcode})"
            )
        return self

    def stop(self) -> list[RequestRecord]:
        """Stop the child, wait (bounded) for its sealed ledger; returns the records."""
        if self._process is None:
            return []
        with contextlib.suppress(OSError):  # the child is gone already
            self._stop_writer.send("stop")
        self._finished.wait(self.timeout_s + self.stop_grace_s + LEDGER_SLACK_S)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        return self.records()

    @property
    def stopped_at(self) -> float | None:
        return self._ledger.stopped_at if self._ledger is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_alive() and self._ledger is None

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return sorted(self._records, key=lambda record: record.seq)

    def ledger(self) -> Ledger:
        if self._ledger is not None:
            return self._ledger
        records = tuple(self.records())
        return Ledger(
            prober=self.name,
            transport=self.description,
            rate_per_s=self.rate_per_s,
            started_at=self.started_at,
            stopped_at=None,
            scheduled=len(records),
            records=records,
        )

    def wait_for_requests(self, count: int, timeout_s: float) -> None:
        wait_for_records(self.name, lambda: len(self._records), count, timeout_s)

    def _read(self) -> None:
        while True:
            try:
                kind, payload = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._process is not None and not self._process.is_alive() and self._queue.empty():
                    break
                continue
            if kind == "started":
                self.started_at = payload
                self._started.set()
            elif kind == "record":
                with self._lock:
                    self._records.append(payload)
            elif kind == "ledger":
                with self._lock:
                    self._ledger = payload
                    self._records = list(payload.records)
                break
        self._started.set()
        self._finished.set()
