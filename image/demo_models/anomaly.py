"""`anomaly`: scores network-flow feature vectors for how far they sit from normal traffic.

Input `features`, float32 [-1, 8], one row per flow, columns in FEATURES order. Counts
and sizes are log-scaled, standardized against a per-version baseline of normal traffic,
and combined as a weighted mean squared distance d; the score is 1 - exp(-d / 2) in
[0, 1), the flag is score >= threshold. Versions differ in baseline, weights and
threshold, so they give measurably different scores for the same flow.

Signatures:
  serving_default  features -> anomaly_score float32 [-1], is_anomaly bool [-1]
  regress          serialized tf.Example (one float feature per FEATURES name)
                   -> outputs float32 [-1] (the score)       TF Serving :regress
  classify         same input -> classes string [-1, 2] ("normal", "anomalous"),
                   scores float32 [-1, 2]                      TF Serving :classify
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

FEATURES = (
    "duration_seconds",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "distinct_dst_ports",
    "syn_ratio",
    "failed_connections",
)
# syn_ratio is already a fraction; everything else is a count or size spanning decades.
LOG_SCALED = (True, True, True, True, True, True, False, True)
CLASSES = ("normal", "anomalous")


@dataclass(frozen=True)
class Baseline:
    """What normal traffic looks like to one model version (in log1p space)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weight: tuple[float, ...]
    threshold: float


VERSIONS: dict[int, Baseline] = {
    1: Baseline(
        mean=(0.7, 9.9, 7.6, 3.4, 3.0, 0.7, 0.05, 0.0),
        scale=(1.0, 2.0, 2.0, 1.0, 1.0, 0.5, 0.1, 0.5),
        weight=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        threshold=0.9,
    ),
    # Version 2: a baseline refreshed on busier traffic, more weight on the scan/brute-force
    # signals (ports, SYN ratio, failures), and a lower alert threshold.
    2: Baseline(
        mean=(0.9, 10.4, 8.1, 3.8, 3.3, 0.8, 0.06, 0.1),
        scale=(1.2, 2.2, 2.2, 1.1, 1.1, 0.4, 0.08, 0.4),
        weight=(0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0),
        threshold=0.8,
    ),
}


class AnomalyDetector(tf.Module):
    def __init__(self, baseline: Baseline) -> None:
        super().__init__(name="anomaly_detector")
        self.mean = tf.constant(baseline.mean, tf.float32)
        self.scale = tf.constant(baseline.scale, tf.float32)
        self.weight = tf.constant(baseline.weight, tf.float32)
        self.log_scaled = tf.constant(LOG_SCALED)
        self.threshold = tf.constant(baseline.threshold, tf.float32)

    def score(self, features: tf.Tensor) -> tf.Tensor:
        non_negative = tf.maximum(features, 0.0)
        transformed = tf.where(self.log_scaled, tf.math.log1p(non_negative), non_negative)
        z = (transformed - self.mean) / self.scale
        distance = tf.reduce_sum(self.weight * tf.square(z), axis=1) / tf.reduce_sum(self.weight)
        return 1.0 - tf.exp(-distance / 2.0)

    @tf.function(input_signature=[tf.TensorSpec([None, len(FEATURES)], tf.float32, name="features")])
    def predict(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        score = self.score(features)
        return {"anomaly_score": score, "is_anomaly": score >= self.threshold}

    def parse(self, serialized: tf.Tensor) -> tf.Tensor:
        spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in FEATURES}
        parsed = tf.io.parse_example(serialized, spec)
        return tf.stack([parsed[name] for name in FEATURES], axis=1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.score(self.parse(inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        score = self.score(self.parse(inputs))
        rows = tf.shape(score)[0]
        classes = tf.tile(tf.constant([CLASSES]), [rows, 1])
        return {"classes": classes, "scores": tf.stack([1.0 - score, score], axis=1)}


def build(version: int, out: Path) -> None:
    detector = AnomalyDetector(VERSIONS[version])
    signatures = {
        "serving_default": detector.predict,
        "regress": detector.regress,
        "classify": detector.classify,
    }
    tf.saved_model.save(detector, str(out), signatures=signatures)
