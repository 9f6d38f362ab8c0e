"""Fixtures for the e2e suites: the cluster (whichever provider), releases, and per-test scenarios.

The suites never know the provider: they get `deploy(...)`, which installs (or reuses) a
release of the chart in a namespace of its own and returns a Scenario bound to it.
Installs are reused within a run where the next test's semantics allow (same values,
healthy); a release whose test failed is never reused and its namespace is kept for
debugging (the failure says which). Options: `--cluster auto|kind|local|existing`,
`--extra-values FILE` (or E2E_EXTRA_VALUES, os.pathsep-separated) added last to every
helm install/upgrade, `--keep-namespaces`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import providers
from harness.prober import Target, prioritise_load
from harness.release import Release, predict_body
from harness.scenario import Scenario
from kubernetes import client, config
from ops.paths import REPORTS_DIR

VALUES_DIR = Path(__file__).parent / "values"
BASE_VALUES = (VALUES_DIR / "base.yaml",)
PREDICT_PATH = "/v1/models/anomaly:predict"
RELEASE_NAME = "tfms"
RUN_ID = f"{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
# One loopback client address per test (127.<session>.<n>.<n>): see harness.prober on why.
_CLIENT_SUBNET = 2 + secrets.randbelow(250)
_client_counter = itertools.count(1)


def next_client_address() -> str:
    n = next(_client_counter)
    return f"127.{_CLIENT_SUBNET}.{n // 250}.{1 + n % 250}"


phase_reports = pytest.StashKey[dict[str, pytest.TestReport]]()
slo_lines = pytest.StashKey[list[str]]()
load_priority = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tf-model-server e2e")
    group.addoption(
        "--cluster",
        default=os.environ.get("CLUSTER", "auto"),
        choices=providers.CHOICES,
        help="cluster provider (default: $CLUSTER or auto)",
    )
    group.addoption(
        "--extra-values",
        action="append",
        default=[p for p in os.environ.get("E2E_EXTRA_VALUES", "").split(os.pathsep) if p],
        help="values file added last to every helm install/upgrade (repeatable; env E2E_EXTRA_VALUES)",
    )
    group.addoption(
        "--keep-namespaces", action="store_true", help="keep every test namespace, not only failed ones"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[slo_lines] = []
    config.stash[load_priority] = prioritise_load()


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash.get(load_priority, "")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    item.stash.setdefault(phase_reports, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(slo_lines, [])
    if lines:
        terminalreporter.section("SLO summary (one line per e2e test)")
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"reports: {REPORTS_DIR / 'e2e'}/<test>.json and .png")


# -- cluster ------------------------------------------------------------------------------


def uncaptured(pytest_config: pytest.Config) -> contextlib.AbstractContextManager[None]:
    """Output straight to the terminal, past pytest's capture (for progress lines of long work)."""
    capture = pytest_config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[providers.Cluster]:
    # A first run builds Kubernetes and images before the cluster starts (minutes): its
    # progress lines reach the terminal as they happen, not at the end in a captured block.
    with contextlib.ExitStack() as stack:
        with uncaptured(request.config):
            provided = stack.enter_context(providers.provide(request.config.getoption("--cluster")))
        yield provided


@pytest.fixture(scope="session")
def kube(cluster: providers.Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture(scope="session")
def extra_values(request: pytest.FixtureRequest) -> tuple[Path, ...]:
    files = tuple(Path(p).resolve() for p in request.config.getoption("--extra-values"))
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise pytest.UsageError(f"--extra-values file(s) not found: {', '.join(missing)}")
    return files


# -- releases -----------------------------------------------------------------------------


@dataclass
class PooledRelease:
    release: Release
    values: tuple[Path, ...]
    failed_tests: list[str] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)


