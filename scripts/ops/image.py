"""The server image: pick (or build offline) a base, build the tags, verify and time them.

Subcommands (``python -m ops.image <command> --help``):
  build         base image + tf-model-server:{0.1.0,v1,v2}, then verify + check
  base          only choose/build the base image and print its name
  verify        scan an image for the build machine's CA bundle (must be absent)
  check         run each tag read-only as UID 10001; both APIs must answer a prediction
  startup-time  container start -> ready, next to `import tensorflow` + model load
  load          into the cluster that is up: kind, or the local cluster's containerd (ops.image_load)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ops import apt, docker
from ops.paths import REPO_ROOT, cache_root
from ops.progress import Steps

IMAGE_NAME = "tf-model-server"
APP_VERSION = "0.1.0"
DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "tfms-base:bookworm"
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PULL_TIMEOUT_SECONDS = 30
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CONTEXT = REPO_ROOT / "image"


@dataclass(frozen=True)
class Variant:
    """One build of the Dockerfile: which demo model versions are baked in, and its tags."""

    model_versions: str
    tags: tuple[str, ...]


VARIANTS = (
    Variant("1 2", (f"{IMAGE_NAME}:{APP_VERSION}", f"{IMAGE_NAME}:v2")),
    Variant("1", (f"{IMAGE_NAME}:v1",)),
)


def log(message: str) -> None:
    print(f"[image] {message}", flush=True)


step = Steps(log).step


def run(command: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=True, text=True, **kwargs)  # type: ignore[call-overload]


def image_exists(name: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return result.returncode == 0


def try_pull(name: str) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ["docker", "pull", name],
            capture_output=True,
            text=True,
            timeout=PULL_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"pull timed out after {PULL_TIMEOUT_SECONDS}s"
    reason = (result.stderr.strip().splitlines() or ["pulled"])[-1]
    return result.returncode == 0, reason


# ---------------------------------------------------------------------------- base image


def apt_mirror() -> str:
    """The Debian mirror apt on this machine uses (debootstrap should use the same one)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file() or source.name.endswith(".disabled-by-farm"):
            continue
        for line in source.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                urls = [word for word in words[1:] if "://" in word]
                if urls:
                    return urls[0]
    return "http://deb.debian.org/debian"


def base_tarball() -> Path:
    return cache_root() / "base" / f"debian-{DEBIAN_SUITE}-minbase-python3.tar"


def ensure_debootstrap() -> str:
    path = shutil.which("debootstrap")
    if path:
        return path
    apt.install(["debootstrap"], "the offline base image needs debootstrap")
    return shutil.which("debootstrap") or "debootstrap"


def build_base_tarball(tarball: Path) -> None:
    """debootstrap a minimal Debian with python3 into a root fs tarball (cached)."""
    debootstrap = ensure_debootstrap()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="tfms-rootfs-", dir=tarball.parent) as rootfs:
        run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                rootfs,
                mirror,
            ]
        )
        # Inside containers Debian's mirror is reached over plain http.
        (Path(rootfs) / "etc/apt/sources.list").write_text(
            f"deb http://deb.debian.org/debian {DEBIAN_SUITE} main\n"
            f"deb http://deb.debian.org/debian {DEBIAN_SUITE}-updates main\n"
            f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main\n"
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (Path(rootfs) / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "-C", rootfs, "-cf", str(partial), "."])
        partial.replace(tarball)


def ensure_offline_base() -> None:
    if image_exists(OFFLINE_BASE):
        return
    tarball = base_tarball()
    if not tarball.exists():
        with step(f"debootstrap {DEBIAN_SUITE} minbase + python3 into {tarball}"):
            build_base_tarball(tarball)
    with step(f"docker import {tarball.name} as {OFFLINE_BASE}"):
        run(["docker", "import", str(tarball), OFFLINE_BASE], capture_output=True)


def choose_base(requested: str | None) -> str:
    """The base image for this build, and say why it was chosen."""
    if requested:
        log(f"base image: {requested} (requested)")
        return requested
    if image_exists(DEFAULT_BASE):
        log(f"base image: {DEFAULT_BASE} (present locally)")
        return DEFAULT_BASE
    pulled, reason = try_pull(DEFAULT_BASE)
    if pulled:
        log(f"base image: {DEFAULT_BASE} (pulled)")
        return DEFAULT_BASE
    log(f"{DEFAULT_BASE} is not available ({reason}); using the offline base {OFFLINE_BASE}")
    ensure_offline_base()
    log(f"base image: {OFFLINE_BASE} (debootstrap {DEBIAN_SUITE}, built offline from apt's mirror)")
    return OFFLINE_BASE


