"""Turn one benchmark run into ratios, Markdown tables, JSON and a plot.

"Throughput at equal or better p99": for each peer take its best point (highest median
throughput over the concurrency levels) and its p99 there; ours' figure is our highest
median throughput among our points whose median p99 is no worse. The ratio of the two
is the claim. The ceiling is compared peak to peak (it has no model, so no latency to
match), and the batching gain is ours on / ours off at the highest concurrency. Over
gRPC the same claim is ours-grpc against mlserver-grpc; and each server's gRPC entry is
set against its own REST entry (the same process): gRPC's best throughput at a p99 no
worse than REST's best point, over REST's, and the server CPU per request of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench import tf_floor
from bench.servers import BASELINE, MAX_BATCH_PREFIX, MAX_BATCH_SIZE, OURS
from bench.stages import STAGE_ORDER

OURS_GRPC = "ours-grpc"
NO_BATCH = "ours-nobatch"
CEILING = "ceiling"
CEILING_GRPC = "ceiling-grpc"
MLSERVER = "mlserver"
MLSERVER_GRPC = "mlserver-grpc"
# peer -> (our entry set against it, target ratio at equal or better p99)
TARGETS = {
    "naive": (OURS, 3.0),
    MLSERVER: (OURS, 1.5),
    "bentoml": (OURS, 1.5),
    MLSERVER_GRPC: (OURS_GRPC, 1.5),
}
# server -> (its gRPC entry, its REST entry): the same process on its two ports.
PROTOCOL_PAIRS = {OURS: (OURS_GRPC, OURS), MLSERVER: (MLSERVER_GRPC, MLSERVER)}
CEILING_TARGET = 0.6
# ceiling -> (our entry set against it, target share of it; None = no target)
CEILINGS = {CEILING: (OURS, CEILING_TARGET), CEILING_GRPC: (OURS_GRPC, None)}
COLD_START_TARGET = 1.2
SERVER_ORDER = (
    OURS, BASELINE, NO_BATCH, OURS_GRPC, "naive", MLSERVER, MLSERVER_GRPC, "bentoml", CEILING, CEILING_GRPC
)  # fmt: skip
GENERATOR_SATURATED = 0.9  # share of its core above which a load generator may be the limit


@dataclass(frozen=True)
class Point:
    concurrency: int
    throughput: float
    p50: float
    p99: float

    def to_dict(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "throughput_rps": self.throughput,
            "p50_ms": self.p50,
            "p99_ms": self.p99,
        }


def points_of(server_report: dict) -> list[Point]:
    return [
        Point(int(c), p["throughput_rps"]["median"], p["p50_ms"]["median"], p["p99_ms"]["median"])
        for c, p in server_report.get("points", {}).items()
    ]


def peak(points: list[Point]) -> Point | None:
    return max(points, key=lambda p: p.throughput, default=None)


def best_within(points: list[Point], p99_bound: float) -> Point | None:
    return peak([p for p in points if p.p99 <= p99_bound])


def at_concurrency(points: list[Point], concurrency: int) -> Point | None:
    return next((p for p in points if p.concurrency == concurrency), None)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 2)


def cpu_per_request(server_report: dict, concurrency: int) -> float:
    return server_report["points"][str(concurrency)]["server_cpu_us_per_request"]["median"]


def grpc_vs_rest(load: dict, grpc_name: str, rest_name: str) -> dict | None:
    """One server's gRPC entry against its REST entry: throughput at equal or better p99, CPU."""
    grpc, rest = points_of(load.get(grpc_name, {})), points_of(load.get(rest_name, {}))
    grpc_peak, rest_peak = peak(grpc), peak(rest)
    if grpc_peak is None or rest_peak is None:
        return None
    grpc_match = best_within(grpc, rest_peak.p99)
    grpc_cpu = cpu_per_request(load[grpc_name], grpc_peak.concurrency)
    rest_cpu = cpu_per_request(load[rest_name], rest_peak.concurrency)
    return {
        "grpc": grpc_name,
        "rest": rest_name,
        "rest_peak": rest_peak.to_dict(),
        "grpc_peak": grpc_peak.to_dict(),
        "grpc_at_equal_or_better_p99": grpc_match.to_dict() if grpc_match else None,
        "ratio": ratio(grpc_match.throughput if grpc_match else None, rest_peak.throughput),
        "peak_ratio": ratio(grpc_peak.throughput, rest_peak.throughput),
        "cpu_us_per_request": {"grpc": grpc_cpu, "rest": rest_cpu},
        "cpu_ratio": ratio(grpc_cpu, rest_cpu),
    }


