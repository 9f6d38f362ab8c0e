"""The flat call answers exactly as the structured signature call, and only where it provably can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelserver.runtime import LoadedModel, Signature, load_model, warm_up

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN


@pytest.fixture(scope="module")
def anomaly(model_repo: Path) -> LoadedModel:
    model = load_model("anomaly", 2, model_repo / "anomaly" / "2")
    warm_up(model)
    return model


@pytest.fixture(scope="module")
def slow(model_repo: Path) -> LoadedModel:
    model = load_model("slow", 1, model_repo / "slow" / "1")
    warm_up(model)
    return model


def flows(rows: int) -> dict[str, np.ndarray]:
    values = [[v * (1 + i / 7) for v in (FLOW_NORMAL if i % 2 else FLOW_PORT_SCAN)] for i in range(rows)]
    return {"features": np.asarray(values, dtype=np.float32)}


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), key


def test_warm_up_verifies_the_flat_call_of_numeric_signatures(anomaly, slow):
    for model in (anomaly, slow):
        flat = model.signatures["serving_default"].flat
        assert flat is not None and flat.verified, model.name
    assert anomaly.signatures["serving_default"].flat.output_keys == ["anomaly_score", "is_anomaly"]


def test_string_signatures_are_not_warmed_up_so_keep_the_structured_call(anomaly):
    for name in ("regress", "classify"):
        flat = anomaly.signatures[name].flat
        assert flat is None or not flat.verified, name


@pytest.mark.parametrize("rows", [1, 7, 32])
def test_flat_call_answers_exactly_as_the_structured_call(anomaly, rows):
    signature: Signature = anomaly.signatures["serving_default"]
    inputs = flows(rows)
    assert signature.flat is not None and signature.flat.accepts(inputs)
    assert_same(signature.flat(inputs), signature.run_structured(inputs))
    assert_same(signature.run(inputs), signature.run_structured(inputs))


def test_inputs_off_the_declared_spec_take_the_structured_call_and_its_errors(anomaly):
    signature: Signature = anomaly.signatures["serving_default"]
    flat = signature.flat
    assert flat is not None
    wrong_width = {"features": np.zeros((2, 5), dtype=np.float32)}
    wrong_dtype = {"features": np.zeros((2, 8), dtype=np.float64)}
    wrong_name = {"feature": np.zeros((2, 8), dtype=np.float32)}
    extra = flows(2) | {"other": np.zeros((2, 8), dtype=np.float32)}
    for inputs in (wrong_width, wrong_dtype, wrong_name, extra):
        assert not flat.accepts(inputs)
    for inputs in (wrong_width, wrong_name):
        with pytest.raises(Exception) as structured:
            signature.run_structured(inputs)
        with pytest.raises(type(structured.value)):
            signature.run(inputs)


def test_verification_refuses_a_flat_call_that_answers_differently(anomaly):
    signature: Signature = anomaly.signatures["serving_default"]
    flat = signature.flat
    assert flat is not None
    inputs = flows(3)
    expected = signature.run_structured(inputs)
    tampered = dict(expected, anomaly_score=expected["anomaly_score"] + 1)
    swapped = {"anomaly_score": expected["is_anomaly"], "is_anomaly": expected["anomaly_score"]}
    try:
        assert not flat.verify(inputs, tampered)
        assert not flat.verify(inputs, swapped)
        assert not signature.flat.verified
        assert flat.verify(inputs, expected)
    finally:
        flat.verified = True
