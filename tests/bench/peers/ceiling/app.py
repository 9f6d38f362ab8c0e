"""The ceiling: our HTTP stack parsing the predict request, then answering a constant.

uvicorn with uvloop and httptools, the body parsed by orjson into a NumPy batch exactly
as a predict request is parsed before inference, and no model call. Whatever a model
server adds on top of this is its own cost; nothing built on this stack can beat it.
"""

from __future__ import annotations

import argparse

import numpy as np
import orjson
import uvicorn

ANSWER = orjson.dumps({"predictions": [[0.0]]})
JSON_HEADERS = [(b"content-type", b"application/json")]


def parse_instances(body: bytes) -> np.ndarray:
    return np.asarray(orjson.loads(body)["instances"], dtype=np.float32)


async def read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "POST":
        parse_instances(await read_body(receive))
        body = ANSWER
    else:
        body = b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
