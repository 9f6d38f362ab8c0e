"""Steady, bounded HTTP load against one address, recording every scheduled request.

Open loop, like a real client population: requests leave on a fixed schedule whether or
not earlier ones have answered, so a stalled backend shows up as latency and errors
instead of as a quietly lower request rate. There is no concurrency cap that could hold
a request back: each one gets its own worker thread at its due time, so requests in
flight are bounded only by rate x timeout. A ceiling against runaway threads exists
(`max_in_flight`, far above rate x timeout), and a request that finds it reached is
recorded as failed at once (ProberOverload), never delayed. Falling behind the schedule
anyway (a starved scheduler) shows in each record's `sent_at - scheduled_at`, which
harness.guarantees judges.

Every scheduled request ends as exactly one record, numbered by `seq` from 0: an
unexpected exception in a worker becomes a failed record (ProberError), a request still
unanswered when the prober stops (after its timeout and a grace period) becomes a
failed record too. `ledger()` hands the record over with the number of requests
scheduled, so a checker can prove that sequence numbers are contiguous and that sent ==
recorded. Nothing is retried: a refused connection is a failed request.

Two transports, both real HTTP/1.1 over TCP:

- `NewConnections` (the default): every request on its own connection with
  `Connection: close`, so each one goes through the Service's load balancing again and a
  pod that vanishes cannot hide behind a pinned connection.
- `KeepAlivePool(n)`: n persistent connections, as ingress-nginx's upstream keepalive
  pool or a Go/Java HTTP client keeps them. Requests take the next free connection in
  turn (each of the n carries its share, like n keep-alive clients); a connection is
  reused until the server closes it (`Connection: close` on an answer, or a close the
  client notices before it writes, as Go's transport notices an idle connection's EOF
  from its background read), then reopened on its next turn. A request that fails on a
  reused connection is a failed request: unlike Go's transport, which retries a request
  on a fresh connection when nothing was written or the server closed an idle
  connection under it (`persistConn.shouldRetryRequest`), nothing is resent, so a drain
  that races a client's next request shows. When every connection is busy the request
  gets a connection of its own (closed after use, as connections beyond Go's
  MaxIdleConnsPerHost are), never a wait.

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

import dataclasses
import http.client
import itertools
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Linux: bind the source address now but choose the port at connect() time, with the
# connect-time algorithm (per destination, walking forward) rather than a random free port.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
MODEL_VERSION_HEADER = "X-Model-Version"
SERVED_BY_HEADER = "X-Served-By"
# Against runaway threads only: 30 req/s x 10 s timeout is 300 in flight at the worst.
MAX_IN_FLIGHT = 2000
# How long stop() waits beyond the timeout for workers still in flight.
STOP_GRACE_S = 5.0
# Error prefixes of requests the prober itself could not carry out (not the server's fault).
PROBER_FAULTS = ("ProberOverload", "ProberError")
# The load generator's CPU priority over the cluster (nice 0): see prioritise_load.
LOAD_NICENESS = -10
AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def prioritise_load(niceness: int = LOAD_NICENESS) -> str:
    """Give the calling thread, every thread and process it starts from now on, CPU priority.

    The probers stand for clients on other machines. On a small machine the cluster under
    test (three TensorFlow pods starting at once, the control plane, the node containers)
    shares the cores with them and can starve the probers' threads by over a second, which
    guarantees.sound then rightly refuses to believe. Linux niceness is per thread and
    inherited by threads and processes created later, so calling this from the test
    process's main thread before any prober starts covers every prober and worker. Needs
    CAP_SYS_NICE (root); without it the probers run at the default priority and the lag
    check still judges them. Returns a line saying which.

    A thread's niceness only orders it against threads of the same scheduling group. With
    autogroup scheduling (kernel.sched_autogroup_enabled, on in most distributions' kernels)
    every session is one group, weighed against the others (and against cgroups such as
    Docker's, which hold the kind nodes) by the group's own niceness: the test's session
    would get no more CPU than one node container. So the session's autogroup is raised too.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except OSError as exc:
        return (
            f"probers at default CPU priority (nice {os.getpriority(os.PRIO_PROCESS, 0)}): "
            f"could not set nice {niceness}: {exc}"
        )
    group = raise_autogroup(niceness)
    return f"probers at CPU priority nice {niceness}, above the cluster's pods (nice 0){group}"


def raise_autogroup(niceness: int, autogroup: Path = AUTOGROUP) -> str:
    """Set this session's autogroup niceness; what was done, as the tail of prioritise_load's line."""
    if not AUTOGROUP_ENABLED.is_file() or AUTOGROUP_ENABLED.read_text().strip() != "1":
        return ""
    try:
        autogroup.write_text(f"{niceness}\n")
    except OSError as exc:
        return f"; its session's autogroup stays at nice 0 ({exc}), so the priority holds only within it"
    return "; its session's autogroup too (autogroup scheduling weighs sessions before threads)"


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
    prober: str = ""
    # The keep-alive pool's connection slot that carried it (None: a connection of its own).
    connection: int | None = None
    # Sent on a connection that had already carried an earlier request.
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def finished_at(self) -> float:
        return self.sent_at + self.latency_s

    @property
    def prober_fault(self) -> bool:
        return (self.error or "").startswith(PROBER_FAULTS)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestRecord:
        return cls(**data)


def failed_record(
    seq: int, scheduled_at: float, sent_at: float, latency_s: float, error: str
) -> RequestRecord:
    return RequestRecord(seq, scheduled_at, sent_at, latency_s, None, None, None, error)


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


def exchange(
    connection: http.client.HTTPConnection, target: Target, headers: Mapping[str, str]
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request and its whole answer on an open connection."""
    connection.request(target.method, target.path, body=target.body, headers=dict(headers))
    response = connection.getresponse()
    return response, response.read()


def answered(
    seq: int,
    scheduled_at: float,
    sent_at: float,
    latency_s: float,
    response: http.client.HTTPResponse,
    payload: bytes,
) -> RequestRecord:
    error = None
    if response.status != 200:
        error = f"HTTP {response.status}: {payload[:200].decode('utf-8', 'replace')}"
    return RequestRecord(
        seq=seq,
        scheduled_at=scheduled_at,
        sent_at=sent_at,
        latency_s=latency_s,
        status=response.status,
        model_version=response.getheader(MODEL_VERSION_HEADER),
        served_by=response.getheader(SERVED_BY_HEADER),
        error=error,
    )


class Transport(Protocol):
    """How requests reach the target; `send` describes one request, whatever happened to it."""

    description: str

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord: ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


def send_once(target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
    """Send one request on a fresh connection and describe what happened."""
    sent_at = time.time()
    started = time.perf_counter()
    connection = open_connection(target, timeout_s)
    try:
        headers = {**target.headers, "Connection": "close", "Content-Length": str(len(target.body))}
        response, payload = exchange(connection, target, headers)
        return answered(seq, scheduled_at, sent_at, time.perf_counter() - started, response, payload)
    except (OSError, http.client.HTTPException) as exc:
        return failed_record(
            seq, scheduled_at, sent_at, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        )
    finally:
        connection.close()


class NewConnections:
    """Every request on a connection of its own (`Connection: close`)."""

    description = "a new connection per request"

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
        return send_once(target, seq, scheduled_at, timeout_s)

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {}


def closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can no longer carry a request: the server closed or reset it.

    An idle HTTP/1.1 connection has nothing to read, so readable means EOF, a reset, or
    bytes the server sent unasked (e.g. a 408 before closing); every HTTP client drops the
    connection then (Go: "Unsolicited response received on idle HTTP channel").
    """
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


@dataclass
class PoolSlot:
    index: int
    connection: http.client.HTTPConnection | None = None
    busy: bool = False
    kept: bool = True  # False: an overflow connection, closed after its one request


class KeepAlivePool:
    """n persistent connections taken in turn; see the module docstring for the model."""

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError("a keep-alive pool needs at least one connection")
        self.size = size
        self.description = f"a keep-alive pool of {size} connections"
        self._slots = [PoolSlot(index) for index in range(size)]
        self._cursor = 0
        self._overflow = itertools.count(size)
        self._lock = threading.Lock()
        self._counts = {
            "connections_opened": 0,
            "closed_by_server_answer": 0,  # an answer carried `Connection: close`
            "closed_by_server_idle": 0,  # found closed before reuse (EOF/reset while idle)
            "closed_after_error": 0,
            "overflow_connections": 0,
        }

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _acquire(self) -> PoolSlot:
        with self._lock:
            for step in range(self.size):
                slot = self._slots[(self._cursor + step) % self.size]
                if not slot.busy:
                    slot.busy = True
                    self._cursor = (slot.index + 1) % self.size
                    return slot
            self._counts["overflow_connections"] += 1
            return PoolSlot(next(self._overflow), busy=True, kept=False)

    def _release(self, slot: PoolSlot) -> None:
        if not slot.kept:
            self._drop(slot)
        with self._lock:
            slot.busy = False

    @staticmethod
    def _drop(slot: PoolSlot) -> None:
        if slot.connection is not None:
            slot.connection.close()
            slot.connection = None

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
        slot = self._acquire()
        try:
            return self._send_on(slot, target, seq, scheduled_at, timeout_s)
        finally:
            self._release(slot)

    def _send_on(
        self, slot: PoolSlot, target: Target, seq: int, scheduled_at: float, timeout_s: float
    ) -> RequestRecord:
        sent_at = time.time()
        started = time.perf_counter()
        if slot.connection is not None and closed_by_peer(slot.connection):
            self._drop(slot)
            self._count("closed_by_server_idle")
        reused = slot.connection is not None
        try:
            if slot.connection is None:
                connection = open_connection(target, timeout_s)
                connection.auto_open = 0  # never reconnect behind the record's back
                connection.connect()
                slot.connection = connection
                self._count("connections_opened")
            headers = {**target.headers, "Content-Length": str(len(target.body))}
            response, payload = exchange(slot.connection, target, headers)
            record = answered(seq, scheduled_at, sent_at, time.perf_counter() - started, response, payload)
            if response.will_close:
                self._drop(slot)
                self._count("closed_by_server_answer")
        except (OSError, http.client.HTTPException) as exc:
            self._drop(slot)
            self._count("closed_after_error")
            record = failed_record(
                seq, scheduled_at, sent_at, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
            )
        return dataclasses.replace(record, connection=slot.index, reused=reused)

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            self._drop(slot)


def wait_for_records(name: str, finished: Callable[[], int], count: int, timeout_s: float) -> None:
    """Block until `finished()` reaches `count`, or raise TimeoutError naming the prober."""
    deadline = time.monotonic() + timeout_s
    while finished() < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{name}: fewer than {count} requests finished within {timeout_s:.0f}s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Ledger:
    """A prober's account of itself: what it scheduled and what it recorded."""

    prober: str
    transport: str
    rate_per_s: float
    started_at: float | None
    stopped_at: float | None
    scheduled: int
    records: tuple[RequestRecord, ...]
    stats: Mapping[str, int] = field(default_factory=dict)


class Prober:
    """Sends `rate_per_s` requests per second to a target until stopped or a bound is hit."""

    def __init__(
        self,
        target: Target,
        rate_per_s: float,
        max_duration_s: float,
        max_requests: int | None = None,
        timeout_s: float = 10.0,
        name: str = "probe",
        transport: Transport | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        stop_grace_s: float = STOP_GRACE_S,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.on_record = on_record
        self.target = target
        self.rate_per_s = rate_per_s
        self.max_duration_s = max_duration_s
        self.max_requests = max_requests if max_requests is not None else int(rate_per_s * max_duration_s) + 1
        self.timeout_s = timeout_s
        self.name = name
        self.transport: Transport = transport if transport is not None else NewConnections()
        self.max_in_flight = max_in_flight
        self.stop_grace_s = stop_grace_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._pending: set[int] = set()
        self._scheduled = 0
        self._sealed = False
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
        """Stop sending, wait for requests in flight (bounded), seal and return the record.

        A request still unanswered after its timeout and `stop_grace_s` is recorded as failed.
        """
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join()
        deadline = time.monotonic() + self.timeout_s + self.stop_grace_s
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not self._sealed:
                self._sealed = True
                now = time.time()
                for seq in sorted(self._pending):
                    scheduled_at = (self.started_at or now) + seq / self.rate_per_s
                    self._records.append(
                        dataclasses.replace(
                            failed_record(
                                seq,
                                scheduled_at,
                                scheduled_at,
                                now - scheduled_at,
                                f"ProberError: no answer within {self.timeout_s + self.stop_grace_s:.1f}s "
                                "(still in flight when the prober stopped)",
                            ),
                            prober=self.name,
                        )
                    )
                self._pending.clear()
        self.transport.close()
        return self.records()

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.is_alive()

    def records(self) -> list[RequestRecord]:
        """Records of the requests that have finished so far, in send order."""
        with self._lock:
            return sorted(self._records, key=lambda record: record.seq)

    def ledger(self) -> Ledger:
        with self._lock:
            scheduled = self._scheduled
            records = tuple(sorted(self._records, key=lambda record: record.seq))
        return Ledger(
            prober=self.name,
            transport=self.transport.description,
            rate_per_s=self.rate_per_s,
            started_at=self.started_at,
            stopped_at=self.stopped_at if self._sealed else None,
            scheduled=scheduled,
            records=records,
            stats=self.transport.stats(),
        )

    def wait_for_requests(self, count: int, timeout_s: float) -> None:
        """Block until `count` requests have finished (a minimum population, as Knative's prober)."""
        wait_for_records(self.name, lambda: len(self._records), count, timeout_s)

    def _schedule(self) -> None:
        origin = time.monotonic()
        wall_origin = self.started_at or time.time()
        interval = 1.0 / self.rate_per_s
        try:
            for seq in range(self.max_requests):
                offset = seq * interval
                if offset > self.max_duration_s:
                    break
                if self._stop.wait(max(0.0, origin + offset - time.monotonic())):
                    break
                self._dispatch(seq, wall_origin + offset)
        finally:
            self.stopped_at = time.time()

    def _dispatch(self, seq: int, scheduled_at: float) -> None:
        with self._lock:
            self._scheduled = seq + 1
            in_flight = len(self._pending)
            overloaded = in_flight >= self.max_in_flight
            if not overloaded:
                self._pending.add(seq)
        if overloaded:
            now = time.time()
            self._store(
                failed_record(
                    seq,
                    scheduled_at,
                    now,
                    0.0,
                    f"ProberOverload: {in_flight} requests already in flight (ceiling {self.max_in_flight})",
                )
            )
            return
        worker = threading.Thread(target=self._run_one, args=(seq, scheduled_at), daemon=True)
        try:
            worker.start()
        except RuntimeError as exc:  # the interpreter could not start another thread
            self._store(failed_record(seq, scheduled_at, time.time(), 0.0, f"ProberError: no worker: {exc}"))
            return
        self._workers.append(worker)
        if len(self._workers) > 256:
            self._workers = [thread for thread in self._workers if thread.is_alive()]

    def _run_one(self, seq: int, scheduled_at: float) -> None:
        began = time.time()
        try:
            record = self.transport.send(self.target, seq, scheduled_at, self.timeout_s)
        except Exception as exc:  # a bug below must show as a failed request, never a missing one
            record = failed_record(
                seq, scheduled_at, began, time.time() - began, f"ProberError: {type(exc).__name__}: {exc}"
            )
        self._store(record)

    def _store(self, record: RequestRecord) -> None:
        with self._lock:
            if self._sealed:  # stop() already recorded this request as unanswered
                return
            self._pending.discard(record.seq)
            stored = dataclasses.replace(record, prober=self.name)
            self._records.append(stored)
        if self.on_record is not None:
            self.on_record(stored)