# ---------------------------------------------------------------------------- server image


def build_variant(base: str, variant: Variant, tf_package: str) -> None:
    client = docker.build_client()
    command = [
        client.binary,
        "build",
        "--file",
        str(BUILD_CONTEXT / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"DEMO_MODEL_VERSIONS={variant.model_versions}",
        "--build-arg",
        f"TF_PACKAGE={tf_package}",
    ]
    if CA_BUNDLE.exists():
        # A BuildKit secret: mounted for the pip step only, never stored in a layer.
        command += ["--secret", f"id=ca-bundle,src={CA_BUNDLE}"]
    for tag in variant.tags:
        command += ["--tag", tag]
    command.append(str(BUILD_CONTEXT))
    with step(f"docker build {', '.join(variant.tags)} (models {variant.model_versions!r})"):
        subprocess.run(command, check=True, env=client.env)


def image_size_mb(name: str) -> float:
    result = run(["docker", "image", "inspect", "--format", "{{.Size}}", name], capture_output=True)
    return int(result.stdout.strip()) / 1e6


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


def check_images() -> None:
    for variant in VARIANTS:
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


# ---------------------------------------------------------------------------- commands


def command_base(args: argparse.Namespace) -> None:
    docker.ensure_daemon()
    print(choose_base(args.base_image))


def command_build(args: argparse.Namespace) -> None:
    overall = time.monotonic()
    with step("ensure a docker daemon"):
        docker.ensure_daemon()
    with step("choose the base image"):
        base = choose_base(args.base_image)
    for variant in VARIANTS:
        build_variant(base, variant, args.tf_package)
    for variant in VARIANTS:
        log(f"{', '.join(variant.tags)}: {image_size_mb(variant.tags[0]):.0f} MB")
    if not args.skip_verify:
        verify_image(VARIANTS[0].tags[0])
        check_images()
    log(f"all images built in {time.monotonic() - overall:.1f}s")


def command_verify(args: argparse.Namespace) -> None:
    docker.ensure_daemon()
    verify_image(args.image)


def command_check(args: argparse.Namespace) -> None:
    docker.ensure_daemon()
    check_images()


def command_startup_time(args: argparse.Namespace) -> None:
    startup_time(args.image, args.runs, args.port)


def command_load(args: argparse.Namespace) -> None:
    from ops import image_load  # the cluster side (kind / local containerd) lives there

    image_load.load(args.images or image_load.IMAGES, args.provider)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ops.image", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], None], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    build = add("build", command_build, "build the base (if needed) and tf-model-server:{0.1.0,v1,v2}")
    build.add_argument(
        "--base-image", help=f"skip the choice and build FROM this (default: {DEFAULT_BASE} or offline)"
    )
    build.add_argument("--tf-package", default="", help="pip spec replacing the pinned tensorflow-cpu (GPU)")
    build.add_argument(
        "--skip-verify",
        action="store_true",
        help="skip the CA-bundle scan and the run check of the built images",
    )

    base = add("base", command_base, "choose or build the base image and print its name")
    base.add_argument("--base-image", help="use this base as is")

    verify = add("verify", command_verify, "scan an image for the build machine's CA bundle")
    verify.add_argument("--image", default=f"{IMAGE_NAME}:{APP_VERSION}")

    add("check", command_check, "run each tag read-only as UID 10001 and ask both APIs for a prediction")

    timing = add("startup-time", command_startup_time, "median container start -> ready next to the TF floor")
    timing.add_argument("--image", default=f"{IMAGE_NAME}:{APP_VERSION}")
    timing.add_argument("--runs", type=int, default=3)
    timing.add_argument("--port", type=int, default=0, help="host port on 127.0.0.1 (default: a free one)")

    load = add("load", command_load, "load the images into the cluster that is up (kind or local)")
    load.add_argument("images", nargs="*", help="default: tf-model-server:{0.1.0,v1,v2}")
    load.add_argument("--provider", default="auto", help="auto: the cluster `make cluster-up` started")
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
