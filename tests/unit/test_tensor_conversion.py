"""JSON -> numpy conversion rules, without a server."""

from __future__ import annotations

import re

import numpy as np
import pytest
from modelserver.errors import ServingError
from modelserver.protocols import tensors, v2
from modelserver.runtime import TensorSpec

FEATURES = TensorSpec("features", "serving_default_features:0", "DT_FLOAT", np.dtype(np.float32), (-1, 8))
COUNTS = TensorSpec("counts", "c:0", "DT_INT32", np.dtype(np.int32), (-1,))
FLAGS = TensorSpec("flags", "f:0", "DT_BOOL", np.dtype(np.bool_), (-1,))
TEXT = TensorSpec("text", "t:0", "DT_STRING", np.dtype(object), (-1,))


def test_numbers_become_the_declared_dtype():
    array = tensors.to_array([[1, 2.5, 3, 4, 5, 6, 7, 8]], FEATURES)
    assert array.dtype == np.float32 and array.shape == (1, 8)
    assert tensors.to_array([1, 2], COUNTS).dtype == np.int32
    assert tensors.to_array([True, False], FLAGS).tolist() == [True, False]


@pytest.mark.parametrize(
    ("value", "spec", "message"),
    [
        ([1.5], COUNTS, "expects integers"),
        ([2**40], COUNTS, "do not fit int32"),
        ([1], FLAGS, "expects booleans"),
        (["1"], COUNTS, "strings"),
        ([[1, 2]], COUNTS, "expects shape [-1]"),
        ({"a": 1}, COUNTS, "got an object"),
        ([["x"]], TEXT, "expects shape [-1]"),
        ([1], TEXT, "expected a string"),
        ([{"b64": "%%%"}], TEXT, "invalid base64"),
    ],
)
def test_lossy_conversions_are_refused(value, spec, message):
    with pytest.raises(ServingError, match=re.escape(message)) as raised:
        tensors.to_array(value, spec)
    assert raised.value.status == 400


def test_strings_and_base64():
    array = tensors.to_array(["plain", {"b64": "/wA="}], TEXT)
    assert array.tolist() == [b"plain", b"\xff\x00"]
    assert tensors.jsonable(array) == ["plain", {"b64": "/wA="}]  # not UTF-8: sent back as base64
    assert tensors.jsonable(np.array([b"abc"], dtype=object), binary=True) == [{"b64": "YWJj"}]


@pytest.mark.parametrize("datatype", sorted(v2.DATATYPES))
def test_v2_datatype_names_round_trip(datatype):
    assert v2.datatype_of(v2.DATATYPES[datatype]) == datatype


def test_v2_uint64_beyond_float32_precision_is_refused():
    entry = {"name": "features", "shape": [1, 8], "datatype": "UINT64", "data": [2**25 + 1] + [0] * 7}
    with pytest.raises(ServingError, match="exactly as float32"):
        v2.decode_input(entry, {"features": FEATURES})
