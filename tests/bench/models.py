"""The SavedModels every server is benchmarked on, and the one request built from each.

Models come from the project's model repository, ``build/models/<name>/<version>/``,
written by the server's own demo-model builder (a no-op when its stamp is current).
Their serving signature is read once in a subprocess (TensorFlow stays out of the
harness process, which shares the load generator's core).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from open_inference.grpc import protocol as oip
from ops.paths import REPO_ROOT

DEFAULT_MODEL_BASE = REPO_ROOT / "build" / "models"
SIGNATURE = "serving_default"
LOAD_GENERATOR_CPU = 0
# Deterministic request content: every server answers the very same instance.
REQUEST_SEED = 6

_INSPECT = """
import json, sys
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[1]).signatures[sys.argv[2]]
inputs = sig.structured_input_signature[1]
def spec(tensors):
    return {k: {"shape": v.shape.as_list(), "dtype": v.dtype.name} for k, v in tensors.items()}
print("INSPECT " + json.dumps({"inputs": spec(inputs), "outputs": spec(sig.structured_outputs)}))
"""


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    path: Path
    input_name: str
    instance_shape: tuple[int, ...]
    dtype: str
    output_name: str

    def instance(self) -> list:
        """One request's instance (batch dimension removed), the same for every server."""
        rng = np.random.default_rng(REQUEST_SEED)
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            return rng.integers(0, 10, self.instance_shape).tolist()
        return rng.random(self.instance_shape).round(4).tolist()

    def tfserving_body(self) -> bytes:
        """TF Serving REST predict body: one row instance."""
        return orjson.dumps({"instances": [self.instance()]})

    def v2_body(self) -> bytes:
        """Open Inference Protocol (KServe V2) body carrying the same instance."""
        data = np.asarray([self.instance()])
        return orjson.dumps(
            {
                "inputs": [
                    {
                        "name": self.input_name,
                        "shape": list(data.shape),
                        "datatype": v2_datatype(self.dtype),
                        "data": data.ravel().tolist(),
                    }
                ]
            }
        )

    def v2_grpc_request(self) -> oip.ModelInferRequest:
        """The Open Inference Protocol's gRPC ModelInfer request for the same instance.

        The values go in the datatype's typed contents field (`fp32_contents` for FP32),
        the form of the V2 JSON `data` list; no `raw_input_contents`.
        """
        data = np.asarray([self.instance()])
        request = oip.ModelInferRequest(model_name=self.name)
        tensor = request.inputs.add(name=self.input_name, datatype=v2_datatype(self.dtype), shape=data.shape)
        getattr(tensor.contents, V2_CONTENTS_FIELD[self.dtype]).extend(data.ravel().tolist())
        return request


# InferTensorContents' field for each dtype (open_inference_grpc.proto).
V2_CONTENTS_FIELD = {
    "float32": "fp32_contents",
    "float64": "fp64_contents",
    "int32": "int_contents",
    "int64": "int64_contents",
}


def v2_datatype(dtype: str) -> str:
    return {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}[dtype]


def build_demo_models(base: Path, python: Path) -> None:
    """Run the project's demo-model builder (``python -m demo_models.build``) into base."""
    command = ["taskset", "-c", str(LOAD_GENERATOR_CPU), str(python), "-m", "demo_models.build"]
    command += ["--out", str(base)]
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT / "image")}
    subprocess.run(command, env=env, check=True, timeout=600)


def newest_version(model_dir: Path) -> Path:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"{model_dir} holds no numeric version directory; run `make models`")
    return max(versions, key=lambda p: int(p.name))


def inspect(path: Path, python: Path) -> dict:
    command = ["taskset", "-c", str(LOAD_GENERATOR_CPU), str(python), "-c", _INSPECT, str(path), SIGNATURE]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("INSPECT "):
            return json.loads(line.removeprefix("INSPECT "))
    raise SystemExit(f"cannot read the signature of {path}:\n{result.stderr[-2000:]}")


def load_model(base: Path, name: str, python: Path | None = None) -> Model:
    model_dir = base / name
    if not model_dir.is_dir():
        raise SystemExit(f"no model {name!r} under {base}; run `make models` (or pass --model-base)")
    version_dir = newest_version(model_dir)
    signature = inspect(version_dir, python or Path(sys.executable))
    if len(signature["inputs"]) != 1:
        raise SystemExit(f"{version_dir}: the benchmark expects one input tensor, got {signature['inputs']}")
    (input_name, spec), *_ = signature["inputs"].items()
    output_name = next(iter(signature["outputs"]))
    instance_shape = tuple(1 if d is None else d for d in spec["shape"][1:])
    return Model(
        name=name,
        version=version_dir.name,
        path=version_dir,
        input_name=input_name,
        instance_shape=instance_shape,
        dtype=spec["dtype"],
        output_name=output_name,
    )
