"""The servers under test: how each starts, when it is ready, and which request it gets.

Every server gets the same CPU budget (one core, TensorFlow at one intra-op and one
inter-op thread), the same SavedModel and the same instance. Ours, the naive app,
BentoML and the ceiling receive the identical TF Serving-style body; MLServer, whose
batching only exists on its V2 endpoint, gets the same instance as a V2 request. The
gRPC entries (`ours-grpc`, `mlserver-grpc`) are the same processes as their REST ones,
driven on their gRPC port with the Open Inference Protocol's ModelInfer, the same
instance again.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from open_inference.grpc import protocol as oip
from ops.paths import REPO_ROOT

from bench import grpc_loadgen, venvs
from bench.models import Model

PEERS_DIR = venvs.PEERS_DIR
TF_THREADS = 1
# Same batching knobs for every server that batches (ours' defaults).
MAX_BATCH_SIZE = 32
MAX_BATCH_WAIT_MS = 2
# gunicorn's documented starting point for sync workers: (2 x cores) + 1, with one core.
GUNICORN_WORKERS = 2 * 1 + 1
STARTUP_TIMEOUT_SECONDS = 240
# A server's gRPC port, next to its HTTP port (MLServer's metrics port is + 2000).
GRPC_PORT_OFFSET = 1000
MODEL_INFER = "inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Request:
    """What the load generator sends: an HTTP POST, or a unary gRPC call (`protoset` set)."""

    path: str  # HTTP path, or the gRPC method as package.Service/Method
    body: bytes  # HTTP body, or the serialized request message
    protocol: str
    protoset: bytes | None = None  # gRPC: FileDescriptorSet holding the method's service
    shown: str = ""  # the body as text, for the report

    @property
    def is_grpc(self) -> bool:
        return self.protoset is not None

    def text(self, limit: int = 300) -> str:
        return (self.shown or self.body.decode())[:limit]


def grpc_port_of(port: int) -> int:
    return port + GRPC_PORT_OFFSET


def one_cpu_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment plus thread settings for a one-core budget."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(key, None)
    env |= {
        "PYTHONUNBUFFERED": "1",
        "BENCH_TF_THREADS": str(TF_THREADS),
        "TF_NUM_INTRAOP_THREADS": str(TF_THREADS),
        "TF_NUM_INTEROP_THREADS": str(TF_THREADS),
        "OMP_NUM_THREADS": str(TF_THREADS),
    }
    return env | extra


def tfserving_request(model: Model) -> Request:
    return Request(f"/v1/models/{model.name}:predict", model.tfserving_body(), "TF Serving REST predict")


def model_infer_request(model: Model) -> Request:
    message = model.v2_grpc_request()
    return Request(
        MODEL_INFER,
        message.SerializeToString(),
        "Open Inference Protocol gRPC ModelInfer",
        protoset=grpc_loadgen.protoset(oip.DESCRIPTOR),
        shown=text_format.MessageToString(message, as_one_line=True),
    )


# The batching server: the one every comparison, and the TensorFlow floor's mean batch, is about.
OURS = "ours"
MAX_BATCH_PREFIX = f"{OURS}-b"  # + N: ours with another max batch size (`--max-batch-sizes`)


class Server(ABC):
    name: str
    description: str
    venv: str | None = None  # peer venv name; None = the project's venv
    # Its request() is a gRPC call, driven by ghz, not wrk. Such an entry is its REST twin's
    # server driven on its gRPC port, so the cold start does not measure it again.
    speaks_grpc = False
    # Its HTTP port's /metrics has the tfms_batch_size histogram: each run records its batches.
    exposes_batch_metrics = False
    # The most rows it puts in one model call (the top of its batch-size histogram).
    max_batch_size = MAX_BATCH_SIZE

    def python(self) -> Path:
        if self.venv is None:
            return venvs.PROJECT_VENV / "bin" / "python"
        return venvs.python_of(self.venv)

    def prepare(self) -> None:
        """Build what the server needs before anything is timed (its venv)."""
        self.python()

    @abstractmethod
    def argv(self, model: Model, port: int, workdir: Path) -> list[str]: ...

    @abstractmethod
    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]: ...

    @abstractmethod
    def ready_path(self, model: Model) -> str: ...

    @abstractmethod
    def request(self, model: Model) -> Request: ...

    def cwd(self, workdir: Path) -> Path:
        return workdir

    def grpc_target(self, port: int) -> str:
        """host:port the gRPC request goes to (only asked of servers whose request is gRPC)."""
        return f"127.0.0.1:{grpc_port_of(port)}"


class Ours(Server):
    """tf-model-server itself, with adaptive batching on or off."""

    exposes_batch_metrics = True

    def __init__(self, batching: bool) -> None:
        self.batching = batching
        self.name = OURS if batching else "ours-nobatch"
        self.description = f"tf-model-server, batching {'on' if batching else 'off'}"
        self.image_dir = REPO_ROOT / "image"

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        return [str(self.python()), "-m", "modelserver"]

    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]:
        return one_cpu_env(
            {
                "PYTHONPATH": str(self.image_dir),
                "TFMS_HOST": "127.0.0.1",
                "TFMS_PORT": str(port),
                # Its own port: the default 8500 would be taken by the first `ours` started.
                "TFMS_GRPC_PORT": str(grpc_port_of(port)),
                "TFMS_MODEL_BASE_PATH": str(model.path.parent.parent),
                "TFMS_MODEL_NAME": model.name,
                "TFMS_BATCH_ENABLED": "true" if self.batching else "false",
                "TFMS_BATCH_MAX_SIZE": str(self.max_batch_size),
                "TFMS_BATCH_MAX_WAIT_MS": str(MAX_BATCH_WAIT_MS),
                "TFMS_INTRA_OP_THREADS": str(TF_THREADS),
                "TFMS_INTER_OP_THREADS": str(TF_THREADS),
                "TFMS_DRAIN_DELAY_SECONDS": "0",
                "TFMS_LOG_LEVEL": "warning",
            }
        )

    def ready_path(self, model: Model) -> str:
        return "/v2/health/ready"

    def request(self, model: Model) -> Request:
        return tfserving_request(model)


class OursGrpc(Ours):
    """tf-model-server with batching, driven over gRPC (GRPCInferenceService/ModelInfer)."""

    speaks_grpc = True

    def __init__(self) -> None:
        super().__init__(batching=True)
        self.name = "ours-grpc"
        self.description = "tf-model-server, batching on, gRPC ModelInfer (same process and batcher as REST)"

    def request(self, model: Model) -> Request:
        return model_infer_request(model)


class OursBaseline(Ours):
    """tf-model-server from another checkout (`--baseline DIR`): a hot-path change before and after,
    side by side in one run, with this checkout's harness, settings and venv."""

    def __init__(self, checkout: Path) -> None:
        super().__init__(batching=True)
        self.image_dir = checkout.resolve() / "image"
        if not (self.image_dir / "modelserver" / "__main__.py").is_file():
            raise SystemExit(f"--baseline {checkout}: no image/modelserver/__main__.py there")
        self.name = BASELINE
        self.description = f"tf-model-server from {checkout}, batching on"


