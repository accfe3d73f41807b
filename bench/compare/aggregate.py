"""From per-run results to the comparison: metrics per run, median and min-max over
repetitions, ratios against ringcast, and the text of summary.md.

A metric is taken only from what the harness measured at the subscribers (deliveries, latency,
loss) or from /proc; never from what a server answered. A run that failed contributes no
metric, and its failure is listed, so a median never hides a missing repetition.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Callable

#: The server every ratio divides by.
BASELINE = "ringcast"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One number of the comparison."""

    #: Key in a run's `metrics`.
    key: str
    #: Column title.
    label: str
    #: "lower" or "higher" is better; None when a ratio makes no sense (counts of losses).
    better: str | None
    #: Renders one value.
    render: Callable[[float], str]


def render_bytes(value: float) -> str:
    """Bytes, 3 significant digits ('1.43 KiB')."""
    for unit, scale in (("MiB", 1024.0 ** 2), ("KiB", 1024.0)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def render_rate(value: float) -> str:
    """Per-second rates ('52.1k/s')."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}/s"
    return f"{value:.3g}/s"


def render_ms(value: float) -> str:
    """Milliseconds, 3 significant digits."""
    return f"{value:.3g} ms"


def render_count(value: float) -> str:
    """A plain count."""
    return f"{value:.0f}"


METRICS: dict[str, list[Metric]] = {
    "idle": [
        Metric("connect_rate_per_s", "connect rate (ramp)", "higher", render_rate),
        Metric("tree_pss_per_connection_bytes", "memory/conn (tree PSS)", "lower", render_bytes),
        Metric("pid_rss_per_connection_bytes", "RSS/conn (measured pid)", "lower", render_bytes),
        Metric("kernel_tcp_per_connection_bytes", "kernel TCP/conn (both ends)", None, render_bytes),
    ],
    "fanout": [
        Metric("latency_p50_ms", "p50", "lower", render_ms),
        Metric("latency_p99_ms", "p99", "lower", render_ms),
        Metric("latency_p99_9_ms", "p99.9", "lower", render_ms),
        Metric("latency_max_ms", "max", "lower", render_ms),
        Metric("last_receiver_p99_ms", "last receiver p99", "lower", render_ms),
        Metric("deliveries_per_s", "deliveries/s", "higher", render_rate),
        Metric("lost", "lost", None, render_count),
    ],
    "throughput": [
        Metric("max_sustained_deliveries_per_s", "max sustained deliveries/s", "higher", render_rate),
        Metric("max_sustained_rate_per_s", "at publish rate", "higher", render_rate),
        Metric("deliveries_per_server_core", "per CPU-second (measured pid)", "higher", render_rate),
        Metric("p99_at_max_ms", "p99 at max", "lower", render_ms),
    ],
}


def _get(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]... or None where a level is missing."""
    for key in path:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return data


def metrics_from_summary(scenario: str, summary: dict[str, Any]) -> dict[str, float | None]:
    """The comparison's metrics from one harness summary.json (tree memory is added by the
    driver, which measured it)."""
    if scenario == "idle":
        return {
            "connect_rate_per_s": _get(summary, "connections", "ramp_rate_per_s"),
            "pid_rss_per_connection_bytes": _get(summary, "memory", "server_rss_per_connection_bytes"),
            "kernel_tcp_per_connection_bytes": _get(summary, "memory", "kernel_tcp_mem_per_connection_bytes"),
        }
    if scenario == "fanout":
        latency = _get(summary, "delivery", "latency") or {}
        ms = lambda key: None if latency.get(key) is None or not latency.get("count") else latency[key] / 1000.0  # noqa: E731
        last = _get(summary, "delivery", "last_receiver") or {}
        return {
            "latency_p50_ms": ms("p50_us"), "latency_p99_ms": ms("p99_us"),
            "latency_p99_9_ms": ms("p99_9_us"), "latency_max_ms": ms("max_us"),
            "last_receiver_p99_ms": last["p99_us"] / 1000.0 if last.get("count") else None,
            "deliveries_per_s": _get(summary, "delivery", "deliveries_per_s"),
            "lost": _get(summary, "delivery", "loss", "lost"),
        }
    if scenario == "throughput":
        throughput = summary.get("throughput") or {}
        best = [step for step in throughput.get("steps", []) if step.get("sustained")]
        p99 = _get(best[-1], "delivery", "latency", "p99_us") if best else None
        return {
            "max_sustained_deliveries_per_s": throughput.get("max_sustained_deliveries_per_s"),
            "max_sustained_rate_per_s": throughput.get("max_sustained_rate_per_s"),
            "deliveries_per_server_core": throughput.get("max_sustained_deliveries_per_server_core"),
            "p99_at_max_ms": None if p99 is None else p99 / 1000.0,
        }
    raise ValueError(f"unknown scenario {scenario!r}")


@dataclasses.dataclass
class Spread:
    """A metric over the repetitions of one server."""

    #: Values of the runs that measured it, in repetition order.
    values: list[float]

    @property
    def median(self) -> float:
        """Median of the values."""
        return statistics.median(self.values)

    def as_dict(self) -> dict[str, Any]:
        """For summary.json."""
        return {"median": self.median, "min": min(self.values), "max": max(self.values), "values": self.values}


def aggregate(runs: list[dict[str, Any]], servers: list[str], scenarios: list[str]) -> dict[str, Any]:
    """{scenario: {server: {metric: {median, min, max, values, ratio, runs_measured}}}}."""
    result: dict[str, Any] = {}
    for scenario in scenarios:
        per_server: dict[str, Any] = {}
        for server in servers:
            mine = [run for run in runs if run["scenario"] == scenario and run["server"] == server]
            entry: dict[str, Any] = {"runs": len(mine), "runs_with_results": sum(1 for run in mine if run.get("ok"))}
            for metric in METRICS[scenario]:
                values = [run["metrics"][metric.key] for run in mine
                          if run.get("ok") and run.get("metrics", {}).get(metric.key) is not None]
                entry[metric.key] = Spread(values).as_dict() if values else None
            per_server[server] = entry
        for server, entry in per_server.items():
            base = per_server.get(BASELINE, {})
            for metric in METRICS[scenario]:
                mine, theirs = entry.get(metric.key), base.get(metric.key)
                if mine is None or metric.better is None:
                    continue
                ok = theirs is not None and theirs["median"] not in (0, None)
                mine["ratio_to_ringcast"] = mine["median"] / theirs["median"] if ok else None
        result[scenario] = per_server
    return result


def _cell(metric: Metric, spread: dict[str, Any] | None, runs: int) -> str:
    """'median [min–max]' (or the single value, or a dash) for the absolute table."""
    if spread is None:
        return "—"
    values = spread["values"]
    text = metric.render(spread["median"])
    if len(values) > 1:
        text += f" [{metric.render(spread['min'])}–{metric.render(spread['max'])}]"
    if metric.key == "lost" and len(values) > 1:
        text = f"{sum(values):.0f} total ({', '.join(f'{value:.0f}' for value in values)})"
    if len(values) < runs:
        text += f" ({len(values)}/{runs} runs)"
    return text


def _ratio_cell(spread: dict[str, Any] | None) -> str:
    """'1.23×' or a dash."""
    ratio = None if spread is None else spread.get("ratio_to_ringcast")
    return "—" if ratio is None else f"{ratio:.3g}×"


def scenario_tables(scenario: str, per_server: dict[str, Any], servers: list[str]) -> list[str]:
    """Markdown: the absolute table and the ratio table of one scenario."""
    metrics = METRICS[scenario]
    lines = ["| server | " + " | ".join(metric.label for metric in metrics) + " |",
             "| --- |" + " --- |" * len(metrics)]
    for server in servers:
        entry = per_server[server]
        lines.append(f"| {server} | " + " | ".join(_cell(metric, entry.get(metric.key), entry["runs"])
                                                   for metric in metrics) + " |")
    ratio_metrics = [metric for metric in metrics if metric.better]
    lines += ["", "Ratio peer / ringcast (medians). " + "; ".join(
        f"{metric.label}: {metric.better} is better" for metric in ratio_metrics) + ".", "",
        "| server | " + " | ".join(metric.label for metric in ratio_metrics) + " |",
        "| --- |" + " --- |" * len(ratio_metrics)]
    for server in servers:
        entry = per_server[server]
        lines.append(f"| {server} | " + " | ".join(_ratio_cell(entry.get(metric.key)) for metric in ratio_metrics) + " |")
    return lines


def problem_lines(runs: list[dict[str, Any]], scenario: str, servers: list[str]) -> list[str]:
    """Markdown list of every PROBLEM line and driver note of a scenario's runs, per server; a
    text repeated in several runs is listed once with the run numbers."""
    lines = []
    for server in servers:
        for kind in ("problems", "notes"):
            seen: dict[str, list[int]] = {}
            for run in runs:
                if run["scenario"] == scenario and run["server"] == server:
                    for text in run.get(kind, []):
                        seen.setdefault(text, []).append(run["rep"])
            for text, reps in seen.items():
                where = f"run{'s' if len(reps) > 1 else ''} {', '.join(map(str, reps))}"
                lines.append(f"- **{server}** {where}: {text}" if kind == "problems"
                             else f"- {server} {where} (note): {text}")
    return lines or ["- none"]


#: Issue 13's targets for the Pusher workload: (metric, numerator server, denominator server,
#: lowest acceptable ratio numerator / denominator).
PUSHER_RATIO_TARGETS: dict[str, list[tuple[str, str, str, float]]] = {
    "throughput": [
        ("max_sustained_deliveries_per_s", "ringcast", "soketi", 20.0),
        ("max_sustained_deliveries_per_s", "ringcast", "sockudo", 15.0),
        ("deliveries_per_server_core", "ringcast", "soketi", 20.0),
        ("deliveries_per_server_core", "ringcast", "sockudo", 15.0),
        ("max_sustained_deliveries_per_s", "ringcast", "ringcast-raw", 0.8),
        ("deliveries_per_server_core", "ringcast", "ringcast-raw", 0.8),
    ],
}
#: Issue 13: "no more than 1.5 KiB per idle Pusher connection subscribed to one channel".
PUSHER_IDLE_BYTES_MAX = 1.5 * 1024


def pusher_target_lines(scenario: str, per_server: dict[str, Any], servers: list[str]) -> list[str]:
    """Markdown: issue 13's targets for this scenario, each ratio numerator / denominator of the
    medians with its range over the repetitions (worst pairing to best), and whether it is met."""
    lines: list[str] = []
    if scenario == "idle":
        for server in servers:
            spread = (per_server.get(server) or {}).get("tree_pss_per_connection_bytes")
            if spread is None or server not in ("ringcast", "ringcast-raw"):
                continue
            verdict = "met" if spread["median"] <= PUSHER_IDLE_BYTES_MAX else "NOT met"
            path = "Pusher (/app/{key}, subscribed to one channel)" if server == "ringcast" else "native /ws/{channel}"
            lines.append(f"- {server} {path}: {render_bytes(spread['median'])} per idle connection "
                         f"[{render_bytes(spread['min'])}–{render_bytes(spread['max'])}]"
                         + (f"; target <= 1.5 KiB: {verdict}" if server == "ringcast" else ""))
        for server in servers:
            if server in ("ringcast", "ringcast-raw"):
                continue
            mine = (per_server.get("ringcast") or {}).get("tree_pss_per_connection_bytes")
            theirs = (per_server.get(server) or {}).get("tree_pss_per_connection_bytes")
            if mine and theirs and mine["median"] > 0:
                lines.append(f"- {server} / ringcast memory per idle connection: {theirs['median'] / mine['median']:.3g}× "
                             f"({render_bytes(theirs['median'])} vs {render_bytes(mine['median'])})")
    for key, numerator, denominator, minimum in PUSHER_RATIO_TARGETS.get(scenario, []):
        if numerator not in servers or denominator not in servers:
            continue
        top = (per_server.get(numerator) or {}).get(key)
        bottom = (per_server.get(denominator) or {}).get(key)
        label = next(metric.label for metric in METRICS[scenario] if metric.key == key)
        if not top or not bottom or not bottom["median"] or not bottom["min"]:
            lines.append(f"- {label}, {numerator} / {denominator}: not measured (target >= {minimum:g}×)")
            continue
        ratio = top["median"] / bottom["median"]
        low, high = top["min"] / bottom["max"], top["max"] / bottom["min"]
        verdict = "met" if ratio >= minimum else "NOT met"
        lines.append(f"- {label}, {numerator} / {denominator}: {ratio:.3g}× [{low:.3g}–{high:.3g}] "
                     f"({render_rate(top['median'])} vs {render_rate(bottom['median'])}); target >= {minimum:g}×: {verdict}")
    if lines:
        lines.insert(0, "Issue 13 targets (ratios of the medians; [range]: worst to best pairing of runs):")
        lines.insert(1, "")
    return lines