def model_ratios(load: dict) -> dict:
    result: dict = {}
    for peer, (ours_name, target) in TARGETS.items():
        ours = points_of(load.get(ours_name, {}))
        peer_peak = peak(points_of(load.get(peer, {})))
        if not ours or peer_peak is None:
            continue
        ours_match = best_within(ours, peer_peak.p99)
        same_c = at_concurrency(ours, peer_peak.concurrency)
        value = ratio(ours_match.throughput if ours_match else None, peer_peak.throughput)
        result[peer] = {
            "ours": ours_name,
            "peer_peak": peer_peak.to_dict(),
            "ours_at_equal_or_better_p99": ours_match.to_dict() if ours_match else None,
            "ratio": value,
            "ours_at_same_concurrency": same_c.to_dict() if same_c else None,
            "ratio_at_same_concurrency": ratio(same_c.throughput if same_c else None, peer_peak.throughput),
            "target": target,
            "met": value is not None and value >= target,
        }
    for ceiling_name, (ours_name, target) in CEILINGS.items():
        ceiling_peak = peak(points_of(load.get(ceiling_name, {})))
        ours_peak = peak(points_of(load.get(ours_name, {})))
        if ceiling_peak and ours_peak:
            value = ratio(ours_peak.throughput, ceiling_peak.throughput)
            ours_cpu = cpu_per_request(load[ours_name], ours_peak.concurrency)
            ceiling_cpu = cpu_per_request(load[ceiling_name], ceiling_peak.concurrency)
            result[ceiling_name] = {
                "ours": ours_name,
                "ceiling_peak": ceiling_peak.to_dict(),
                "ours_peak": ours_peak.to_dict(),
                "ratio": value,
                # Noise-robust twin of the ratio: CPU time per request at each peak.
                "cpu_us_per_request": {"ours": ours_cpu, "ceiling": ceiling_cpu},
                "cpu_ratio": ratio(ceiling_cpu, ours_cpu),
                "target": target,
                "met": None if target is None else value is not None and value >= target,
            }
    ours = points_of(load.get(OURS, {}))
    baseline = points_of(load.get(BASELINE, {}))
    ceiling_peak = peak(points_of(load.get(CEILING, {})))
    baseline_peak = peak(baseline)
    ours_peak = peak(ours)
    if ceiling_peak and baseline_peak and ours_peak:
        result["baseline"] = {
            "ours_peak": ours_peak.to_dict(),
            "baseline_peak": baseline_peak.to_dict(),
            "ours_over_baseline": ratio(ours_peak.throughput, baseline_peak.throughput),
            "ours_over_ceiling": ratio(ours_peak.throughput, ceiling_peak.throughput),
            "baseline_over_ceiling": ratio(baseline_peak.throughput, ceiling_peak.throughput),
        } | (against_ours(ours, baseline) or {})
    variants = {
        name: compared
        for name in ordered([n for n in load if max_batch_variant(n) is not None])
        if (compared := against_ours(ours, points_of(load[name]))) is not None
    }
    if variants:
        result["max_batch"] = variants
    no_batch = points_of(load.get(NO_BATCH, {}))
    if ours and no_batch:
        top = max(p.concurrency for p in ours)
        on, off = at_concurrency(ours, top), at_concurrency(no_batch, top)
        if on and off:
            result["batching"] = {
                "concurrency": top,
                "on": on.to_dict(),
                "off": off.to_dict(),
                "throughput_gain": ratio(on.throughput, off.throughput),
                "p99_change": ratio(on.p99, off.p99),
            }
    protocols = {
        server: compared
        for server, (grpc_name, rest_name) in PROTOCOL_PAIRS.items()
        if (compared := grpc_vs_rest(load, grpc_name, rest_name)) is not None
    }
    if protocols:
        result["grpc_vs_rest"] = protocols
    return result


def against_ours(ours: list[Point], variant: list[Point]) -> dict | None:
    """Another max batch size, or the baseline, against ours: req/s and p99 at every concurrency both ran."""
    shared = sorted({p.concurrency for p in ours} & {p.concurrency for p in variant})
    if not shared:
        return None
    by_concurrency = {}
    for concurrency in shared:
        mine, theirs = at_concurrency(ours, concurrency), at_concurrency(variant, concurrency)
        assert mine is not None and theirs is not None
        by_concurrency[str(concurrency)] = {
            "ours_rps": mine.throughput,
            "variant_rps": theirs.throughput,
            "ours_p99_ms": mine.p99,
            "variant_p99_ms": theirs.p99,
        }
    return {"by_concurrency": by_concurrency}