class OursMaxBatch(Ours):
    """tf-model-server with another max batch size (`--max-batch-sizes`), beside the default one."""

    def __init__(self, max_batch_size: int) -> None:
        super().__init__(batching=True)
        self.max_batch_size = max_batch_size
        self.name = f"{MAX_BATCH_PREFIX}{max_batch_size}"
        self.description = f"tf-model-server, batching on, at most {max_batch_size} rows per call"


class Ceiling(Server):
    """Our HTTP stack and request parsing answering a constant: no model call at all."""

    name = "ceiling"
    description = "our HTTP stack + request parsing, constant answer, no model"
    script = "app.py"

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        return [
            str(self.python()),
            str(PEERS_DIR / "ceiling" / self.script),
            f"--port={port}",
            f"--input-name={model.input_name}",
            f"--dtype={model.dtype}",
            f"--instance-shape={','.join(map(str, model.instance_shape))}",
        ]

    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]:
        return one_cpu_env({"PYTHONPATH": str(REPO_ROOT / "image")})

    def ready_path(self, model: Model) -> str:
        return "/v2/health/ready"

    def request(self, model: Model) -> Request:
        return tfserving_request(model)


class CeilingGrpc(Ceiling):
    """The ceiling's gRPC twin: our gRPC stack and ModelInfer decoding, constant answer, no model."""

    name = "ceiling-grpc"
    description = "our gRPC stack (grpc.aio, same loop) + ModelInfer decoding, constant answer, no model"
    speaks_grpc = True
    script = "grpc_app.py"

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        return [*super().argv(model, port, workdir), f"--grpc-port={grpc_port_of(port)}"]

    def request(self, model: Model) -> Request:
        return model_infer_request(model)


