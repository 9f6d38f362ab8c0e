"""The e2e report writer and SLO arithmetic, from synthetic records (no cluster)."""

from __future__ import annotations

import json
import math

from harness import report, slo
from harness.cluster_events import ClusterEvent, endpoint_left_at, format_timeline, pod_ready_at
from harness.prober import RequestRecord

ORIGIN = 1_700_000_000.0


def request(seq: int, at: float, latency_ms: float = 10.0, version: str = "1", error: str | None = None):
    status = None if error else 200
    return RequestRecord(
        seq=seq,
        scheduled_at=ORIGIN + at,
        sent_at=ORIGIN + at,
        latency_s=latency_ms / 1000.0,
        status=status,
        model_version=None if error else version,
        served_by=None if error else f"pod-{seq % 3}",
        error=error,
    )


def deployment_event(at: float, ready: int, desired: int) -> ClusterEvent:
    detail = {
        "spec_replicas": desired,
        "ready": ready,
        "updated": ready,
        "unavailable": 0,
        "images": ["i:v2"],
    }
    return ClusterEvent(ORIGIN + at, "deployment", "tfms", "MODIFIED", detail)


def synthetic_upgrade() -> report.TestRecord:
    requests = [request(i, i * 0.1, version="1" if i < 50 else "2") for i in range(100)]
    requests[60] = request(60, 6.0, error="ConnectionRefusedError: [Errno 111] Connection refused")
    events = [deployment_event(0.0, 3, 3), deployment_event(4.0, 3, 3), deployment_event(8.0, 2, 3)]
    return report.TestRecord(
        test="tests/e2e/test_upgrade.py::test_rolling_upgrade[v1-v2]",
        started_at=ORIGIN,
        requests=requests,
        events=events,
        marks=[report.Mark(ORIGIN + 3.0, "helm upgrade")],
        slo_line="SLO test: synthetic",
        outcome="failed",
        facts={"rollout_s": 5.0},
        diagnostics={"pod-0/server": "log line"},
    )


def test_percentiles_and_summary():
    assert slo.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert slo.percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert math.isnan(slo.percentile([], 99))
    summary = slo.summarize(synthetic_upgrade().requests)
    assert (summary.total, summary.failed) == (100, 1)
    assert summary.versions == {"1": 50, "2": 49}
    assert summary.errors == {"ConnectionRefusedError": 1}
    assert summary.success_fraction == 0.99


def test_windows_in_flight_and_recovery():
    records = [
        request(0, 0.0, latency_ms=500),
        request(1, 0.2),
        request(2, 0.4, error="boom"),
        request(3, 0.9),
    ]
    assert [r.seq for r in slo.in_flight_at(records, ORIGIN + 0.3)] == [0]
    assert [r.seq for r in slo.sent_between(records, ORIGIN + 0.2, ORIGIN + 0.9)] == [1, 2]
    assert slo.first_success_after(records, ORIGIN + 0.3).seq == 3
    assert "seq=2" in slo.describe_failures(records, ORIGIN)


def test_slo_line_names_failures_latency_and_facts():
    line = slo.slo_line("rolling", slo.summarize(synthetic_upgrade().requests), rollout_s="5.0")
    assert line.startswith("SLO rolling: 100 requests, 1 failed (1.00%)")
    assert "versions v1=50 v2=49" in line and "rollout s 5.0" in line


def test_per_second_buckets():
    series = report.per_second(synthetic_upgrade().requests, ORIGIN)
    assert series.seconds == list(range(10))
    assert sum(series.sent) == 100 and series.failed[6] == 1
    assert series.by_version["1"][0] == 10 and series.by_version["2"][9] == 10


def test_writes_json_and_png_that_round_trip(tmp_path):
    record = synthetic_upgrade()
    json_path, png_path = report.write(record, tmp_path)
    assert json_path.name == "test_rolling_upgrade-v1-v2.json"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(json_path.read_text())
    assert len(data["requests"]) == 100 and len(data["cluster_events"]) == 3
    assert data["summary"]["failed"] == 1 and data["facts"] == {"rollout_s": 5.0}
    loaded = report.load(json_path)
    assert loaded.requests == record.requests and loaded.events == record.events
    assert loaded.marks == record.marks


def test_png_without_any_successful_request(tmp_path):
    record = report.TestRecord(test="empty", started_at=ORIGIN, requests=[request(0, 0.5, error="x")])
    _, png_path = report.write(record, tmp_path)
    assert png_path.stat().st_size > 0
    assert json.loads((tmp_path / "empty.json").read_text())["summary"]["p99_ms"] is None


def test_event_queries():
    def pod(at, ready, change="MODIFIED"):
        return ClusterEvent(ORIGIN + at, "pod", "p1", change, {"ready": ready})

    def endpoints(at, ready):
        detail = {"endpoints": [{"pod": "p1", "ready": ready, "terminating": False}]}
        return ClusterEvent(ORIGIN + at, "endpoints", "svc-abc", "MODIFIED", detail)

    events = [pod(0, True), endpoints(0, True), pod(2, False), endpoints(2.5, False), pod(9, True)]
    assert pod_ready_at(events, "p1", after=ORIGIN + 1) == ORIGIN + 9
    assert endpoint_left_at(events, "p1", after=ORIGIN + 1) == ORIGIN + 2.5
    assert "p1:notready" in format_timeline(events[3:4], ORIGIN)