def ratios(results: dict) -> dict:
    out = {model: model_ratios(load) for model, load in results["load"].items()}
    top = max(results["config"]["concurrency"])
    for model, floor in results.get("tf_floor", {}).items():
        load = results["load"].get(model, {})
        for server, key in ((OURS, "serial_limit"), (BASELINE, "baseline_serial_limit")):
            limit = tf_floor.serial_limit(floor, load.get(server, {}), load.get(CEILING, {}), top)
            if limit is not None:
                out.setdefault(model, {})[key] = limit
    cold = results.get("cold_start")
    if cold and OURS in cold.get("servers", {}):
        out["cold_start"] = {
            "host_vs_floor": cold["servers"][OURS]["vs_floor"],
            "container_vs_floor": cold.get("container", {}).get("vs_floor"),
            "target": COLD_START_TARGET,
        }
    return out


# ---- Markdown ---------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}x"


def spread(stats: dict, digits: int = 1) -> str:
    return f"{fmt(stats['median'], digits)} ({fmt(stats['min'], digits)}-{fmt(stats['max'], digits)})"


def max_batch_variant(name: str) -> int | None:
    """N for `ours-bN` (`--max-batch-sizes`), else None (`ours-baseline` shares the prefix)."""
    size = name.removeprefix(MAX_BATCH_PREFIX)
    return int(size) if name.startswith(MAX_BATCH_PREFIX) and size.isdigit() else None


def server_rank(name: str) -> tuple[int, int]:
    """Where a server's row goes: SERVER_ORDER, ours' max-batch variants (by size) right after ours."""
    if name in SERVER_ORDER:
        return SERVER_ORDER.index(name), 0
    size = max_batch_variant(name)
    if size is not None:
        return SERVER_ORDER.index(OURS), size
    return len(SERVER_ORDER), 0


def ordered(names: list[str]) -> list[str]:
    return sorted(names, key=server_rank)


