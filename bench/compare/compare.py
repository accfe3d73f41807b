"""ringcast against its peers, side by side, in one command (run through bench/compare/run.sh).

Builds ringcast and ringcast-bench (release), installs every peer (bench/peers/*/install.sh),
then for each repetition runs every scenario against every server in turn (A B C ... A B C ...,
so drift over the run hits everyone alike). Each run starts its server fresh, pinned to the
server cores, measures it with ringcast-bench pinned to the client cores, and stops it.
Results go to results/compare/<name>/: the harness folder of every run, summary.md,
summary.json, one overlaid latency plot per scenario, env.txt.

What it does not do: judge. Every PROBLEM line of the harness and every start/stop anomaly is
copied into the summary next to the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aggregate
import environment
import explain
import plot
import procfs
import scenarios
import servers

#: Where this file lives; the repository is two levels up.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
#: Interval of the memory samples taken during the idle hold.
IDLE_SAMPLE_INTERVAL_S = 0.25
#: Files every run needs beside the harness's own.
HARNESS_STDOUT, HARNESS_STDERR, SERVER_LOG, DRIVER_JSON = "harness.stdout", "harness.stderr", "server.log", "driver.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (see bench/README.md, 'Side-by-side comparison')."""
    parser = argparse.ArgumentParser(
        prog="bench/compare/run.sh",
        description="Build, install and run ringcast and its peers through the same ringcast-bench scenarios, "
                    "interleaved, and write a side-by-side summary.")
    parser.add_argument("--workload", choices=("raw", "pusher"), default="raw",
                        help="raw: /ws + /publish (the default servers); pusher: Pusher protocol 7 on /app/{key} with "
                             "signed triggers (servers ringcast,soketi,sockudo, scenarios idle,throughput, 2 "
                             "repetitions, unless given; ringcast-raw adds ringcast's native path) [%(default)s]")
    parser.add_argument("--servers", help="comma list, ringcast first (ratios are against it) "
                                          f"[raw: {','.join(servers.SERVER_NAMES)}]")
    parser.add_argument("--scenarios", help=f"comma list [raw: {','.join(scenarios.SCENARIO_NAMES)}]")
    parser.add_argument("--repeat", type=int, help="repetitions, interleaved [raw: 3; pusher: 2]")
    parser.add_argument("--connections", type=int, help="connections per idle/fanout run [10000; --quick 500]")
    parser.add_argument("--throughput-connections", type=int, help="subscribers per throughput run [4000; --quick 500]")
    parser.add_argument("--rate", type=float, help="fanout publishes per second [10]")
    parser.add_argument("--throughput-start-rate", type=float, help="first throughput step, msg/s [5; --quick 20]")
    parser.add_argument("--duration", type=float, help="fanout seconds [20; --quick 3]")
    parser.add_argument("--step-duration", type=float, help="throughput step seconds [5; --quick 3]")
    parser.add_argument("--idle-hold", type=float, help="idle hold seconds [10; --quick 3]")
    parser.add_argument("--idle-ramp-rate", type=float, help="idle connects per second asked for [100000]")
    parser.add_argument("--ramp-rate", type=float, help="fanout/throughput connects per second [2000]")
    parser.add_argument("--steps-max", type=int, help="throughput steps at most [14; --quick 6]")
    parser.add_argument("--p99-budget-ms", type=float, help="throughput p99 budget [250]")
    parser.add_argument("--payload-bytes", type=int, help="payload size, >= 48 [64]")
    parser.add_argument("--source-ips", help="harness --source-ips (needed above ~28k connections)")
    parser.add_argument("--server-cores", default="0", help="taskset list for every server [%(default)s]")
    parser.add_argument("--client-cores", default="1", help="taskset list for the harness and this driver [%(default)s]")
    parser.add_argument("--client-threads", type=int, help="harness client threads [one per client core]")
    parser.add_argument("--quick", action="store_true", help="smoke test: 500 connections, 3 s steps")
    parser.add_argument("--skip-install", action="store_true", help="do not run the peers' install.sh")
    parser.add_argument("--skip-build", action="store_true", help="do not run cargo build")
    parser.add_argument("--name", default="latest", help="results/compare/<name> [%(default)s]")
    parser.add_argument("--results-root", type=Path, default=REPO / "results" / "compare", help="[%(default)s]")
    parser.add_argument("--ringcast-bin", type=Path, help="ringcast binary [<target>/release/ringcast]")
    parser.add_argument("--bench-bin", type=Path, help="ringcast-bench binary [<target>/release/ringcast-bench]")
    parser.add_argument("--pause", type=float, help="seconds between runs [3; --quick 1]")
    parser.add_argument("--resummarize", action="store_true",
                        help="rewrite summary.md/json and the plots of an existing results/compare/<name> from its runs")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    args = parser.parse_args(argv)
    pusher = args.workload == "pusher"
    if args.servers is None:
        args.servers = ",".join(servers.PUSHER_WORKLOAD_SERVER_NAMES if pusher else servers.SERVER_NAMES)
    if args.scenarios is None:
        args.scenarios = "idle,throughput" if pusher else ",".join(scenarios.SCENARIO_NAMES)
    if args.repeat is None:
        args.repeat = 2 if pusher else 3
    args.server_list = [name for name in args.servers.split(",") if name]
    args.scenario_list = [name for name in args.scenarios.split(",") if name]
    unknown = [name for name in args.server_list if name not in servers.PORTS]
    unknown += [name for name in args.scenario_list if name not in scenarios.SCENARIO_NAMES]
    if unknown:
        parser.error(f"unknown server or scenario: {', '.join(unknown)}")
    if not pusher and servers.RINGCAST_RAW in args.server_list:
        parser.error(f"{servers.RINGCAST_RAW} is only for --workload pusher (it is ringcast in the raw workload)")
    if not args.server_list or not args.scenario_list or not 1 <= args.repeat <= 100:
        parser.error("need at least one server and scenario, and --repeat in 1..100")
    try:
        server_cores = procfs.expand_cpu_list(args.server_cores)
        client_cores = procfs.expand_cpu_list(args.client_cores)
    except ValueError as error:
        parser.error(str(error))
    if set(server_cores) & set(client_cores):
        print(f"warning: server cores {args.server_cores} and client cores {args.client_cores} overlap", file=sys.stderr)
    args.client_core_set = client_cores
    if "/" in args.name or args.name in ("", ".", ".."):
        parser.error("--name is one folder name")
    return args


