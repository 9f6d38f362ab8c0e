"""One e2e test's run: its probers, cluster recorder, pod logs, marks, facts and report.

The suites drive a Scenario (start load, mark phases, read records) and assert through
`expect`, which fails with what a person needs to debug: the failed requests, the
cluster's timeline and the pods' logs. Whatever the outcome, `finish` writes
`<reports>/<test>.json` + `.png` and returns the one-line SLO summary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from harness import report, slo
from harness.cluster_events import ClusterEvent, ClusterRecorder, format_timeline, warning_events
from harness.pod_logs import PodLogCollector, tail
from harness.prober import Prober, RequestRecord, Target
from harness.release import Release

LOG_LINES_IN_FAILURE = 25


class ScenarioFailure(AssertionError):
    """A guarantee did not hold; the message carries requests, cluster events and pod logs."""


class Scenario:
    def __init__(
        self,
        test_id: str,
        api_client: client.ApiClient,
        release: Release,
        target_factory: Callable[[], Target],
        reports_dir: Path,
        client_address: str | None = None,
    ) -> None:
        self.test_id = test_id
        self.client_address = client_address
        self.release = release
        self.namespace = release.namespace
        self.reports_dir = reports_dir
        self._target_factory = target_factory
        self.recorder = ClusterRecorder(api_client, self.namespace)
        self.pod_logs = PodLogCollector(api_client, self.namespace)
        self.record = report.TestRecord(test=test_id, started_at=time.time())
        self.probers: list[Prober] = []
        self._finished_requests: list[RequestRecord] = []
        self.slo_facts: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Scenario:
        self.recorder.start()
        self.pod_logs.start()
        self.record.started_at = time.time()
        return self

    def finish(self, outcome: str) -> str:
        """Stop everything, write the report, return the SLO line."""
        for prober in self.probers:
            prober.stop()
        self.record.requests = self.requests()
        self.record.events = self.recorder.stop()
        logs = self.pod_logs.stop()
        self.record.outcome = outcome
        self.record.slo_line = slo.slo_line(
            self.short_name, slo.summarize(self.record.requests), **self.slo_facts
        )
        if outcome != "passed":
            self.record.diagnostics = {
                "pod_logs": "\n\n".join(f"== {k}\n{v}" for k, v in sorted(logs.items()))
            }
        json_path, png_path = report.write(self.record, self.reports_dir)
        self.record.facts["report_json"] = str(json_path)
        self.record.facts["report_png"] = str(png_path)
        return self.record.slo_line

    @property
    def short_name(self) -> str:
        return report.file_stem(self.test_id)

    @property
    def report_paths(self) -> tuple[Path, Path]:
        stem = report.file_stem(self.test_id)
        return self.reports_dir / f"{stem}.json", self.reports_dir / f"{stem}.png"

    # -- load ------------------------------------------------------------------------

    def probe(
        self,
        rate_per_s: float,
        max_duration_s: float = 600,
        name: str = "steady",
        target: Target | None = None,
        timeout_s: float = 10,
    ) -> Prober:
        """Start an open-loop prober through the Service; it stops at the end of the test at the latest.

        Every prober of this test sends from the test's own loopback address (see harness.prober).
        """
        prober = Prober(
            dataclasses.replace(target or self._target_factory(), source_address=self.client_address),
            rate_per_s=rate_per_s,
            max_duration_s=max_duration_s,
            timeout_s=timeout_s,
            name=name,
        )
        self.probers.append(prober.start())
        return prober

    def requests(self) -> list[RequestRecord]:
        merged = [record for prober in self.probers for record in prober.records()]
        return sorted(merged, key=lambda record: record.sent_at)

    def mark(self, label: str) -> float:
        now = time.time()
        self.record.marks.append(report.Mark(now, label))
        return now

    def mark_at(self, at: float, label: str) -> float:
        """A mark at a time measured elsewhere (e.g. by the node agent that sent a signal)."""
        self.record.marks.append(report.Mark(at, label))
        self.record.marks.sort(key=lambda mark: mark.at)
        return at

    def fact(self, key: str, value: Any, in_slo_line: bool = True) -> None:
        """A measured number for the report (and, by default, the SLO line)."""
        self.record.facts[key] = value
        if in_slo_line:
            self.slo_facts[key] = value

    def events(self, kind: str | None = None) -> list[ClusterEvent]:
        return self.recorder.events(kind)

    def wait_until(
        self, description: str, predicate: Callable[[], Any], timeout_s: float, poll_s: float = 0.5
    ) -> Any:
        """Poll until predicate() is truthy; fails loudly (with diagnostics) after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail(f"timed out after {timeout_s:.0f}s waiting until {description}")
            time.sleep(poll_s)

    def wait_unrouted(self, pods: set[str], timeout_s: float = 60) -> float:
        """Wait until the Service routes to none of `pods`; returns when kube-proxy has surely followed."""
        self.wait_until(
            f"the Service stops routing to {sorted(pods)}",
            lambda: not (pods & ready_endpoint_pods(self.release.api_client, self.namespace)),
            timeout_s,
            poll_s=0.2,
        )
        return time.time() + KUBE_PROXY_PROPAGATION_S

    # -- assertions ------------------------------------------------------------------

    def expect(self, condition: bool, headline: str, requests: Sequence[RequestRecord] | None = None) -> None:
        if not condition:
            self.fail(headline, requests)

    def expect_no_failures(self, requests: Sequence[RequestRecord], during: str) -> None:
        failed = slo.failures(requests)
        self.expect(
            not failed,
            f"{len(failed)} of {len(requests)} requests failed {during} (SLO: 0 failed)",
            requests,
        )

    def fail(self, headline: str, requests: Sequence[RequestRecord] | None = None) -> None:
        raise ScenarioFailure(self.diagnosis(headline, requests))

    def diagnosis(self, headline: str, requests: Sequence[RequestRecord] | None = None) -> str:
        origin = self.record.started_at
        requests = self.requests() if requests is None else requests
        events = self.recorder.events()
        sections = [headline]
        if slo.failures(requests):
            sections.append("failed requests (t = seconds since the test's load started):")
            sections.append(slo.describe_failures(requests, origin))
        sections.append(f"summary: {slo.summarize(requests)}")
        sections.append("marks: " + ", ".join(f"t={m.at - origin:.2f}s {m.label}" for m in self.record.marks))
        warnings = warning_events(events)
        if warnings:
            sections.append("warning events:")
            sections.append(format_timeline(warnings, origin, limit=40))
        sections.append("cluster timeline:")
        sections.append(format_timeline(events, origin, limit=120))
        for key, text in sorted(self.pod_logs.logs().items()):
            sections.append(f"pod log {self.namespace}/{key} (last {LOG_LINES_IN_FAILURE} lines):")
            sections.append(tail(text, LOG_LINES_IN_FAILURE) or "  (empty)")
        json_path, png_path = self.report_paths
        sections.append(f"full record: {json_path} and {png_path}")
        return "\n".join(sections)


# kube-proxy rewrites its rules at most once per --iptables-min-sync-period (1 s by default)
# after an EndpointSlice changes: a connection opened within that time can still reach a
# pod that has just left the Service.
KUBE_PROXY_PROPAGATION_S = 2.0


def ready_endpoint_pods(api_client: client.ApiClient, namespace: str) -> set[str]:
    """Pods the namespace's Services currently route new connections to."""
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(namespace)
    return {
        endpoint.target_ref.name
        for slice_ in slices.items
        for endpoint in slice_.endpoints or []
        if endpoint.target_ref is not None and endpoint.conditions is not None and endpoint.conditions.ready
    }
