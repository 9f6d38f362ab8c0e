"""Row-format predictions: one object per instance, byte-identical JSON, refusals as before."""

from __future__ import annotations

import numpy as np
import pytest
from modelserver import errors
from modelserver.protocols.json import dumps
from modelserver.protocols.tfserving import row_predictions

SCORES = np.array([0.1, 0.99999994, 0.3], dtype=np.float32)
FLAGS = np.array([True, False, True])


def test_one_instance_of_several_outputs():
    outputs = {"anomaly_score": SCORES[1:2], "is_anomaly": FLAGS[1:2]}
    assert dumps(row_predictions(outputs)) == b'[{"anomaly_score":0.99999994,"is_anomaly":false}]'


def test_several_instances_keep_their_order_and_output_order():
    outputs = {"is_anomaly": FLAGS, "anomaly_score": SCORES}
    assert dumps(row_predictions(outputs)) == (
        b'[{"is_anomaly":true,"anomaly_score":0.1},{"is_anomaly":false,"anomaly_score":0.99999994},'
        b'{"is_anomaly":true,"anomaly_score":0.3}]'
    )


def test_rows_of_a_two_dimensional_output_stay_lists_and_half_floats_widen():
    outputs = {"logits": np.arange(4, dtype=np.float16).reshape(2, 2), "id": np.array([7, 8], dtype=np.int64)}
    assert dumps(row_predictions(outputs)) == b'[{"logits":[0.0,1.0],"id":7},{"logits":[2.0,3.0],"id":8}]'


def test_a_single_output_is_a_plain_list():
    assert dumps(row_predictions({"scores": SCORES[:2]})) == b"[0.1,0.99999994]"


@pytest.mark.parametrize(
    "outputs",
    [
        {"a": SCORES, "b": FLAGS[:2]},  # different batch sizes
        {"a": SCORES, "b": np.float32(1.0).reshape(())},  # a scalar output
        {},  # nothing to make rows of
    ],
)
def test_outputs_that_do_not_form_rows_are_refused(outputs):
    with pytest.raises(errors.ServingError) as refused:
        row_predictions(outputs)
    assert refused.value.status == 400 and "columnar format" in refused.value.message
