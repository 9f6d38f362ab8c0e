"""The model runtime: load a SavedModel, describe its signatures, warm it up, run it.

TensorFlow is imported here only, and only when the loader thread calls in, so the
HTTP server answers liveness while TensorFlow is still importing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelserver.cpu import ThreadCounts
from modelserver.flat_call import FlatCall, flat_call

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
SERVE_TAG = "serve"

_threads_configured = threading.Lock()
_threads_done = False


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature, as the SavedModel declares it."""

    key: str
    tensor_name: str
    dtype_name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...] | None

    @property
    def is_string(self) -> bool:
        return self.dtype_name == "DT_STRING"

    def shape_text(self) -> str:
        return "unknown rank" if self.shape is None else "[" + ", ".join(map(str, self.shape)) + "]"


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    function: Any
    # The same call without the structured-call overhead, once warm-up verified it (flat_call.py).
    flat: FlatCall | None = field(default=None, repr=False, compare=False)

    @property
    def batchable(self) -> bool:
        """Every input and output has a leading batch dimension, so requests can be stacked."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return bool(self.inputs) and all(
            s.shape is not None and len(s.shape) >= 1 and s.shape[0] == -1 for s in specs
        )

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One TensorFlow call (blocking; runs on the inference thread)."""
        flat = self.flat
        if flat is not None and flat.verified and flat.accepts(inputs):
            return flat(inputs)
        return self.run_structured(inputs)

    def run_structured(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.function(**inputs)
        return {key: outputs[key].numpy() for key in self.outputs}


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    path: Path
    signatures: Mapping[str, Signature]
    # Every SignatureDef as TF Serving's metadata API prints it (incl. __saved_model_init_op).
    signature_defs_json: Mapping[str, Any]
    load_seconds: float
    # The loaded trackable object: the signatures' concrete functions need its variables alive.
    owner: Any = field(default=None, repr=False, compare=False)

    @property
    def version_text(self) -> str:
        return str(self.version)


def configure_threads(counts: ThreadCounts) -> None:
    """Set TF's thread pools once, before the first op creates them."""
    global _threads_done
    import tensorflow as tf

    with _threads_configured:
        if _threads_done:
            return
        tf.config.threading.set_intra_op_parallelism_threads(counts.intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(counts.inter_op)
        _threads_done = True
    log.info(
        "TensorFlow threads: intra-op %d, inter-op %d (cgroup CPU limit %s, schedulable CPUs %d)",
        counts.intra_op,
        counts.inter_op,
        "none" if counts.cpu_limit is None else f"{counts.cpu_limit:g}",
        counts.schedulable,
    )


def read_signature_defs(path: Path) -> Any:
    """The serving meta graph's SignatureDef map, straight from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ValueError(f"{path} has no meta graph tagged '{SERVE_TAG}'")


def tensor_spec(key: str, info: Any) -> TensorSpec:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    shape: tuple[int, ...] | None = None
    if not info.tensor_shape.unknown_rank:
        shape = tuple(int(dim.size) for dim in info.tensor_shape.dim)
    tf_dtype = tf.dtypes.as_dtype(info.dtype)
    numpy_dtype = np.dtype(object) if tf_dtype == tf.string else np.dtype(tf_dtype.as_numpy_dtype)
    return TensorSpec(
        key=key,
        tensor_name=info.name,
        dtype_name=types_pb2.DataType.Name(info.dtype),
        dtype=numpy_dtype,
        shape=shape,
    )


def signature_defs_as_json(signature_defs: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return {
        name: json_format.MessageToDict(
            definition, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        for name, definition in sorted(signature_defs.items())
    }


def load_model(name: str, version: int, path: Path) -> LoadedModel:
    import tensorflow as tf

    started = time.monotonic()
    signature_defs = read_signature_defs(path)
    loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    signatures: dict[str, Signature] = {}
    for signature_name, function in loaded.signatures.items():
        definition = signature_defs[signature_name]
        inputs = {key: tensor_spec(key, info) for key, info in sorted(definition.inputs.items())}
        outputs = {key: tensor_spec(key, info) for key, info in sorted(definition.outputs.items())}
        signatures[signature_name] = Signature(
            name=signature_name,
            method_name=definition.method_name,
            inputs=inputs,
            outputs=outputs,
            function=function,
            flat=flat_call(function, set(inputs), set(outputs)),
        )
    return LoadedModel(
        name=name,
        version=version,
        path=path,
        signatures=signatures,
        signature_defs_json=signature_defs_as_json(signature_defs),
        load_seconds=time.monotonic() - started,
        owner=loaded,
    )


def synthetic_inputs(signature: Signature) -> dict[str, np.ndarray] | None:
    """A one-row input of zeros, or None when the signature takes strings or unknown ranks."""
    inputs: dict[str, np.ndarray] = {}
    for spec in signature.inputs.values():
        if spec.is_string or spec.shape is None:
            return None
        shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
        inputs[spec.key] = np.zeros(shape, dtype=spec.dtype)
    return inputs


def warm_up(model: LoadedModel) -> float:
    """Run every numeric signature once so the first request does not pay for graph setup.

    String-input signatures (serialized tf.Example) are skipped: an empty example is not
    a valid input for most of them. A signature's flat call is enabled here when it
    answers the warm-up input exactly as the structured call did.
    """
    started = time.monotonic()
    for signature in model.signatures.values():
        inputs = synthetic_inputs(signature)
        if inputs is None:
            log.info(
                "warm-up: skipping %s/%s:%s (string or unknown-rank input)",
                model.name,
                model.version,
                signature.name,
            )
            continue
        try:
            expected = signature.run_structured(inputs)
        except Exception as error:  # a synthetic input may be meaningless to the model
            log.warning("warm-up of %s/%s:%s failed: %s", model.name, model.version, signature.name, error)
            continue
        if signature.flat is not None and signature.flat.verify(inputs, expected):
            log.info("%s/%s:%s: flat call verified", model.name, model.version, signature.name)
    return time.monotonic() - started
