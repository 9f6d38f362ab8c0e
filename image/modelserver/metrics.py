"""Prometheus metrics, in a registry of the server's own (explicitly wired, no globals)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Requests for models the server does not serve share one label value, so a client
# probing random names cannot blow up the metric's cardinality.
UNKNOWN_MODEL = "_unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "tfms_requests",
            "HTTP requests answered, by protocol, model, model version and HTTP status",
            ("protocol", "model", "version", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tfms_request_duration_seconds",
            "Time from request start to response, by protocol, model and model version",
            ("protocol", "model", "version"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
