"""Compressed request bodies (gzip, deflate) and the memory bounds on bodies in flight (429)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from modelserver.asgi import read_body
from modelserver.errors import ServingError

from unit.conftest import FLOW_NORMAL, FLOW_PORT_SCAN
from unit.server_process import ServerProcess, start_server

PREDICT = "/v1/models/anomaly:predict"
INFER = "/v2/models/anomaly/infer"
BODY_LIMIT = 1024 * 1024  # main_server's TFMS_MAX_BODY_BYTES
BODY = orjson.dumps({"instances": [FLOW_NORMAL, FLOW_PORT_SCAN]})


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def bomb(size: int) -> bytes:
    """`size` bytes of spaces after a JSON opening brace, gzipped (about 1000:1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(b"{")]
    block = b" " * (1024 * 1024)
    for _ in range(size // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


# ------------------------------------------------------------------ over HTTP, the real server


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip", lambda body: gzip.compress(body[:20]) + gzip.compress(body[20:])),
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "gzip-two-members"],
)
def test_a_compressed_body_answers_as_the_plain_one(client, encoding, compress):
    plain = client.post(PREDICT, content=BODY)
    packed = client.post(PREDICT, content=compress(BODY), headers={"Content-Encoding": encoding})
    assert packed.status_code == 200, packed.text
    assert packed.json() == plain.json()


def test_a_gzipped_v2_request_is_decompressed_too(client):
    body = orjson.dumps(
        {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": FLOW_NORMAL}]}
    )
    response = client.post(INFER, content=gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["name"] == "anomaly_score"


def test_a_zip_bomb_gets_413_and_the_server_keeps_serving(client):
    packed = bomb(1024 * 1024 * 1024)  # 1 GiB inflated, about 1 MiB on the wire
    assert len(packed) < BODY_LIMIT
    started = time.monotonic()
    response = client.post(PREDICT, content=packed, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert "once decompressed" in response.json()["error"]
    assert time.monotonic() - started < 5, "the server inflated far more than the limit"
    assert client.post(PREDICT, content=BODY).status_code == 200


@pytest.mark.parametrize(
    ("encoding", "body", "status", "text"),
    [
        ("gzip", b"not gzip at all", 400, "not valid gzip"),
        ("gzip", gzip.compress(BODY)[:-12], 400, "truncated"),
        ("deflate", b"\x78\x9c garbage", 400, "not valid deflate"),
        ("br", b"{}", 415, "Content-Encoding 'br' is not supported"),
        ("gzip, gzip", gzip.compress(gzip.compress(BODY)), 415, "not supported"),
    ],
    ids=["garbage", "truncated", "bad-deflate", "brotli", "stacked"],
)
def test_bad_compressed_bodies_get_a_json_4xx(client, encoding, body, status, text):
    response = client.post(PREDICT, content=body, headers={"Content-Encoding": encoding})
    assert response.status_code == status
    assert text in response.json()["error"]
    assert client.post(PREDICT, content=BODY).status_code == 200


# ------------------------------------------------------------------ in process: memory while inflating


def test_inflating_a_bomb_never_holds_much_more_than_the_limit():
    limit = 4 * 1024 * 1024
    packed = bomb(512 * 1024 * 1024)
    scope = {"headers": [(b"content-encoding", b"gzip"), (b"content-length", str(len(packed)).encode())]}
    messages = [
        {"type": "http.request", "body": packed[i : i + 65536], "more_body": i + 65536 < len(packed)}
        for i in range(0, len(packed), 65536)
    ]

    async def receive() -> dict:
        return messages.pop(0)

    tracemalloc.start()
    try:
        with pytest.raises(ServingError) as refused:
            asyncio.run(read_body(scope, receive, limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status == 413
    assert peak < 2 * limit, f"peaked at {peak / 2**20:.1f} MiB for a {limit / 2**20:.0f} MiB limit"


# ------------------------------------------------------------------ admission: 429 before decoding

BUDGET_BODY = 1000 * 1000  # one declared body of this size takes 17 MB of the budget
BUDGET = 17 * 1024 * 1024  # room for one such body and small requests, not two
MAX_CONCURRENT = 4


@pytest.fixture(scope="module")
def bounded_server(model_repo: Path, log_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(
        model_repo,
        log_dir,
        "bounded",
        model_name="anomaly",
        max_body_bytes=str(1024 * 1024),
        max_inflight_bytes=str(BUDGET),
        max_concurrent_requests=str(MAX_CONCURRENT),
        drain_delay_seconds="0",
    )
    server.wait_ready()
    yield server
    server.stop()


def held_request(port: int, declared: int) -> socket.socket:
    """A POST whose body never finishes arriving: the server holds it in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode()
        + b'{"instances": '
    )
    time.sleep(0.2)  # the server has admitted it and waits for the rest
    return sock


def declared_post(port: int, declared: int) -> tuple[bytes, float]:
    """A POST that declares `declared` bytes and sends none: the answer and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer, time.monotonic() - started


def test_a_body_beyond_the_byte_budget_gets_429_at_once_before_it_is_read(bounded_server):
    holder = held_request(bounded_server.port, BUDGET_BODY)
    try:
        answer, took = declared_post(bounded_server.port, BUDGET_BODY)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"TFMS_MAX_INFLIGHT_BYTES" in answer
        assert took < 1.0, "the server waited for a body it was going to refuse"
        with bounded_server.client() as client:  # small requests still fit beside the big one
            assert client.post(PREDICT, content=BODY).status_code == 200
    finally:
        holder.close()
    time.sleep(0.3)  # the held request ends (client gone) and releases its bytes
    with bounded_server.client() as client:
        padded = BODY[:-1] + b" " * (BUDGET_BODY - len(BODY)) + b"}"
        assert client.post(PREDICT, content=padded).status_code == 200


def test_a_chunked_body_is_refused_with_429_once_it_outgrows_the_budget(bounded_server):
    holder = held_request(bounded_server.port, BUDGET_BODY)
    try:
        with socket.create_connection(("127.0.0.1", bounded_server.port), timeout=10) as sock:
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            piece = b" " * 65536
            answer = b""
            for _ in range(16):  # about 1 MiB, never terminated: the answer must come before
                try:
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                except OSError:
                    break
            while not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
    finally:
        holder.close()


def test_requests_beyond_the_concurrency_limit_get_429_and_health_is_never_refused(bounded_server):
    holders = [held_request(bounded_server.port, 100) for _ in range(MAX_CONCURRENT)]
    try:
        with bounded_server.client() as client:
            refused = client.post(PREDICT, content=BODY)
            assert refused.status_code == 429
            assert "TFMS_MAX_CONCURRENT_REQUESTS" in refused.json()["error"]
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/v2/health/ready").status_code == 200
            assert client.get("/v1/models/anomaly").status_code == 200
    finally:
        for holder in holders:
            holder.close()
    time.sleep(0.3)
    assert httpx.post(f"{bounded_server.url}{PREDICT}", content=BODY).status_code == 200
