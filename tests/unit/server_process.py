"""Start real `python -m modelserver` processes on 127.0.0.1 for the tests, and talk to them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = REPO_ROOT / "image"
TESTS_DIR = REPO_ROOT / "tests"
STARTUP_TIMEOUT_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TFMS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(IMAGE_DIR), str(TESTS_DIR)])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra or {})
    return env


def build_models(out: Path) -> None:
    """The demo repository plus the slow test model, in one TensorFlow process."""
    script = (
        "import sys; from pathlib import Path; "
        "from demo_models.build import build_into; from unit import slow_model; "
        "out = Path(sys.argv[1]); build_into(out, [1, 2], ['anomaly', 'heavy']); "
        "slow_model.build(out / 'slow' / '1')"
    )
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=python_env(), timeout=300)


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    grpc_port: int = 0
    started_at: float = field(default_factory=time.monotonic)
    startup_statuses: list[int | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC port (every test server opens one)."""
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> list[int | None]:
        """Poll readiness until 200; the statuses seen on the way (None = connection refused)."""
        seen: list[int | None] = []
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                    )
                try:
                    status = client.get("/v2/health/ready").status_code
                except httpx.TransportError:
                    status = None
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == 200:
                    self.startup_statuses = seen
                    return seen
                time.sleep(0.05)
        raise AssertionError(f"server not ready within {timeout}s; statuses {seen}:\n{self.log()[-3000:]}")

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server not listening within {timeout}s:\n{self.log()[-3000:]}")

    def terminate(self) -> int:
        return self.stop(signal.SIGTERM)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(model_repo: Path, log_dir: Path, name: str, **settings: str) -> ServerProcess:
    """A server with TFMS_* settings (keys without the prefix, e.g. batch_enabled="false")."""
    port = free_port()
    grpc_port = free_port()
    env = python_env(
        {
            "TFMS_HOST": "127.0.0.1",
            "TFMS_PORT": str(port),
            "TFMS_GRPC_PORT": str(grpc_port),
            "TFMS_MODEL_BASE_PATH": str(model_repo),
            "POD_NAME": f"unit-{name}",
            **{f"TFMS_{key.upper()}": value for key, value in settings.items()},
        }
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelserver"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return ServerProcess(process, port, log_path, grpc_port)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(key) == f'"{wanted}"' for key, wanted in labels.items()):
            return float(value)
    return 0.0
