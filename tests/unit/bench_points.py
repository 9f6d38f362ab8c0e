"""A benchmark point's summary as `bench.throughput.summarize` writes it, every run equal (report tests)."""

from __future__ import annotations


def point(throughput: float, p99: float, cpu_us: float = 100.0) -> dict:
    def stats(value: float) -> dict:
        return {"median": value, "min": value, "max": value}

    return {
        "throughput_rps": stats(throughput),
        "p50_ms": stats(p99 / 2),
        "p99_ms": stats(p99),
        "server_cpu_us_per_request": stats(cpu_us),
    }
