"""Peak RSS while the server swaps model versions: `make swap-memory` (run under the measure lock).

Starts the real server (`python -m modelserver`, 127.0.0.1) on a copy of the demo models
(anomaly version 2 and heavy version 1), samples its RSS (/proc/<pid>/status VmRSS) every
20 ms, and once it is ready and settled publishes a new version of each (copied beside,
renamed into place, as a user publishes one). With the default policy (latest 1) each
model then holds two versions until the new one is available and the old one unloaded.
Prints baseline, peak and after-swap RSS, and writes reports/bench/swap-memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ops.paths import REPO_ROOT, REPORTS_DIR

SAMPLE_S = 0.02
SETTLE_S = 3.0


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def states(base: str, model: str) -> dict[str, str]:
    try:
        statuses = get_json(f"{base}/v1/models/{model}")["model_version_status"]
    except OSError:
        return {}
    return {s["version"]: s["state"] for s in statuses}


def publish(model_dir: Path, source: str, target: str) -> None:
    staging = model_dir / f".incoming-{target}"
    shutil.copytree(model_dir / source, staging)
    staging.rename(model_dir / target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.swap_memory", description=__doc__)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfms-swap-") as scratch:
        repo = Path(scratch) / "models"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "image"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run(
            [sys.executable, "-m", "demo_models.build", "--out", str(repo), "--versions", "2"],
            check=True,
            env=env,
            timeout=300,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = {
            **{k: v for k, v in env.items() if not k.startswith("TFMS_")},
            "TFMS_HOST": "127.0.0.1",
            "TFMS_PORT": str(port),
            "TFMS_MODEL_BASE_PATH": str(repo),
            "TFMS_MODEL_NAME": "anomaly,heavy",
            "TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS": "0.5",
            "TFMS_LOG_LEVEL": "warning",
        }
        process = subprocess.Popen([sys.executable, "-m", "modelserver"], env=server_env)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                value = rss_mib(process.pid)
                if value is not None:
                    samples.append((time.monotonic(), value))
                time.sleep(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.2)
            else:
                raise SystemExit("the server did not become ready")
            time.sleep(SETTLE_S)
            ready_at = time.monotonic()
            baseline = max(value for at, value in samples if at >= ready_at - 1.0)
            swap_started = time.monotonic()
            publish(repo / "anomaly", "2", "3")
            publish(repo / "heavy", "1", "2")
            while time.monotonic() < deadline:
                if states(base, "anomaly").get("2") == "END" and states(base, "heavy").get("1") == "END":
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(
                    f"the swap did not finish: {states(base, 'anomaly')} {states(base, 'heavy')}"
                )
            swapped_at = time.monotonic()
            time.sleep(SETTLE_S)
        finally:
            stop.set()
            sampler.join()
            process.terminate()
            process.wait(timeout=30)
    during = [value for at, value in samples if swap_started <= at <= swapped_at]
    after = [value for at, value in samples if at >= swapped_at + SETTLE_S - 1.0]
    result = {
        "models": "anomaly (v2 -> v3) and heavy (v1 -> v2), latest {1}, loaded one after the other",
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_during_swap_mib": round(max(during), 1),
        "rss_after_swap_mib": round(max(after), 1),
        "swap_seconds": round(swapped_at - swap_started, 2),
        "sample_interval_s": SAMPLE_S,
    }
    out = REPORTS_DIR / "bench" / "swap-memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
