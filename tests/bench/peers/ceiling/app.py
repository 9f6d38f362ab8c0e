"""The ceiling: our HTTP stack and our request parsing, then a constant answer, no model.

Built from the server's own pieces: uvicorn configured by ``modelserver.lifecycle``
(uvloop, httptools), the bounded body read and response writer of ``modelserver.asgi``,
orjson parsing and the TF Serving row-format conversion to a checked NumPy batch of
``modelserver.protocols``. Only the inference (queue, batching, TensorFlow) and the
metrics are left out: whatever our server adds on top of this is its own cost.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import uvicorn
from modelserver.asgi import Receive, Response, Scope, Send, read_body, send_response
from modelserver.lifecycle import uvicorn_config
from modelserver.protocols.json import dumps, loads_object, may_hold_booleans
from modelserver.protocols.tfserving import row_inputs
from modelserver.runtime import Signature, TensorSpec
from modelserver.settings import Settings

MAX_BODY_BYTES = Settings().max_body_bytes
TF_DTYPE_NAMES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64"}


class CeilingApp:
    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.answer = Response(dumps({"predictions": [[0.0]]}), model_version="1")
        self.headers = [(b"x-served-by", b"ceiling"), (b"x-model-version", b"1")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "POST":
            body = await read_body(scope, receive, MAX_BODY_BYTES)
            # As ours parses: the element-wise look for booleans only when the body has a token.
            row_inputs(loads_object(body)["instances"], self.signature, may_hold_booleans(body))
            await send_response(send, self.answer, self.headers)
        else:
            await send_response(send, Response(b"{}"), self.headers)


def signature_for(input_name: str, dtype: str, instance_shape: list[int]) -> Signature:
    spec = TensorSpec(
        key=input_name,
        tensor_name=f"{input_name}:0",
        dtype_name=TF_DTYPE_NAMES[dtype],
        dtype=np.dtype(dtype),
        shape=(-1, *instance_shape),
    )
    inputs = {input_name: spec}
    return Signature(name="serving_default", method_name="", inputs=inputs, outputs={}, function=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--input-name", required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--instance-shape", required=True, help="comma-separated, e.g. 8")
    args = parser.parse_args(argv)
    shape = [int(d) for d in args.instance_shape.split(",") if d]
    app: Any = CeilingApp(signature_for(args.input_name, args.dtype, shape))
    settings = Settings(host="127.0.0.1", port=args.port, log_level="warning")
    uvicorn.Server(uvicorn_config(app, settings)).run()


if __name__ == "__main__":
    main()
