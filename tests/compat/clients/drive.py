"""Peer clients driving the server: `python drive.py SCENARIO URL [ARG]` prints one JSON result.

URL is the HTTP base URL, or host:port of the gRPC port for the `*-grpc-*` scenarios.
Runs in the peer-clients venv (tritonclient[http,grpc], kserve; see requirements.txt), so it
imports nothing of this project. Each scenario uses the client as its documentation shows,
at its defaults unless the scenario's name says otherwise; arrays come back as lists.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

FLOWS = np.asarray(
    [[1.2, 20000, 2000, 30, 20, 1, 0.05, 0], [0.1, 60, 3000, 1, 50, 200, 0.95, 40]], dtype=np.float32
)


def plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [base64.b64encode(v).decode() for v in value.reshape(-1)]
        return {"dtype": str(value.dtype), "shape": list(value.shape), "values": value.reshape(-1).tolist()}
    return value


# ---------------------------------------------------------------------------- tritonclient.http


def triton_client(url: str) -> Any:
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=url.removeprefix("http://"))


def triton_metadata(url: str, _: str) -> dict[str, Any]:
    client = triton_client(url)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("anomaly"),
        "server": client.get_server_metadata(),
        "model": client.get_model_metadata("anomaly"),
    }


def triton_defaults(url: str, _: str) -> dict[str, Any]:
    """tritonclient's quick start: set_data_from_numpy and infer() with their default arguments."""
    import tritonclient.http as httpclient

    client = triton_client(url)
    features = httpclient.InferInput("features", list(FLOWS.shape), "FP32")
    features.set_data_from_numpy(FLOWS)
    result = client.infer("anomaly", [features])
    response = result.get_response()
    return {
        "anomaly_score": plain(result.as_numpy("anomaly_score")),
        "is_anomaly": plain(result.as_numpy("is_anomaly")),
        "outputs": response["outputs"],
        "model_version": response.get("model_version"),
    }


