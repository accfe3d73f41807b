"""summary.md of bench/pusher/fanout-per-core.sh: per run and per path (median [min-max]) the
deliveries/s, deliveries per server CPU-second, p99 and loss, and the Pusher / raw ratio of the
medians with its worst-to-best range. Standard library only; reads the harness's summary.json."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def metrics(summary: dict) -> dict:
    """The numbers compared, from one harness summary.json."""
    delivery = summary.get("delivery") or {}
    latency = delivery.get("latency") or {}
    return {
        "deliveries_per_s": delivery.get("deliveries_per_s"),
        "per_server_core_s": delivery.get("deliveries_per_server_core"),
        "p99_ms": latency["p99_us"] / 1000 if latency.get("p99_us") is not None else None,
        "lost": (delivery.get("loss") or {}).get("lost"),
        "problems": summary.get("problems", []),
    }


def spread(values: list[float]) -> str:
    """'median [min–max]'."""
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}–{max(values):,.0f}]" if values else "—"


def main(out: Path) -> None:
    runs = {}
    for run_dir in sorted(out.glob("r*-*")):
        if (run_dir / "summary.json").is_file():
            runs[run_dir.name] = metrics(json.loads((run_dir / "summary.json").read_text()))
    print(f"# ringcast: Pusher path vs native path at the same load ({out.name})\n")
    print("Commands: commands.txt; load before/after each run: load.txt; machine: each run's env.txt.\n")
    print("| run | deliveries/s | per server CPU-second | p99 (ms) | lost | problems |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, m in runs.items():
        print(f"| {name} | {m['deliveries_per_s'] or 0:,.0f} | {m['per_server_core_s'] or 0:,.0f} | "
              f"{m['p99_ms'] or 0:.1f} | {m['lost']} | {'; '.join(m['problems']) or 'none'} |")
    by_path = {path: [m for name, m in runs.items() if name.endswith("-" + path)] for path in ("pusher", "raw")}
    print("\n| path | deliveries/s | per server CPU-second |")
    print("| --- | --- | --- |")
    for path, ms in by_path.items():
        print(f"| {path} | {spread([m['deliveries_per_s'] for m in ms if m['deliveries_per_s']])} | "
              f"{spread([m['per_server_core_s'] for m in ms if m['per_server_core_s']])} |")
    for key, label in (("per_server_core_s", "deliveries per server CPU-second"), ("deliveries_per_s", "deliveries/s")):
        pusher = [m[key] for m in by_path["pusher"] if m[key]]
        raw = [m[key] for m in by_path["raw"] if m[key]]
        if pusher and raw:
            ratio = statistics.median(pusher) / statistics.median(raw)
            verdict = "met" if ratio >= 0.8 else "NOT met"
            print(f"\n{label}, Pusher / raw: {ratio:.3g}× [{min(pusher) / max(raw):.3g}–{max(pusher) / min(raw):.3g}]"
                  + (f" (issue 13 target >= 0.8×: {verdict})" if key == "per_server_core_s" else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
