"""What the prober's records say: failures, latency percentiles, versions, windows in time.

Pure functions over RequestRecord lists, so the suites' assertions and the report read the
same numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.prober import RequestRecord


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def sent_between(records: Iterable[RequestRecord], start: float, end: float) -> list[RequestRecord]:
    """Requests sent in [start, end)."""
    return [record for record in records if start <= record.sent_at < end]


def failures(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    return [record for record in records if not record.ok]


def in_flight_at(records: Iterable[RequestRecord], instant: float) -> list[RequestRecord]:
    """Requests sent before `instant` and not yet answered at it."""
    return [record for record in records if record.sent_at < instant < record.finished_at]


def first_success_after(records: Iterable[RequestRecord], instant: float) -> RequestRecord | None:
    later = [record for record in records if record.ok and record.sent_at >= instant]
    return min(later, key=lambda record: record.sent_at, default=None)


def versions_served(records: Iterable[RequestRecord]) -> Counter[str]:
    return Counter(record.model_version or "?" for record in records if record.ok)


def error_kinds(records: Iterable[RequestRecord]) -> Counter[str]:
    """Failures grouped by the first words of their error text (exception type or HTTP status)."""
    kinds: Counter[str] = Counter()
    for record in records:
        if not record.ok:
            text = record.error or f"HTTP {record.status}"
            kinds[text.split(":")[0]] += 1
    return kinds


@dataclass(frozen=True)
class Summary:
    total: int
    failed: int
    p50_ms: float
    p99_ms: float
    versions: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def success_fraction(self) -> float:
        return 1.0 if self.total == 0 else (self.total - self.failed) / self.total


def summarize(records: Sequence[RequestRecord]) -> Summary:
    latencies = [record.latency_s * 1000.0 for record in records if record.ok]
    return Summary(
        total=len(records),
        failed=len(failures(records)),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        versions=dict(sorted(versions_served(records).items())),
        served_by=dict(sorted(Counter(r.served_by or "?" for r in records if r.ok).items())),
        errors=dict(error_kinds(records).most_common()),
    )


def describe_failures(records: Sequence[RequestRecord], origin: float, limit: int = 15) -> str:
    """A few failed requests, one per line, with their time relative to `origin`."""
    failed = failures(records)
    lines = [
        f"  t={record.sent_at - origin:7.2f}s seq={record.seq} latency={record.latency_s * 1000:.0f}ms "
        f"status={record.status} error={record.error}"
        for record in failed[:limit]
    ]
    if len(failed) > limit:
        lines.append(f"  … and {len(failed) - limit} more")
    return "\n".join(lines)


def slo_line(test: str, summary: Summary, **facts: object) -> str:
    """One line per test: the request SLI first, then whatever the suite measured."""
    parts = [
        f"SLO {test}:",
        f"{summary.total} requests, {summary.failed} failed ({100.0 * (1 - summary.success_fraction):.2f}%),",
        f"p50 {summary.p50_ms:.0f} ms, p99 {summary.p99_ms:.0f} ms,",
        "versions " + (" ".join(f"v{k}={v}" for k, v in summary.versions.items()) or "none"),
    ]
    parts += [f"| {key.replace('_', ' ')} {value}" for key, value in facts.items()]
    return " ".join(parts)