class Naive(Server):
    """Flask app calling the model per request under gunicorn sync workers."""

    name = "naive"
    description = f"Flask + gunicorn ({GUNICORN_WORKERS} sync workers), one model call per request"
    venv = "naive"

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        gunicorn = self.python().parent / "gunicorn"
        return [
            str(gunicorn),
            f"--workers={GUNICORN_WORKERS}",
            f"--bind=127.0.0.1:{port}",
            "--timeout=120",
            f"--chdir={PEERS_DIR / 'naive'}",
            "app:app",
        ]

    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]:
        return one_cpu_env({"MODEL_DIR": str(model.path)})

    def ready_path(self, model: Model) -> str:
        return "/ping"

    def request(self, model: Model) -> Request:
        return tfserving_request(model)


class MLServer(Server):
    """Seldon MLServer, custom SavedModel runtime, adaptive batching, inference in-process."""

    name = "mlserver"
    description = "Seldon MLServer 1.7.1, custom runtime, adaptive batching, parallel_workers=0"
    venv = "mlserver"

    def write_settings(self, model: Model, port: int, workdir: Path) -> Path:
        repo = workdir / "mlserver-repo"
        model_dir = repo / model.name
        model_dir.mkdir(parents=True, exist_ok=True)
        settings = {
            "debug": False,  # production setting: no per-request access log
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": grpc_port_of(port),
            "metrics_port": port + 2000,
            # In-process inference: on one core it measured ~20% faster than the default
            # of one separate inference worker process (no IPC hop per batch).
            "parallel_workers": 0,
        }
        model_settings = {
            "name": model.name,
            "implementation": "runtime.SavedModelRuntime",
            "max_batch_size": MAX_BATCH_SIZE,
            "max_batch_time": MAX_BATCH_WAIT_MS / 1000,
            "parameters": {"uri": str(model.path)},
        }
        (repo / "settings.json").write_text(json.dumps(settings, indent=2))
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return repo

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        repo = self.write_settings(model, port, workdir)
        return [str(self.python().parent / "mlserver"), "start", str(repo)]

    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]:
        return one_cpu_env({"PYTHONPATH": str(PEERS_DIR / "mlserver")})

    def ready_path(self, model: Model) -> str:
        return f"/v2/models/{model.name}/ready"

    def request(self, model: Model) -> Request:
        return Request(f"/v2/models/{model.name}/infer", model.v2_body(), "Open Inference Protocol V2 infer")


class MLServerGrpc(MLServer):
    """MLServer on its gRPC port: the same DataPlane.infer and adaptive batcher as its REST infer."""

    name = "mlserver-grpc"
    description = "Seldon MLServer 1.7.1, as mlserver, gRPC ModelInfer"
    speaks_grpc = True

    def request(self, model: Model) -> Request:
        return model_infer_request(model)


class BentoML(Server):
    """BentoML service with a batchable API, one worker."""

    name = "bentoml"
    description = "BentoML 1.4.40, batchable API (adaptive batching), 1 worker"
    venv = "bentoml"

    def argv(self, model: Model, port: int, workdir: Path) -> list[str]:
        return [
            str(self.python().parent / "bentoml"),
            "serve",
            "service:SavedModelService",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--working-dir={PEERS_DIR / 'bentoml'}",
        ]

    def env(self, model: Model, port: int, workdir: Path) -> dict[str, str]:
        return one_cpu_env(
            {
                "MODEL_DIR": str(model.path),
                "BENTOML_HOME": str(workdir / "bentoml-home"),
                "BENTOML_DO_NOT_TRACK": "true",
                "BENCH_MAX_BATCH_SIZE": str(MAX_BATCH_SIZE),
            }
        )

    def ready_path(self, model: Model) -> str:
        return "/readyz"

    def request(self, model: Model) -> Request:
        # BentoML's native JSON: the API argument is named `instances`, so the body is
        # byte-for-byte the TF Serving one; the path is the API's.
        return Request("/predict", model.tfserving_body(), "BentoML API (same JSON body)")


BASELINE = "ours-baseline"


def all_servers() -> list[Server]:
    return [
        Ours(batching=True),
        Ours(batching=False),
        OursGrpc(),
        Ceiling(),
        CeilingGrpc(),
        Naive(),
        MLServer(),
        MLServerGrpc(),
        BentoML(),
    ]


def by_names(names: list[str]) -> list[Server]:
    known = {server.name: server for server in all_servers()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown server(s) {unknown}; known: {sorted(known)}")
    return [known[name] for name in names]
