"""The server image: pick (or build offline) a base, build the tags, verify and time them.

Subcommands (``python -m ops.image <command> --help``):
  build         base image + tf-model-server:{0.1.0,v1,v2}, then verify + check
  base          only choose/build the base image and print its name
  verify        scan an image for the build machine's CA bundle (must be absent)
  check         run each tag read-only as UID 10001; both APIs must answer a prediction
  startup-time  container start -> ready, next to `import tensorflow` + model load

The base image is ops.image_base's choice, the checks are ops.image_check; loading the
images into a cluster is ops.image_load (`make load`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ops import docker
from ops.image_base import DEFAULT_BASE, choose_base
from ops.image_check import (
    CA_BUNDLE,
    Variant,
    check_images,
    log,
    run,
    startup_time,
    step,
    verify_image,
)
from ops.paths import REPO_ROOT, cache_root

IMAGE_NAME = "tf-model-server"
APP_VERSION = "0.1.0"
BUILD_CONTEXT = REPO_ROOT / "image"

VARIANTS = (
    Variant("1 2", (f"{IMAGE_NAME}:{APP_VERSION}", f"{IMAGE_NAME}:v2")),
    Variant("1", (f"{IMAGE_NAME}:v1",)),
)


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


def checked_ids_path() -> Path:
    """The image IDs that last passed verify + check (an unchanged rebuild need not repeat them)."""
    return cache_root() / "image" / "checked.json"


def checked_ids() -> dict[str, str | None]:
    try:
        return dict(json.loads(checked_ids_path().read_text()))
    except (OSError, ValueError):
        return {}


def image_size_mb(name: str) -> float:
    result = run(["docker", "image", "inspect", "--format", "{{.Size}}", name], capture_output=True)
    return int(result.stdout.strip()) / 1e6


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
    ids = {tag: docker.image_id(tag) for variant in VARIANTS for tag in variant.tags}
    if args.skip_verify:
        log("--skip-verify: the CA-bundle scan and the run checks are skipped")
    elif checked_ids() == ids:
        log("every tag is the image that passed the scan and the run checks before: not checking again")
    else:
        verify_image(VARIANTS[0].tags[0])
        check_images(VARIANTS)
        checked_ids_path().parent.mkdir(parents=True, exist_ok=True)
        checked_ids_path().write_text(json.dumps(ids, indent=2))
    log(f"all images built in {time.monotonic() - overall:.1f}s")


def command_verify(args: argparse.Namespace) -> None:
    docker.ensure_daemon()
    verify_image(args.image)


def command_check(args: argparse.Namespace) -> None:
    docker.ensure_daemon()
    check_images(VARIANTS)


def command_startup_time(args: argparse.Namespace) -> None:
    startup_time(args.image, args.runs, args.port)


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
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
