"""The benchmark's gRPC side: the ModelInfer request ghz sends, its protoset, ghz's report.

The request and protoset are checked the way ghz uses them: the message class is built
from the protoset alone (a descriptor pool, no generated stubs), then the bytes are parsed
with it. The reports are real ghz v0.93.0 `--format=json` output (per-call `details`
trimmed), from a run against the server and from a run against a closed port.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench import grpc_loadgen, report, servers
from bench.models import Model
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, type_pb2
from open_inference.grpc import protocol as oip

from unit.bench_points import point

ANOMALY = Model("anomaly", "2", Path("/models/anomaly/2"), "features", (8,), "float32", "scores")
HEAVY = Model("heavy", "1", Path("/models/heavy/1"), "x", (512,), "float32", "y")

# ghz --format=json against ours at 8 channels for 3 s (default --duration-stop=close).
GHZ_REPORT = json.loads("""
{"date": "2026-12-01T17:44:47Z", "endReason": "timeout", "count": 1910, "total": 3001628059,
 "average": 12495152, "fastest": 1654973, "slowest": 84807706, "rps": 636.3213437697945,
 "errorDistribution": {"rpc error: code = Unavailable desc = transport is closing": 4},
 "statusCodeDistribution": {"OK": 1906, "Unavailable": 4},
 "latencyDistribution": [{"percentage": 10, "latency": 5860358}, {"percentage": 25, "latency": 7102809},
  {"percentage": 50, "latency": 10300404}, {"percentage": 75, "latency": 13419934},
  {"percentage": 90, "latency": 19198099}, {"percentage": 95, "latency": 31479278},
  {"percentage": 99, "latency": 55840979}],
 "histogram": [{"mark": 0.001654973, "count": 1, "frequency": 0.0005246589716684155}],
 "details": [{"timestamp": "2026-12-01T17:44:44.527845739Z", "latency": 23046244, "error": "",
  "status": "OK"}]}
""")
# ghz --format=json --total=3 against a port nothing listens on: no call succeeded.
GHZ_REFUSED = json.loads("""
{"date": "2026-12-01T17:49:02Z", "endReason": "normal", "count": 3, "total": 1318172, "average": 214509,
 "fastest": 0, "slowest": 0, "rps": 2275.8790203402896,
 "errorDistribution": {"rpc error: code = Unavailable desc = connection error": 3},
 "statusCodeDistribution": {"Unavailable": 3}, "latencyDistribution": null, "histogram": null,
 "details": [{"timestamp": "2026-12-01T17:49:02.77334077Z", "latency": 628860,
  "error": "rpc error: code = Unavailable desc = connection error", "status": "Unavailable"}]}
""")


def pool_from(protoset: bytes) -> descriptor_pool.DescriptorPool:
    """A descriptor pool holding only what the protoset carries (files must come dependencies first)."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(protoset).file:
        pool.Add(file)
    return pool


@pytest.mark.parametrize("model", [ANOMALY, HEAVY], ids=lambda m: m.name)
def test_model_infer_request_carries_the_rest_instance(model):
    request = servers.model_infer_request(model)
    assert request.is_grpc
    assert request.path == "inference.GRPCInferenceService/ModelInfer"
    message_class = message_factory.GetMessageClass(
        pool_from(request.protoset).FindMessageTypeByName("inference.ModelInferRequest")
    )
    parsed = message_class.FromString(request.body)
    assert parsed.model_name == model.name
    (tensor,) = parsed.inputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == (
        model.input_name,
        "FP32",
        [1, *model.instance_shape],
    )
    assert not parsed.raw_input_contents
    instance = json.loads(model.tfserving_body())["instances"][0]
    expected = np.asarray(instance, dtype=np.float32).ravel()
    np.testing.assert_array_equal(np.asarray(tensor.contents.fp32_contents, dtype=np.float32), expected)
    # The V2 REST body MLServer gets holds the same values.
    v2 = json.loads(model.v2_body())["inputs"][0]
    np.testing.assert_array_equal(np.asarray(v2["data"], dtype=np.float32), expected)
    # And the bytes are what the official stubs serialize (no field lost through the pool).
    assert oip.ModelInferRequest.FromString(request.body).SerializeToString() == request.body


