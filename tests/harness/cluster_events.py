"""What the cluster did while a test ran, recorded from watches of the official client.

One background thread per resource kind lists then watches the test namespace:
Deployments (desired/ready/updated replicas over time), Pods (starts, readiness, deaths,
restarts), HorizontalPodAutoscalers (current/desired replicas, metrics, conditions),
EndpointSlices (which pods the Service routes to) and Events. Every change becomes one
ClusterEvent stamped with the harness's wall clock, the same clock the prober uses, so
the report can put requests and cluster changes on one time axis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

WATCH_TIMEOUT_S = 30


@dataclass(frozen=True)
class ClusterEvent:
    """One observed change. `at` is when the harness saw it (epoch seconds)."""

    at: float
    kind: str  # deployment | pod | hpa | endpoints | event
    name: str
    change: str  # LISTED | ADDED | MODIFIED | DELETED
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"detail": dict(self.detail)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterEvent:
        return cls(**data)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def describe_deployment(deployment: client.V1Deployment) -> dict[str, Any]:
    status = deployment.status
    containers = deployment.spec.template.spec.containers
    return {
        "generation": deployment.metadata.generation,
        "observed_generation": status.observed_generation,
        "spec_replicas": deployment.spec.replicas,
        "replicas": status.replicas or 0,
        "ready": status.ready_replicas or 0,
        "updated": status.updated_replicas or 0,
        "available": status.available_replicas or 0,
        "unavailable": status.unavailable_replicas or 0,
        "images": [container.image for container in containers],
    }


def describe_pod(pod: client.V1Pod) -> dict[str, Any]:
    conditions = {condition.type: condition for condition in (pod.status.conditions or [])}
    ready = conditions.get("Ready")
    statuses = pod.status.container_statuses or []
    containers = []
    for status in statuses:
        state = status.state
        last = status.last_state
        containers.append(
            {
                "name": status.name,
                "ready": bool(status.ready),
                "restarts": status.restart_count,
                "container_id": status.container_id,
                "image": status.image,
                "state": (
                    "running"
                    if state and state.running
                    else f"waiting:{state.waiting.reason}"
                    if state and state.waiting
                    else f"terminated:{state.terminated.reason}:{state.terminated.exit_code}"
                    if state and state.terminated
                    else "unknown"
                ),
                "last_terminated": (
                    {
                        "reason": last.terminated.reason,
                        "exit_code": last.terminated.exit_code,
                        "signal": last.terminated.signal,
                        "finished_at": _iso(last.terminated.finished_at),
                    }
                    if last and last.terminated
                    else None
                ),
            }
        )
    return {
        "phase": pod.status.phase,
        "ready": ready is not None and ready.status == "True",
        "ready_since": _iso(ready.last_transition_time) if ready is not None else None,
        "restarts": sum(container["restarts"] for container in containers),
        "node": pod.spec.node_name,
        "ip": pod.status.pod_ip,
        "terminating": pod.metadata.deletion_timestamp is not None,
        "owner": next((ref.name for ref in pod.metadata.owner_references or []), None),
        "containers": containers,
    }


def describe_hpa(hpa: client.V2HorizontalPodAutoscaler) -> dict[str, Any]:
    status = hpa.status
    metrics = []
    for metric in status.current_metrics or []:
        if metric.resource is not None:
            current = metric.resource.current
            metrics.append(
                {
                    "resource": metric.resource.name,
                    "utilization": current.average_utilization,
                    "average_value": current.average_value,
                }
            )
    return {
        "min": hpa.spec.min_replicas,
        "max": hpa.spec.max_replicas,
        "current": status.current_replicas,
        "desired": status.desired_replicas,
        "last_scale_time": _iso(status.last_scale_time),
        "metrics": metrics,
        "conditions": [
            {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
            for c in status.conditions or []
        ],
    }


def describe_endpoint_slice(slice_: client.V1EndpointSlice) -> dict[str, Any]:
    endpoints = []
    for endpoint in slice_.endpoints or []:
        conditions = endpoint.conditions
        endpoints.append(
            {
                "pod": endpoint.target_ref.name if endpoint.target_ref else None,
                "addresses": list(endpoint.addresses or []),
                "ready": bool(conditions and conditions.ready),
                "serving": bool(conditions and conditions.serving),
                "terminating": bool(conditions and conditions.terminating),
            }
        )
    return {
        "service": (slice_.metadata.labels or {}).get("kubernetes.io/service-name"),
        "endpoints": endpoints,
    }


def describe_event(event: client.CoreV1Event) -> dict[str, Any]:
    involved = event.involved_object
    return {
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "object": f"{involved.kind}/{involved.name}",
        "count": event.count,
        "last_timestamp": _iso(event.last_timestamp or event.event_time),
    }


@dataclass(frozen=True)
class WatchSpec:
    kind: str
    list_function: Callable[..., Any]
    describe: Callable[[Any], dict[str, Any]]


class ClusterRecorder:
    """Records changes in one namespace until stopped. Use as a context manager."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        core = client.CoreV1Api(api_client)
        self._specs = [
            WatchSpec(
                "deployment", client.AppsV1Api(api_client).list_namespaced_deployment, describe_deployment
            ),
            WatchSpec("pod", core.list_namespaced_pod, describe_pod),
            WatchSpec(
                "hpa",
                client.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler,
                describe_hpa,
            ),
            WatchSpec(
                "endpoints",
                client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice,
                describe_endpoint_slice,
            ),
            WatchSpec("event", core.list_namespaced_event, describe_event),
        ]
        self._events: list[ClusterEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watches: list[watch.Watch] = []
        self._threads: list[threading.Thread] = []
        self._listed = threading.Barrier(len(self._specs) + 1)
        self.errors: list[str] = []

    def __enter__(self) -> ClusterRecorder:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 30) -> ClusterRecorder:
        """Start every watch; returns once each has listed the current state."""
        for spec in self._specs:
            thread = threading.Thread(target=self._run, args=(spec,), name=f"watch-{spec.kind}", daemon=True)
            self._threads.append(thread)
            thread.start()
        try:
            self._listed.wait(timeout_s)
        except threading.BrokenBarrierError as exc:
            raise RuntimeError(f"cluster watches did not start within {timeout_s}s: {self.errors}") from exc
        return self

    def stop(self) -> list[ClusterEvent]:
        self._stop.set()
        for active in list(self._watches):
            active.stop()
        for thread in self._threads:
            thread.join(10)
        return self.events()

    def events(self, kind: str | None = None) -> list[ClusterEvent]:
        with self._lock:
            recorded = list(self._events)
        return [event for event in recorded if kind is None or event.kind == kind]

    def _record(self, spec: WatchSpec, change: str, obj: Any) -> None:
        event = ClusterEvent(
            at=time.time(), kind=spec.kind, name=obj.metadata.name, change=change, detail=spec.describe(obj)
        )
        with self._lock:
            self._events.append(event)

    def _run(self, spec: WatchSpec) -> None:
        resource_version: str | None = None
        announced = False
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = spec.list_function(self.namespace)
                    resource_version = listing.metadata.resource_version
                    for item in listing.items:
                        self._record(spec, "LISTED", item)
                    if not announced:
                        announced = True
                        self._listed.wait()
                active = watch.Watch()
                self._watches.append(active)
                try:
                    for item in active.stream(
                        spec.list_function,
                        self.namespace,
                        resource_version=resource_version,
                        timeout_seconds=WATCH_TIMEOUT_S,
                    ):
                        obj = item["object"]
                        resource_version = obj.metadata.resource_version
                        self._record(spec, item["type"], obj)
                        if self._stop.is_set():
                            break
                finally:
                    active.stop()
                    self._watches.remove(active)
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    resource_version = None
                    continue
                self.errors.append(f"{spec.kind}: {exc.status} {exc.reason}")
                self._stop.wait(1)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    break
                self.errors.append(f"{spec.kind}: {type(exc).__name__}: {exc}")
                self._stop.wait(1)
            except threading.BrokenBarrierError:
                return


