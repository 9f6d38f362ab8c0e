"""A genuinely slow SavedModel for drain, queue and timeout tests (no sleeps in the server).

Signature serving_default: `seconds` float32 [-1] -> `seconds` (echo), `elapsed` float32 [-1].
One call busy-waits on tf.timestamp for max(seconds) of the batch.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf


class BusyWait(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="seconds")])
    def wait(self, seconds: tf.Tensor) -> dict[str, tf.Tensor]:
        duration = tf.cast(tf.reduce_max(tf.concat([seconds, [0.0]], axis=0)), tf.float64)
        start = tf.timestamp()
        (finish,) = tf.while_loop(lambda now: now - start < duration, lambda now: [tf.timestamp()], [start])
        elapsed = tf.cast(finish - start, tf.float32)
        return {"seconds": seconds, "elapsed": tf.fill(tf.shape(seconds), elapsed)}


def build(out: Path) -> None:
    model = BusyWait()
    tf.saved_model.save(model, str(out), signatures={"serving_default": model.wait})
