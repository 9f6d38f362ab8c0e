"""Checks of the built server image: no build secret inside, runs as the chart runs it, start time.

verify        no file, layer history entry or env var carries the build machine's CA bundle
check         each tag run read-only as UID 10001 (only /tmp writable): both APIs answer a
              prediction with the tag's model version, and SIGTERM ends it with exit code 0
startup-time  container start -> ready, next to `import tensorflow` + model load in the same image
"""

from __future__ import annotations

import hashlib
import json
import socket
import statistics
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops import docker
from ops.progress import Steps

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Variant:
    """One build of the Dockerfile: which demo model versions are baked in, and its tags."""

    model_versions: str
    tags: tuple[str, ...]


def log(message: str) -> None:
    print(f"[image] {message}", flush=True)


step = Steps(log).step


def run(command: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=True, text=True, **kwargs)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------- secret scan


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scan_for_file(image: str, secret: Path) -> list[str]:
    """Paths in the image's file system whose content equals `secret`."""
    size = secret.stat().st_size
    digest = sha256_file(secret)
    container = run(["docker", "create", image], capture_output=True).stdout.strip()
    matches: list[str] = []
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.size == size:
                    handle = tar.extractfile(member)
                    if handle is not None and hashlib.sha256(handle.read()).hexdigest() == digest:
                        matches.append(member.name)
        export.wait()
    finally:
        subprocess.run(["docker", "rm", container], capture_output=True, check=False)
    return matches


def history_mentions(image: str, needle: str) -> list[str]:
    result = run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image], capture_output=True
    )
    config = run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Env}}", image], capture_output=True
    )
    lines = [*result.stdout.splitlines(), *json.loads(config.stdout or "[]")]
    # The secret's *mount* is named in the RUN line; its content never is.
    return [line for line in lines if needle in line and "--mount=type=secret" not in line]


def verify_image(image: str) -> None:
    if not CA_BUNDLE.exists():
        log(f"no {CA_BUNDLE} on this machine: nothing to scan for")
        return
    with step(f"scan {image} for the build machine's CA bundle"):
        copies = scan_for_file(image, CA_BUNDLE)
        mentions = history_mentions(image, str(CA_BUNDLE))
    if copies or mentions:
        raise SystemExit(f"{image} leaks the build CA bundle: files {copies}, history/env {mentions}")
    log(f"{image}: no copy of {CA_BUNDLE} in any file, layer history or env")


# ---------------------------------------------------------------------------- run check


CHECK_FLOW = [1.2, 20000.0, 2000.0, 30.0, 20.0, 1.0, 0.05, 0.0]


def post_json(url: str, payload: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()), {key.lower(): value for key, value in response.headers.items()}


def check_image(image: str, expected_version: str) -> None:
    """Run the image as the chart does (read-only root, non-root, /tmp only) and ask both APIs."""
    port = free_port()
    drain = ("-e", "TFMS_DRAIN_DELAY_SECONDS=1")
    container = run(
        ["docker", "run", "-d", *SECURE_RUN_FLAGS, *drain, *publish(port), image], capture_output=True
    ).stdout.strip()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/v2/health/ready", READY_TIMEOUT_SECONDS)
        rest, rest_headers = post_json(f"{base}/v1/models/anomaly:predict", {"instances": [CHECK_FLOW]})
        v2, _ = post_json(
            f"{base}/v2/models/anomaly/infer",
            {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": CHECK_FLOW}]},
        )
        # SIGTERM to PID 1 (the server itself): it must drain and exit 0.
        run(["docker", "stop", "-t", "30", container], capture_output=True)
        exit_code = run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container], capture_output=True)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    if exit_code.stdout.strip() != "0":
        raise SystemExit(f"{image} exited {exit_code.stdout.strip()} on SIGTERM, expected 0")
    version = rest_headers.get("x-model-version")
    if version != expected_version or v2.get("model_version") != expected_version:
        raise SystemExit(
            f"{image} serves version {version}/{v2.get('model_version')}, expected {expected_version}"
        )
    if "predictions" not in rest or not v2.get("outputs"):
        raise SystemExit(f"{image} answered unexpectedly: {rest} / {v2}")
    log(
        f"{image}: read-only root, UID 10001: :predict and /infer answer with version {expected_version} "
        f"({rest}); SIGTERM -> exit 0"
    )


def check_images(variants: Sequence[Variant]) -> None:
    for variant in variants:
        expected = variant.model_versions.split()[-1]
        for tag in variant.tags:
            with step(f"run check {tag}"):
                check_image(tag, expected)


# ---------------------------------------------------------------------------- startup time


READY_TIMEOUT_SECONDS = 120
FLOOR_SCRIPT = """
import time
started = time.monotonic()
import tensorflow as tf
imported = time.monotonic()
model = tf.saved_model.load("/models/anomaly/2")
loaded = time.monotonic()
print(f"{imported - started:.3f} {loaded - imported:.3f} {time.time():.3f}")
"""
SECURE_RUN_FLAGS = ("--read-only", "--tmpfs", "/tmp", "--user", "10001:10001")


def publish(port: int) -> tuple[str, str]:
    return ("-p", f"127.0.0.1:{port}:8501")


def wait_ready(url: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready within {timeout:.0f}s")


def time_server_start(image: str, port: int) -> float:
    started = time.monotonic()
    container = run(
        ["docker", "run", "-d", "--rm", *SECURE_RUN_FLAGS, *publish(port), image],
        capture_output=True,
    ).stdout.strip()
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", READY_TIMEOUT_SECONDS)
    finally:
        subprocess.run(["docker", "stop", "-t", "30", container], capture_output=True, check=False)
    return ready - started


def time_floor(image: str, port: int) -> tuple[float, float, float]:
    """(docker run -> model loaded, import tensorflow, model load) in seconds.

    The first is measured like start -> ready (containers share the host's wall clock),
    so the two compare directly; the others are timed inside the container.
    """
    started = time.time()
    # The same flags as the server's run, port mapping included, so only the server differs.
    flags = [*SECURE_RUN_FLAGS, *publish(port), "--entrypoint", "python"]
    result = run(
        ["docker", "run", "--rm", *flags, image, "-c", FLOOR_SCRIPT],
        capture_output=True,
    )
    import_seconds, load_seconds, loaded_at = (float(value) for value in result.stdout.split()[-3:])
    return loaded_at - started, import_seconds, load_seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def startup_time(image: str, runs: int, port: int) -> None:
    docker.ensure_daemon()
    port = port or free_port()
    ready: list[float] = []
    floor_total: list[float] = []
    floor_inside: list[float] = []
    for attempt in range(1, runs + 1):
        ready.append(time_server_start(image, port))
        total, import_seconds, load_seconds = time_floor(image, port)
        floor_total.append(total)
        floor_inside.append(import_seconds + load_seconds)
        log(
            f"run {attempt}: docker run -> ready {ready[-1]:.2f}s | floor: docker run -> model loaded "
            f"{total:.2f}s (in the container: import tensorflow {import_seconds:.2f}s "
            f"+ load {load_seconds:.2f}s)"
        )
    log(
        f"median of {runs}: docker run -> /v2/health/ready 200: {statistics.median(ready):.2f}s; "
        f"floor, docker run -> `import tensorflow` + anomaly/2 loaded: {statistics.median(floor_total):.2f}s "
        f"(of which import + load in the container: {statistics.median(floor_inside):.2f}s)"
    )
