"""bench.tf_floor: the TensorFlow floor's rounds, each model's serial limit, and its table.

The numbers are the shape of a real `make bench` record (two rounds, c=64): per-run
records of ours (with its batches from /metrics) and of the ceiling, and the floor's
rounds as the worker answers them.
"""

from __future__ import annotations

import pytest
from bench import report, tf_floor, throughput


def floor_point(rows: int, cpu_us_per_row: float) -> dict:
    """A floor point whose TensorFlow threads spent 90% of its CPU."""
    cpu_s = 100 * rows * cpu_us_per_row / 1e6
    return tf_floor.FloorPoint(rows, 100, cpu_s, 1.0, 0.9 * cpu_s).to_dict()


FLOOR = {
    "rounds": [
        {"1": floor_point(1, 60.0), "8": floor_point(8, 12.0), "27": floor_point(27, 5.0)},
        {"1": floor_point(1, 62.0), "8": floor_point(8, 13.0), "30": floor_point(30, 4.0)},
    ]
}


def run_record(rps: float, cpu_us: float) -> dict:
    return {
        "throughput_rps": rps,
        "p50_ms": 4.0,
        "p90_ms": 5.0,
        "p99_ms": 6.0,
        "errors": 0,
        "non_2xx": 0,
        "load_cpu_fraction": 0.5,
        "server_cpu_fraction": 1.0,
        "server_cpu_us_per_request": cpu_us,
        "other_load_on_server_core": 0.0,
    }


def ours_run(rps: float, mean_rows: float | None, tf_threads_us: float | None = None) -> dict:
    batches = None if mean_rows is None else {"mean_rows_per_call": mean_rows, "top_bucket_share": 0.5}
    split = {} if tf_threads_us is None else {"tf_threads_cpu_us_per_request": tf_threads_us}
    return run_record(rps, 80.0) | {"batches": batches} | split


def ceiling_run(cpu_us: float) -> dict:
    return run_record(15000.0, cpu_us)


def reports(ours_runs: list[dict], ceiling_runs: list[dict]) -> tuple[dict, dict]:
    return (
        {"points": {"64": throughput.summarize(ours_runs)}},
        {"points": {"64": throughput.summarize(ceiling_runs)}},
    )


def test_a_floor_point_is_cpu_per_call_and_per_row():
    point = tf_floor.FloorPoint(rows=32, calls=200, cpu_s=0.064, wall_s=0.07, tf_threads_cpu_s=0.048)
    assert point.cpu_us_per_call == pytest.approx(320.0)
    assert point.cpu_us_per_row == pytest.approx(10.0)
    assert point.to_dict()["wall_us_per_call"] == pytest.approx(350.0)
    assert point.to_dict()["tf_threads_cpu_us_per_row"] == pytest.approx(7.5)


def test_each_round_adds_the_mean_batch_ours_reached_to_the_fixed_sizes():
    assert tf_floor.round_sizes([None]) == [1, 8, 32, 64]
    assert tf_floor.round_sizes([26.6]) == [1, 8, 27, 32, 64]
    assert tf_floor.round_sizes([32.2]) == [1, 8, 32, 64]
    assert tf_floor.round_sizes([0.2]) == [1, 8, 32, 64]


def test_the_floor_is_measured_at_the_mean_batch_of_ours_and_of_the_baseline():
    assert tf_floor.round_sizes([28.8, 28.2]) == [1, 8, 28, 29, 32, 64]
    assert tf_floor.round_sizes([28.8, 29.1, None]) == [1, 8, 29, 32, 64]


def test_the_serial_limit_of_each_round_uses_that_rounds_ceiling_and_floor():
    ours, ceiling = reports(
        [ours_run(10000.0, 27.0), ours_run(9000.0, 30.0)], [ceiling_run(75.0), ceiling_run(76.0)]
    )
    limit = tf_floor.serial_limit(FLOOR, ours, ceiling, 64)
    assert limit is not None
    first, second = limit["rounds"]
    assert first["limit_rps"] == pytest.approx(1e6 / 80.0, abs=0.1)
    assert first["ours_over_limit"] == pytest.approx(0.8)
    assert second["limit_rps"] == pytest.approx(1e6 / 80.0, abs=0.1)
    assert second["ours_over_limit"] == pytest.approx(0.72)
    assert limit["ours_over_limit"] == {"median": 0.76, "min": 0.72, "max": 0.8}


def test_no_serial_limit_without_our_batch_sizes_or_a_floor_at_that_size():
    no_batches = reports([ours_run(10000.0, None)], [ceiling_run(75.0)])
    assert tf_floor.serial_limit(FLOOR, *no_batches, 64) is None
    unmeasured_size = reports([ours_run(10000.0, 20.0)], [ceiling_run(75.0)])
    assert tf_floor.serial_limit(FLOOR, *unmeasured_size, 64) is None
    assert tf_floor.serial_limit(FLOOR, {}, {}, 64) is None


