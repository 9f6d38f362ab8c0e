"""Steady, bounded HTTP load against one address, recording every request.

Open loop, like a real client population: requests leave on a fixed schedule whether or
not earlier ones have answered, so a stalled backend shows up as latency and errors
instead of as a quietly lower request rate. Every request opens its own TCP connection
(`Connection: close`), so each one goes through the Service's load balancing again and a
pod that vanishes cannot hide behind a pinned keep-alive connection. Nothing is retried:
a refused connection is a failed request.

Each prober can send from its own loopback source address (any of 127.0.0.0/8). A
connection refused while a Service had no endpoints leaves an un-NATed SYN_SENT
conntrack entry for 120 s (kube-proxy clears those only for UDP; kubernetes#101607),
and a later connection that happens to reuse the same source address and port is
refused by it. Giving every test its own client address keeps one test's outage out of
the next test's record; within a test, the kernel's connect-time port choice walks
forward and does not come back to a port that soon.

The loop is bounded twice, by duration and by request count, and stops by itself.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Linux: bind the source address now but choose the port at connect() time, with the
# connect-time algorithm (per destination, walking forward) rather than a random free port.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MODEL_VERSION_HEADER = "X-Model-Version"
SERVED_BY_HEADER = "X-Served-By"


@dataclass(frozen=True)
class Target:
    """Where the prober sends requests and what it sends."""

    host: str
    port: int
    path: str
    body: bytes
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    source_address: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it. Times are wall-clock epoch seconds."""

    seq: int
    scheduled_at: float
    sent_at: float
    latency_s: float
    status: int | None
    model_version: str | None
    served_by: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def finished_at(self) -> float:
        return self.sent_at + self.latency_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRecord:
        return cls(**data)


class SourceBoundConnection(http.client.HTTPConnection):
    """An HTTPConnection from a given local address, its port still chosen at connect()."""

    def __init__(self, host: str, port: int, timeout: float, source_address: str) -> None:
        super().__init__(host, port, timeout=timeout)
        self._source_ip = source_address

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.settimeout(self.timeout)
            sock.bind((self._source_ip, 0))
            sock.connect((self.host, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def open_connection(target: Target, timeout_s: float) -> http.client.HTTPConnection:
    if target.source_address is None:
        return http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
    return SourceBoundConnection(target.host, target.port, timeout_s, target.source_address)


def send_once(target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
    """Send one request on a fresh connection and describe what happened."""
    sent_at = time.time()
    started = time.perf_counter()
    connection = open_connection(target, timeout_s)
    try:
        headers = {**target.headers, "Connection": "close", "Content-Length": str(len(target.body))}
        connection.request(target.method, target.path, body=target.body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        latency = time.perf_counter() - started
        error = None
        if response.status != 200:
            error = f"HTTP {response.status}: {payload[:200].decode('utf-8', 'replace')}"
        return RequestRecord(
            seq=seq,
            scheduled_at=scheduled_at,
            sent_at=sent_at,
            latency_s=latency,
            status=response.status,
            model_version=response.getheader(MODEL_VERSION_HEADER),
            served_by=response.getheader(SERVED_BY_HEADER),
            error=error,
        )
    except (OSError, http.client.HTTPException) as exc:
        return RequestRecord(
            seq=seq,
            scheduled_at=scheduled_at,
            sent_at=sent_at,
            latency_s=time.perf_counter() - started,
            status=None,
            model_version=None,
            served_by=None,
            error=f"{type(exc).__name__}: {exc}",
        )
    finally:
        connection.close()


class Prober:
    """Sends `rate_per_s` requests per second to a target until stopped or a bound is hit.

    `concurrency` caps requests in flight; when every slot is taken the next request waits
    for one (its `sent_at` then lags its `scheduled_at`, which the report shows).
    """

    def __init__(
        self,
        target: Target,
        rate_per_s: float,
        max_duration_s: float,
        max_requests: int | None = None,
        timeout_s: float = 10.0,
        concurrency: int = 32,
        name: str = "probe",
        send: Callable[[Target, int, float, float], RequestRecord] = send_once,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.target = target
        self.rate_per_s = rate_per_s
        self.max_duration_s = max_duration_s
        self.max_requests = max_requests if max_requests is not None else int(rate_per_s * max_duration_s) + 1
        self.timeout_s = timeout_s
        self.name = name
        self._send = send
        self._slots = threading.BoundedSemaphore(concurrency)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._workers: list[threading.Thread] = []
        self._scheduler: threading.Thread | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> Prober:
        if self._scheduler is not None:
            raise RuntimeError("prober already started")
        self.started_at = time.time()
        self._scheduler = threading.Thread(target=self._schedule, name=f"{self.name}-scheduler", daemon=True)
        self._scheduler.start()
        return self

    def stop(self) -> list[RequestRecord]:
        """Stop sending, wait for requests in flight (bounded by the timeout), return all records."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        for worker in list(self._workers):
            worker.join(self.timeout_s + 5)
        if self.stopped_at is None:
            self.stopped_at = time.time()
        return self.records()

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.is_alive()

    def records(self) -> list[RequestRecord]:
        """Records of the requests that have finished so far, in send order."""
        with self._lock:
            return sorted(self._records, key=lambda record: record.seq)

    def wait_for_requests(self, count: int, timeout_s: float) -> None:
        """Block until `count` requests have finished (a minimum population, as Knative's prober)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._records) >= count:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: fewer than {count} requests finished within {timeout_s:.0f}s")

    def _schedule(self) -> None:
        origin = time.monotonic()
        wall_origin = self.started_at or time.time()
        interval = 1.0 / self.rate_per_s
        for seq in range(self.max_requests):
            due = origin + seq * interval
            if due - origin > self.max_duration_s:
                break
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            # Wait for a free slot, but keep noticing stop() while the backend is stalled.
            while not self._slots.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            worker = threading.Thread(
                target=self._run_one, args=(seq, wall_origin + seq * interval), daemon=True
            )
            self._workers.append(worker)
            worker.start()
            if len(self._workers) > 256:
                self._workers = [thread for thread in self._workers if thread.is_alive()]
        self.stopped_at = time.time()

    def _run_one(self, seq: int, scheduled_at: float) -> None:
        try:
            record = self._send(self.target, seq, scheduled_at, self.timeout_s)
            with self._lock:
                self._records.append(record)
        finally:
            self._slots.release()
