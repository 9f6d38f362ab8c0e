"""`make smoke`: the chart works on whichever cluster is up.

1. install the chart with its default values (only service.type=NodePort and a free
   NodePort set) into a fresh namespace that enforces Pod Security "restricted";
   helm waits for the rollout;
2. `helm test` (the chart's own prediction round trip, inside the cluster);
3. a pod in that namespace resolves the Service's full name through cluster DNS;
4. a prediction through the NodePort on 127.0.0.1, checked (ops.predict);
5. every chart/ci/*-values.yaml scenario rendered with `helm template` and applied with
   `kubectl apply --dry-run=server` (schema, admission and Pod Security on the real apiserver);
6. uninstall and delete the namespace (also on failure, unless --keep).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from ops import cluster, kube, predict
from ops.progress import Steps
from ops.release import CHART_DIR, Release, ReleaseError

RELEASE_NAME = "smoke"
# The NodePorts kind publishes on 127.0.0.1 (scripts/kind-config.yaml); any free one will do.
NODE_PORTS = range(30080, 30090)
DNS_CHECK = "import socket, sys; name = sys.argv[1]; print(name, '->', socket.gethostbyname(name))"


def log(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


def free_node_port(kubeconfig: Path) -> int:
    services = kube.kubectl_json(kubeconfig, "get", "services", "--all-namespaces")
    used = {port.get("nodePort") for item in services["items"] for port in item["spec"].get("ports", [])}
    for port in NODE_PORTS:
        if port not in used:
            return port
    raise RuntimeError(f"every NodePort {NODE_PORTS.start}-{NODE_PORTS.stop - 1} is taken")


def pod_diagnostics(release: Release) -> str:
    pods = kube.kubectl(release.kubeconfig, "-n", release.namespace, "get", "pods", "-o", "wide", check=False)
    events = kube.kubectl(
        release.kubeconfig, "-n", release.namespace, "get", "events", "--sort-by=.lastTimestamp", check=False
    )
    return f"{pods.stdout}{pods.stderr}\n{events.stdout[-3000:]}"


def restricted_pod_overrides(image: str, args: list[str]) -> str:
    """A one-off pod that passes Pod Security "restricted" (what the namespace enforces)."""
    container = {
        "name": "dns-check",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", DNS_CHECK, *args],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return json.dumps({"apiVersion": "v1", "spec": {"containers": [container], "restartPolicy": "Never"}})


def service_name(release: Release) -> str:
    services = kube.kubectl_json(
        release.kubeconfig,
        "-n",
        release.namespace,
        "get",
        "services",
        "-l",
        f"app.kubernetes.io/instance={release.name}",
    )
    return str(services["items"][0]["metadata"]["name"])


def server_image(release: Release) -> str:
    deployments = kube.kubectl_json(
        release.kubeconfig,
        "-n",
        release.namespace,
        "get",
        "deployments",
        "-l",
        f"app.kubernetes.io/instance={release.name}",
    )
    return str(deployments["items"][0]["spec"]["template"]["spec"]["containers"][0]["image"])


def check_dns(release: Release) -> str:
    fqdn = f"{service_name(release)}.{release.namespace}.svc.cluster.local"
    result = kube.kubectl(
        release.kubeconfig,
        "-n",
        release.namespace,
        "run",
        "dns-check",
        "--rm",
        "--attach",
        "--quiet",
        "--restart=Never",
        f"--image={server_image(release)}",
        f"--overrides={restricted_pod_overrides(server_image(release), [fqdn])}",
        "--pod-running-timeout=2m",
        timeout=180,
        check=False,
    )
    if result.returncode != 0 or "->" not in result.stdout:
        raise AssertionError(f"a pod could not resolve {fqdn}:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def dry_run_scenarios(release: Release) -> list[str]:
    """Render each chart/ci scenario and let the real apiserver validate it (nothing is created)."""
    checked = []
    for values in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        # A release name of its own, so each scenario is a pure create (not an update of the smoke release).
        scenario = Release(
            f"ci-{values.name.removesuffix('-values.yaml')}", release.namespace, release.kubeconfig
        )
        rendered = scenario.template(values_files=[values])
        result = kube.kubectl(
            release.kubeconfig,
            "-n",
            release.namespace,
            "apply",
            "--dry-run=server",
            "-f",
            "-",
            input_text=rendered,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{values.name}: the apiserver rejects it:\n{result.stderr or result.stdout}"
            )
        if "Warning" in result.stderr:
            raise AssertionError(f"{values.name}: the apiserver warns:\n{result.stderr}")
        checked.append(f"{values.name}: {len(result.stdout.splitlines())} objects accepted")
    if not checked:
        raise AssertionError(f"no scenarios in {CHART_DIR / 'ci'}")
    return checked


def run(keep: bool = False) -> None:
    steps = Steps(log)
    kubeconfig = cluster.current_kubeconfig()
    namespace = f"tfms-smoke-{secrets.token_hex(3)}"
    release = Release(RELEASE_NAME, namespace, kubeconfig)
    port = free_node_port(kubeconfig)
    log(f"cluster {kubeconfig}, namespace {namespace}, NodePort {port}")
    failed = True
    try:
        with steps.step("install the chart (defaults + NodePort) and wait for the rollout"):
            try:
                release.install(set_values={"service.type": "NodePort", "service.nodePort": port})
            except ReleaseError as error:
                raise AssertionError(f"{error}\n{pod_diagnostics(release)}") from error
        with steps.step("helm test"):
            log(release.test().stdout.strip().splitlines()[-1])
        with steps.step("a pod resolves the Service's cluster DNS name"):
            log(check_dns(release))
        with steps.step(f"prediction through NodePort 127.0.0.1:{port}"):
            log(predict.check(predict.predict(port)))
        with steps.step("chart/ci scenarios: helm template | kubectl apply --dry-run=server"):
            for line in dry_run_scenarios(release):
                log(line)
        failed = False
    finally:
        if keep:
            log(f"--keep: left release {RELEASE_NAME} in namespace {namespace}")
        else:
            with steps.step("uninstall and delete the namespace"):
                cleanup(release)
        log(("FAILED" if failed else "passed") + f"; steps:\n{steps.summary()}")


def cleanup(release: Release) -> None:
    attempts: list[Callable[[], object]] = [release.uninstall, release.delete_namespace]
    for attempt in attempts:
        try:
            attempt()
        except (ReleaseError, Exception) as error:  # keep cleaning up after a failed step
            log(f"cleanup: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ops.smoke", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the release and namespace for inspection")
    args = parser.parse_args(argv)
    try:
        run(keep=args.keep)
    except AssertionError as error:
        log(f"FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