# -- Queries over recorded events -------------------------------------------------------


def latest_by_name(events: Iterable[ClusterEvent], kind: str) -> dict[str, ClusterEvent]:
    latest: dict[str, ClusterEvent] = {}
    for event in events:
        if event.kind == kind:
            latest[event.name] = event
    return latest


def ready_replicas_over_time(events: Iterable[ClusterEvent]) -> list[tuple[float, int, int | None]]:
    """(time, ready replicas, desired replicas) for every observed Deployment change."""
    return [
        (event.at, int(event.detail["ready"]), event.detail.get("spec_replicas"))
        for event in events
        if event.kind == "deployment"
    ]


def first_time(events: Iterable[ClusterEvent], predicate: Callable[[ClusterEvent], bool]) -> float | None:
    return next((event.at for event in events if predicate(event)), None)


def pod_ready_at(events: Iterable[ClusterEvent], pod: str, after: float = 0.0) -> float | None:
    """When the harness first saw `pod` Ready at or after `after`."""
    return first_time(
        events,
        lambda e: (
            e.kind == "pod"
            and e.name == pod
            and e.at >= after
            and e.detail["ready"]
            and e.change != "DELETED"
        ),
    )


def endpoint_ready(event: ClusterEvent, pod: str) -> bool | None:
    """Whether an EndpointSlice event lists `pod` as a ready endpoint (None: not listed)."""
    for endpoint in event.detail.get("endpoints", []):
        if endpoint["pod"] == pod:
            return bool(endpoint["ready"])
    return None


