"""One prediction through a Service's NodePort on 127.0.0.1, checked (used by `make up` and `make smoke`).

Two network flows: an ordinary one (near version 2's baseline of normal traffic) and a port
scan (a thousand ports, all SYN, hundreds of failed connections). A working server flags the
scan and not the ordinary flow, and names its model version and pod in the headers.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

MODEL = "anomaly"
# duration_s, bytes_in, bytes_out, packets_in, packets_out, distinct_dst_ports, syn_ratio, failed_connections
ORDINARY_FLOW = [1.5, 33000.0, 3300.0, 44.0, 26.0, 1.0, 0.06, 0.0]
PORT_SCAN = [30.0, 2000.0, 60000.0, 1000.0, 1000.0, 1000.0, 1.0, 900.0]
REQUEST_BODY = {"instances": [ORDINARY_FLOW, PORT_SCAN]}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    model_version: str
    served_by: str


def url(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/v1/models/{MODEL}:predict"


def curl_command(port: int) -> str:
    return (
        f"curl -s -X POST {url(port)} -H 'Content-Type: application/json' "
        f"-d '{json.dumps(REQUEST_BODY, separators=(',', ':'))}'"
    )


def predict(port: int, timeout: float = 60.0) -> Answer:
    """POST the two flows, retrying connection errors until timeout (a NodePort may take a moment)."""
    request = urllib.request.Request(
        url(port), data=json.dumps(REQUEST_BODY).encode(), headers={"Content-Type": "application/json"}
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(
                    response.status,
                    json.load(response),
                    response.headers.get("X-Model-Version", ""),
                    response.headers.get("X-Served-By", ""),
                )
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


def check(answer: Answer, expected_version: str = "2") -> str:
    """Raise AssertionError unless the answer is right; returns a one-line summary."""
    predictions = answer.body.get("predictions")
    assert answer.status == 200, f"status {answer.status}: {answer.body}"
    assert isinstance(predictions, list) and len(predictions) == 2, f"want 2 predictions, got {answer.body}"
    ordinary, scan = predictions
    assert not ordinary["is_anomaly"] and scan["is_anomaly"], (
        f"scan must be flagged, ordinary not: {predictions}"
    )
    assert scan["anomaly_score"] > ordinary["anomaly_score"], f"scan must score higher: {predictions}"
    assert answer.model_version == expected_version, f"X-Model-Version {answer.model_version!r}"
    assert answer.served_by, "no X-Served-By header"
    return (
        f"ordinary flow score {ordinary['anomaly_score']:.3f}, "
        f"port scan {scan['anomaly_score']:.3f} (flagged); "
        f"model version {answer.model_version}, served by {answer.served_by}"
    )
