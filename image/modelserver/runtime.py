"""The model runtime: load a SavedModel, describe its signatures, warm it up, run it.

Two kinds of SavedModel, each run the way its own tools run it:

- TF2 (`tf.saved_model.save`, the object graph is present): restored with
  `tf.saved_model.load`; each signature is its concrete function (and, once warm-up
  verified it, the same graph function called flat, flat_call.py). Its inputs are
  checked against the declared shapes, as the function itself would.
- TF1 (`SavedModelBuilder`, a graph and SignatureDefs only): loaded into a
  `tf.compat.v1.Session` as TF Serving loads it (variables restored, including
  reference variables, main/legacy init op run), and each signature is a session
  callable feeding and fetching the SignatureDef's tensor names. As in TF Serving,
  whose `Session::Run` feeds are not checked against the SignatureDef, declared shapes
  are not enforced: TF1 exporters often declare shapes their graphs do not hold to
  (`[-1, 1]` for TF Serving's half_plus_two, whose quickstart sends `[1.0, 2.0, 5.0]`),
  and the graph itself refuses what it cannot compute (a 400).

A signature the runtime cannot call (a tensor missing from the graph, a dtype without a
numpy equivalent, a function the loader cannot restore) is logged when the model loads
and answers a 400 naming it; the model's other signatures serve as usual.

TensorFlow is imported here only, and only when the loader thread calls in, so the
HTTP server answers liveness while TensorFlow is still importing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
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
_thread_counts: ThreadCounts | None = None

SignatureCall = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature, as the SavedModel declares it."""

    key: str
    tensor_name: str
    dtype_name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...] | None
    # False for TF1 signatures: TF Serving feeds their tensors without checking shapes.
    shape_checked: bool = True

    @property
    def is_string(self) -> bool:
        return self.dtype_name == "DT_STRING"

    def shape_text(self) -> str:
        return "unknown rank" if self.shape is None else "[" + ", ".join(map(str, self.shape)) + "]"

    # Computed once per spec, not per request (cached_property writes the instance's
    # __dict__ directly, which a frozen dataclass allows).
    @cached_property
    def description(self) -> str:
        """How errors name this input: input 'x' (DT_FLOAT, shape [-1, 8])."""
        return f"input '{self.key}' ({self.dtype_name}, shape {self.shape_text()})"

    @cached_property
    def fixed_tail(self) -> tuple[int, ...] | None:
        """The dimensions after the first when every one of them is fixed, else None."""
        if self.shape is None or not self.shape or any(size < 0 for size in self.shape[1:]):
            return None
        return self.shape[1:]


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    # The call: input arrays by key -> output arrays by key (FunctionCall or SessionCall).
    function: SignatureCall | None
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
        assert self.function is not None
        return self.function(inputs)


class FunctionCall:
    """A TF2 signature: the restored concrete function, called with keyword tensors."""

    def __init__(self, function: Any, output_keys: list[str]) -> None:
        self.function = function
        self.output_keys = output_keys

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.function(**inputs)
        return {key: outputs[key].numpy() for key in self.output_keys}


class SessionCall:
    """A TF1 signature: one session callable feeding and fetching the SignatureDef's tensors."""

    def __init__(
        self, session: Any, inputs: Mapping[str, TensorSpec], outputs: Mapping[str, TensorSpec]
    ) -> None:
        from tensorflow.core.protobuf import config_pb2

        self.input_keys = list(inputs)
        self.output_keys = list(outputs)
        graph = session.graph
        for spec in (*inputs.values(), *outputs.values()):
            graph.get_tensor_by_name(spec.tensor_name)  # KeyError/ValueError: not in the graph
        options = config_pb2.CallableOptions(
            feed=[inputs[key].tensor_name for key in self.input_keys],
            fetch=[outputs[key].tensor_name for key in self.output_keys],
        )
        # Session.make_callable would route feeds through Session.run's Python shape check,
        # which TF Serving's C++ Session::Run does not have; this is the C++ callable itself.
        self.callable = session._make_callable_from_options(options)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.callable(*(inputs[key] for key in self.input_keys))
        return dict(zip(self.output_keys, values, strict=True))


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    path: Path
    signatures: Mapping[str, Signature]
    # Every SignatureDef as TF Serving's metadata API prints it (incl. __saved_model_init_op).
    signature_defs_json: Mapping[str, Any]
    load_seconds: float
    # The loaded trackable object or session: the signatures need it (and its variables) alive.
    owner: Any = field(default=None, repr=False, compare=False)
    # Signatures the runtime cannot call, and why (a 400 naming them when asked for).
    unavailable: Mapping[str, str] = field(default_factory=dict)
    format: str = "TF2"

    @property
    def version_text(self) -> str:
        return str(self.version)


