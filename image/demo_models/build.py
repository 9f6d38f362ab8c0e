"""Build the demo model repository: `python -m demo_models.build --out DIR --versions 1 2`.

Writes TF Serving's layout, DIR/anomaly/<version>/ for each requested version and
DIR/heavy/1/. Deterministic (constants and seeded weights), no downloads, a few seconds.
A stamp file makes a repeat run with the same sources and arguments a no-op.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

MODELS = ("anomaly", "heavy")
STAMP = ".demo-models-stamp"


def source_digest(versions: Sequence[int], models: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{sorted(versions)} {sorted(models)}".encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def build_into(out: Path, versions: Sequence[int], models: Sequence[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from demo_models import anomaly, heavy

    if "anomaly" in models:
        for version in versions:
            anomaly.build(version, out / "anomaly" / str(version))
    if "heavy" in models:
        heavy.build(out / "heavy" / "1")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_models.build", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="model repository to create")
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 2], help="anomaly versions (1, 2)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.versions) - {1, 2})
    if unknown:
        parser.error(f"anomaly has versions 1 and 2 only, not {unknown}")

    out: Path = args.out
    digest = source_digest(args.versions, args.models)
    stamp = out / STAMP
    if not args.force and stamp.is_file() and stamp.read_text() == digest:
        print(f"demo models in {out} are up to date", flush=True)
        return
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap in, so a failed build never leaves half a repository.
    with tempfile.TemporaryDirectory(prefix=".demo-models-", dir=out.parent) as scratch:
        staging = Path(scratch) / "models"
        build_into(staging, args.versions, args.models)
        (staging / STAMP).write_text(digest)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    built = ", ".join(
        f"{model}/{version.name}"
        for model in sorted(args.models)
        for version in sorted((out / model).iterdir())
    )
    print(f"built {built} into {out} in {time.monotonic() - started:.1f}s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