def endpoint_left_at(events: Iterable[ClusterEvent], pod: str, after: float) -> float | None:
    """When the Service stopped routing to `pod` (not ready or gone from its EndpointSlice)."""
    return first_time(
        events,
        lambda e: (
            e.kind == "endpoints" and e.at >= after and (e.change == "DELETED" or not endpoint_ready(e, pod))
        ),
    )


def warning_events(events: Iterable[ClusterEvent]) -> list[ClusterEvent]:
    return [e for e in events if e.kind == "event" and e.detail.get("type") == "Warning"]


def format_timeline(events: Iterable[ClusterEvent], origin: float, limit: int = 200) -> str:
    """The recorded changes as readable lines (for failure messages)."""
    lines = []
    for event in events:
        detail = event.detail
        if event.kind == "deployment":
            text = (
                f"desired={detail['spec_replicas']} ready={detail['ready']} updated={detail['updated']} "
                f"unavailable={detail['unavailable']} images={','.join(detail['images'])}"
            )
        elif event.kind == "pod":
            text = (
                f"phase={detail['phase']} ready={detail['ready']} restarts={detail['restarts']}"
                f"{' terminating' if detail['terminating'] else ''}"
                f" {' '.join(c['state'] for c in detail['containers'])}"
            )
        elif event.kind == "hpa":
            text = f"current={detail['current']} desired={detail['desired']} metrics={detail['metrics']}"
        elif event.kind == "endpoints":
            text = " ".join(
                f"{e['pod']}:{'ready' if e['ready'] else 'notready'}"
                + ("/terminating" if e["terminating"] else "")
                for e in detail["endpoints"]
            )
        else:
            text = f"{detail['type']} {detail['reason']} {detail['object']}: {detail['message']}"
        lines.append(f"  t={event.at - origin:7.2f}s {event.kind:<10} {event.name} {event.change}: {text}")
    if len(lines) > limit:
        lines = [*lines[: limit // 2], f"  … {len(lines) - limit} lines elided …", *lines[-limit // 2 :]]
    return "\n".join(lines)
