"""bench --baseline: the server from another checkout, set against ours and the ceiling in one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import report, servers
from bench.models import Model


def point(rps: float) -> dict:
    def stats(value: float) -> dict:
        return {"median": value, "min": value, "max": value}

    return {
        "throughput_rps": stats(rps),
        "p50_ms": stats(3.0),
        "p99_ms": stats(6.0),
        "server_cpu_us_per_request": stats(1e6 / rps),
    }


def test_the_baseline_runs_the_other_checkouts_server_with_our_settings(tmp_path: Path):
    (tmp_path / "image" / "modelserver").mkdir(parents=True)
    (tmp_path / "image" / "modelserver" / "__main__.py").write_text("")
    baseline = servers.OursBaseline(tmp_path)
    ours = servers.Ours(batching=True)
    assert baseline.name == servers.BASELINE
    model = Model("anomaly", "1", tmp_path / "m" / "anomaly" / "1", "x", (8,), "float32", "y")
    baseline_env, ours_env = baseline.env(model, 9000, tmp_path), ours.env(model, 9000, tmp_path)
    assert baseline_env["PYTHONPATH"] == str(tmp_path / "image")
    assert {k: v for k, v in baseline_env.items() if k != "PYTHONPATH"} == {
        k: v for k, v in ours_env.items() if k != "PYTHONPATH"
    }


def test_a_checkout_without_the_server_is_refused(tmp_path: Path):
    with pytest.raises(SystemExit, match=r"no image/modelserver/__main__\.py"):
        servers.OursBaseline(tmp_path)


def test_the_summary_says_ours_before_and_after_and_each_against_the_ceiling():
    load = {
        "ours": {"points": {"64": point(6000.0)}, "memory": {"peak_tree_rss_mib": 500.0}},
        servers.BASELINE: {"points": {"64": point(5000.0)}, "memory": {"peak_tree_rss_mib": 500.0}},
        "ceiling": {"points": {"64": point(10000.0)}, "memory": {"peak_tree_rss_mib": 50.0}},
    }
    ratios = report.model_ratios(load)
    assert ratios["baseline"]["ours_over_baseline"] == 1.2
    line = report.summary_table("anomaly", load, ratios)
    assert "(**1.20x**); of the ceiling: ours 0.60, ours-baseline 0.50." in line
    # Before and after at every concurrency, so a throughput gain cannot hide a worse p99.
    assert ratios["baseline"]["by_concurrency"]["64"]["variant_rps"] == 5000.0
    assert line.split("ours-baseline 0.50. ")[1].startswith(
        "Side by side at 64 connections: req/s 6,000 vs 5,000; p99 ms"
    )
