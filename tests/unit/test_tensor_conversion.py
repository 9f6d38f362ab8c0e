"""JSON -> numpy conversion rules, without a server."""

from __future__ import annotations

import re

import numpy as np
import pytest
from modelserver.errors import ServingError
from modelserver.protocols import json, tensors, tfserving, v2
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


# ---- one numeric rule, TF Serving's
# (json_tensor.cc AddValueToTensor; api_rest.md, "Floating Point Precision")


def test_integers_into_a_float_input_are_rounded_as_tf_serving_does():
    # api_rest.md: 1435774380 sent to a DT_FLOAT input becomes 1435774336.
    assert tensors.to_array([[1435774380] * 8], FEATURES)[0, 0] == np.float32(1435774336)


def test_a_decimal_beside_a_large_integer_follows_the_same_rule_as_integers_alone():
    mixed = tensors.to_array([[1.5, 2**24 + 1, 0, 0, 0, 0, 0, 0]], FEATURES)
    integers = tensors.to_array([[1, 2**24 + 1, 0, 0, 0, 0, 0, 0]], FEATURES)
    assert mixed[0, 1] == integers[0, 1] == np.float32(2**24)


def test_integers_beyond_64_bits_and_non_finite_values_into_a_float_input():
    big = tensors.to_array([[1.5, 2**64, 0, 0, 0, 0, 0, 0]], FEATURES)  # numpy: an object array
    assert big.dtype == np.float32 and big[0, 1] == np.float32(2**64)
    special = tensors.to_array([[float("nan"), float("inf"), -float("inf"), 0, 0, 0, 0, 0]], FEATURES)
    assert np.isnan(special[0, 0]) and special[0, 1] == np.inf and special[0, 2] == -np.inf


@pytest.mark.parametrize(
    ("value", "spec", "message"),
    [
        ([[True, 1.5, 0, 0, 0, 0, 0, 0]], FEATURES, "got booleans"),  # numpy alone would read 1.0
        ([True, 2], COUNTS, "got booleans"),
        ([[True] * 8], FEATURES, "got booleans"),
        ([1.0], COUNTS, "expects integers"),  # a decimal token, as in TF Serving (rapidjson IsInt)
        ([2**31], COUNTS, "do not fit int32"),
        # JSON integers beyond 64 bits are read as doubles (orjson, like rapidjson)
        (json.loads_object(b'{"v": [18446744073709551617]}')["v"], COUNTS, "expects integers"),
        ([float("nan")], COUNTS, "expects integers"),
        ([1, None], COUNTS, "expected numbers"),
        ([1.5, 2**64, None], COUNTS, "expected numbers"),
    ],
)
def test_one_rule_refusals(value, spec, message):
    with pytest.raises(ServingError, match=re.escape(message)):
        tensors.to_array(value, spec)


def test_boolean_look_is_skipped_only_when_the_body_holds_no_boolean_token():
    assert json.may_hold_booleans(b'{"instances": [[true]]}')
    assert not json.may_hold_booleans(b'{"instances": [[1.0, 2]]}')
    assert tensors.to_array([2, 3], COUNTS, booleans_possible=False).tolist() == [2, 3]


def test_tensor_casts_keep_every_value_or_refuse():
    assert tensors.cast_tensor(np.array([True, False]), np.dtype(np.float32), "x").tolist() == [1.0, 0.0]
    with pytest.raises(ServingError, match="cannot become bool"):
        tensors.cast_tensor(np.array([1.0]), np.dtype(np.bool_), "x")
    with pytest.raises(ServingError, match="cannot become int32"):
        tensors.cast_tensor(np.array([1.0]), np.dtype(np.int32), "x")


# ---- NaN / Infinity / -Infinity in and out (api_rest.md "JSON conformance"; json_tensor.cc WriteDecimal)


def test_non_finite_tokens_are_read():
    document = json.loads_object(b'{"inputs": [NaN, Infinity, -Infinity, 1.5]}')
    first, positive, negative, plain = document["inputs"]
    assert np.isnan(first) and positive == np.inf and negative == -np.inf and plain == 1.5


def test_non_finite_values_are_written_as_tokens_and_finite_ones_unchanged():
    scores = np.array([0.1, np.nan, np.inf, -np.inf], dtype=np.float32)
    assert json.dumps({"predictions": scores}) == b'{"predictions":[0.1,NaN,Infinity,-Infinity]}'
    assert json.dumps({"results": [np.float32("nan"), 2.5]}) == b'{"results":[NaN,2.5]}'
    assert json.dumps({"predictions": np.array([0.1], dtype=np.float32)}) == b'{"predictions":[0.1]}'
    assert json.dumps({"text": "null"}) == b'{"text":"null"}'


# ---- tf.Example features for classify/regress (json_tensor.cc AddValueToFeature)


def test_feature_kinds_follow_tf_serving():
    assert tfserving.feature("n", [1, True, False]).int64_list.value == [1, 1, 0]
    assert list(tfserving.feature("x", 2.5).float_list.value) == [2.5]
    assert tfserving.feature("s", ["a", {"b64": "/wA="}]).bytes_list.value == [b"a", b"\xff\x00"]
    assert not tfserving.feature("empty", []).HasField("kind")  # KIND_NOT_SET, as TF Serving leaves it


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**63, "does not fit int64"),  # protobuf would raise "Value out of range" (a 500)
        (18446744073709551615, "does not fit int64"),
        ([1, 2.5], "all integers, all decimals or all strings"),
        ([None], "unexpected JSON null"),
        ([[1]], "unexpected JSON list"),
    ],
)
def test_feature_values_tf_serving_refuses_are_400(value, message):
    with pytest.raises(ServingError, match=re.escape(message)) as raised:
        tfserving.feature("f", value)
    assert raised.value.status == 400


def test_scalar_outputs_are_written_as_json_scalars():
    assert json.dumps({"outputs": tensors.jsonable(np.array(2.0, dtype=np.float32))}) == b'{"outputs":2.0}'
    assert json.dumps({"outputs": tensors.jsonable(np.array(True))}) == b'{"outputs":true}'
    assert json.dumps({"outputs": tensors.jsonable(np.array(b"x", dtype=object))}) == b'{"outputs":"x"}'
