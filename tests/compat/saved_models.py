"""SavedModels exported the way TF Serving's own test data is exported, written here from what
its scripts do (tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py,
tensorflow_model_server_test.py), not copied from them.

TF1 style, with `tf.compat.v1` in a graph and a session, `SavedModelBuilder`:

- `half_plus_two/00000123`: reference variables a=0.5, b=2, c=3 (VariableV2, as in the
  TF1-era testdata); a `tf_example` placeholder of unknown rank parsed by
  `parse_example` with features x and x2 (x2 defaults to 0); x is declared [-1, 1].
  Signatures: serving_default (x -> y = a*x + b), regress_x_to_y, regress_x_to_y2
  (a*x + c), regress_x2_to_y3 (x2 -> a*x2 + c, a float input: not a tf.Example
  signature), classify_x_to_y (scores only). A main op and an asset file, as there.
- `saved_model_half_plus_three/00000123` (the name api_rest.md serves it under):
  y = a*x + 3, with the SignatureDefs as TF 1.0 wrote them (tensor name and dtype
  only, no shape, so each declares rank 0) and the regression
  signature keyed by its method name, "tensorflow/serving/regress", which is what
  api_rest.md's example asks for. `tf.saved_model.load` cannot load this one ("Shapes
  must be equal rank"); TF Serving serves it.
- `half_plus_two_partly_broken/00000001`: half_plus_two with two more SignatureDefs the
  runtime cannot call, as a hand-edited or foreign export may hold: `missing_tensor`
  (its input names a tensor the graph does not have) and `resource_input` (a DT_RESOURCE
  input, which JSON cannot carry). The other signatures must serve regardless.
- `strings/00000001`: a DT_STRING input `text` [-1] -> `length` int32 and `echo_bytes`
  (the input back; the `_bytes` suffix makes TF Serving answer it as {"b64": ...}).

TF2 style, as tensorflow_model_server_test.py saves them (`00000123`):

- `tf2_unknown_rank`: f(x) = {'y': v1 * v2 * x}, v1 = 3, v2 = 2, input of unknown rank.
- `tf2_two_signatures`: serving_default -> {'y': 1.0}, custom_signature_key -> {'y': 2.0}.

Run as a script: `python -m compat.saved_models OUT_DIR` writes them all under OUT_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tensorflow as tf

v1 = tf.compat.v1

PREDICT = "tensorflow/serving/predict"
REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"


def signature(inputs: dict[str, v1.TensorInfo], outputs: dict[str, v1.TensorInfo], method: str) -> object:
    return v1.saved_model.signature_def_utils.build_signature_def(inputs, outputs, method)


def info(tensor: tf.Tensor) -> v1.TensorInfo:
    return v1.saved_model.utils.build_tensor_info(tensor)


def tf1_info(tensor: tf.Tensor) -> v1.TensorInfo:
    """A TensorInfo as TF 1.0's exporter wrote it: name and dtype, no shape."""
    return v1.TensorInfo(name=tensor.name, dtype=tensor.dtype.as_datatype_enum)