def settings_from(args: argparse.Namespace) -> scenarios.Settings:
    """The scenario settings: --quick or full defaults, then every explicit option."""
    threads = args.client_threads or len(args.client_core_set)
    base = scenarios.quick_settings(threads) if args.quick else scenarios.full_settings(threads)
    overrides = {
        "connections": args.connections, "throughput_connections": args.throughput_connections,
        "fanout_rate_per_s": args.rate,
        "throughput_rate_per_s": args.throughput_start_rate, "fanout_duration_s": args.duration,
        "throughput_step_s": args.step_duration, "idle_hold_s": args.idle_hold,
        "idle_ramp_rate_per_s": args.idle_ramp_rate,
        "ramp_rate_per_s": args.ramp_rate, "throughput_steps_max": args.steps_max,
        "p99_budget_ms": args.p99_budget_ms, "payload_bytes": args.payload_bytes, "source_ips": args.source_ips,
    }
    return dataclasses.replace(base, **{key: value for key, value in overrides.items() if value is not None})


class Log:
    """Progress on stdout, also kept in driver.log."""

    def __init__(self) -> None:
        self.file = None
        self.started = time.monotonic()

    def open(self, path: Path) -> None:
        """Starts copying to `path`."""
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[compare {elapsed // 60:3.0f}m{elapsed % 60:04.1f}s] {text}"
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()


log = Log()


def build(target_dir: Path) -> None:
    """cargo build --release of ringcast and ringcast-bench."""
    log(f"building ringcast and ringcast-bench (release, CARGO_TARGET_DIR={target_dir})")
    subprocess.run(["cargo", "build", "--release", "-p", "ringcast", "-p", "ringcast-bench"],
                   cwd=REPO, env={**os.environ, "CARGO_TARGET_DIR": str(target_dir)}, check=True)


def install(peers: list[str], log_dir: Path) -> dict[str, str]:
    """Runs each peer's install.sh; returns {peer: error} for those that failed."""
    failed = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    for peer in peers:
        log_path = log_dir / f"{peer}.log"
        log(f"installing {peer} (log {log_path})")
        with open(log_path, "wb") as output:
            result = subprocess.run([str(REPO / "bench" / "peers" / peer / "install.sh")],
                                    stdout=output, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            failed[peer] = f"install.sh failed (exit {result.returncode}), see {log_path}"
            log(f"  {peer}: {failed[peer]}")
        else:
            log(f"  {log_path.read_text(errors='replace').strip().splitlines()[-1]}")
    return failed


class TreeSampler(threading.Thread):
    """Reads a server's process tree (PSS) every `interval_s` until stopped."""

    def __init__(self, root: int, interval_s: float):
        super().__init__(daemon=True)
        self.root, self.interval_s = root, interval_s
        self.readings: list[procfs.TreeReading] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        # Bounded: stops when asked (the run's end) and its readings are few per second.
        while not self.stopping.wait(self.interval_s):
            self.readings.append(procfs.read_tree(self.root))

    def stop(self) -> None:
        """Stops and waits for the thread."""
        self.stopping.set()
        self.join(timeout=5)


def hold_memory(readings: list[procfs.TreeReading], hold_start_s: float, hold_end_s: float) -> tuple[int | None, int]:
    """Median tree PSS over the readings inside [start, end] (monotonic seconds), and how many."""
    inside = [reading.pss_bytes for reading in readings if hold_start_s <= reading.monotonic_s <= hold_end_s]
    return (int(statistics.median(inside)) if inside else None), len(inside)


def run_harness(command: list[str], run_dir: Path, limit_s: float) -> tuple[int, str]:
    """Runs ringcast-bench; returns (exit code, last stderr line). Killed at `limit_s`."""
    with open(run_dir / HARNESS_STDOUT, "wb") as stdout, open(run_dir / HARNESS_STDERR, "wb") as stderr:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        try:
            code = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9, f"killed by the driver after {limit_s:.0f} s"
    tail = [line for line in (run_dir / HARNESS_STDERR).read_text(errors="replace").splitlines() if line.strip()]
    return code, (tail[-1] if tail else "")


def interpret(run: dict[str, Any], summary: dict[str, Any]) -> None:
    """Adds metrics, the harness's PROBLEM lines, and notes on their known causes, to `run`."""
    run["metrics"].update(aggregate.metrics_from_summary(run["scenario"], summary))
    run["problems"] = list(summary.get("problems", [])) + run["problems"]
    run["notes"] += explain.notes_for(run["scenario"], run["server"], run.get("probe_status"),
                                      run["problems"], summary.get("throughput"))


def run_one(rep: int, scenario: str, name: str, context: dict[str, Any]) -> dict[str, Any]:
    """Start the server, measure it with the harness, stop it; returns the run's record."""
    settings: scenarios.Settings = context["settings"]
    run_dir: Path = context["out"] / "runs" / f"r{rep}-{scenario}-{name}"
    run_dir.mkdir(parents=True)
    run: dict[str, Any] = {"id": run_dir.name, "rep": rep, "scenario": scenario, "server": name,
                           "dir": str(run_dir.relative_to(context["out"])), "ok": False,
                           "metrics": {}, "problems": [], "notes": []}
    started = time.monotonic()
    # The machine may be shared (builds): the load around every run goes into the summary.
    run["load_before"] = environment.load_average()
    try:
        server = servers.RunningServer(name, context["layout"], context["binaries"], run_dir / SERVER_LOG)
    except servers.ServerError as error:
        run["problems"].append(f"driver: {error}")
        return run
    sampler = None
    try:
        server.wait_ready()
        run["probe_status"] = server.probe_status
        pid, pid_description = servers.measured_pid(name, server.root_pid)
        run["measured_pid"] = pid_description
        baseline = procfs.read_tree(server.root_pid, with_memory=True)
        run["tree_processes"] = [f"{reading.name}({reading.pid})" for reading in baseline.processes]
        pusher = servers.speaks_pusher(name, context["layout"].workload)
        command = ["taskset", "-c", context["client_cores"], str(context["bench_bin"]),
                   *scenarios.harness_args(scenario, settings, "pusher" if pusher else "raw"),
                   "--host", f"127.0.0.1:{server.port}",
                   *([] if scenario == "idle"
                     else ["--publish-host", f"127.0.0.1:{servers.publish_port(name, pusher)}"]),
                   "--server-pid", str(pid),
                   "--server-git-dir", str(REPO), "--client-cores", context["client_cores"],
                   "--output-dir", str(run_dir)]
        run["command"] = shlex.join(command)
        if scenario == "idle":
            sampler = TreeSampler(server.root_pid, IDLE_SAMPLE_INTERVAL_S)
            sampler.start()
        harness_started = time.monotonic()
        code, tail = run_harness(command, run_dir, scenarios.run_time_limit_s(scenario, settings))
        if sampler:
            sampler.stop()
        end = procfs.read_tree(server.root_pid, with_memory=False)
        run["harness_exit"] = code
        run["tree_cpu_seconds_whole_run"] = round(end.cpu_seconds - baseline.cpu_seconds, 3)
        if code != 0:
            run["problems"].append(f"driver: ringcast-bench exited {code}: {tail}")
        summary_path = run_dir / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            run["ok"] = code == 0
            interpret(run, summary)
            if scenario == "idle" and sampler:
                record_idle_memory(run, summary, sampler.readings, baseline, harness_started, settings)
    except servers.ServerError as error:
        run["problems"].append(f"driver: {error}")
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        ended, stop_problems = server.stop()
        run["server_end"] = ended
        run["load_after"] = environment.load_average()
        run["problems"] += [f"driver: {problem}" for problem in stop_problems]
        run["seconds"] = round(time.monotonic() - started, 1)
        (run_dir / DRIVER_JSON).write_text(json.dumps(run, indent=2) + "\n")
    return run


def record_idle_memory(run: dict[str, Any], summary: dict[str, Any], readings: list[procfs.TreeReading],
                       baseline: procfs.TreeReading, harness_started: float, settings: scenarios.Settings) -> None:
    """Tree PSS per connection: median PSS during the idle hold minus the PSS before the ramp,
    over the connections open after the ramp."""
    connections = summary.get("connections") or {}
    open_connections = connections.get("open_after_ramp") or 0
    hold_start = harness_started + (connections.get("ramp_s") or 0.0) + settings.settle_s + 0.5
    hold_end = hold_start - 0.5 + settings.idle_hold_s - 0.25
    pss, samples = hold_memory(readings, hold_start, hold_end)
    if pss is None and readings:
        pss = max(reading.pss_bytes for reading in readings)
        run["notes"].append("no memory sample fell inside the idle hold; the peak of the run is used")
    run["tree_memory"] = {"baseline_pss_bytes": baseline.pss_bytes, "hold_pss_bytes": pss,
                          "hold_samples": samples, "baseline_rss_bytes": baseline.rss_bytes}
    if pss is not None and open_connections > 0:
        run["metrics"]["tree_pss_per_connection_bytes"] = (pss - baseline.pss_bytes) / open_connections


def write_results(out: Path, runs: list[dict[str, Any]], context: dict[str, Any]) -> None:
    """summary.json, summary.md and the overlaid plots."""
    names, scenario_list = context["servers"], context["scenarios"]
    aggregated = aggregate.aggregate(runs, names, scenario_list)
    plots = {}
    for scenario in ("fanout", "throughput"):
        if scenario not in scenario_list:
            continue
        series = [(name, sorted(out.glob(f"runs/r*-{scenario}-{name}/latency_us.hgrm"))) for name in names]
        title = {"fanout": f"fanout: {context['settings'].connections} subscribers, {context['settings'].fanout_rate_per_s:g} msg/s",
                 "throughput": "throughput: best sustained step of each run"}[scenario]
        if plot.write_overlay(out / f"{scenario}-latency.svg", title, series):
            plots[scenario] = f"{scenario}-latency.svg"
    document = {
        "name": out.name, "command": context["command"], "settings": dataclasses.asdict(context["settings"]),
        "servers": names, "scenarios": scenario_list, "repeat": context["repeat"],
        "layout": {"server_cores": context["layout"].server_cores, "client_cores": context["client_cores"]},
        "excluded_servers": context["excluded"], "aggregate": aggregated, "plots": plots, "runs": runs,
        "workload": context.get("workload", "raw"),
        "load_average": {"start": context["load_start"], "end": context.get("load_end") or environment.load_average()},
        "wall_seconds": context.get("wall_seconds") or round(time.monotonic() - context["started"], 1),
    }
    (out / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(document, runs))


SCENARIO_TEXT = {
    "idle": "N idle connections. Connect rate = open connections / ramp time with the harness asking for "
            "{idle_ramp_rate_per_s:g}/s (one client core can also be the limit; the harness checks the ramp every 5 ms, "
            "so with few connections the rate is coarse). Memory/conn (tree PSS) = the "
            "server's whole process tree, PSS, median over the hold minus before the ramp, / open connections. "
            "RSS/conn is the harness's reading of the one pid it was given (see 'measured pid'). Kernel TCP memory "
            "is namespace-wide: client ends included.",
    "fanout": "N subscribers on one channel (ramp {ramp_rate_per_s:g}/s), {fanout_rate_per_s:g} msg/s of {payload_bytes} B for "
              "{fanout_duration_s:g} s: publish -> receive latency of every delivery, counted at the subscribers.",
    "throughput": "{throughput_connections} subscribers on one channel, the rate starts at {throughput_rate_per_s:g} msg/s and grows "
                  "x{throughput_rate_factor:g} per {throughput_step_s:g} s step ({throughput_publishers} publishers) "
                  "until a step loses a delivery, gets a 503 or other non-200 answer, falls behind, or passes "
                  "p99 {p99_budget_ms:g} ms. Per CPU-second uses the measured pid's CPU only.",
}


def summary_markdown(document: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The text of summary.md."""
    settings, names = document["settings"], document["servers"]
    workload = document.get("workload", "raw")
    lines = [f"# ringcast vs peers: {document['name']}" + (" (Pusher protocol 7 workload)" if workload == "pusher" else ""), "",
             f"Command: `{document['command']}`", "",
             f"{settings['connections']} connections ({settings.get('throughput_connections', settings['connections'])} for throughput); servers on cores {document['layout']['server_cores']}, "
             f"harness on cores {document['layout']['client_cores']}; {document['repeat']} repetition(s), interleaved "
             f"(every scenario runs every server once per repetition); load average at start {document['load_average']['start']}, "
             f"at end {document['load_average']['end']}; {document['wall_seconds'] / 60:.1f} min. "
             "Cells: median [min–max] over repetitions. Machine and versions: env.txt.", "",
             busy_sentence(runs, os.cpu_count() or 1), ""]
    if document["excluded_servers"]:
        lines += ["Excluded: " + "; ".join(f"{name}: {why}" for name, why in document["excluded_servers"].items()), ""]
    for scenario in document["scenarios"]:
        lines += [f"## {scenario}", "", SCENARIO_TEXT[scenario].format(**settings), ""]
        lines += aggregate.scenario_tables(scenario, document["aggregate"][scenario], names)
        if scenario in document["plots"]:
            lines += ["", f"Latency by percentile, every run: [{document['plots'][scenario]}]({document['plots'][scenario]})"]
        if document.get("workload") == "pusher":
            lines += ["", *aggregate.pusher_target_lines(scenario, document["aggregate"][scenario], names)]
        lines += ["", f"Problems and notes ({scenario}):", ""]
        lines += aggregate.problem_lines(runs, scenario, names)
        lines.append("")
    lines += ["## Load average (1/5/15 min) before and after each run", "",
              "The machine may be shared; a load well above the cores the runs use means other work competed.", "",
              busy_sentence(runs, os.cpu_count() or 1), "",
              "| run | before | after |", "| --- | --- | --- |"]
    lines += [f"| {run['id']} | {run.get('load_before', '—')} | {run.get('load_after', '—')} |" for run in runs]
    lines += ["", "## Servers", "", "| server | publish answer (probe, no subscriber) | measured pid (harness) | process tree |", "| --- | --- | --- | --- |"]
    for name in names:
        first = next((run for run in runs if run["server"] == name and run.get("measured_pid")), {})
        tree = ", ".join(sorted({entry.split("(")[0] for entry in first.get("tree_processes", [])}))
        lines.append(f"| {name} | {first.get('probe_status', '—')} | {first.get('measured_pid', '—')} | {tree or '—'} |")
    lines += ["", "Runs: `runs/r<repetition>-<scenario>-<server>/` (harness summary.txt/json, .hgrm, server.log, "
              "driver.json with the exact harness command).", ""]
    return "\n".join(lines)


def busy_sentence(runs: list[dict[str, Any]], cpus: int) -> str:
    """Whether other work competed: the highest 1-minute load around a run against the CPUs."""
    loads = [float(run[key].split()[0]) for run in runs for key in ("load_before", "load_after")
             if run.get(key) and run[key].split()]
    if not loads:
        return "No load readings."
    peak = max(loads)
    if peak > cpus:
        return (f"**The machine was busy**: the 1-minute load reached {peak:g} on {cpus} CPUs (the runs themselves "
                "keep at most the server core and the client core busy), so other work competed with the runs.")
    return f"The 1-minute load stayed at or below {peak:g} on {cpus} CPUs."


def resummarize(out: Path) -> int:
    """Re-reads every run of an existing comparison (driver.json and the harness's summary.json)
    and writes summary.md, summary.json and the plots again (after a change to this driver's
    reporting; the measurements are not touched)."""
    previous = json.loads((out / "summary.json").read_text())
    runs = []
    for old in previous["runs"]:
        run = json.loads((out / old["dir"] / DRIVER_JSON).read_text())
        run["problems"] = [problem for problem in run["problems"] if problem.startswith("driver: ")]
        run["notes"] = [note for note in run["notes"] if note.startswith("no memory sample")]
        tree_metric = run["metrics"].get("tree_pss_per_connection_bytes")
        run["metrics"] = {}
        harness_summary = out / old["dir"] / "summary.json"
        if harness_summary.is_file():
            interpret(run, json.loads(harness_summary.read_text()))
        if tree_metric is not None:
            run["metrics"]["tree_pss_per_connection_bytes"] = tree_metric
        runs.append(run)
    settings = scenarios.Settings(**previous["settings"])
    context = {"settings": settings, "servers": previous["servers"], "scenarios": previous["scenarios"],
               "command": previous["command"], "repeat": previous["repeat"], "excluded": previous["excluded_servers"],
               "layout": servers.Layout(previous["layout"]["server_cores"], previous["layout"]["client_cores"],
                                        previous.get("workload", "raw")),
               "client_cores": previous["layout"]["client_cores"], "load_start": previous["load_average"]["start"],
               "workload": previous.get("workload", "raw"),
               "load_end": previous["load_average"]["end"], "wall_seconds": previous["wall_seconds"]}
    write_results(out, runs, context)
    print(f"rewrote {out / 'summary.md'}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point."""
    args = parse_args(argv)
    settings = settings_from(args)
    os.sched_setaffinity(0, args.client_core_set)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    binaries = servers.Binaries(repo=REPO, ringcast=args.ringcast_bin or target_dir / "release" / "ringcast")
    bench_bin = args.bench_bin or target_dir / "release" / "ringcast-bench"
    command = "bench/compare/run.sh " + shlex.join(argv)
    out = args.results_root / args.name
    plan = [(rep, scenario, name) for rep in range(1, args.repeat + 1)
            for scenario in args.scenario_list for name in args.server_list]
    estimate_s = sum(scenarios.expected_run_s(scenario, settings) + 4 for _, scenario, _ in plan)
    if args.dry_run:
        print(f"{len(plan)} runs, roughly {estimate_s / 60:.0f} min; results in {out}")
        for scenario in args.scenario_list:
            protocol = "pusher" if args.workload == "pusher" else "raw"
            print(f"  {scenario}: ringcast-bench {shlex.join(scenarios.harness_args(scenario, settings, protocol))} "
                  f"--host 127.0.0.1:<port> --server-pid <pid> --client-cores {args.client_cores} --output-dir ...")
        for name in args.server_list:
            argv_, env = servers.start_command(
                name, servers.Layout(args.server_cores, args.client_cores, args.workload), binaries)
            print(f"  {name}: {' '.join(f'{key}={value}' for key, value in env.items())} {shlex.join(argv_)}")
        return 0
    if args.resummarize:
        return resummarize(out)
    if out.exists():
        if not ((out / "runs").is_dir() or (out / "summary.json").is_file() or not any(out.iterdir())):
            print(f"error: {out} exists and is not a comparison result; pick another --name", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log.open(out / "driver.log")
    log(f"{command}  ->  {out}")
    if not args.skip_build:
        build(target_dir)
    for path in (binaries.ringcast, bench_bin):
        if not path.is_file():
            log(f"error: {path} missing (build it, or pass --ringcast-bin / --bench-bin)")
            return 2
    excluded = {} if args.skip_install else install(
        [n for n in args.server_list if not servers.is_ringcast(n)], out / "install")
    names = [name for name in args.server_list if name not in excluded]
    hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    most = max(settings.connections, settings.throughput_connections)
    if most + 256 > hard_limit:
        log(f"error: {most} connections need ~{most + 256} fds; the hard limit is {hard_limit}")
        return 2
    busy = [name for name in names if servers.PORTS[name] in procfs.listening_ports()]
    if busy:
        log(f"error: ports in use before starting: {', '.join(f'{n}:{servers.PORTS[n]}' for n in busy)}")
        return 2
    layout = servers.Layout(args.server_cores, args.client_cores, args.workload)
    context = {"workload": args.workload, "settings": settings, "out": out, "layout": layout, "binaries": binaries, "bench_bin": bench_bin,
               "client_cores": args.client_cores, "servers": names, "scenarios": args.scenario_list,
               "repeat": args.repeat, "excluded": excluded, "command": command, "started": time.monotonic(),
               "load_start": environment.load_average()}
    (out / "env.txt").write_text(environment.environment_text(
        REPO, {"ringcast": binaries.ringcast, "ringcast-bench": bench_bin},
        f"servers on cores {args.server_cores} (taskset), harness and driver on cores {args.client_cores}, "
        f"{settings.client_threads} client thread(s)", [command]))
    plan = [step for step in plan if step[2] in names]
    pause_s = args.pause if args.pause is not None else (1.0 if args.quick else 3.0)
    log(f"{len(plan)} runs ({', '.join(names)} x {', '.join(args.scenario_list)} x {args.repeat}), roughly {estimate_s / 60:.0f} min")
    runs = []
    for index, (rep, scenario, name) in enumerate(plan, 1):
        run = run_one(rep, scenario, name, context)
        runs.append(run)
        headline = ", ".join(f"{key} {value:.4g}" for key, value in run["metrics"].items() if value is not None)
        log(f"[{index}/{len(plan)}] rep {rep} {scenario:<10} {name:<17} {run['seconds']:5.1f} s  "
            f"{headline or 'no result'}  ({len(run['problems'])} problem(s))")
        time.sleep(pause_s)
    write_results(out, runs, context)
    log(f"done: {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