def test_the_summary_covers_the_fixed_sizes_measured_in_every_round():
    summary = tf_floor.summarize(FLOOR["rounds"])
    assert list(summary) == ["1", "8"]
    assert summary["8"]["cpu_us_per_row"] == {"median": 12.5, "min": 12.0, "max": 13.0}


def test_the_report_prints_the_floor_and_ours_against_the_serial_limit():
    ours, ceiling = reports(
        [ours_run(10000.0, 27.0), ours_run(9000.0, 30.0)], [ceiling_run(75.0), ceiling_run(76.0)]
    )
    floor = FLOOR | {"summary": tf_floor.summarize(FLOOR["rounds"])}
    results = {"config": {"concurrency": [1, 64]}, "load": {"anomaly": {"ours": ours, "ceiling": ceiling}}}
    results["tf_floor"] = {"anomaly": floor}
    ratios = report.ratios(results)
    table = report.floor_table("anomaly", floor, ratios["anomaly"]["serial_limit"])
    assert "| rows per call | 1 | 8 |" in table
    assert "| TF CPU µs per row | 61.0 (60.0-62.0) | 12.5 (12.0-13.0) |" in table
    assert "**0.76 (0.72-0.80)**" in table
    assert "No serial limit" in report.floor_table("anomaly", floor, None)


def test_the_gap_to_the_limit_is_split_between_tensorflows_threads_and_the_rest():
    ours, ceiling = reports(
        [ours_run(10000.0, 27.0, 6.0), ours_run(9000.0, 30.0, 5.0)], [ceiling_run(75.0), ceiling_run(76.0)]
    )
    limit = tf_floor.serial_limit(FLOOR, ours, ceiling, 64)
    assert limit is not None
    first, second = limit["rounds"]
    # Round 1: the floor at 27 rows is 5.0 µs per row, 4.5 of it on TensorFlow's threads.
    assert first["limit_tf_threads_us_per_request"] == pytest.approx(4.5)
    assert first["ours_tf_threads_us_per_request"] == 6.0
    assert first["ours_other_threads_us_per_request"] == pytest.approx(74.0)
    assert first["limit_other_threads_us_per_request"] == pytest.approx(75.0 + 0.5)
    assert second["limit_other_threads_us_per_request"] == pytest.approx(76.0 + 0.4)
    table = report.floor_table("anomaly", FLOOR | {"summary": tf_floor.summarize(FLOOR["rounds"])}, limit)
    assert "| TensorFlow's threads (`tf_*`): its kernels | 6 | 4 | +2 |" in table
    assert "queue, encoding, the call into TensorFlow | 74 | 76 | -2 |" in table


def test_records_from_before_the_split_give_the_limit_without_it():
    ours, ceiling = reports([ours_run(10000.0, 27.0)], [ceiling_run(75.0)])
    limit = tf_floor.serial_limit(FLOOR, ours, ceiling, 64)
    assert limit is not None
    assert not any(key in limit for key in tf_floor.GAP_KEYS)
    assert "by thread" not in report.floor_table("anomaly", FLOOR | {"summary": {}}, limit)


def test_the_baseline_gets_its_own_serial_limit_row_from_the_same_floor_and_ceiling():
    ours, ceiling = reports(
        [ours_run(10000.0, 27.0), ours_run(9000.0, 30.0)], [ceiling_run(75.0), ceiling_run(76.0)]
    )
    baseline, _ = reports([ours_run(8000.0, 27.0), ours_run(6000.0, 30.0)], [ceiling_run(75.0)])
    floor = FLOOR | {"summary": tf_floor.summarize(FLOOR["rounds"])}
    load = {"ours": ours, "ours-baseline": baseline, "ceiling": ceiling}
    results = {"config": {"concurrency": [1, 64]}, "load": {"anomaly": load}, "tf_floor": {"anomaly": floor}}
    ratios = report.ratios(results)["anomaly"]
    # Both rounds' limit is 1e6 / 80 = 12,500 req/s: 8,000 and 6,000 of it are 0.64 and 0.48.
    assert ratios["baseline_serial_limit"]["ours_over_limit"] == {"median": 0.56, "min": 0.48, "max": 0.64}
    table = report.floor_table("anomaly", floor, ratios["serial_limit"], ratios["baseline_serial_limit"])
    rows = [line for line in table.splitlines() if line.startswith("| ours")]
    assert rows[0].startswith("| ours | ") and rows[0].endswith("**0.76 (0.72-0.80)** |")
    assert rows[1].startswith("| ours-baseline | ") and rows[1].endswith("**0.56 (0.48-0.64)** |")
    assert "No serial limit" not in table
