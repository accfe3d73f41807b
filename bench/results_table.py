#!/usr/bin/env python3
"""Writes results/README.md (to stdout) from a published run folder made by bench/run-all.sh.

Reads every scenario's summary.json; prints the headline table (each number beside the target
it is judged against, met or not), the plots, and the commands. Nothing is hard-coded: a number
missing from a summary is shown as "n/a".
"""

import json
import os
import sys


def load(run, name):
    path = os.path.join(run, name, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def get(data, *keys):
    for key in keys:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return data


def fmt(value, unit="", digits=0):
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def main():
    run = sys.argv[1]
    name = os.path.basename(os.path.normpath(run))
    floor = load(run, "floor-4000")
    floor8 = load(run, "floor8-4000")
    floor9k = load(run, "floor-9000")
    idle = load(run, "idle-15000")
    fanout = load(run, "fanout-10000")
    fanout_c = load(run, "fanout-10000-coalesce-1ms")
    throughput = load(run, "throughput-4000")
    channels = load(run, "channels-10000")
    churn = load(run, "churn-10000")

    floor_fps = get(floor, "floor", "frames_per_s")
    floor8_fps = get(floor8, "floor", "frames_per_s")
    # The floor keeps both ends of every socket in one process, so 9000 sockets is the most this
    # machine's 20000-descriptor cap allows; its time to write 10k sockets is scaled linearly
    # (the kernel's cost is per send call).
    floor9k_p99 = get(floor9k, "floor", "batch_time", "p99_us")
    floor10k_p99 = floor9k_p99 and floor9k_p99 * 10000 / 9000
    max_tp = get(throughput, "throughput", "max_sustained_deliveries_per_s")
    max_tp_core = get(throughput, "throughput", "max_sustained_deliveries_per_server_core")
    rss_per = get(idle, "memory", "server_rss_per_connection_bytes")
    kernel_per = get(idle, "memory", "kernel_tcp_mem_per_connection_bytes")
    last_p99 = get(fanout, "delivery", "last_receiver", "p99_us")

    rows = []
    rows.append((
        "idle, 15k connections: server RSS per connection",
        fmt(rss_per, " B"),
        "<= 1024 B",
        verdict(None if rss_per is None else rss_per <= 1024),
    ))
    rows.append(("idle: kernel TCP memory per connection (both ends, namespace-wide)", fmt(kernel_per, " B"), "report", ""))
    rows.append(("floor: one frame per send(), 4000 sockets", fmt(floor_fps, " frames/s"), "reference", ""))
    rows.append(("floor8: 8 frames per send(), 4000 sockets", fmt(floor8_fps, " frames/s"), "reference", ""))
    rows.append((
        "throughput: max sustained deliveries/s, 1 server core, zero loss",
        fmt(max_tp, "/s"),
        ">= 950,000/s",
        verdict(None if max_tp is None else max_tp >= 950_000),
    ))
    if max_tp and floor_fps:
        ratio = max_tp / floor_fps
        rows.append(("throughput / floor", fmt(ratio, "x", 1), ">= 5x", verdict(ratio >= 5)))
    if max_tp and floor8_fps:
        ratio = max_tp / floor8_fps
        rows.append(("throughput / floor8", fmt(ratio, "x", 2), ">= 0.7x", verdict(ratio >= 0.7)))
    rows.append(("throughput: deliveries per server CPU second at that step", fmt(max_tp_core, "/s"), "report", ""))
    for label, data in (("fanout 10k @ 10 msg/s, no window", fanout), ("fanout 10k @ 10 msg/s, --write-coalesce 1ms", fanout_c)):
        p99 = get(data, "delivery", "latency", "p99_us")
        p999 = get(data, "delivery", "latency", "p99_9_us")
        lost = get(data, "delivery", "loss", "lost")
        rows.append((f"{label}: publish->receive p99 / p99.9", f"{fmt(p99 and p99 / 1000, ' ms', 1)} / {fmt(p999 and p999 / 1000, ' ms', 1)}", "report", f"lost {fmt(lost)}"))
    if last_p99 is not None and floor10k_p99 is not None:
        bound = 1.5 * floor10k_p99
        rows.append((
            "fanout 10k: publish->last receiver p99 vs 1.5x floor's p99 time to write 10k sockets (floor measured at 9000, scaled x10/9)",
            f"{fmt(last_p99 / 1000, ' ms', 1)} vs {fmt(bound / 1000, ' ms', 1)}",
            "<= 1.5x floor",
            verdict(last_p99 <= bound),
        ))
    ch_p99 = get(channels, "delivery", "latency", "p99_us")
    rows.append(("channels: 10k subscribers / 1000 channels @ 5000 msg/s, p99", fmt(ch_p99 and ch_p99 / 1000, " ms", 1), "report", f"lost {fmt(get(channels, 'delivery', 'loss', 'lost'))}"))
    fds_ok = get(churn, "churn", "fds_returned_to_baseline")
    rss_ok = get(churn, "churn", "rss_returned_to_baseline")
    rss_delta = get(churn, "churn", "rss_delta_after_close_bytes")
    cycles = get(churn, "churn", "cycles_completed")
    rows.append((
        f"churn: {fmt(cycles)} cycles, fds and RSS back to baseline after close",
        f"fds {fmt(get(churn, 'churn', 'fd_delta_after_close'))}, RSS {fmt(rss_delta and rss_delta / 1048576, ' MiB', 1)}",
        "back to baseline",
        verdict(None if fds_ok is None else bool(fds_ok and rss_ok)),
    ))

    out = []
    out.append("# results/\n")
    out.append(
        f"Published benchmark runs. The latest is `{name}/`, made by `bash bench/run-all.sh {name}` "
        "(server or floor loop pinned to core 0, clients to core 1). Every scenario folder holds "
        "`summary.txt`, `summary.json`, the `.hgrm` percentile distributions, `latency.svg`, "
        "`env.txt` (kernel, CPU, cores, memory, commits, the exact command) and `server.log`. "
        "Numbers are what was measured, met or not.\n"
    )
    env = os.path.join(run, "floor-4000", "env.txt")
    if os.path.exists(env):
        with open(env) as handle:
            lines = [line.rstrip() for line in handle if line.split(":")[0] in ("kernel", "cpu_model", "cpus_available", "memory_total", "server_git_commit", "harness_git_commit")]
        if lines:
            out.append("Environment (from `floor-4000/env.txt`):\n\n```\n" + "\n".join(lines) + "\n```\n")
    out.append(f"## Headline numbers ({name})\n")
    out.append("| measure | measured | target | verdict |")
    out.append("|---|---|---|---|")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("## Latency plots\n")
    for scenario in ("fanout-10000", "fanout-10000-coalesce-1ms", "throughput-4000", "channels-10000", "floor-9000"):
        svg = os.path.join(run, scenario, "latency.svg")
        if os.path.exists(svg):
            out.append(f"### {scenario}\n\n![{scenario}]({name}/{scenario}/latency.svg)\n")
    out.append("## Commands\n")
    for scenario in sorted(os.listdir(run)):
        data = load(run, scenario)
        if data:
            out.append(f"- `{scenario}`: `{data.get('command_line', 'n/a')}`")
    out.append("")
    compare = os.path.join(os.path.dirname(os.path.normpath(run)), "compare")
    if os.path.isdir(compare):
        out.append("Side-by-side runs against other servers: [`compare/`](compare/).\n")
    autobahn = os.path.join(os.path.dirname(os.path.normpath(run)), "autobahn")
    if os.path.isdir(autobahn):
        out.append("Protocol conformance (Autobahn|Testsuite): [`autobahn/`](autobahn/).\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