def detail_table(model: str, load: dict) -> str:
    lines = [
        f"**{model}** — median of the runs (min-max):",
        "",
        "| server | connections | throughput req/s | p50 ms | p99 ms | server CPU us/req "
        "| others on core | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ordered(list(load)):
        report = load[name]
        if "error" in report:
            lines.append(f"| {name} | - | failed: {report['error'].splitlines()[0][:80]} | | | | | |")
            continue
        for c, point in report["points"].items():
            errors = point["errors"] + point["non_2xx"]
            lines.append(
                f"| {name} | {c} | {spread(point['throughput_rps'])} | {fmt(point['p50_ms']['median'], 2)} "
                f"| {spread(point['p99_ms'], 2)} | {fmt(point['server_cpu_us_per_request']['median'], 0)} "
                f"| {point['other_load_on_server_core']['median']:.0%} | {errors} |"
            )
    return "\n".join(lines)


def summary_table(model: str, load: dict, model_ratio: dict) -> str:
    lines = [
        f"**{model}**",
        "",
        "| server | best req/s (connections) | p99 there ms | ours / it at equal or better p99 "
        "| peak RSS MiB (tree) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ordered(list(load)):
        report = load[name]
        if "error" in report:
            lines.append(f"| {name} | failed | | | |")
            continue
        best = peak(points_of(report))
        assert best is not None
        if name in TARGETS and name in model_ratio:
            r = model_ratio[name]
            versus = f"{times(r['ratio'])} (target {r['target']:g}x)"
            if r["ours"] != OURS:
                versus = f"{r['ours']}: {versus}"
        elif name in CEILINGS and name in model_ratio:
            r = model_ratio[name]
            target = "" if r["target"] is None else f" (target ≥ {r['target']:g})"
            versus = (
                f"{r['ours']} = {fmt(r['ratio'], 2)} of it{target}; "
                f"by CPU per request {fmt(r.get('cpu_ratio'), 2)}"
            )
        else:
            versus = ""
        lines.append(
            f"| {name} | {fmt(best.throughput)} ({best.concurrency}) | {fmt(best.p99, 2)} | {versus} "
            f"| {fmt(report['memory']['peak_tree_rss_mib'], 0)} |"
        )
    batching = model_ratio.get("batching")
    if batching:
        lines += [
            "",
            f"Batching on vs off at {batching['concurrency']} connections: "
            f"{fmt(batching['on']['throughput_rps'])} vs {fmt(batching['off']['throughput_rps'])} req/s "
            f"(**{fmt(batching['throughput_gain'], 2)}x**), p99 {fmt(batching['on']['p99_ms'], 2)} vs "
            f"{fmt(batching['off']['p99_ms'], 2)} ms.",
        ]
    for server, compared in model_ratio.get("grpc_vs_rest", {}).items():
        lines += ["", protocol_line(server, compared)]
    for name, compared in model_ratio.get("max_batch", {}).items():
        lines += ["", max_batch_line(name, compared)]
    baseline = model_ratio.get("baseline")
    if baseline:
        ours_rps, baseline_rps = (
            baseline["ours_peak"]["throughput_rps"],
            baseline["baseline_peak"]["throughput_rps"],
        )
        lines += [
            "",
            f"Before and after (`{BASELINE}` is the other checkout): peaks {fmt(ours_rps)} vs "
            f"{fmt(baseline_rps)} req/s (**{times(baseline['ours_over_baseline'])}**); of the ceiling: "
            f"ours {fmt(baseline['ours_over_ceiling'], 2)}, "
            f"{BASELINE} {fmt(baseline['baseline_over_ceiling'], 2)}."
            + (
                f" Side by side {side_by_side(baseline['by_concurrency'])}"
                if "by_concurrency" in baseline
                else ""
            ),
        ]
    return "\n".join(lines)


def max_batch_line(name: str, compared: dict) -> str:
    return (
        f"Max batch size {MAX_BATCH_SIZE} (`{OURS}`) vs {max_batch_variant(name)} (`{name}`) "
        + side_by_side(compared["by_concurrency"])
    )


def side_by_side(points: dict) -> str:
    """Ours vs another server at each concurrency both ran: req/s, then p99 (ours first)."""
    return (
        f"at {' / '.join(points)} connections: req/s "
        + " / ".join(fmt(p["ours_rps"], 0) for p in points.values())
        + " vs "
        + " / ".join(fmt(p["variant_rps"], 0) for p in points.values())
        + "; p99 ms "
        + " / ".join(fmt(p["ours_p99_ms"], 1) for p in points.values())
        + " vs "
        + " / ".join(fmt(p["variant_p99_ms"], 1) for p in points.values())
        + "."
    )


def protocol_line(server: str, compared: dict) -> str:
    grpc, rest = compared["grpc_peak"], compared["rest_peak"]
    cpu = compared["cpu_us_per_request"]
    return (
        f"gRPC vs REST, {server} (one process, both ports): {compared['grpc']} ÷ {compared['rest']} "
        f"at equal or better p99 **{times(compared['ratio'])}**; peaks {fmt(grpc['throughput_rps'])} "
        f"({grpc['concurrency']}) vs {fmt(rest['throughput_rps'])} ({rest['concurrency']}) req/s, "
        f"p99 {fmt(grpc['p99_ms'], 2)} vs {fmt(rest['p99_ms'], 2)} ms; server CPU per request there "
        f"{fmt(cpu['grpc'], 0)} vs {fmt(cpu['rest'], 0)} us ({times(compared['cpu_ratio'])})."
    )


def cold_table(cold: dict) -> str:
    lines = [
        f"Cold start, process start -> ready, model `{cold['model']}`, {cold['rounds']} rounds, "
        "median (min-max):",
        "",
        "| what | seconds | ÷ floor |",
        "|---|---:|---:|",
        f"| floor: `import tensorflow` only | {spread(cold['floor_import_tensorflow_s'], 2)} | |",
        f"| floor: `import tensorflow` + SavedModel load | {spread(cold['floor_import_and_load_s'], 2)} "
        "| 1.00 |",
    ]
    for name in ordered(list(cold["servers"])):
        stats = cold["servers"][name]
        lines.append(f"| {name} | {spread(stats, 2)} | {stats['vs_floor']:.2f} |")
    for name, error in cold.get("errors", {}).items():
        lines.append(f"| {name} | failed: {error.splitlines()[0][:80]} | |")
    container = cold.get("container", {})
    if "skipped" in container:
        lines.append(f"| container | not measured: {container['skipped']} | |")
    else:
        lines.append(
            f"| container floor (same image) | {spread(container['floor_import_and_load_s'], 2)} | 1.00 |"
        )
        lines.append(
            f"| ours in container | {spread(container['ours_s'], 2)} | {container['vs_floor']:.2f} |"
        )
    return "\n".join(lines)


def requests_table(requests: dict) -> str:
    lines = ["| server | request | bytes |", "|---|---|---:|"]
    for name in ordered(list(requests)):
        r = requests[name]
        call = f"gRPC {r['path']}" if r.get("transport") == "grpc" else f"POST {r['path']}"
        lines.append(f"| {name} | `{call}` ({r['protocol']}) | {r['body_bytes']} |")
    return "\n".join(lines)


def noise_note(results: dict) -> str:
    """How much other processes used the server's core while it was measured."""
    shares = [
        run["other_load_on_server_core"]
        for load in results["load"].values()
        for report in load.values()
        for point in report.get("points", {}).values()
        for run in point["runs"]
    ]
    if not shares:
        return ""
    shares.sort()
    return (
        "Other processes on the server's core during the measured runs: "
        f"median {shares[len(shares) // 2]:.0%}, max {shares[-1]:.0%} of the core."
    )


def markdown(results: dict) -> str:
    out = [f"Run {results['started']} on {results['machine']['summary']}.", ""]
    load_note = results.get("load_average")
    if load_note:
        out += [
            f"Load average before the run: {load_note['before']}; after: {load_note['after']}. "
            + noise_note(results),
            "",
        ]
    for model, load in results["load"].items():
        out += [summary_table(model, load, results["ratios"].get(model, {})), ""]
    for model, floor in results.get("tf_floor", {}).items():
        model_ratios = results["ratios"].get(model, {})
        out += [
            floor_table(
                model, floor, model_ratios.get("serial_limit"), model_ratios.get("baseline_serial_limit")
            ),
            "",
        ]
    if results.get("cold_start"):
        out += [cold_table(results["cold_start"]), ""]
    for model, load in results["load"].items():
        out += [detail_table(model, load), ""]
    for model, load in results["load"].items():
        if profiled(load):
            out += [stages_table(model, load), ""]
    for model, requests in results.get("requests", {}).items():
        out += [f"Requests sent for **{model}**:", "", requests_table(requests), ""]
    generator = results.get("load_generator")
    if generator:
        out += [generator, ""]
    return "\n".join(out)


def floor_table(model: str, floor: dict, limit: dict | None, baseline: dict | None = None) -> str:
    """TensorFlow's own CPU at each batch size, then the serial limit, ours (and the baseline) against it."""
    sizes = list(floor["summary"])
    lines = [
        f"**{model}** — the TensorFlow floor: `serving_default` called in a loop on a prebuilt batch, "
        "same core and threads, no server (median of rounds, min-max):",
        "",
        "| rows per call | " + " | ".join(sizes) + " |",
        "|---|" + "---:|" * len(sizes),
        "| TF CPU µs per call | "
        + " | ".join(spread(floor["summary"][s]["cpu_us_per_call"], 0) for s in sizes)
        + " |",
        "| TF CPU µs per row | "
        + " | ".join(spread(floor["summary"][s]["cpu_us_per_row"], 1) for s in sizes)
        + " |",
    ]
    if limit is None:
        return "\n".join([*lines, "", "No serial limit: the run lacks ours, the ceiling or our batch sizes."])
    limits = [(OURS, limit)] + ([(BASELINE, baseline)] if baseline is not None else [])
    lines += [
        "",
        f"Serial limit at {limit['concurrency']} connections = 1 / (ceiling CPU per request + TF CPU per "
        "row at the batch size the server reached), per round:",
        "",
        "| server | ceiling CPU µs/req | rows per TF call (share in the top bucket) "
        "| TF CPU µs per row there | serial limit req/s | server req/s | **server / limit** |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {spread(each['ceiling_cpu_us_per_request'], 0)} "
        f"| {fmt(each['mean_rows_per_call']['median'])} ({each['top_bucket_share']['median']:.0%}) "
        f"| {spread(each['tf_cpu_us_per_row'], 1)} | {spread(each['limit_rps'], 0)} "
        f"| {spread(each['ours_rps'], 0)} | **{spread(each['ours_over_limit'], 2)}** |"
        for name, each in limits
    ]
    for name, each in limits:
        if all(key in each for key in tf_floor.GAP_KEYS):
            lines += ["", *gap_table(each, name)]
    return "\n".join(lines)


def gap_table(limit: dict, server: str = OURS) -> list[str]:
    """Where a server's CPU beyond the limit goes: TensorFlow's own threads, or the Python around them."""
    parts = (
        ("TensorFlow's threads (`tf_*`): its kernels", "tf_threads"),
        ("every other thread: HTTP, parsing, queue, encoding, the call into TensorFlow", "other_threads"),
    )
    lines = [
        f"{server}'s CPU per request beside the limit's, by thread (/proc; the limit's TensorFlow part is "
        "the floor's own threads per row, its other part the ceiling plus the floor's dispatch per row):",
        "",
        f"| threads | {server} µs/req | the limit's µs/req | {server} beyond it |",
        "|---|---:|---:|---:|",
    ]
    for label, key in parts:
        ours = limit[f"ours_{key}_us_per_request"]["median"]
        bound = limit[f"limit_{key}_us_per_request"]["median"]
        lines.append(f"| {label} | {fmt(ours, 0)} | {fmt(bound, 0)} | {ours - bound:+,.0f} |")
    return lines


def profiled(load: dict) -> list[str]:
    return [name for name in ordered(list(load)) if "stages_us_per_request" in load[name].get("profile", {})]


def stages_table(model: str, load: dict) -> str:
    """Sampled time per request by stage for each profiled server (bench.stages), one column each."""
    names = profiled(load)
    profiles = {name: load[name]["profile"] for name in names}
    header = "| stage (µs per request, py-spy samples) | " + " | ".join(names) + " |"
    lines = [
        f"**{model}** — where the time goes, one run under py-spy at "
        f"{profiles[names[0]]['concurrency']} connections ({profiles[names[0]]['rate_hz']} Hz):",
        "",
        header,
        "|---|" + "---:|" * len(names),
    ]
    for stage in STAGE_ORDER:
        lines.append(
            f"| {stage} | "
            + " | ".join(fmt(profiles[name]["stages_us_per_request"][stage]) for name in names)
            + " |"
        )
    totals = [sum(profiles[name]["stages_us_per_request"].values()) for name in names]
    lines.append("| **total sampled** | " + " | ".join(f"**{fmt(total)}**" for total in totals) + " |")
    rates = [fmt(profiles[name]["throughput_rps"], 0) for name in names]
    lines.append("| req/s in that run | " + " | ".join(rates) + " |")
    batches = {name: profiles[name].get("batches") for name in names}
    if any(batches.values()):
        lines.append(
            "| rows per TensorFlow call (top bucket share) | "
            + " | ".join(
                f"{b['mean_rows_per_call']:g} ({100 * b['top_bucket_share']:.0f}% at {b['top_bucket']})"
                if b
                else ""
                for b in batches.values()
            )
            + " |"
        )
    return "\n".join(lines)


def is_grpc(results: dict, model: str, server: str) -> bool:
    return results.get("requests", {}).get(model, {}).get(server, {}).get("transport") == "grpc"


def generator_cpu(load: dict, names: list[str]) -> tuple[float, float, str] | None:
    """(highest share of its core the generator used, its CPU us per request there, server)."""
    shares = [
        (point["load_cpu_fraction"]["median"], point["throughput_rps"]["median"], name)
        for name in names
        for point in load[name].get("points", {}).values()
    ]
    if not shares:
        return None
    share, rate, name = max(shares)
    return share, (1e6 * share / rate if rate else 0.0), name


def grpc_generator_note(results: dict) -> str:
    """ghz has no gRPC ceiling to drive: its own CPU, next to wrk's, says whether it was the limit."""
    lines = []
    for model, load in results["load"].items():
        grpc_names = [name for name in load if is_grpc(results, model, name) and "points" in load[name]]
        rest_names = [name for name in load if not is_grpc(results, model, name) and "points" in load[name]]
        ghz, wrk = generator_cpu(load, grpc_names), generator_cpu(load, rest_names)
        if ghz is None:
            continue
        text = (
            f"ghz on {model}: at most {ghz[0]:.0%} of its core ({ghz[2]}), "
            f"{fmt(ghz[1], 0)} us of CPU per call there"
        )
        if wrk is not None:
            text += f" (wrk: at most {wrk[0]:.0%}, {fmt(wrk[1], 0)} us per request, {wrk[2]})"
        if ghz[0] >= GENERATOR_SATURATED:
            text += "; ghz was near saturation, so that gRPC point may be the generator's limit"
        lines.append(text + ".")
    return " ".join(lines)


def ceiling_note(results: dict, model: str, ceiling_name: str) -> str | None:
    """How fast the load generator drove a ceiling, next to the fastest server of that protocol."""
    load = results["load"][model]
    grpc = is_grpc(results, model, ceiling_name)
    ceiling = peak(points_of(load.get(ceiling_name, {})))
    others = [
        (name, peak(points_of(report)))
        for name, report in load.items()
        if name not in CEILINGS and "points" in report and is_grpc(results, model, name) == grpc
    ]
    best_other = max((p for p in others if p[1]), key=lambda p: p[1].throughput, default=None)
    if ceiling is None or best_other is None:
        return None
    cpu = load[ceiling_name]["points"][str(ceiling.concurrency)]["load_cpu_fraction"]["median"]
    times = ceiling.throughput / best_other[1].throughput
    return (
        f"Load generator on {model}: {'ghz' if grpc else 'wrk'} drove {ceiling_name} at "
        f"{fmt(ceiling.throughput)} req/s ({fmt(times, 1)}x the fastest {'gRPC ' if grpc else ''}model "
        f"server, {best_other[0]}), using {cpu:.0%} of its core."
    )


def generator_note(results: dict) -> str:
    """Evidence that wrk (ghz) was not the bottleneck: its ceiling's rate vs every model server's."""
    lines = [
        note
        for model in results["load"]
        for ceiling_name in CEILINGS
        if (note := ceiling_note(results, model, ceiling_name)) is not None
    ]
    grpc_note = grpc_generator_note(results)
    return " ".join([*lines, grpc_note] if grpc_note else lines)


# ---- Plot -------------------------------------------------------------------------------


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results["load"])
    figure, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        load = results["load"][model]
        for name in ordered(list(load)):
            pts = sorted(points_of(load[name]), key=lambda p: p.concurrency)
            if not pts:
                continue
            spreads = [load[name]["points"][str(p.concurrency)]["throughput_rps"] for p in pts]
            axis.errorbar(
                [p.p99 for p in pts],
                [p.throughput for p in pts],
                yerr=[[p.throughput - s["min"] for p, s in zip(pts, spreads, strict=True)],
                      [s["max"] - p.throughput for p, s in zip(pts, spreads, strict=True)]],
                marker="o", capsize=3, label=name,
                linestyle="--" if name in CEILINGS else ":" if is_grpc(results, model, name) else "-",
            )  # fmt: skip
            for p in pts:
                axis.annotate(
                    str(p.concurrency),
                    (p.p99, p.throughput),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("p99 latency (ms, log)")
        axis.set_ylabel("throughput (req/s, log)")
        axis.set_title(f"{model}: throughput vs p99 (labels = connections)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(results["machine"]["summary"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_stages(results: dict, path: Path) -> bool:
    """A stacked bar of sampled time per request by stage, per model and profiled server; False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [model for model, load in results["load"].items() if profiled(load)]
    if not models:
        return False
    figure, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        load = results["load"][model]
        names = profiled(load)
        bottoms = [0.0] * len(names)
        for stage in STAGE_ORDER:
            values = [load[name]["profile"]["stages_us_per_request"][stage] for name in names]
            axis.bar(names, values, bottom=bottoms, label=stage)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        axis.set_ylabel("µs per request (py-spy samples: running or waiting for the core)")
        axis.set_title(f"{model}: where the time goes")
        axis.grid(True, axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(results["machine"]["summary"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def rerender(results_json: Path) -> None:
    """Recompute ratios, tables and plot from a results.json (``python -m bench.report FILE``)."""
    results = json.loads(results_json.read_text())
    results["ratios"] = ratios(results)
    paths = write(results, results_json.parent)
    print(paths["markdown"].read_text())


def write(results: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results["load_generator"] = generator_note(results)
    paths = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "summary.md",
        "plot": out_dir / "throughput-vs-p99.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    paths["markdown"].write_text(markdown(results) + "\n")
    plot(results, paths["plot"])
    stages_plot = out_dir / "stages.png"
    if plot_stages(results, stages_plot):
        paths["stages plot"] = stages_plot
    return paths


if __name__ == "__main__":
    import sys

    rerender(Path(sys.argv[1]))
