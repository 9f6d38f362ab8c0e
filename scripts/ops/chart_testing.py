"""`make ct-install`: chart-testing's `ct install` of every chart/ci scenario on the cluster that is up.

1. the chart's image (tf-model-server:<appVersion>) loaded into the cluster (ops.image_load);
2. the prerequisites in chart/ci/fixtures/ applied: ct's namespace (ct.yaml `namespace`,
   Pod Security "restricted" enforced), the seeded claim for the pvc scenario and the
   in-cluster archive Service for the url scenario; then it waits for the seed Job and
   the archive server;
3. `ct install --config ct.yaml --charts chart --debug` with that cluster's KUBECONFIG and
   ./bin first on PATH. Per scenario ct runs `helm install --wait`, checks the rollout,
   runs `helm test`, prints the namespace's events and every pod's description and logs,
   and uninstalls; it stops at the first scenario that fails;
4. each scenario's install time and helm test result (read from ct's output by
   ops.ct_output) and a summary table; that no release is left behind is checked. The full
   output and a JSON summary go to reports/ct-install/;
5. the namespace deleted (fixtures and the finished test pods with it), also when something
   failed, unless --keep.

`--charts chart` rather than ct's default (the charts changed against origin/<target-branch>):
CI runs this on main itself, where nothing differs from origin/main, and with --charts
ct needs no git history at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ops import cluster, image_load, kube
from ops.ct_output import CtOutput, Result, table
from ops.paths import BIN_DIR, REPO_ROOT, REPORTS_DIR
from ops.progress import Steps

CT_CONFIG = REPO_ROOT / "ct.yaml"
CHART = "chart"
FIXTURES_DIR = REPO_ROOT / CHART / "ci" / "fixtures"
SEED_JOB = "seed-models"
ARCHIVE_DEPLOYMENT = "model-archive"
REPORT_DIR = REPORTS_DIR / "ct-install"
FIXTURE_TIMEOUT_SECONDS = 300


def log(message: str) -> None:
    print(f"[ct-install] {message}", flush=True)


step = Steps(log).step


# ---------------------------------------------------------------------- what ct will run


def ct_namespace() -> str:
    return str(yaml.safe_load(CT_CONFIG.read_text())["namespace"])


def chart_image() -> str:
    """The image the chart's defaults deploy: image.repository, tag empty = appVersion."""
    chart = yaml.safe_load((REPO_ROOT / CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO_ROOT / CHART / "values.yaml").read_text())["image"]
    return f"{values['repository']}:{values['tag'] or chart['appVersion']}"


def scenario_files() -> list[str]:
    """chart/ci/*-values.yaml in ct's order (Go's filepath.Glob sorts), as ct names them."""
    return [
        str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / CHART / "ci").glob("*-values.yaml"))
    ]


def require_tools() -> None:
    missing = [f"bin/{name}" for name in ("ct", "helm") if not (BIN_DIR / name).exists()]
    if missing:
        raise SystemExit(f"[ct-install] missing {', '.join(missing)}: run `make tools`")


# ---------------------------------------------------------------------- prerequisites


def namespace_exists(kubeconfig: Path, namespace: str) -> bool:
    return kube.succeeds(kubeconfig, "get", "namespace", namespace)


def delete_namespace(kubeconfig: Path, namespace: str) -> None:
    kube.kubectl(
        kubeconfig, "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", timeout=300
    )


def job_state(kubeconfig: Path, namespace: str, name: str) -> str:
    job = kube.kubectl_json(kubeconfig, "-n", namespace, "get", "job", name)
    for condition in job.get("status", {}).get("conditions", []):
        if condition["status"] == "True" and condition["type"] in ("Complete", "Failed"):
            return str(condition["type"])
    return "Running"


