"""bench --max-batch-sizes: ours at other max batch sizes, round-robin beside it, compared point by point."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import report, run, servers
from bench.models import Model

from unit.bench_points import point


def server_report(points: dict[int, tuple[float, float]]) -> dict:
    return {
        "points": {str(c): point(rps, p99) for c, (rps, p99) in points.items()},
        "memory": {"peak_tree_rss_mib": 500.0},
    }


def test_a_variant_is_ours_with_only_the_max_batch_size_changed(tmp_path: Path):
    model = Model("anomaly", "1", tmp_path / "m" / "anomaly" / "1", "x", (8,), "float32", "y")
    variant, ours = servers.OursMaxBatch(64), servers.Ours(batching=True)
    assert variant.name == "ours-b64"
    variant_env, ours_env = variant.env(model, 9000, tmp_path), ours.env(model, 9000, tmp_path)
    assert variant_env.pop("TFMS_BATCH_MAX_SIZE") == "64"
    assert ours_env.pop("TFMS_BATCH_MAX_SIZE") == str(servers.MAX_BATCH_SIZE)
    assert variant_env == ours_env


def test_the_option_takes_whole_numbers_from_one_up():
    assert run.max_batch_sizes("16, 64") == [16, 64]
    assert run.max_batch_sizes("") == []
    for bad in ("0", "-8", "sixty", "8.5"):
        with pytest.raises(SystemExit, match="--max-batch-sizes"):
            run.max_batch_sizes(bad)


def test_variants_sit_right_after_ours_by_size():
    names = ["ceiling", "ours-b64", "mlserver", "ours", "ours-b16"]
    assert report.ordered(names) == ["ours", "ours-b16", "ours-b64", "mlserver", "ceiling"]


def test_the_summary_sets_each_variant_against_ours_at_every_concurrency():
    load = {
        "ours": server_report({1: (1000.0, 2.9), 64: (3700.0, 25.7)}),
        "ours-b64": server_report({1: (990.0, 3.0), 64: (4100.0, 21.2)}),
        "ceiling": server_report({1: (4800.0, 1.3), 64: (6800.0, 14.4)}),
    }
    ratios = report.model_ratios(load)
    assert ratios["max_batch"]["ours-b64"]["by_concurrency"]["64"] == {
        "ours_rps": 3700.0,
        "variant_rps": 4100.0,
        "ours_p99_ms": 25.7,
        "variant_p99_ms": 21.2,
    }
    table = report.summary_table("anomaly", load, ratios)
    assert (
        "Max batch size 32 (`ours`) vs 64 (`ours-b64`) at 1 / 64 connections: "
        "req/s 1,000 / 3,700 vs 990 / 4,100; p99 ms 2.9 / 25.7 vs 3.0 / 21.2." in table
    )
    assert table.index("| ours |") < table.index("| ours-b64 |") < table.index("| ceiling |")


def test_the_baseline_is_not_a_max_batch_variant_though_it_shares_the_prefix():
    load = {
        "ours": server_report({1: (1000.0, 2.9), 64: (3700.0, 25.7)}),
        "ours-baseline": server_report({1: (990.0, 3.0), 64: (3600.0, 26.0)}),
        "ceiling": server_report({1: (4800.0, 1.3), 64: (6800.0, 14.4)}),
    }
    ratios = report.model_ratios(load)
    assert "max_batch" not in ratios
    assert "Max batch size" not in report.summary_table("anomaly", load, ratios)
    assert report.ordered(["ours-baseline", "ours-b16", "ours"]) == ["ours", "ours-b16", "ours-baseline"]
