"""`heavy`: a wide MLP for benchmarks, where batching pays.

Input `x`, float32 [-1, 512]; output `logits`, float32 [-1, 16]. Three 2048-wide hidden
layers (~9.5 M weights, ~38 MB): one row costs a full read of the weights, a batch of 32
costs little more, so requests that share a TensorFlow call are much cheaper.
Weights come from a fixed seed, so every build serves the same function.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import tensorflow as tf

INPUT_WIDTH = 512
HIDDEN = (2048, 2048, 2048)
OUTPUT_WIDTH = 16
SEED = 20240601


class WideMLP(tf.Module):
    def __init__(self) -> None:
        super().__init__(name="wide_mlp")
        rng = np.random.default_rng(SEED)
        widths = (INPUT_WIDTH, *HIDDEN, OUTPUT_WIDTH)
        self.weights = [
            tf.Variable(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32))
            for fan_in, fan_out in itertools.pairwise(widths)
        ]
        self.biases = [tf.Variable(np.zeros(width, np.float32)) for width in widths[1:]]

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_WIDTH], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        hidden = x
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            hidden = tf.nn.relu(tf.matmul(hidden, weight) + bias)
        return {"logits": tf.matmul(hidden, self.weights[-1]) + self.biases[-1]}


def build(out: Path) -> None:
    model = WideMLP()
    tf.saved_model.save(model, str(out), signatures={"serving_default": model.predict})