def wait_for_job(kubeconfig: Path, namespace: str, name: str) -> None:
    deadline = time.monotonic() + FIXTURE_TIMEOUT_SECONDS
    while (state := job_state(kubeconfig, namespace, name)) == "Running":
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    if state != "Complete":
        logs = kube.kubectl(kubeconfig, "-n", namespace, "logs", f"job/{name}", "--tail=30", check=False)
        events = kube.kubectl(
            kubeconfig, "-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False
        )
        raise RuntimeError(
            f"job {name} did not complete within {FIXTURE_TIMEOUT_SECONDS}s (state {state}):\n"
            f"{logs.stdout}{logs.stderr}\n{events.stdout[-3000:]}"
        )


def apply_fixtures(kubeconfig: Path, namespace: str) -> None:
    if namespace_exists(kubeconfig, namespace):
        log(f"namespace {namespace} exists (left by an earlier run): deleting it first")
        delete_namespace(kubeconfig, namespace)
    # kubectl applies a directory's files in name order: namespace.yaml comes first.
    result = kube.kubectl(kubeconfig, "apply", "-f", str(FIXTURES_DIR))
    log(result.stdout.strip().replace("\n", "; "))
    wait_for_job(kubeconfig, namespace, SEED_JOB)
    kube.kubectl(
        kubeconfig,
        "-n",
        namespace,
        "rollout",
        "status",
        f"deployment/{ARCHIVE_DEPLOYMENT}",
        f"--timeout={FIXTURE_TIMEOUT_SECONDS}s",
        timeout=FIXTURE_TIMEOUT_SECONDS + 30,
    )


def leftovers(kubeconfig: Path, namespace: str) -> list[str]:
    """Releases and release-owned workloads still in the namespace after ct's uninstalls."""
    releases = kube.helm(kubeconfig, "list", "--all", "--short", "--namespace", namespace).stdout.split()
    workloads = kube.kubectl(
        kubeconfig,
        "-n",
        namespace,
        "get",
        "deployments,services,horizontalpodautoscalers,poddisruptionbudgets,ingresses,networkpolicies",
        "-l",
        "app.kubernetes.io/instance",
        "-o",
        "name",
    ).stdout.split()
    return [f"release {name}" for name in releases] + workloads


# ---------------------------------------------------------------------- ct itself


def ct_command(helm_timeout: str | None, keep: bool) -> list[str]:
    command = [str(BIN_DIR / "ct"), "install", "--config", str(CT_CONFIG.name), "--charts", CHART, "--debug"]
    if helm_timeout:
        command += ["--helm-extra-args", f"--timeout {helm_timeout}"]
    if keep:
        command.append("--skip-clean-up")
    return command


def ct_environment(kubeconfig: Path) -> dict[str, str]:
    """ct runs `helm` and `kubectl` from PATH against $KUBECONFIG."""
    env = dict(os.environ)
    kubectl_dir = str(Path(kube.tool("kubectl")).parent)
    env["PATH"] = os.pathsep.join([str(BIN_DIR), kubectl_dir, env.get("PATH", "")])
    env["KUBECONFIG"] = str(kubeconfig)
    return env


def run_ct(
    command: Sequence[str], env: dict[str, str], transcript: Path, timeout_minutes: float
) -> tuple[int, CtOutput]:
    """Stream ct's output through (and into the transcript), reading it as it comes."""
    reader = CtOutput()
    log(f"$ {' '.join(command)}")
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # so the watchdog can stop ct and the helm/kubectl it runs
    )
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        os.killpg(process.pid, signal.SIGTERM)

    watchdog = threading.Timer(timeout_minutes * 60, stop)
    watchdog.start()
    try:
        assert process.stdout is not None
        with transcript.open("w") as record:
            for line in process.stdout:
                at = time.monotonic()
                sys.stdout.write(line)
                sys.stdout.flush()
                record.write(line)
                reader.feed(at, line)
        returncode = process.wait()
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        log(f"ct ran longer than {timeout_minutes:g} minutes: stopped")
    return returncode, reader


# ---------------------------------------------------------------------- report


def write_summary(results: Sequence[Result], returncode: int, extra: dict[str, Any]) -> Path:
    path = REPORT_DIR / "summary.json"
    scenarios = [
        {key: round(value, 2) if isinstance(value, float) else value for key, value in asdict(r).items()}
        for r in results
    ]
    path.write_text(
        json.dumps({"ct_exit_code": returncode, **extra, "scenarios": scenarios}, indent=2) + "\n"
    )
    return path


