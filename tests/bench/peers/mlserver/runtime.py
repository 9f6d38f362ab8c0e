"""MLServer custom runtime serving a TensorFlow SavedModel's serving signature.

Follows MLServer's custom-runtime guide: load() in each inference worker, predict()
decoding the V2 request with the NumPy codec. Adaptive batching (max_batch_size,
max_batch_time in model-settings.json) merges concurrent requests before predict().
"""

import os

import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        threads = int(os.environ.get("BENCH_TF_THREADS", "1"))
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self._model = tf.saved_model.load(self.settings.parameters.uri)
        self._predict = self._model.signatures["serving_default"]
        self._input_name, self._input_spec = next(iter(self._predict.structured_input_signature[1].items()))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = NumpyCodec.decode_input(payload.inputs[0])
        outputs = self._predict(**{self._input_name: tf.constant(batch, dtype=self._input_spec.dtype)})
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(key, value.numpy()) for key, value in outputs.items()],
        )