def parsed_examples() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(the serialized tf.Example placeholder, x, x2), as the half_plus_two script parses them."""
    serialized = v1.placeholder(tf.string, name="tf_example")  # unknown rank, as in the testdata
    features = {
        "x": v1.FixedLenFeature([1], dtype=tf.float32),
        "x2": v1.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
    }
    parsed = v1.parse_example(serialized, features)
    x = tf.identity(parsed["x"], name="x")
    x.set_shape([None, 1])
    x2 = tf.identity(parsed["x2"], name="x2")
    x2.set_shape([None, 1])
    return serialized, x, x2


def asset_op(directory: Path) -> tf.Operation:
    """An asset file in the ASSET_FILEPATHS collection and a variable the main op assigns."""
    directory.mkdir(parents=True, exist_ok=True)
    asset = directory / "foo.txt"
    asset.write_text("asset-file-contents")
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, tf.constant(str(asset)))
    filename = v1.Variable(
        "foo.txt", name="filename_tensor", trainable=False, collections=[], use_resource=False
    )
    return filename.assign("foo.txt")


def save_tf1(
    export_dir: Path, session: v1.Session, signatures: dict[str, object], main_op: tf.Operation
) -> None:
    builder = v1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(
        session,
        [v1.saved_model.tag_constants.SERVING],
        signature_def_map=signatures,
        assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
        main_op=main_op,
    )
    builder.save()


def export_half_plus_two(export_dir: Path, scratch: Path) -> None:
    with tf.Graph().as_default(), v1.Session() as session:
        a = v1.Variable(0.5, name="a", use_resource=False)
        b = v1.Variable(2.0, name="b", use_resource=False)
        c = v1.Variable(3.0, name="c", use_resource=False)
        serialized, x, x2 = parsed_examples()
        y = tf.identity(a * x + b, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        y3 = tf.identity(a * x2 + c, name="y3")
        main_op = tf.group(asset_op(scratch / "half_plus_two"))
        session.run(v1.global_variables_initializer())
        save_tf1(
            export_dir,
            session,
            {
                "serving_default": signature({"x": info(x)}, {"y": info(y)}, PREDICT),
                "regress_x_to_y": signature({"inputs": info(serialized)}, {"outputs": info(y)}, REGRESS),
                "regress_x_to_y2": signature({"inputs": info(serialized)}, {"outputs": info(y2)}, REGRESS),
                "regress_x2_to_y3": signature({"inputs": info(x2)}, {"outputs": info(y3)}, REGRESS),
                "classify_x_to_y": signature({"inputs": info(serialized)}, {"scores": info(y)}, CLASSIFY),
            },
            main_op,
        )


def export_half_plus_three(export_dir: Path, scratch: Path) -> None:
    with tf.Graph().as_default(), v1.Session() as session:
        a = v1.Variable(0.5, name="a", use_resource=False)
        b = v1.Variable(3.0, name="b", use_resource=False)
        serialized, x, _ = parsed_examples()
        y = tf.identity(a * x + b, name="y")
        main_op = tf.group(asset_op(scratch / "saved_model_half_plus_three"))
        session.run(v1.global_variables_initializer())
        save_tf1(
            export_dir,
            session,
            {
                "serving_default": signature({"x": tf1_info(x)}, {"y": tf1_info(y)}, PREDICT),
                REGRESS: signature({"inputs": tf1_info(serialized)}, {"outputs": tf1_info(y)}, REGRESS),
            },
            main_op,
        )


def export_strings(export_dir: Path) -> None:
    with tf.Graph().as_default(), v1.Session() as session:
        text = v1.placeholder(tf.string, shape=[None], name="text")
        length = tf.strings.length(text, name="length")
        echo = tf.identity(text, name="echo")
        save_tf1(
            export_dir,
            session,
            {
                "serving_default": signature(
                    {"text": info(text)}, {"length": info(length), "echo_bytes": info(echo)}, PREDICT
                )
            },
            tf.no_op(),
        )


def add_broken_signatures(export_dir: Path) -> None:
    """Edit saved_model.pb: two SignatureDefs next to the good ones that no runtime can call."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    path = export_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    signatures = saved_model.meta_graphs[0].signature_def
    missing = signatures["missing_tensor"]
    missing.CopyFrom(signatures["serving_default"])
    missing.inputs["x"].name = "no_such_tensor:0"
    resource = signatures["resource_input"]
    resource.CopyFrom(signatures["serving_default"])
    resource.inputs["x"].dtype = types_pb2.DT_RESOURCE
    path.write_bytes(saved_model.SerializeToString())


def export_tf2_unknown_rank(export_dir: Path) -> None:
    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.0)
    root.v2 = tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(export_dir), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))


def export_tf2_two_signatures(export_dir: Path) -> None:
    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(
        root, str(export_dir), signatures={"serving_default": root.f, "custom_signature_key": root.g}
    )


def export_all(out: Path) -> None:
    scratch = out.parent / f"{out.name}-assets"
    export_half_plus_two(out / "half_plus_two" / "00000123", scratch)
    export_half_plus_three(out / "saved_model_half_plus_three" / "00000123", scratch)
    export_half_plus_two(out / "half_plus_two_partly_broken" / "00000001", scratch)
    add_broken_signatures(out / "half_plus_two_partly_broken" / "00000001")
    export_strings(out / "strings" / "00000001")
    export_tf2_unknown_rank(out / "tf2_unknown_rank" / "00000123")
    export_tf2_two_signatures(out / "tf2_two_signatures" / "00000123")


if __name__ == "__main__":
    export_all(Path(sys.argv[1]))
