"""BentoML service serving a TensorFlow SavedModel through a batchable API.

Follows BentoML's adaptive-batching guide: ``@bentoml.api(batchable=True)`` with
``max_batch_size`` and ``max_latency_ms``; the dispatcher concatenates concurrent
requests along dimension 0 and splits the result back. One worker for one CPU.
A batchable API returns one array, so the signature's outputs come back side by side
as float32 columns ([-1, k]).
"""

import os
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType

MAX_BATCH_SIZE = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "32"))


@bentoml.service(
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class SavedModelService:
    def __init__(self) -> None:
        import tensorflow as tf

        threads = int(os.environ.get("BENCH_TF_THREADS", "1"))
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self._tf = tf
        self._model = tf.saved_model.load(os.environ["MODEL_DIR"])
        self._predict = self._model.signatures["serving_default"]
        self._input_name, self._input_spec = next(iter(self._predict.structured_input_signature[1].items()))

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=1000)
    def predict(self, instances: Annotated[np.ndarray, DType("float32")]) -> np.ndarray:
        outputs = self._predict(
            **{self._input_name: self._tf.constant(instances, dtype=self._input_spec.dtype)}
        )
        columns = [value.numpy().astype(np.float32).reshape(len(instances), -1) for value in outputs.values()]
        return np.concatenate(columns, axis=1)
