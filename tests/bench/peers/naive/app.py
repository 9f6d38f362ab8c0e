"""The app.py users write first: Flask, the model loaded at import, one call per request.

Served by gunicorn sync workers (each worker imports this module and loads its own copy
of the model). It calls the SavedModel's serving signature directly, which is already
faster than wrapping it in Keras' ``model.predict``.
"""

import os

import tensorflow as tf
from flask import Flask, jsonify, request

THREADS = int(os.environ.get("BENCH_TF_THREADS", "1"))
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)

model = tf.saved_model.load(os.environ["MODEL_DIR"])
predict_fn = model.signatures["serving_default"]
input_name, input_spec = next(iter(predict_fn.structured_input_signature[1].items()))

app = Flask(__name__)


@app.get("/ping")
def ping():
    return "ok"


@app.post("/v1/models/<name>:predict")
def predict(name):
    instances = request.get_json()["instances"]
    outputs = predict_fn(**{input_name: tf.constant(instances, dtype=input_spec.dtype)})
    return jsonify({"predictions": {key: value.numpy().tolist() for key, value in outputs.items()}})
