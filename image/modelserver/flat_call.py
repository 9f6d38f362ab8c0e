"""A signature's graph function called with flat positional tensors, skipping the structured call.

Calling a restored signature as `function(**inputs)` spends ~90 µs in Python per call
(binding keyword arguments to its FunctionType, converting and checking each input,
packing the outputs) on a model whose math takes nanoseconds; calling its graph
function (`ConcreteFunction.inference_fn`) with the input tensors in the function's
order followed by its captured inputs (`captured_inputs`) does the same TensorFlow
work in ~40 µs. `AtomicFunction.call_flat` is not in TensorFlow's exported API, so the
path is used only where it is provably the same call: the signature's structure is
plain (named tensor inputs, a dict of tensor outputs), the inputs match the declared
dtypes and shapes (else the structured call runs and raises its own errors), and the
warm-up compared its answer with the structured call's on the same input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_BINDABLE_KINDS = ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")


class FlatCall:
    def __init__(
        self,
        atomic: Any,
        captures: list[Any],
        inputs: list[tuple[str, np.dtype[Any], tuple[int, ...]]],
        output_keys: list[str],
        to_tensor: Any,
    ) -> None:
        self.atomic = atomic
        self.captures = captures
        self.inputs = inputs  # (name, dtype, shape with -1 for any size), in the function's order
        self.input_names = frozenset(name for name, _, _ in inputs)
        self.output_keys = output_keys  # in the function's flat output order
        self.to_tensor = to_tensor
        self.verified = False

    def accepts(self, inputs: Mapping[str, np.ndarray]) -> bool:
        if len(inputs) != len(self.inputs) or inputs.keys() != self.input_names:
            return False
        for name, dtype, shape in self.inputs:
            array = inputs[name]
            if array.dtype != dtype or array.ndim != len(shape):
                return False
            for actual, expected in zip(array.shape, shape, strict=True):
                if expected >= 0 and actual != expected:
                    return False
        return True

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [self.to_tensor(inputs[name]) for name, _, _ in self.inputs]
        outputs = self.atomic.call_flat(*tensors, *self.captures)
        return {key: output.numpy() for key, output in zip(self.output_keys, outputs, strict=True)}

    def verify(self, inputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> bool:
        """Enable the path when it answers `inputs` exactly as the structured call did (`expected`)."""
        try:
            got = self(inputs) if self.accepts(inputs) else None
        except Exception as error:  # the structured call stays in use
            log.info("flat call unavailable: %s: %s", type(error).__name__, error)
            return False
        self.verified = (
            got is not None
            and got.keys() == expected.keys()
            and all(
                got[key].dtype == value.dtype
                and got[key].shape == value.shape
                and np.array_equal(got[key], value, equal_nan=value.dtype.kind in "fc")
                for key, value in expected.items()
            )
        )
        return self.verified


def flat_call(function: Any, input_keys: set[str], output_keys: set[str]) -> FlatCall | None:
    """The flat call of a restored signature function, or None when its structure is not plain."""
    import tensorflow as tf

    try:
        atomic = function.inference_fn
        if not callable(getattr(atomic, "call_flat", None)):
            return None
        parameters = list(function.function_type.parameters.values())
        inputs = []
        for parameter in parameters:
            spec = parameter.type_constraint
            if (
                parameter.kind.name not in _BINDABLE_KINDS
                or parameter.optional
                or type(spec) is not tf.TensorSpec
                or spec.shape.rank is None
            ):
                return None
            shape = tuple(-1 if dim is None else int(dim) for dim in spec.shape.as_list())
            dtype = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
            inputs.append((parameter.name, dtype, shape))
        structured = function.structured_outputs
        if (
            {name for name, _, _ in inputs} != input_keys
            or len(inputs) != len(input_keys)
            or not isinstance(structured, dict)
            or set(structured) != output_keys
            or not all(type(spec) is tf.TensorSpec for spec in structured.values())
        ):
            return None
        keys = sorted(structured)  # tf.nest flattens a dict in sorted key order
        flat_names = [getattr(spec, "name", None) for spec in atomic.function_type.flat_outputs]
        if len(flat_names) != len(keys) or any(
            name and name != key for name, key in zip(flat_names, keys, strict=True)
        ):
            return None
        return FlatCall(atomic, list(function.captured_inputs), inputs, keys, tf.constant)
    except (AttributeError, TypeError, ValueError) as error:
        log.info("flat call unavailable: %s: %s", type(error).__name__, error)
        return None
