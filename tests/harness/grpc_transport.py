"""A prober transport that behaves like real gRPC clients: each client one long-lived channel.

`GrpcChannels(n)` opens n `grpc.insecure_channel`s at grpcio's defaults (no client-side
load balancing, no retries configured), each on a connection of its own, and sends each
request on the next channel in turn, so the n channels carry equal shares, like n client
processes. A channel is one
HTTP/2 connection through the Service: kube-proxy picks its pod when it connects, and it
stays there until the server sends a GOAWAY (max connection age, or a drain), when
grpcio reconnects by itself, through the Service again. Nothing is retried: a call that
ends in any status but OK is a failed request.

The request is a raw unary call: `Target.path` is the method (e.g.
`/inference.GRPCInferenceService/ModelInfer`) and `Target.body` the serialized request
message; `served_by` and `model_version` come from the answer's trailing metadata.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import Counter

import grpc

from harness.prober import RequestRecord, Target, failed_record

SERVED_BY = "x-served-by"
MODEL_VERSION = "x-model-version"
# grpcio shares one connection among a process's channels to the same target (its global
# subchannel pool): 8 channels were one HTTP/2 connection, all moving pods together. A
# local pool per channel gives each its own connection, as separate client processes have.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


class GrpcChannels:
    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError("a gRPC prober needs at least one channel")
        self.size = size
        self.description = f"{size} long-lived gRPC channels"
        self._channels: list[grpc.Channel] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._codes: Counter[str] = Counter()

    def _channel(self, target: Target, index: int) -> grpc.Channel:
        with self._lock:
            if not self._channels:
                # grpcio cannot bind a client's source address, so `Target.source_address`
                # is not used: few connections, opened once, rarely meet a stale NAT entry.
                address = f"{target.host}:{target.port}"
                self._channels = [
                    grpc.insecure_channel(address, options=OWN_CONNECTION) for _ in range(self.size)
                ]
            return self._channels[index]

    def send(self, target: Target, seq: int, scheduled_at: float, timeout_s: float) -> RequestRecord:
        index = next(self._turn) % self.size
        call = self._channel(target, index).unary_unary(target.path)
        sent_at = time.time()
        started = time.perf_counter()
        try:
            _, outcome = call.with_call(target.body, timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            with self._lock:
                self._codes[code.name] += 1
            record = failed_record(
                seq,
                scheduled_at,
                sent_at,
                time.perf_counter() - started,
                f"grpc {code.name}: {error.details()}",  # type: ignore[attr-defined]
            )
            return dataclasses.replace(record, connection=index)
        with self._lock:
            self._codes["OK"] += 1
        trailers = dict(outcome.trailing_metadata() or ())
        return RequestRecord(
            seq,
            scheduled_at,
            sent_at,
            time.perf_counter() - started,
            200,
            trailers.get(MODEL_VERSION),
            trailers.get(SERVED_BY),
            None,
            connection=index,
        )

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"channels": self.size, **{f"status_{code}": n for code, n in self._codes.items()}}
