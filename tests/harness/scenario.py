"""One e2e test's run: its probers, cluster recorder, pod logs, marks, facts and report.

The suites drive a Scenario (start load, mark phases, read records) and assert through
it, which fails with what a person needs to debug: the failed requests, the cluster's
timeline and the pods' logs. Guarantees over requests are judged per prober and per
window by harness.guarantees (`expect_no_failures`, `expect_loss_bounded`): a prober is
stopped and checked sound (complete record, on schedule) before its record is believed,
it must have run through the whole window, and the window must hold enough of its
requests to mean something. Whatever the outcome, `finish` writes
`<reports>/<test>.json` + `.png` and returns the one-line SLO summary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from harness import guarantees, report, slo
from harness.cluster_events import ClusterEvent, ClusterRecorder, format_timeline, warning_events
from harness.guarantees import KUBE_PROXY_PROPAGATION_S, Loss, LossBudget, Recovery, SLOViolation, Window
from harness.pod_logs import PodLogCollector, tail
from harness.prober import RequestRecord, Target
from harness.prober_process import ProcessProber
from harness.release import Release

LOG_LINES_IN_FAILURE = 25
# The keep-alive prober's pool: a few connections, each carrying its share of the load.
KEEP_ALIVE_CONNECTIONS = 4


class ScenarioFailure(AssertionError):
    """A guarantee did not hold; the message carries requests, cluster events and pod logs."""


def stale_nat_by_port(
    probers: Sequence[ProcessProber], entries: Callable[[Sequence[RequestRecord]], int]
) -> dict[int, int]:
    """Stale NAT entries per target port: probers to the same address share the node's entries
    (harness.guarantees), so each is judged against all of them."""
    totals: dict[int, int] = {}
    for prober in probers:
        totals[prober.target.port] = totals.get(prober.target.port, 0) + entries(prober.records())
    return totals


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
        self.probers: list[ProcessProber] = []
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
        self.record.facts["probers"] = [prober_facts(prober) for prober in self.probers]
        if self.probers:
            self.slo_facts["probers"] = "; ".join(prober_summary(prober) for prober in self.probers)
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
        name: str = "new-connection",
        target: Target | None = None,
        timeout_s: float = 10,
        keep_alive: int = 0,
        grpc_channels: int = 0,
    ) -> ProcessProber:
        """Start an open-loop prober through the Service; it stops at the end of the test at the latest.

        `keep_alive=n` sends over a pool of n persistent connections instead of a new
        connection per request (harness.prober); `grpc_channels=n` sends gRPC calls over n
        long-lived channels (harness.grpc_transport). Every HTTP prober of this test sends
        from the test's own loopback address.
        """
        prober = ProcessProber(
            dataclasses.replace(target or self._target_factory(), source_address=self.client_address),
            rate_per_s=rate_per_s,
            max_duration_s=max_duration_s,
            timeout_s=timeout_s,
            name=name,
            keep_alive=keep_alive,
            grpc_channels=grpc_channels,
        )
        self.probers.append(prober.start())
        return prober

    def steady_load(
        self, rate_per_s: float, settle_s: float, keep_alive: int = KEEP_ALIVE_CONNECTIONS
    ) -> list[ProcessProber]:
        """The suites' load: a new-connection prober and, beside it, a keep-alive one at the same rate.

        Returns once both have answers and `settle_s` has passed (a steady window to compare with).
        """
        probers = [self.probe(rate_per_s)]
        if keep_alive:
            probers.append(self.probe(rate_per_s, name="keep-alive", keep_alive=keep_alive))
        for prober in probers:
            prober.wait_for_requests(int(rate_per_s), timeout_s=30)
        time.sleep(settle_s)
        return probers

    def stop_load(self) -> float:
        """Stop every prober (waiting for what is in flight); returns when the load stopped."""
        for prober in self.probers:
            prober.stop()
        return min((p.stopped_at for p in self.probers if p.stopped_at is not None), default=time.time())

    @property
    def load_started_at(self) -> float:
        """When the last of the probers started (every prober runs from here on)."""
        return max(p.started_at for p in self.probers if p.started_at is not None)

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

    def wait_routed(self, pods: set[str], timeout_s: float = 60) -> float:
        """Wait until the Service's EndpointSlices list every one of `pods` ready; returns when
        kube-proxy has surely followed (Ready is not routed: kube-proxy adds endpoints at its next
        sync, up to --iptables-min-sync-period after the EndpointSlice changed)."""
        self.wait_until(
            f"the Service routes to {sorted(pods)}",
            lambda: pods <= ready_endpoint_pods(self.release.api_client, self.namespace),
            timeout_s,
            poll_s=0.2,
        )
        return time.time() + KUBE_PROXY_PROPAGATION_S

    # -- assertions ------------------------------------------------------------------

    def expect(self, condition: bool, headline: str, requests: Sequence[RequestRecord] | None = None) -> None:
        if not condition:
            self.fail(headline, requests)

    def window(self, label: str, start: float, end: float) -> Window:
        return Window(label, start, end)

    def judged(self, window: Window | None, probers: Sequence[ProcessProber] | None) -> list[ProcessProber]:
        """The probers to judge, each stopped, sound, and (for a window) running through all of it."""
        chosen = list(probers) if probers is not None else list(self.probers)
        self.expect(bool(chosen), "no prober ran: there is no record to judge")
        for prober in chosen:
            prober.stop()
            try:
                guarantees.sound(prober.ledger())
            except SLOViolation as violation:
                self.fail(str(violation), violation.records or prober.records())
            if window is not None:
                assert prober.started_at is not None and prober.stopped_at is not None
                origin = self.record.started_at
                self.expect(
                    prober.started_at <= window.start and prober.stopped_at >= window.end,
                    f"prober {prober.name} did not run through the whole window {window.label} "
                    f"(it ran t={prober.started_at - origin:.1f}s..{prober.stopped_at - origin:.1f}s, "
                    f"the window is t={window.start - origin:.1f}s..{window.end - origin:.1f}s)",
                )
        return chosen

    def expect_populated(
        self, window: Window, probers: Sequence[ProcessProber] | None = None
    ) -> dict[str, list[RequestRecord]]:
        """Each prober's requests in the window, failing when a prober sent too few there."""
        return self._per_prober(guarantees.populated, window, probers)

    def expect_no_failures(
        self, window: Window, probers: Sequence[ProcessProber] | None = None
    ) -> dict[str, list[RequestRecord]]:
        """0 failed requests in the window, for every prober (default: all of this test's)."""
        return self._per_prober(guarantees.no_failures, window, probers)

    def _per_prober(
        self,
        check: Callable[[Sequence[RequestRecord], Window, float, str], list[RequestRecord]],
        window: Window,
        probers: Sequence[ProcessProber] | None,
    ) -> dict[str, list[RequestRecord]]:
        inside = {}
        for prober in self.judged(window, probers):
            try:
                inside[prober.name] = check(prober.records(), window, prober.rate_per_s, prober.name)
            except SLOViolation as violation:
                self.fail(str(violation), violation.records)
        return inside

    def expect_loss_bounded(
        self,
        loss: Loss,
        before: Window,
        max_exposure_s: float,
        probers: Sequence[ProcessProber] | None = None,
    ) -> list[LossBudget]:
        """Failures bounded by the lost pods' share of each prober's traffic (harness.guarantees)."""
        budgets = []
        judged = self.judged(before, probers)
        stale = stale_nat_by_port(
            judged,
            lambda records: guarantees.stale_nat_entries(records, loss, guarantees.KUBE_PROXY_PROPAGATION_S),
        )
        # The lost pods' share of new connections, from a prober that opens one per request.
        per_request = [p for p in judged if not p.keep_alive and not p.grpc_channels]
        connection_share = (
            guarantees.traffic_share(per_request[0].records(), loss.pods, before) if per_request else None
        )
        for prober in judged:
            try:
                budgets.append(
                    guarantees.bounded_loss(
                        prober.records(),
                        loss,
                        prober.rate_per_s,
                        prober.name,
                        before,
                        max_exposure_s,
                        stale_entries=stale[prober.target.port],
                        connection_share=connection_share,
                    )
                )
            except SLOViolation as violation:
                self.fail(str(violation), violation.records)
        return budgets

    def expect_recovered(
        self, outage: Window, after: Window, probers: Sequence[ProcessProber] | None = None
    ) -> list[Recovery]:
        """Every pod was replaced: each prober's Service answers again, and from `after` on fails
        only where the outage's stale NAT entries explain it (harness.guarantees)."""
        judged = self.judged(after, probers)
        stale = stale_nat_by_port(judged, lambda records: guarantees.fresh_failures(records, outage))
        recoveries = []
        for prober in judged:
            try:
                recoveries.append(
                    guarantees.recovered(
                        prober.records(),
                        outage,
                        after,
                        prober.rate_per_s,
                        prober.name,
                        stale_entries=stale[prober.target.port],
                    )
                )
            except SLOViolation as violation:
                self.fail(str(violation), violation.records)
        return recoveries

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


