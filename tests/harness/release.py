"""A Helm release of the chart under test, in its own Pod-Security-restricted namespace.

A thin layer over `ops.release.Release` (the one implementation of helm install/
upgrade/rollback/uninstall and of the restricted namespace, which `make up` uses too):
it keeps the values stack of the release (base values, suite values, then any extra
files the run adds, e.g. the deliberately unsafe rollout), reads what each revision was
deployed with from helm itself (`helm history`, `helm get values --revision`), so a
rollback targets a revision helm knows by the values it really holds, and finds the
release's Deployment, Service and pods through the chart's selector labels.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from ops import release as ops_release

INSTANCE_LABEL = "app.kubernetes.io/instance"
# Each release's gRPC NodePort: its HTTP NodePort (30081-30089) + this, unique and outside the pool.
GRPC_NODE_PORT_OFFSET = 2000


@dataclass(frozen=True)
class Deployed:
    """One revision as helm records it: its number, status and the values it was given."""

    revision: int
    status: str  # deployed | superseded | failed | pending-upgrade | ...
    description: str
    values: Mapping[str, Any]

    def setting(self, key: str) -> str | None:
        """A value by dotted path, as text the way `--set` spells it (None when not given)."""
        value: Any = self.values
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value_text(value)

    def settings_under(self, prefix: str) -> dict[str, str]:
        """Every leaf value under `prefix` as dotted `--set` keys, e.g. {"server.logLevel": "debug"}."""
        flat: dict[str, str] = {}

        def walk(path: str, value: Any) -> None:
            if isinstance(value, Mapping):
                for key, child in value.items():
                    walk(f"{path}.{key}", child)
            elif (text := value_text(value)) is not None:
                flat[path] = text

        walk(prefix, self.values.get(prefix, {}))
        return flat


def value_text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


E2E_NAMESPACE_LABELS = {**ops_release.RESTRICTED_LABELS, "app.kubernetes.io/part-of": "tf-model-server-e2e"}


@dataclass
class Release:
    name: str
    namespace: str
    kubeconfig: Path
    api_client: client.ApiClient
    node_address: str
    node_port: int
    base_values: tuple[Path, ...]
    extra_values: tuple[Path, ...] = ()
    timeout_s: int = 240
    _values_by_revision: dict[int, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def helm(self) -> ops_release.Release:
        return ops_release.Release(
            self.name, self.namespace, self.kubeconfig, namespace_labels=E2E_NAMESPACE_LABELS
        )

    # -- helm ------------------------------------------------------------------------

    def suite_values(self, names: Sequence[str]) -> list[Path]:
        """A suite's values files by name, from the directory the base values live in."""
        return [self.base_values[0].parent / name for name in names]

    def _values_stack(self, files: Sequence[Path]) -> list[Path]:
        # Extra files come last so a run can override any suite's values (the unsafe rollout).
        return [*self.base_values, *files, *self.extra_values]

    def _sets(self, image_tag: str, settings: Mapping[str, object]) -> dict[str, str]:
        return {
            "service.nodePort": str(self.node_port),
            # The gRPC port needs a NodePort too; a random one can land on 30086-30089 (the
            # upper band Kubernetes allocates from), which the pool hands to the next release.
            "service.grpcNodePort": str(self.node_port + GRPC_NODE_PORT_OFFSET),
            "image.tag": image_tag,
            **{key: str(value) for key, value in settings.items()},
        }

    def install(
        self, files: Sequence[Path], image_tag: str, settings: Mapping[str, object] | None = None
    ) -> None:
        sets = self._sets(image_tag, settings or {})
        self.helm.install(self._values_stack(files), sets, wait=True, timeout=f"{self.timeout_s}s")
        self.wait_reachable()

    def upgrade(
        self,
        files: Sequence[Path],
        image_tag: str,
        settings: Mapping[str, object] | None = None,
        wait: bool = True,
        timeout_s: int | None = None,
    ) -> None:
        """helm upgrade with the full values stack (never --reuse-values: every revision is explicit)."""
        sets = self._sets(image_tag, settings or {})
        self.helm.upgrade(
            self._values_stack(files), sets, wait=wait, timeout=f"{timeout_s or self.timeout_s}s"
        )

    def rollback(self, revision: int) -> Deployed:
        """helm rollback to a revision from helm's history; returns the revision deployed now."""
        known = {deployed.revision for deployed in self.revisions}
        if revision not in known:
            raise ValueError(
                f"{self.namespace}/{self.name} has no revision {revision} (helm history: {known})"
            )
        self.helm.rollback(revision, wait=True, timeout=f"{self.timeout_s}s")
        return self.current

    def uninstall(self) -> None:
        """Uninstall without waiting for the pods' drain (the namespace goes next anyway)."""
        self.helm.uninstall(wait=False)

    def delete_namespace(self) -> None:
        self.helm.delete_namespace(wait=False)

    # -- what helm recorded ------------------------------------------------------------

    @property
    def revisions(self) -> list[Deployed]:
        """Every revision in `helm history`, oldest first, with the values it was deployed with."""
        return [
            Deployed(
                revision=int(entry["revision"]),
                status=str(entry.get("status", "")),
                description=str(entry.get("description", "")),
                values=self._values_of(int(entry["revision"])),
            )
            for entry in sorted(self.helm.history(), key=lambda entry: int(entry["revision"]))
        ]

    def _values_of(self, revision: int) -> Mapping[str, Any]:
        # A revision's values never change: ask helm once per revision.
        if revision not in self._values_by_revision:
            output = self.helm.helm(
                "get", "values", self.name, "--revision", str(revision), "--output", "json"
            ).stdout
            self._values_by_revision[revision] = json.loads(output or "null") or {}
        return self._values_by_revision[revision]

    @property
    def current(self) -> Deployed:
        """The revision helm reports as deployed (the newest one if none is)."""
        revisions = self.revisions
        if not revisions:
            raise RuntimeError(f"{self.namespace}/{self.name} has no helm history")
        return next((r for r in reversed(revisions) if r.status == "deployed"), revisions[-1])

    def latest_revision_where(
        self, wanted: Callable[[Deployed], bool], before: int | None = None
    ) -> Deployed | None:
        """The newest revision (older than `before`, if given) that `wanted` accepts."""
        candidates = [r for r in self.revisions if (before is None or r.revision < before) and wanted(r)]
        return candidates[-1] if candidates else None

    # -- what the release runs ---------------------------------------------------------

    @property
    def selector(self) -> str:
        return f"{INSTANCE_LABEL}={self.name}"

    def deployment(self) -> client.V1Deployment:
        items = client.AppsV1Api(self.api_client).list_namespaced_deployment(
            self.namespace, label_selector=self.selector
        )
        if len(items.items) != 1:
            raise RuntimeError(f"expected one Deployment for {self.selector} in {self.namespace}")
        return items.items[0]

    def pods(self, include_terminating: bool = False) -> list[client.V1Pod]:
        items = client.CoreV1Api(self.api_client).list_namespaced_pod(
            self.namespace, label_selector=self.selector
        )
        return [
            pod
            for pod in items.items
            if (include_terminating or pod.metadata.deletion_timestamp is None)
            and pod.status.phase not in ("Succeeded", "Failed")
            and "helm.sh/hook" not in (pod.metadata.annotations or {})
        ]

    def ready_pods(self) -> list[client.V1Pod]:
        return [pod for pod in self.pods() if pod_is_ready(pod)]

    def rolled_out(self) -> bool:
        """Every desired replica updated, ready and available, no old replica left."""
        deployment = self.deployment()
        status = deployment.status
        desired = deployment.spec.replicas or 0
        return (
            (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
            and (status.updated_replicas or 0) == desired
            and (status.ready_replicas or 0) == desired
            and (status.available_replicas or 0) == desired
            and (status.replicas or 0) == desired
            and len(self.pods()) == desired
        )

    def wait_rolled_out(self, timeout_s: float = 180) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.rolled_out():
                return time.time()
            time.sleep(0.5)
        raise TimeoutError(f"{self.namespace}/{self.name} did not finish rolling out within {timeout_s:.0f}s")

    @property
    def base_url(self) -> str:
        return f"http://{self.node_address}:{self.node_port}"

    def wait_reachable(self, timeout_s: float = 60) -> float:
        """Until the Service answers ready through the NodePort; returns the seconds it took.

        helm's --wait ends when the pods are Ready, but kube-proxy programs a new Service's
        NodePort on its next sync, so for a moment after a fresh install 127.0.0.1:<port>
        refuses connections. Tests measure the release from the moment it is reachable.
        """
        began = time.monotonic()
        last_error: Exception | None = None
        while time.monotonic() - began < timeout_s:
            try:
                with urllib.request.urlopen(f"{self.base_url}/v2/health/ready", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - began
            except OSError as error:  # URLError, refused, reset, timeout
                last_error = error
            time.sleep(0.2)
        raise TimeoutError(
            f"{self.namespace}/{self.name}: pods are Ready but {self.base_url}/v2/health/ready "
            f"did not answer 200 within {timeout_s:.0f}s (last error: {last_error})"
        )

    def model_metadata(self, model: str = "anomaly") -> dict:
        """Open Inference Protocol model metadata, through the Service."""
        with urllib.request.urlopen(f"{self.base_url}/v2/models/{model}", timeout=10) as response:
            return json.load(response)


def pod_is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def predict_body(metadata: Mapping[str, object], rows: int = 1) -> bytes:
    """A TF Serving REST predict body matching the model's first input (zeros are fine: any answer counts)."""
    inputs = metadata["inputs"]
    assert isinstance(inputs, list) and inputs, f"model metadata has no inputs: {metadata}"
    shape = inputs[0]["shape"]
    instance_shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in shape[1:]]

    def zeros(dims: list[int]) -> object:
        return [zeros(dims[1:]) for _ in range(dims[0])] if dims else 0.5

    return json.dumps({"instances": [zeros(instance_shape) for _ in range(rows)]}).encode()
