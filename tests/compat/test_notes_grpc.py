"""The gRPC call NOTES.txt prints after `helm install` works, as printed, against the server.

The chart renders the command (with the pinned helm); only the interpreter is swapped for
this venv's (which has open-inference-grpc, the package the command asks for).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from chart.render import notes

COMMAND_START = "python3 -c '"


def printed_grpc_command(text: str) -> str:
    start = text.index(COMMAND_START)
    end = text.index("'\n", start + len(COMMAND_START))
    return text[start : end + 1]


def test_the_notes_grpc_prediction_runs_against_the_server(compat_server):
    command = printed_grpc_command(notes())
    command = shlex.quote(sys.executable) + command[len("python3") :]
    answer = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "GRPC_TARGET": compat_server.grpc_target},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert 'model_name: "anomaly"' in answer.stdout, answer.stdout
    assert 'model_version: "2"' in answer.stdout, answer.stdout
    assert "outputs {" in answer.stdout, answer.stdout