class ReleasePool:
    """Releases by key, each in its own namespace; reused while healthy and never failed."""

    def __init__(
        self,
        cluster: providers.Cluster,
        kube: client.ApiClient,
        extra_values: tuple[Path, ...],
        keep_all: bool,
    ) -> None:
        self.cluster = cluster
        self.kube = kube
        self.extra_values = extra_values
        self.keep_all = keep_all
        self.core = client.CoreV1Api(kube)
        self.pooled: dict[str, PooledRelease] = {}
        self.retired: list[PooledRelease] = []
        self._counter = 0

    def reusable(self, key: str, values: tuple[Path, ...]) -> Release | None:
        pooled = self.pooled.get(key)
        if pooled is None or pooled.values != values or pooled.failed_tests:
            return None
        try:
            pooled.release.wait_rolled_out(timeout_s=120)
        except TimeoutError:
            self.retire(key)
            return None
        pooled.last_used = time.monotonic()
        return pooled.release

    def new(self, key: str, values: tuple[Path, ...]) -> Release:
        if key in self.pooled:
            self.retire(key)
        self._counter += 1
        namespace = f"e2e-{key}-{RUN_ID}-{self._counter}"
        release = Release(
            name=RELEASE_NAME,
            namespace=namespace,
            kubeconfig=self.cluster.kubeconfig,
            api_client=self.kube,
            node_address=self.cluster.node_address,
            node_port=self.node_port(),
            base_values=BASE_VALUES,
            extra_values=self.extra_values,
        )
        release.helm.ensure_namespace()
        self.pooled[key] = PooledRelease(release, values)
        return release

    def node_port(self) -> int:
        """A free NodePort; when the nine are taken, the least recently used idle release gives its up.

        Pooled releases hold their NodePorts until the session ends, and a run of every suite
        pools more keys than there are ports: retiring the stalest one (its suite has usually
        finished) is what keeps a long run from starving.
        """
        while True:
            try:
                return self.cluster.free_node_port(self.core)
            except RuntimeError:
                if not self.pooled:
                    raise
                self.retire(min(self.pooled, key=lambda key: self.pooled[key].last_used))

    def record_failure(self, release: Release, test: str) -> None:
        for pooled in [*self.pooled.values(), *self.retired]:
            if pooled.release is release:
                pooled.failed_tests.append(test)

    def retire(self, key: str) -> None:
        pooled = self.pooled.pop(key)
        self.retired.append(pooled)
        self._clean(pooled)

    def retire_all_but(self, keep: Release, timeout_s: float = 120) -> int:
        """Retire every other pooled release and wait (bounded) until no other e2e pod is left.

        For the node-loss test: every pod on the killed node is rescheduled at once, and on
        this 2-core machine ten other releases' pods importing TensorFlow together starved
        the test's own replacement (it printed nothing for two minutes) and both probers.
        Returns how many pods of other namespaces were still running when it began.
        """
        for key in [key for key, pooled in self.pooled.items() if pooled.release is not keep]:
            self.retire(key)
        selector = "app.kubernetes.io/name=tf-model-server"

        def others() -> list[client.V1Pod]:
            return [
                pod
                for pod in self.core.list_pod_for_all_namespaces(label_selector=selector).items
                if pod.metadata.namespace != keep.namespace
                and pod.metadata.namespace.startswith("e2e-")
                and not any(
                    p.release.namespace == pod.metadata.namespace for p in self.retired if p.failed_tests
                )
            ]

        count = len(others())
        deadline = time.monotonic() + timeout_s
        while others():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"other e2e pods still running {timeout_s:.0f}s after their releases were retired"
                )
            time.sleep(2)
        return count

    def close(self) -> list[str]:
        for key in list(self.pooled):
            self.retire(key)
        return [
            f"kept namespace {p.release.namespace} for debugging (failed: {', '.join(p.failed_tests)})"
            for p in self.retired
            if p.failed_tests
        ]

    def _clean(self, pooled: PooledRelease) -> None:
        if pooled.failed_tests and not self.keep_all:
            self._free_node_ports(pooled.release)
        if pooled.failed_tests or self.keep_all:
            return
        release = pooled.release
        # Uninstall first so the Service (and its NodePort) is gone at once; the namespace
        # finishes deleting in the background while the next test runs.
        try:
            release.uninstall()
        finally:
            release.delete_namespace()

    def _free_node_ports(self, release: Release) -> None:
        """A kept namespace's Services become ClusterIP: its pods and logs stay for debugging, and
        its NodePort goes back to the pool (nine of them: kept namespaces would starve later tests)."""
        for service in self.core.list_namespaced_service(release.namespace).items:
            if service.spec.type == "NodePort":
                # A strategic merge by port: drop each nodePort with the type.
                ports = [{"port": port.port, "nodePort": None} for port in service.spec.ports]
                self.core.patch_namespaced_service(
                    service.metadata.name, release.namespace, {"spec": {"type": "ClusterIP", "ports": ports}}
                )


