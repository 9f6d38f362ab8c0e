"""The gRPC ceiling: our gRPC stack and our ModelInfer decoding, then a constant answer, no model.

The REST ceiling (app.py) plus, on the same event loop and started in the lifespan as
ours starts its gRPC port, a grpc.aio server with our server's gRPC options
(``modelserver.grpc_api.server.server_options``), taking ModelInfer as bytes, parsing it
and decoding it with ``modelserver.grpc_api.v2`` into the checked NumPy batch, then
answering a constant. Left out, as in the REST ceiling: the inference (queue, batching,
TensorFlow), admission, deadlines and metrics.
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
import uvicorn
from app import CeilingApp, signature_for
from modelserver.asgi import Receive, Scope, Send
from modelserver.grpc_api.calls import parse
from modelserver.grpc_api.server import server_options
from modelserver.grpc_api.v2 import decode_inputs
from modelserver.lifecycle import uvicorn_config
from modelserver.runtime import Signature
from modelserver.settings import Settings
from open_inference.grpc import protocol as oip

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class ModelInferCeiling(grpc.GenericRpcHandler):
    """ModelInfer, bytes in and bytes out as in ours: parse, decode, a constant answer."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        answer = oip.ModelInferResponse(model_name="ceiling", model_version="1")
        answer.outputs.add(name="output", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(0.0)
        self.answer = answer.SerializeToString()
        self.handler = grpc.unary_unary_rpc_method_handler(self.model_infer)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self.handler if handler_call_details.method == MODEL_INFER else None

    async def model_infer(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        decode_inputs(parse(oip.ModelInferRequest, raw), self.signature)
        return self.answer


class GrpcCeilingApp(CeilingApp):
    def __init__(self, signature: Signature, settings: Settings) -> None:
        super().__init__(signature)
        self.settings = settings
        self.grpc: grpc.aio.Server | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            if self.grpc is None:
                self.grpc = grpc.aio.server(options=server_options(self.settings))
                self.grpc.add_generic_rpc_handlers((ModelInferCeiling(self.signature),))
                self.grpc.add_insecure_port(f"{self.settings.host}:{self.settings.grpc_port}")
                await self.grpc.start()
            await send({"type": "lifespan.startup.complete"})
        if self.grpc is not None:
            await self.grpc.stop(grace=None)
        await send({"type": "lifespan.shutdown.complete"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--input-name", required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--instance-shape", required=True, help="comma-separated, e.g. 8")
    args = parser.parse_args(argv)
    shape = [int(d) for d in args.instance_shape.split(",") if d]
    settings = Settings(host="127.0.0.1", port=args.port, grpc_port=args.grpc_port, log_level="warning")
    app: Any = GrpcCeilingApp(signature_for(args.input_name, args.dtype, shape), settings)
    uvicorn.Server(uvicorn_config(app, settings)).run()


if __name__ == "__main__":
    main()