def triton_json_only(url: str, _: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    client = triton_client(url)
    features = httpclient.InferInput("features", list(FLOWS.shape), "FP32")
    features.set_data_from_numpy(FLOWS, binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("anomaly_score", binary_data=False),
        httpclient.InferRequestedOutput("is_anomaly", binary_data=False),
    ]
    result = client.infer("anomaly", [features], outputs=outputs, request_id="json-1")
    return {
        "anomaly_score": plain(result.as_numpy("anomaly_score")),
        "is_anomaly": plain(result.as_numpy("is_anomaly")),
        "response": result.get_response(),
    }


def triton_half_plus_two(url: str, _: str) -> dict[str, Any]:
    """The TF1 quickstart model over V2: x [3] against a declared [-1, 1], as TF Serving feeds it."""
    import tritonclient.http as httpclient

    client = triton_client(url)
    x = httpclient.InferInput("x", [3], "FP32")
    x.set_data_from_numpy(np.asarray([1.0, 2.0, 5.0], dtype=np.float32))
    result = client.infer("half_plus_two", [x], model_version="123")
    return {"y": plain(result.as_numpy("y")), "model_version": result.get_response().get("model_version")}


def bytes_round_trip(client: Any, module: Any) -> dict[str, Any]:
    """BYTES in and out (binary data over HTTP, length-prefixed over gRPC) on the TF1 `strings` model."""
    text = module.InferInput("text", [3], "BYTES")
    text.set_data_from_numpy(np.asarray([b"hello", b"", b"\xff\x00binary"], dtype=np.object_))
    result = client.infer("strings", [text])
    return {"length": plain(result.as_numpy("length")), "echo_bytes": plain(result.as_numpy("echo_bytes"))}


def regress_examples(client: Any, module: Any, examples_b64: str) -> dict[str, Any]:
    """Serialized tf.Examples as BYTES to a named signature (request parameter signature_name)."""
    examples = np.asarray([base64.b64decode(e) for e in examples_b64.split(",")], dtype=np.object_)
    inputs = module.InferInput("inputs", [len(examples)], "BYTES")
    inputs.set_data_from_numpy(examples)
    result = client.infer("anomaly", [inputs], parameters={"signature_name": "regress"})
    return {"outputs": plain(result.as_numpy("outputs"))}


def refused_input(client: Any, module: Any) -> dict[str, Any]:
    """An input the signature does not have: the client's exception, status and message."""
    from tritonclient.utils import InferenceServerException

    wrong = module.InferInput("nope", [1, 8], "FP32")
    wrong.set_data_from_numpy(FLOWS[:1])
    try:
        client.infer("anomaly", [wrong])
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    return {"status": None}


def triton_bytes(url: str, _: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    return bytes_round_trip(triton_client(url), httpclient)


def triton_regress(url: str, examples_b64: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    return regress_examples(triton_client(url), httpclient, examples_b64)


def triton_error(url: str, _: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    return refused_input(triton_client(url), httpclient)


def kserve_client(protocol: str) -> Any:
    from kserve import InferenceRESTClient, RESTConfig

    return InferenceRESTClient(RESTConfig(protocol=protocol))


async def kserve_v2(url: str, binary: bool) -> dict[str, Any]:
    from kserve import InferInput, InferRequest

    client = kserve_client("v2")
    features = InferInput("features", list(FLOWS.shape), "FP32")
    features.set_data_from_numpy(FLOWS, binary_data=binary)
    request = InferRequest(model_name="anomaly", infer_inputs=[features], request_id="kserve-1")
    headers: dict[str, str] = {}
    response = await client.infer(url, request, model_name="anomaly", response_headers=headers)
    return {
        "x_model_version": headers.get("x-model-version"),
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, "anomaly"),
        "id": response.id,
        "outputs": {output.name: plain(output.as_numpy()) for output in response.outputs},
    }


def kserve_v2_json(url: str, _: str) -> dict[str, Any]:
    return asyncio.run(kserve_v2(url, binary=False))


def kserve_v2_binary(url: str, _: str) -> dict[str, Any]:
    return asyncio.run(kserve_v2(url, binary=True))


def kserve_v1(url: str, _: str) -> dict[str, Any]:
    """KServe's V1 protocol is TF Serving's :predict; the client's default protocol."""

    async def run() -> dict[str, Any]:
        client = kserve_client("v1")
        return await client.infer(url, {"instances": [[1.0], [2.0], [5.0]]}, model_name="half_plus_two")

    return asyncio.run(run())


# ---------------------------------------------------------------------------- tritonclient.grpc


def triton_grpc_client(target: str) -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=target)


def triton_grpc_metadata(target: str, _: str) -> dict[str, Any]:
    """ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata."""
    client = triton_grpc_client(target)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("anomaly"),
        "version_ready": client.is_model_ready("anomaly", model_version="2"),
        "server": client.get_server_metadata(as_json=True),
        "model": client.get_model_metadata("anomaly", as_json=True),
    }


def triton_grpc_defaults(target: str, _: str) -> dict[str, Any]:
    """ModelInfer as tritonclient.grpc's quick start sends it: raw_input_contents, outputs raw."""
    import tritonclient.grpc as grpcclient

    client = triton_grpc_client(target)
    features = grpcclient.InferInput("features", list(FLOWS.shape), "FP32")
    features.set_data_from_numpy(FLOWS)
    result = client.infer("anomaly", [features], request_id="grpc-1")
    response = result.get_response(as_json=True)
    return {
        "anomaly_score": plain(result.as_numpy("anomaly_score")),
        "is_anomaly": plain(result.as_numpy("is_anomaly")),
        "outputs": response["outputs"],
        "raw_outputs": len(result.get_response().raw_output_contents),
        "id": response.get("id"),
        "model_version": response.get("model_version"),
    }


def triton_grpc_half_plus_two(target: str, _: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    client = triton_grpc_client(target)
    x = grpcclient.InferInput("x", [3], "FP32")
    x.set_data_from_numpy(np.asarray([1.0, 2.0, 5.0], dtype=np.float32))
    result = client.infer("half_plus_two", [x], model_version="123")
    return {"y": plain(result.as_numpy("y")), "model_version": result.get_response().model_version}


def triton_grpc_bytes(target: str, _: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    return bytes_round_trip(triton_grpc_client(target), grpcclient)


def triton_grpc_regress(target: str, examples_b64: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    return regress_examples(triton_grpc_client(target), grpcclient, examples_b64)


def triton_grpc_error(target: str, _: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    return refused_input(triton_grpc_client(target), grpcclient)


# ---------------------------------------------------------------------------- kserve.InferenceGRPCClient


def kserve_grpc(target: str, _: str) -> dict[str, Any]:
    """KServe's gRPC client; inputs in typed contents (binary_data=False), so outputs come back typed."""
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def run() -> dict[str, Any]:
        client = InferenceGRPCClient(url=target, retries=0)
        features = InferInput("features", list(FLOWS.shape), "FP32")
        features.set_data_from_numpy(FLOWS, binary_data=False)
        request = InferRequest(model_name="anomaly", infer_inputs=[features], request_id="kserve-grpc-1")
        response = await client.infer(request)
        answer = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready("anomaly"),
            "id": response.id,
            "outputs": {output.name: plain(output.as_numpy()) for output in response.outputs},
        }
        await client.close()
        return answer

    return asyncio.run(run())


SCENARIOS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "triton-metadata": triton_metadata,
    "triton-defaults": triton_defaults,
    "triton-json-only": triton_json_only,
    "triton-half-plus-two": triton_half_plus_two,
    "triton-bytes": triton_bytes,
    "triton-regress": triton_regress,
    "triton-error": triton_error,
    "kserve-v2-json": kserve_v2_json,
    "kserve-v2-binary": kserve_v2_binary,
    "kserve-v1": kserve_v1,
    "triton-grpc-metadata": triton_grpc_metadata,
    "triton-grpc-defaults": triton_grpc_defaults,
    "triton-grpc-half-plus-two": triton_grpc_half_plus_two,
    "triton-grpc-bytes": triton_grpc_bytes,
    "triton-grpc-regress": triton_grpc_regress,
    "triton-grpc-error": triton_grpc_error,
    "kserve-grpc": kserve_grpc,
}


if __name__ == "__main__":
    scenario, server_url = sys.argv[1], sys.argv[2]
    argument = sys.argv[3] if len(sys.argv) > 3 else ""
    print(json.dumps(SCENARIOS[scenario](server_url, argument)))
