"""Prometheus metrics, in a registry of the server's own (explicitly wired, no globals)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Requests for models the server does not serve share one label value, so a client
# probing random names cannot blow up the metric's cardinality.
UNKNOWN_MODEL = "_unknown"


class RequestStats:
    """Request count and latency, kept as plain numbers and turned into metrics at scrape time.

    prometheus_client's labels() lookup plus Counter.inc() and Histogram.observe() take
    locks on every request; updated only from the event loop and read only by /metrics
    (also on the loop), these need none. Exposed as tfms_requests_total and
    tfms_request_duration_seconds, like a Counter and a Histogram would be.
    """

    def __init__(self) -> None:
        # (protocol, model, version, status) -> [count, seconds, per-bucket counts (+Inf last)]
        self.series: dict[tuple[str, str, str, int], list] = {}

    def record(self, protocol: str, model: str, version: str, status: int, seconds: float) -> None:
        key = (protocol, model, version, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        series[0] += 1
        series[1] += seconds
        series[2][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tfms_requests",
            "HTTP requests answered, by protocol, model, model version and HTTP status",
            labels=("protocol", "model", "version", "status"),
        )
        latency = HistogramMetricFamily(
            "tfms_request_duration_seconds",
            "Time from request start to response, by protocol, model and model version",
            labels=("protocol", "model", "version"),
        )
        by_model: dict[tuple[str, str, str], list] = {}
        for (protocol, model, version, status), (count, seconds, buckets) in list(self.series.items()):
            requests.add_metric((protocol, model, version, str(status)), count)
            merged = by_model.setdefault((protocol, model, version), [0.0, [0] * len(buckets)])
            merged[0] += seconds
            merged[1] = [a + b for a, b in zip(merged[1], buckets, strict=True)]
        for labels, (seconds, buckets) in by_model.items():
            cumulative, running = [], 0
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric(labels, cumulative, seconds)
        yield requests
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = RequestStats()
        self.registry.register(self.requests)
        self.in_flight = Gauge(
            "tfms_requests_in_flight", "Requests being handled right now", registry=self.registry
        )
        self.batch_size = Histogram(
            "tfms_batch_size",
            "Rows (instances) per TensorFlow call",
            ("model", "version", "signature"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "tfms_batch_requests",
            "Requests sharing one TensorFlow call (count = calls, sum = requests)",
            ("model", "version", "signature"),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tfms_batch_queue_depth",
            "Requests waiting for a TensorFlow call",
            ("model", "version", "signature"),
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "tfms_model_load_seconds",
            "Seconds to load a model version (SavedModel load, without warm-up)",
            ("model", "version"),
            registry=self.registry,
        )
        self.model_warmup_seconds = Gauge(
            "tfms_model_warmup_seconds",
            "Seconds to warm up a model version",
            ("model", "version"),
            registry=self.registry,
        )
        self.ready = Gauge("tfms_ready", "1 while the readiness probe answers 200", registry=self.registry)

    def watch_queue(self, model: str, version: str, signature: str, depth: Callable[[], int]) -> None:
        """Report a queue's depth at scrape time (no cost per request)."""
        self.queue_depth.labels(model, version, signature).set_function(depth)

    def exposition(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