def prober_facts(prober: ProcessProber) -> dict[str, Any]:
    """What the report keeps about a prober besides its requests."""
    ledger = prober.ledger()
    lags = [r.sent_at - r.scheduled_at for r in ledger.records]
    return {
        "name": prober.name,
        "transport": ledger.transport,
        "rate_per_s": prober.rate_per_s,
        "target": prober.target.url,
        "started_at": prober.started_at,
        "stopped_at": prober.stopped_at,
        "scheduled": ledger.scheduled,
        "recorded": len(ledger.records),
        "failed": len(slo.failures(ledger.records)),
        "reused_connection": sum(1 for r in ledger.records if r.reused),
        "max_schedule_lag_s": max(lags, default=0.0),
        **ledger.stats,
    }


def prober_summary(prober: ProcessProber) -> str:
    facts = prober_facts(prober)
    text = f"{prober.name} {facts['recorded']}/{facts['scheduled']} recorded, {facts['failed']} failed"
    if "connections_opened" in facts:
        closed = facts["closed_by_server_answer"] + facts["closed_by_server_idle"]
        text += f", {facts['connections_opened']} connections, {closed} closed by the server"
    return text + f", lag ≤{facts['max_schedule_lag_s'] * 1000:.0f}ms"


def ready_endpoint_pods(api_client: client.ApiClient, namespace: str) -> set[str]:
    """Pods the namespace's Services currently route new connections to."""
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(namespace)
    return {
        endpoint.target_ref.name
        for slice_ in slices.items
        for endpoint in slice_.endpoints or []
        if endpoint.target_ref is not None and endpoint.conditions is not None and endpoint.conditions.ready
    }
