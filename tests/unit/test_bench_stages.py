"""bench.stages: py-spy samples by stage, and batch sizes from the server's own /metrics text.

The stacks are lines of a real `py-spy record --format raw --threads` run against the
server at 64 connections (trimmed to a few frames each); the metrics text is what the
server's own `Metrics` exposes after observing known batch sizes.
"""

from __future__ import annotations

import pytest
from bench import report, stages
from modelserver.metrics import Metrics

LOOP = (
    "_run_module_as_main (<frozen runpy>:198);main (modelserver/__main__.py:53);"
    "Runner.run (asyncio/runners.py:118)"
)
HANDLER = (
    f"{LOOP};RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:401);"
    "ProxyHeadersMiddleware.__call__ (uvicorn/middleware/proxy_headers.py:63);"
    "ModelServerApp.__call__ (modelserver/app.py:155);ModelServerApp.handle (modelserver/app.py:176)"
)
RAW = "\n".join(
    [
        f"thread (0x7f01): MainThread;{LOOP} 40",
        f"thread (0x7f01): MainThread;{HANDLER};send_response (modelserver/asgi.py:205);"
        "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:480) 30",
        f"thread (0x7f01): MainThread;{HANDLER};ModelServerApp.respond (modelserver/app.py:199);"
        "TFServingAPI.post (modelserver/protocols/tfserving.py:300);"
        "predict_inputs (modelserver/protocols/tfserving.py:270);"
        "to_array (modelserver/protocols/tensors.py:90) 10",
        f"thread (0x7f01): MainThread;{HANDLER};ModelServerApp.respond (modelserver/app.py:199);"
        "TFServingAPI.post (modelserver/protocols/tfserving.py:306);"
        "row_predictions (modelserver/protocols/tfserving.py:120);"
        "jsonable (modelserver/protocols/tensors.py:200) 5",
        f"thread (0x7f01): MainThread;{LOOP};BatchQueue._run_forever (modelserver/batching/queue.py:205);"
        "BatchingRunner.run_batch (modelserver/batching/runners.py:154) 8",
        f"thread (0x7f01): MainThread;{HANDLER} 4",
        "thread (0x7f02): tf-inference_0;Thread._bootstrap (threading.py:995);"
        "quick_execute (tensorflow/python/eager/execute.py:53) 20",
        f"thread (0x7f01): MainThread;{LOOP};HttpToolsProtocol.data_received "
        "(uvicorn/protocols/http/httptools_impl.py:130) 3",
    ]
)


def test_each_sample_goes_to_the_innermost_frame_that_names_a_stage():
    counts = stages.sample_counts(RAW)
    assert counts == {
        stages.EVENT_LOOP: 40,
        "write response": 30,
        "parse + validate": 10,
        "encode outputs": 5,  # jsonable lives in protocols/tensors, but encodes: the inner name decides
        "batching": 8,
        "route + handle": 4,
        stages.INFERENCE_THREAD: 20,
        "HTTP protocol": 3,
    }


def test_per_request_microseconds_come_from_the_sampling_rate():
    per_request = stages.per_request_us(stages.sample_counts(RAW), requests=1000, rate_hz=250)
    assert list(per_request) == list(stages.STAGE_ORDER)
    assert per_request[stages.EVENT_LOOP] == 160.0  # 40 samples x 4 ms / 1000 requests
    assert per_request["metrics"] == 0.0
    with pytest.raises(ValueError, match="requests answered"):
        stages.per_request_us(stages.sample_counts(RAW), requests=0)


def metrics_after(batch_sizes: list[int]) -> str:
    metrics = Metrics()
    for size in batch_sizes:
        metrics.batch_size.labels("anomaly", "2", "serving_default").observe(size)
    metrics.batch_size.labels("anomaly", "2", "classify").observe(1)
    payload, _ = metrics.exposition()
    return payload.decode()


def test_batch_stats_of_the_window_between_two_scrapes():
    before = metrics_after([4, 4])
    after = metrics_after([4, 4, 32, 32, 30, 12])
    stats = stages.batch_stats(before, after, max_size=32)
    assert stats is not None
    assert stats.calls == 4  # the two calls before the window are not counted
    assert stats.mean_rows == (32 + 32 + 30 + 12) / 4
    assert stats.top_bucket == "17-32 rows" and stats.top_bucket_share == 0.75
    assert stages.batch_stats(metrics_after([]), metrics_after([]), 32) is None


def test_the_report_prints_a_stage_table_for_profiled_servers():
    profile = {
        "concurrency": 64,
        "rate_hz": 250,
        "throughput_rps": 5000.0,
        "stages_us_per_request": stages.per_request_us(stages.sample_counts(RAW), 1000),
        "batches": {"mean_rows_per_call": 26.5, "top_bucket_share": 0.75, "top_bucket": "17-32 rows"},
    }
    load = {"ours": {"profile": profile}, "ceiling": {"profile": profile | {"batches": None}}, "naive": {}}
    table = report.stages_table("anomaly", load)
    assert "| stage (µs per request, py-spy samples) | ours | ceiling |" in table
    assert "| event loop (C) | 160.0 | 160.0 |" in table
    assert "26.5 (75% at 17-32 rows)" in table
