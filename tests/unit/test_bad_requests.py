"""Every bad request gets a 4xx JSON error, and the server keeps serving after each one."""

from __future__ import annotations

import socket

import pytest

from unit.conftest import FLOW_NORMAL

BODY_LIMIT = 1024 * 1024  # main_server runs with TFMS_MAX_BODY_BYTES=1 MiB
PREDICT = "/v1/models/anomaly:predict"
INFER = "/v2/models/anomaly/infer"

BAD_REQUESTS = [
    # (id, method, path, raw body, status, text in the error)
    ("malformed-json", "POST", PREDICT, b"{not json", 400, "Malformed JSON"),
    ("empty-body", "POST", PREDICT, b"", 400, "empty"),
    ("json-array", "POST", PREDICT, b"[1, 2]", 400, "JSON object"),
    # NaN / Infinity / -Infinity are accepted (TF Serving's JSON); anything like them is not.
    ("nan-lowercase", "POST", PREDICT, b'{"instances": [[nan, 1, 1, 1, 1, 1, 1, 1]]}', 400, "Malformed JSON"),
    ("nan-misspelt", "POST", PREDICT, b'{"instances": [[NaNa, 1, 1, 1, 1, 1, 1, 1]]}', 400, "Malformed JSON"),
    ("inf-short", "POST", PREDICT, b'{"instances": [[Infinit, 1, 1, 1, 1, 1, 1, 1]]}', 400, "Malformed JSON"),
    ("no-instances", "POST", PREDICT, b'{"signature_name": "serving_default"}', 400, "instances"),
    ("both-formats", "POST", PREDICT, b'{"instances": [[1]], "inputs": [[1]]}', 400, "both"),
    ("wrong-shape", "POST", PREDICT, b'{"instances": [[1, 2, 3]]}', 400, "expects shape [-1, 8]"),
    ("wrong-rank", "POST", PREDICT, b'{"instances": [1, 2, 3, 4, 5, 6, 7, 8]}', 400, "expects shape"),
    ("ragged", "POST", PREDICT, b'{"instances": [[1, 2, 3, 4, 5, 6, 7, 8], [1]]}', 400, "rectangular"),
    (
        "strings",
        "POST",
        PREDICT,
        b'{"instances": [["a", "b", "c", "d", "e", "f", "g", "h"]]}',
        400,
        "strings",
    ),
    ("nulls", "POST", PREDICT, b'{"instances": [[null, 1, 1, 1, 1, 1, 1, 1]]}', 400, "expected numbers"),
    ("bool-in-floats", "POST", PREDICT, b'{"instances": [[true, 1.5, 1, 1, 1, 1, 1, 1]]}', 400, "booleans"),
    (
        "decimal-into-int-v2",
        "POST",
        INFER,
        b'{"inputs": [{"name": "features", "shape": [1, 8], '
        b'"datatype": "INT32", "data": [1.5, 1, 1, 1, 1, 1, 1, 1]}]}',
        400,
        "expects integers",
    ),
    ("object-instance", "POST", PREDICT, b'{"instances": [{"nope": [1]}]}', 400, "unknown input"),
    ("unknown-signature", "POST", PREDICT, b'{"signature_name": "x", "instances": [[1]]}', 400, "not found"),
    ("unknown-model", "POST", "/v1/models/nope:predict", b'{"instances": [[1]]}', 404, "Latest(nope)"),
    ("unknown-version", "POST", "/v1/models/anomaly/versions/7:predict", b'{"instances": [[1]]}', 404, "7"),
    (
        "unknown-label",
        "POST",
        "/v1/models/anomaly/labels/canary:predict",
        b'{"instances": [[1]]}',
        400,  # server_core.cc GetModelVersionForLabel: InvalidArgument
        "Unrecognized servable version label: canary",
    ),
    ("unknown-verb", "POST", "/v1/models/anomaly:explain", b"{}", 404, "Not found"),
    ("get-predict", "GET", PREDICT, b"", 405, "POST"),
    ("post-ready", "POST", "/v2/health/ready", b"{}", 405, "GET"),
    ("delete-model", "DELETE", "/v1/models/anomaly", b"", 405, "GET"),
    ("unknown-path", "GET", "/v3/anything", b"", 404, "Not found"),
    ("v2-inputs-not-list", "POST", INFER, b'{"inputs": {"features": [1]}}', 400, "non-empty list"),
    ("v2-id-not-string", "POST", INFER, b'{"id": 5, "inputs": []}', 400, "'id'"),
    ("v2-unknown-model", "POST", "/v2/models/nope/infer", b"{}", 404, "nope"),
    ("v2-unknown-version", "GET", "/v2/models/anomaly/versions/9", b"", 404, "9"),
    (
        "nesting-bomb-array",
        "POST",
        PREDICT,
        b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "depth",
    ),
    ("nesting-bomb-object", "POST", PREDICT, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, "depth"),
    (
        "nesting-1000-levels",
        "POST",
        PREDICT,
        b'{"instances": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}",
        400,
        "64",
    ),
    (
        "v2-nesting-1000-levels",
        "POST",
        INFER,
        b'{"inputs": [{"name": "features", "shape": [1], "datatype": "FP32", '
        b'"data": ' + b"[" * 1000 + b"1" + b"]" * 1000 + b"}]}",
        400,
        "64",
    ),
]


def assert_still_serving(client) -> None:
    response = client.post(PREDICT, json={"instances": [FLOW_NORMAL]})
    assert response.status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[c[0] for c in BAD_REQUESTS],
)
def test_bad_request_gets_json_error_and_server_keeps_serving(client, method, path, body, status, text):
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert text in error
    if status == 405:
        assert response.headers["allow"]
    assert_still_serving(client)


def raw_request(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request over a plain socket (to control how the body streams) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    return received


def test_declared_oversize_body_is_refused_before_it_is_sent(main_server, client):
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BODY_LIMIT + 1}\r\n\r\n"
    ).encode()
    answer = raw_request(main_server.port, head, [])
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"error":"Request body exceeds the limit of 1048576 bytes (TFMS_MAX_BODY_BYTES)"' in answer
    assert_still_serving(client)


def test_streamed_oversize_body_is_refused_while_streaming(main_server, client):
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    piece = b"[" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # One chunk more than the limit, and no terminating chunk: the server must answer
    # from what it has counted, without waiting for (or buffering) the rest.
    answer = raw_request(main_server.port, head, [chunk] * (BODY_LIMIT // len(piece) + 1))
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit" in answer
    assert_still_serving(client)


def test_body_just_under_the_limit_is_parsed(client):
    padding = " " * (BODY_LIMIT - 200)
    body = ('{"instances": [' + ",".join(map(str, FLOW_NORMAL)).join("[]") + "]" + padding + "}").encode()
    assert len(body) <= BODY_LIMIT
    response = client.post(PREDICT, content=body)
    assert response.status_code == 200