def configure_threads(counts: ThreadCounts) -> None:
    """Set TF's thread pools once, before the first op creates them (TF1 sessions get the same)."""
    global _thread_counts
    import tensorflow as tf

    with _threads_configured:
        if _thread_counts is not None:
            return
        tf.config.threading.set_intra_op_parallelism_threads(counts.intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(counts.inter_op)
        _thread_counts = counts
    log.info(
        "TensorFlow threads: intra-op %d, inter-op %d (cgroup CPU limit %s, schedulable CPUs %d)",
        counts.intra_op,
        counts.inter_op,
        "none" if counts.cpu_limit is None else f"{counts.cpu_limit:g}",
        counts.schedulable,
    )


def read_saved_model(path: Path) -> Any:
    """saved_model.pb, or else its text form saved_model.pbtxt (TensorFlow's loaders read both)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), saved_model)
    return saved_model


def serving_meta_graph(path: Path) -> Any:
    """The meta graph tagged 'serve'."""
    for meta_graph in read_saved_model(path).meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path} has no meta graph tagged '{SERVE_TAG}'")


def tensor_spec(key: str, info: Any, shape_checked: bool = True) -> TensorSpec:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    shape: tuple[int, ...] | None = None
    if not info.tensor_shape.unknown_rank:
        shape = tuple(int(dim.size) for dim in info.tensor_shape.dim)
    tf_dtype = tf.dtypes.as_dtype(info.dtype)
    if tf_dtype == tf.string:
        numpy_dtype = np.dtype(object)
    else:
        numpy_dtype = np.dtype(tf_dtype.as_numpy_dtype)
        if numpy_dtype.kind not in "biufc":
            raise TypeError(f"{key}: {types_pb2.DataType.Name(info.dtype)} has no JSON or numpy form")
    return TensorSpec(
        key=key,
        tensor_name=info.name,
        dtype_name=types_pb2.DataType.Name(info.dtype),
        dtype=numpy_dtype,
        shape=shape,
        shape_checked=shape_checked,
    )


def signature_specs(
    definition: Any, shape_checked: bool
) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    inputs = {key: tensor_spec(key, info, shape_checked) for key, info in sorted(definition.inputs.items())}
    outputs = {key: tensor_spec(key, info, shape_checked) for key, info in sorted(definition.outputs.items())}
    return inputs, outputs


def signature_defs_as_json(signature_defs: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return {
        name: json_format.MessageToDict(
            definition, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        )
        for name, definition in sorted(signature_defs.items())
    }


def is_tf1(meta_graph: Any) -> bool:
    """Written by SavedModelBuilder (no object graph), not by tf.saved_model.save."""
    return not meta_graph.object_graph_def.nodes


def collect_signatures(
    signature_defs: Any, build: Callable[[str, Any], Signature]
) -> tuple[dict[str, Signature], dict[str, str]]:
    """Each SignatureDef built into a callable Signature, or the reason it cannot be."""
    signatures: dict[str, Signature] = {}
    unavailable: dict[str, str] = {}
    for signature_name, definition in sorted(signature_defs.items()):
        if signature_name == INIT_OP_SIGNATURE:
            continue
        try:
            signatures[signature_name] = build(signature_name, definition)
        except Exception as error:  # TensorFlow raises several kinds here; each means "not callable"
            unavailable[signature_name] = f"{type(error).__name__}: {error}"
    return signatures, unavailable


def tf2_signatures(path: Path, signature_defs: Any) -> tuple[Any, dict[str, Signature], dict[str, str]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])

    def build(signature_name: str, definition: Any) -> Signature:
        function = loaded.signatures.get(signature_name)
        if function is None:
            raise LookupError("the SavedModel has no restorable function for it")
        inputs, outputs = signature_specs(definition, shape_checked=True)
        return Signature(
            name=signature_name,
            method_name=definition.method_name,
            inputs=inputs,
            outputs=outputs,
            function=FunctionCall(function, list(outputs)),
            flat=flat_call(function, set(inputs), set(outputs)),
        )

    return loaded, *collect_signatures(signature_defs, build)


def tf1_session(path: Path) -> Any:
    """A session holding the SavedModel's graph, restored as TF Serving restores it."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    if _thread_counts is not None:
        config.intra_op_parallelism_threads = _thread_counts.intra_op
        config.inter_op_parallelism_threads = _thread_counts.inter_op
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
        tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(path))
    return session


def tf1_signatures(path: Path, signature_defs: Any) -> tuple[Any, dict[str, Signature], dict[str, str]]:
    session = tf1_session(path)

    def build(signature_name: str, definition: Any) -> Signature:
        inputs, outputs = signature_specs(definition, shape_checked=False)
        return Signature(
            name=signature_name,
            method_name=definition.method_name,
            inputs=inputs,
            outputs=outputs,
            function=SessionCall(session, inputs, outputs),
        )

    return session, *collect_signatures(signature_defs, build)


def load_model(name: str, version: int, path: Path) -> LoadedModel:
    started = time.monotonic()
    meta_graph = serving_meta_graph(path)
    signature_defs = meta_graph.signature_def
    tf1 = is_tf1(meta_graph)
    owner, signatures, unavailable = (tf1_signatures if tf1 else tf2_signatures)(path, signature_defs)
    for signature_name, reason in sorted(unavailable.items()):
        log.warning(
            "model %s version %d: signature %s cannot be served (requests for it get 400): %s",
            name,
            version,
            signature_name,
            reason,
        )
    if not signatures:
        raise ValueError(
            "no signature of the SavedModel can be served: "
            + "; ".join(f"{key}: {reason}" for key, reason in sorted(unavailable.items()))
            if unavailable
            else "the SavedModel has no signatures"
        )
    return LoadedModel(
        name=name,
        version=version,
        path=path,
        signatures=signatures,
        signature_defs_json=signature_defs_as_json(signature_defs),
        load_seconds=time.monotonic() - started,
        owner=owner,
        unavailable=unavailable,
        format="TF1 (graph + session)" if tf1 else "TF2",
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
