"""Per-test record on disk: `<dir>/<test>.json` (every request, every cluster change) and a PNG timeline.

The PNG has four panels on one time axis (seconds since the test started):
requests/s with failed requests/s, p50/p99 latency per second, ready and desired
replicas, and responses per second by model version. Vertical lines mark the test's
phases (for example "helm upgrade", "rollout complete").
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt

from harness import slo
from harness.cluster_events import ClusterEvent
from harness.prober import RequestRecord

MARK_LABEL_CHARS = 34


@dataclass(frozen=True)
class Mark:
    """A named instant in a test (wall-clock epoch seconds)."""

    at: float
    label: str


@dataclass
class TestRecord:
    """Everything one e2e test saw; what report.write() puts on disk."""

    test: str
    started_at: float
    requests: list[RequestRecord] = field(default_factory=list)
    events: list[ClusterEvent] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    slo_line: str = ""
    outcome: str = "unknown"
    facts: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "outcome": self.outcome,
            "started_at": self.started_at,
            "slo": self.slo_line,
            "facts": self.facts,
            "summary": without_nan(slo.summarize(self.requests).__dict__),
            "marks": [{"at": mark.at, "label": mark.label} for mark in self.marks],
            "requests": [record.to_json() for record in self.requests],
            "cluster_events": [event.to_json() for event in self.events],
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TestRecord:
        return cls(
            test=data["test"],
            started_at=data["started_at"],
            requests=[RequestRecord.from_json(item) for item in data["requests"]],
            events=[ClusterEvent.from_json(item) for item in data["cluster_events"]],
            marks=[Mark(item["at"], item["label"]) for item in data["marks"]],
            slo_line=data["slo"],
            outcome=data["outcome"],
            facts=data.get("facts", {}),
            diagnostics=data.get("diagnostics", {}),
        )


def without_nan(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: an undefined percentile (no successful request) is written as null."""
    return {
        key: None if isinstance(value, float) and math.isnan(value) else value
        for key, value in values.items()
    }


def file_stem(test: str) -> str:
    """A file name for a test id: `tests/e2e/test_x.py::test_y[a]` -> `test_y-a`."""
    name = test.split("::")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


@dataclass(frozen=True)
class Series:
    """Per-second buckets of the request records, relative to an origin."""

    seconds: list[int]
    sent: list[int]
    failed: list[int]
    p50_ms: list[float]
    p99_ms: list[float]
    by_version: dict[str, list[int]]


def per_second(records: Sequence[RequestRecord], origin: float) -> Series:
    if not records:
        return Series([], [], [], [], [], {})
    last = max(int(record.sent_at - origin) for record in records)
    seconds = list(range(max(last, 0) + 1))
    sent = [0] * len(seconds)
    failed = [0] * len(seconds)
    latencies: dict[int, list[float]] = defaultdict(list)
    versions: dict[str, list[int]] = {}
    for record in records:
        second = int(record.sent_at - origin)
        if second < 0:
            continue
        sent[second] += 1
        if record.ok:
            latencies[second].append(record.latency_s * 1000.0)
            key = record.model_version or "?"
            versions.setdefault(key, [0] * len(seconds))[second] += 1
        else:
            failed[second] += 1
    return Series(
        seconds=seconds,
        sent=sent,
        failed=failed,
        p50_ms=[slo.percentile(latencies[s], 50) for s in seconds],
        p99_ms=[slo.percentile(latencies[s], 99) for s in seconds],
        by_version=dict(sorted(versions.items())),
    )


def replica_steps(
    events: Sequence[ClusterEvent], origin: float
) -> tuple[list[float], list[int], list[float]]:
    """(times, ready replicas, desired replicas) from Deployment changes, as step series."""
    times, ready, desired = [], [], []
    for event in events:
        if event.kind != "deployment":
            continue
        times.append(max(event.at - origin, 0.0))
        ready.append(int(event.detail["ready"]))
        spec = event.detail.get("spec_replicas")
        desired.append(float(spec) if spec is not None else math.nan)
    return times, ready, desired


def plot_timeline(record: TestRecord, path: Path) -> None:
    origin = record.started_at
    series = per_second(record.requests, origin)
    figure, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True, constrained_layout=True)
    load, latency, replicas, versions = axes
    figure.suptitle(f"{record.test}\n{record.slo_line}", fontsize=9, x=0.01, ha="left")

    load.step(series.seconds, series.sent, where="post", color="tab:blue", label="requests/s")
    load.bar(series.seconds, series.failed, color="tab:red", width=1.0, align="edge", label="failed/s")
    load.set_ylabel("requests/s")
    load.legend(loc="upper right", fontsize=8)

    latency.step(series.seconds, series.p50_ms, where="post", color="tab:green", label="p50")
    latency.step(series.seconds, series.p99_ms, where="post", color="tab:orange", label="p99")
    latency.set_ylabel("latency ms")
    if any(value > 0 for value in series.p99_ms if not math.isnan(value)):
        latency.set_yscale("log")
    latency.legend(loc="upper right", fontsize=8)

    times, ready, desired = replica_steps(record.events, origin)
    if times:
        end = max([times[-1], *series.seconds[-1:]])
        replicas.step([*times, end], [*ready, ready[-1]], where="post", color="tab:purple", label="ready")
        replicas.step(
            [*times, end],
            [*desired, desired[-1]],
            where="post",
            color="grey",
            linestyle="--",
            label="desired",
        )
        replicas.set_ylim(bottom=0, top=max([*ready, *[d for d in desired if not math.isnan(d)], 1]) + 1)
        replicas.legend(loc="upper right", fontsize=8)
    replicas.set_ylabel("replicas")

    if series.by_version:
        labels = [f"v{version}" for version in series.by_version]
        versions.stackplot(series.seconds, *series.by_version.values(), labels=labels, step="post")
        versions.legend(loc="upper right", fontsize=8)
    versions.set_ylabel("responses/s by version")
    versions.set_xlabel(
        "seconds since the test started (dotted lines: the test's steps, full labels in the JSON)"
    )

    for mark in record.marks:
        offset = mark.at - origin
        for axis in axes:
            axis.axvline(offset, color="black", linestyle=":", linewidth=0.8)
        label = (
            mark.label if len(mark.label) <= MARK_LABEL_CHARS else mark.label[: MARK_LABEL_CHARS - 1] + "…"
        )
        load.annotate(
            label,
            (offset, 0.97),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            annotation_clip=True,
        )
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write(record: TestRecord, directory: Path) -> tuple[Path, Path]:
    """Write `<directory>/<test>.json` and `.png`; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem(record.test)
    json_path = directory / f"{stem}.json"
    png_path = directory / f"{stem}.png"
    json_path.write_text(json.dumps(record.to_json(), indent=1, default=str))
    plot_timeline(record, png_path)
    return json_path, png_path


def load(path: Path) -> TestRecord:
    return TestRecord.from_json(json.loads(path.read_text()))