def test_protoset_declares_the_model_infer_method():
    pool = pool_from(grpc_loadgen.protoset(oip.DESCRIPTOR))
    method = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
    assert method.input_type.full_name == "inference.ModelInferRequest"
    assert method.output_type.full_name == "inference.ModelInferResponse"


def test_protoset_puts_imported_files_before_their_importers():
    # type.proto imports any.proto and source_context.proto: a pool refuses a file whose
    # imports it has not seen, as ghz's protoset loader does.
    names = [
        f.name
        for f in descriptor_pb2.FileDescriptorSet.FromString(grpc_loadgen.protoset(type_pb2.DESCRIPTOR)).file
    ]
    assert names[-1] == "google/protobuf/type.proto"
    assert set(names[:-1]) == {"google/protobuf/any.proto", "google/protobuf/source_context.proto"}
    pool_from(grpc_loadgen.protoset(type_pb2.DESCRIPTOR)).FindMessageTypeByName("google.protobuf.Type")


def test_ghz_report_becomes_a_load_result():
    result = grpc_loadgen.parse_report(GHZ_REPORT, concurrency=8, load_cpu_fraction=0.21)
    assert result.requests == 1910
    assert result.duration_s == pytest.approx(3.002, abs=1e-3)
    assert result.throughput_rps == pytest.approx(1910 / 3.001628059, abs=0.1)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (10.300, 19.198, 55.841)
    assert result.max_ms == 84.808
    assert result.mean_ms == 12.495
    assert result.errors == 4  # the calls not answered OK
    assert result.statuses == {"OK": 1906, "Unavailable": 4}
    assert (result.concurrency, result.load_cpu_fraction) == (8, 0.21)


def test_ghz_report_with_no_successful_call_is_all_errors():
    result = grpc_loadgen.parse_report(GHZ_REFUSED, concurrency=1, load_cpu_fraction=0.0)
    assert result.requests == 3
    assert result.errors == 3
    assert (result.p50_ms, result.p99_ms) == (0.0, 0.0)


def test_grpc_rows_are_set_against_the_grpc_peer_and_our_rest():
    load = {
        "ours": {"points": {"8": point(4000, 5.0, 200), "64": point(5000, 20.0, 150)}},
        "ours-grpc": {"points": {"8": point(1000, 10.0, 900), "64": point(1200, 60.0, 800)}},
        "mlserver": {"points": {"32": point(900, 100.0)}},
        "mlserver-grpc": {"points": {"8": point(700, 15.0), "32": point(800, 80.0)}},
        "ceiling": {"points": {"64": point(10000, 10.0, 75)}},
        "ceiling-grpc": {"points": {"64": point(2400, 40.0, 400)}},
    }
    ratios = report.model_ratios(load)
    # ours-grpc's best at p99 <= mlserver-grpc's 80 ms (1200) over mlserver-grpc's best (800).
    assert ratios["mlserver-grpc"]["ours"] == "ours-grpc"
    assert ratios["mlserver-grpc"]["ratio"] == 1.5
    assert ratios["mlserver"]["ours"] == "ours"
    ours = ratios["grpc_vs_rest"]["ours"]
    # REST's best is 5000 at p99 20 ms; gRPC's best within 20 ms is 1000.
    assert (ours["ratio"], ours["peak_ratio"]) == (0.2, 0.24)
    assert ours["cpu_us_per_request"] == {"grpc": 800, "rest": 150}
    assert ratios["grpc_vs_rest"]["mlserver"]["peak_ratio"] == 0.89
    # Each ceiling against the entry of its protocol; the 0.6 target is REST's.
    assert (ratios["ceiling"]["ours"], ratios["ceiling"]["ratio"], ratios["ceiling"]["met"]) == (
        "ours",
        0.5,
        False,
    )
    grpc_ceiling = ratios["ceiling-grpc"]
    assert (grpc_ceiling["ours"], grpc_ceiling["ratio"], grpc_ceiling["met"]) == ("ours-grpc", 0.5, None)
    assert grpc_ceiling["cpu_ratio"] == 0.5