@pytest.fixture(scope="session")
def release_pool(
    request: pytest.FixtureRequest, cluster: providers.Cluster, kube: client.ApiClient, extra_values
) -> Iterator[ReleasePool]:
    pool = ReleasePool(cluster, kube, extra_values, request.config.getoption("--keep-namespaces"))
    yield pool
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in pool.close():
        if reporter is not None:
            reporter.write_line(line, yellow=True)


Deploy = Callable[..., Scenario]


@pytest.fixture
def deploy(
    request: pytest.FixtureRequest, release_pool: ReleasePool, kube: client.ApiClient
) -> Iterator[Deploy]:
    """deploy(key, values, image_tag, settings, fresh, before_install) -> a started Scenario, release ready.

    `before_install(release)` runs in the release's namespace before a fresh install (e.g.
    a claim and the Job seeding it, which the pods need to start).
    """
    started: list[Scenario] = []
    client_address = next_client_address()

    def _deploy(
        key: str,
        values: Sequence[str] = (),
        image_tag: str = "v2",
        settings: Mapping[str, object] | None = None,
        fresh: bool = False,
        before_install: Callable[[Release], None] | None = None,
    ) -> Scenario:
        files = tuple(VALUES_DIR / name for name in values)
        release = None if fresh else release_pool.reusable(key, files)
        scenario_needs_install = release is None
        if release is None:
            release = release_pool.new(key, files)
        scenario = Scenario(
            test_id=request.node.nodeid,
            api_client=kube,
            release=release,
            target_factory=lambda: steady_target(release),
            reports_dir=REPORTS_DIR / "e2e",
            client_address=client_address,
        )
        started.append(scenario.start())
        if scenario_needs_install:
            if before_install is not None:
                scenario.mark("prepare the namespace")
                before_install(release)
            scenario.mark(f"helm install ({image_tag})")
            release.install(files, image_tag=image_tag, settings=settings)
            scenario.mark("installed")
        return scenario

    yield _deploy

    phases = request.node.stash.get(phase_reports, {})
    failed = any(report.failed for report in phases.values())
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for scenario in started:
        line = scenario.finish("failed" if failed else "passed")
        request.config.stash[slo_lines].append(line)
        if failed:
            release_pool.record_failure(scenario.release, request.node.nodeid)
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(line, bold=True)
            if failed:
                namespace = scenario.release.namespace
                reporter.write_line(
                    f"namespace {namespace} is kept for debugging: "
                    f"kubectl --kubeconfig {release_pool.cluster.kubeconfig} -n {namespace} get all",
                    red=True,
                )


_targets: dict[str, Target] = {}


def steady_target(release: Release) -> Target:
    """The standard predict request through the release's NodePort (body built from model metadata)."""
    cached = _targets.get(release.namespace)
    if cached is None:
        body = predict_body(release.model_metadata())
        cached = Target(release.node_address, release.node_port, PREDICT_PATH, body)
        _targets[release.namespace] = cached
    return cached
