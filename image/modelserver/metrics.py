"""Prometheus metrics, in a registry of the server's own (explicitly wired, no globals)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

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


# (model, version, state) of every version the server knows; (model, label, version) of each label.
VersionStates = Callable[[], Iterable[tuple[str, str, str]]]


class VersionStats:
    """tfms_model_version_state and tfms_model_version_label, read from the registry at scrape time."""

    def __init__(self, states: VersionStates, labels: VersionStates) -> None:
        self.states = states
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "tfms_model_version_state",
            "1 for each model version in its current state (TF Serving's LOADING, AVAILABLE, UNLOADING, END)",
            labels=("model", "version", "state"),
        )
        for model, version, state in self.states():
            states.add_metric((model, version, state), 1)
        labels = GaugeMetricFamily(
            "tfms_model_version_label",
            "1 for each version label and the version it names (version_labels of the model config)",
            labels=("model", "label", "version"),
        )
        for model, label, version in self.labels():
            labels.add_metric((model, label, version), 1)
        yield states
        yield labels


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
        self.model_load_failures = Counter(
            "tfms_model_load_failures",
            "Model versions that failed to load (the version never takes traffic)",
            ("model", "version"),
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "tfms_model_config_reloads",
            "Model config file changes seen by the poll, by outcome (applied, or refused and not applied)",
            ("outcome",),
            registry=self.registry,
        )

    def watch_versions(self, states: VersionStates, labels: VersionStates) -> None:
        """Report every version's state and every label at scrape time (no cost per request)."""
        self.registry.register(VersionStats(states, labels))

    def watch_queue(self, model: str, version: str, signature: str, depth: Callable[[], int]) -> None:
        """Report a queue's depth at scrape time (no cost per request)."""
        self.queue_depth.labels(model, version, signature).set_function(depth)

    def exposition(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