def report(results: Sequence[Result]) -> None:
    for result in results:
        name = result.values_file.rsplit("/", 1)[-1]
        detail = (
            f"install {result.install_seconds:.1f}s" if result.install_seconds is not None else "install -"
        )
        detail += f", helm test {result.helm_test}"
        if result.test_seconds is not None:
            detail += f" ({result.test_seconds:.1f}s)"
        if result.served:
            detail += f", predicted with {result.served}"
        if result.error:
            detail += f"; error: {result.error}"
        log(f"{name}: {result.status.upper() if not result.ok else 'passed'} ({detail})")
    print(table(results), flush=True)


# ---------------------------------------------------------------------- main


def run(provider: str, helm_timeout: str | None, keep: bool, timeout_minutes: float) -> bool:
    require_tools()
    kubeconfig = cluster.current_kubeconfig(provider)
    if not kube.succeeds(kubeconfig, "get", "--raw=/readyz"):
        raise SystemExit(
            f"[ct-install] the cluster in {kubeconfig} does not answer /readyz: `make cluster-up`"
        )
    namespace = ct_namespace()
    image = chart_image()
    scenarios = scenario_files()
    log(f"cluster {kubeconfig}; namespace {namespace}; image {image}; {len(scenarios)} scenarios")
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    transcript = REPORT_DIR / "ct.log"
    started = time.monotonic()
    with step(f"load {image} into the cluster"):
        image_load.load([image], provider)
    returncode = -1
    results: list[Result] = []
    left: list[str] = []
    try:
        fixtures = FIXTURES_DIR.relative_to(REPO_ROOT)
        with step(f"prerequisites from {fixtures}/ (namespace, seeded claim, archive server)"):
            apply_fixtures(kubeconfig, namespace)
        ct_started = time.monotonic()
        returncode, reader = run_ct(
            ct_command(helm_timeout, keep), ct_environment(kubeconfig), transcript, timeout_minutes
        )
        log(f"ct install exited {returncode} after {time.monotonic() - ct_started:.1f}s")
        results = reader.results(scenarios, ct_succeeded=returncode == 0)
        if not keep:
            left = leftovers(kubeconfig, namespace)
            log("ct removed every release" if not left else f"left behind by ct: {', '.join(left)}")
    finally:
        if keep:
            log(f"--keep: left namespace {namespace} with its fixtures and releases")
        else:
            with step(f"delete namespace {namespace} (fixtures, finished test pods)"):
                delete_namespace(kubeconfig, namespace)
    report(results)
    summary = write_summary(
        results, returncode, {"left_behind": left, "seconds": round(time.monotonic() - started, 1)}
    )
    log(f"ct's full output: {transcript.relative_to(REPO_ROOT)}; summary: {summary.relative_to(REPO_ROOT)}")
    passed = returncode == 0 and all(result.ok for result in results) and not left
    log(("passed" if passed else "FAILED") + f" in {time.monotonic() - started:.1f}s")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ops.chart_testing", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--provider",
        choices=cluster.PROVIDERS,
        default=os.environ.get("CLUSTER", "auto"),
        help="the cluster to test on (auto: the one `make cluster-up` started)",
    )
    parser.add_argument(
        "--helm-timeout",
        help="helm's --timeout for install/test/uninstall instead of ct.yaml's (e.g. 120s)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="ct --skip-clean-up, and leave the namespace for inspection"
    )
    parser.add_argument("--timeout-minutes", type=float, default=60, help="stop ct after this long")
    args = parser.parse_args(argv)
    try:
        return 0 if run(args.provider, args.helm_timeout, args.keep, args.timeout_minutes) else 1
    except (RuntimeError, subprocess.CalledProcessError) as error:  # ToolMissing is a RuntimeError
        detail = (
            kube.describe_failure(error) if isinstance(error, subprocess.CalledProcessError) else str(error)
        )
        log(f"FAILED: {detail}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
