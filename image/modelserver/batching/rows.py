"""Row arithmetic on request tensors: how many rows, who can share a call, stack and split.

Pure functions of numpy arrays; nothing here knows about queues, time or TensorFlow.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Tensors = dict[str, np.ndarray]


def leading_rows(inputs: Mapping[str, np.ndarray]) -> int | None:
    """Dimension 0 shared by every input (0 for no rows); None when they disagree or one is a scalar."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
            return None
        rows = array.shape[0]
    return rows


def stacking_key(inputs: Mapping[str, np.ndarray]) -> Hashable:
    """Requests can share a call only when every input matches beyond dimension 0."""
    if len(inputs) == 1:
        ((name, array),) = inputs.items()
        return name, array.shape[1:], array.dtype.str
    return tuple((name, array.shape[1:], array.dtype.str) for name, array in sorted(inputs.items()))


def stack(requests: Sequence[Mapping[str, np.ndarray]]) -> Tensors:
    """The requests' inputs concatenated along dimension 0, in order (same keys and stacking key)."""
    names = list(requests[0])
    return {name: np.concatenate([inputs[name] for inputs in requests]) for name in names}


def split(outputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> list[Tensors] | None:
    """Each request's rows of a shared call's outputs; None when an output does not have sum(rows) rows."""
    total = sum(rows)
    if any(value.ndim == 0 or value.shape[0] != total for value in outputs.values()):
        return None
    parts, start = [], 0
    for count in rows:
        end = start + count
        parts.append({name: value[start:end] for name, value in outputs.items()})
        start = end
    return parts
