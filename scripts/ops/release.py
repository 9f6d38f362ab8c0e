"""Helm releases of the chart in a namespace that enforces Pod Security "restricted".

One implementation for `make up`, `make smoke` and the e2e harness:

    release = Release("demo", "tfms-demo", kubeconfig)
    release.ensure_namespace()
    release.install(set_values={"service.type": "NodePort", "service.nodePort": "30080"})
    release.upgrade(values_files=[Path("v2.yaml")]); release.rollback(1); release.uninstall()

Every helm call raises ReleaseError with helm's own message when it fails.
CLI: ``python -m ops.release COMMAND --name N --namespace NS [-f values.yaml] [--set k=v]`` with
COMMAND one of install, upgrade, apply, rollback, test, uninstall, delete-namespace.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops import cluster, kube
from ops.paths import REPO_ROOT

CHART_DIR = REPO_ROOT / "chart"
DEFAULT_TIMEOUT = "5m"
# enforce rejects violating pods; warn and audit make kubectl/helm print why.
RESTRICTED_LABELS: Mapping[str, str] = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


class ReleaseError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[release] {message}", flush=True)


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    kubeconfig: Path
    chart: Path = CHART_DIR
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: dict(RESTRICTED_LABELS))

    # ------------------------------------------------------------------ plumbing

    def helm(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        try:
            return kube.helm(self.kubeconfig, *args, "--namespace", self.namespace, timeout=timeout)
        except subprocess.CalledProcessError as error:
            raise ReleaseError(kube.describe_failure(error)) from error

    @staticmethod
    def value_args(
        values_files: Sequence[Path] = (), set_values: Mapping[str, object] | None = None
    ) -> list[str]:
        args: list[str] = []
        for path in values_files:
            args += ["--values", str(path)]
        for key, value in (set_values or {}).items():
            args += ["--set", f"{key}={value}"]  # helm types the value (30080 -> int, true -> bool)
        return args

    @staticmethod
    def wait_args(wait: bool, timeout: str) -> list[str]:
        return ["--wait", "--timeout", timeout] if wait else ["--timeout", timeout]

    # ------------------------------------------------------------------ namespace

    def ensure_namespace(self) -> None:
        """Create the namespace (or update its labels) with Pod Security "restricted" enforced."""
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": dict(self.namespace_labels)},
        }
        kube.apply_manifest(self.kubeconfig, json.dumps(manifest))

    def delete_namespace(self, wait: bool = True) -> None:
        kube.kubectl(
            self.kubeconfig,
            "delete",
            "namespace",
            self.namespace,
            "--ignore-not-found",
            f"--wait={str(wait).lower()}",
            timeout=300,
        )

    # ------------------------------------------------------------------ lifecycle

    def install(
        self,
        values_files: Sequence[Path] = (),
        set_values: Mapping[str, object] | None = None,
        wait: bool = True,
        timeout: str = DEFAULT_TIMEOUT,
        extra_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        self.ensure_namespace()
        return self.helm(
            "install",
            self.name,
            str(self.chart),
            *self.value_args(values_files, set_values),
            *self.wait_args(wait, timeout),
            *extra_args,
        )

    def upgrade(
        self,
        values_files: Sequence[Path] = (),
        set_values: Mapping[str, object] | None = None,
        wait: bool = True,
        timeout: str = DEFAULT_TIMEOUT,
        reuse_values: bool = False,
        install: bool = False,
        extra_args: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        if install:
            self.ensure_namespace()
        return self.helm(
            "upgrade",
            self.name,
            str(self.chart),
            *(["--install"] if install else []),
            *(["--reuse-values"] if reuse_values else []),
            *self.value_args(values_files, set_values),
            *self.wait_args(wait, timeout),
            *extra_args,
        )

    def apply(
        self,
        values_files: Sequence[Path] = (),
        set_values: Mapping[str, object] | None = None,
        timeout: str = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Install, or upgrade when the release exists (`helm upgrade --install`)."""
        return self.upgrade(values_files, set_values, timeout=timeout, install=True)

    def rollback(
        self, revision: int | None = None, wait: bool = True, timeout: str = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Roll back to revision (default: the previous one)."""
        revision_args = [str(revision)] if revision is not None else []
        return self.helm("rollback", self.name, *revision_args, *self.wait_args(wait, timeout))

    def uninstall(
        self, wait: bool = True, timeout: str = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return self.helm("uninstall", self.name, "--ignore-not-found", *self.wait_args(wait, timeout))

    def test(self, timeout: str = DEFAULT_TIMEOUT, logs: bool = True) -> subprocess.CompletedProcess[str]:
        return self.helm("test", self.name, "--timeout", timeout, *(["--logs"] if logs else []))

    # ------------------------------------------------------------------ inspection

    def exists(self) -> bool:
        result = kube.helm(
            self.kubeconfig, "status", self.name, "--namespace", self.namespace, check=False, timeout=60
        )
        return result.returncode == 0

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.helm("status", self.name, "--output", "json").stdout))

    def history(self) -> list[dict[str, Any]]:
        return list(json.loads(self.helm("history", self.name, "--output", "json").stdout))

    def revision(self) -> int:
        return int(self.status()["version"])

    def template(
        self, values_files: Sequence[Path] = (), set_values: Mapping[str, object] | None = None
    ) -> str:
        """Render the chart as this release would install it (client-side, no cluster state)."""
        return self.helm(
            "template", self.name, str(self.chart), *self.value_args(values_files, set_values)
        ).stdout


def parse_set(pairs: Sequence[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants key=value, got {pair!r}")
        values[key] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops.release", description=__doc__)
    parser.add_argument(
        "command",
        choices=("install", "upgrade", "apply", "rollback", "test", "uninstall", "delete-namespace"),
    )
    parser.add_argument("--name", default="tf-model-server")
    parser.add_argument("--namespace", default="tf-model-server")
    parser.add_argument("--values", "-f", action="append", type=Path, default=[])
    parser.add_argument("--set", action="append", default=[], dest="set_values")
    parser.add_argument("--revision", type=int)
    parser.add_argument("--timeout", default=DEFAULT_TIMEOUT)
    parser.add_argument("--kubeconfig", type=Path, help="default: the cluster `make cluster-up` brought up")
    args = parser.parse_args(argv)
    release = Release(args.name, args.namespace, args.kubeconfig or cluster.current_kubeconfig())
    values = parse_set(args.set_values)
    try:
        if args.command == "install":
            result = release.install(args.values, values, timeout=args.timeout)
        elif args.command == "upgrade":
            result = release.upgrade(args.values, values, timeout=args.timeout)
        elif args.command == "apply":
            result = release.apply(args.values, values, timeout=args.timeout)
        elif args.command == "rollback":
            result = release.rollback(args.revision, timeout=args.timeout)
        elif args.command == "test":
            result = release.test(timeout=args.timeout)
        elif args.command == "uninstall":
            result = release.uninstall(timeout=args.timeout)
        else:
            release.delete_namespace()
            return 0
    except ReleaseError as error:
        log(f"FAILED: {error}")
        return 1
    print(result.stdout, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
