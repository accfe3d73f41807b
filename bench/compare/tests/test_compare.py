"""Unit tests of the comparison driver's pure parts (no server, no harness):
python3 -m unittest discover -s bench/compare/tests
"""

from __future__ import annotations

import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aggregate  # noqa: E402
import compare  # noqa: E402
import explain  # noqa: E402
import plot  # noqa: E402
import procfs  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402

HGRM = """       Value     Percentile TotalCount 1/(1-Percentile)

     431.615 0.000000000000          1           1.00
    1784.831 0.500000000000       5000           2.00
    9273.343 0.990000000000       9900         100.00
    9674.751 1.000000000000      10000
#[Mean    =     2860.808, StdDeviation   =     2180.841]
#[Max     =     9674.751, Total count    =        10000]
"""


class ProcfsTest(unittest.TestCase):
    def test_cpu_lists_expand_like_taskset(self):
        self.assertEqual(procfs.expand_cpu_list("0"), [0])
        self.assertEqual(procfs.expand_cpu_list("0-1"), [0, 1])
        self.assertEqual(procfs.expand_cpu_list("0,2-3"), [0, 2, 3])
        for bad in ("", "3-1", "a"):
            with self.assertRaises(ValueError):
                procfs.expand_cpu_list(bad)

    def test_listening_ports_come_from_state_0a_only(self):
        text = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
                "   0: 0100007F:46A4 00000000:0000 0A 00000000:00000000\n"
                "   1: 0100007F:46A5 0100007F:9C40 01 00000000:00000000\n")
        self.assertEqual(procfs.parse_listening_ports(text), {0x46A4})

    def test_own_tree_is_read(self):
        reading = procfs.read_tree(os.getpid())
        self.assertGreater(reading.pss_bytes, 0)
        self.assertGreater(reading.rss_bytes, 0)
        self.assertEqual(reading.processes[0].pid, os.getpid())


class PlotTest(unittest.TestCase):
    def test_hgrm_rows_parse_and_skip_comments(self):
        rows = plot.parse_hgrm(HGRM)
        self.assertEqual(len(rows), 4)
        self.assertEqual(rows[-1].total_count, 10000)
        self.assertAlmostEqual(rows[1].quantile, 0.5)

    def test_percentile_axis_follows_hdrhistogram(self):
        self.assertEqual([plot.percentile_label(d) for d in range(5)], ["0%", "90%", "99%", "99.9%", "99.99%"])
        self.assertAlmostEqual(plot.x_decades(0.99, 4), 2.0)
        self.assertEqual(plot.x_decades(1.0, 4), 4.0)

    def test_overlay_has_one_line_per_run_and_a_legend_per_server(self):
        rows = plot.parse_hgrm(HGRM)
        svg = plot.render_overlay("t <x>", [("ringcast", [rows, rows]), ("nchan", [rows])])
        self.assertEqual(svg.count("<polyline"), 3)
        self.assertIn("ringcast (2 runs)", svg)
        self.assertIn("t &lt;x&gt;", svg)


class ScenarioTest(unittest.TestCase):
    def test_quick_is_small_and_every_scenario_has_arguments(self):
        quick = scenarios.quick_settings(1)
        self.assertEqual(quick.connections, 500)
        for scenario in scenarios.SCENARIO_NAMES:
            args = scenarios.harness_args(scenario, quick)
            self.assertEqual(args[0], scenario)
            self.assertNotIn("--host", args)
            self.assertGreater(scenarios.run_time_limit_s(scenario, quick), 60)

    def test_throughput_uses_its_own_subscriber_count_and_budget(self):
        full = scenarios.full_settings(1)
        args = scenarios.harness_args("throughput", full)
        self.assertEqual(args[args.index("--connections") + 1], "4000")
        self.assertEqual(args[args.index("--p99-budget-ms") + 1], "250")
        fanout = scenarios.harness_args("fanout", full)
        self.assertEqual(fanout[fanout.index("--connections") + 1], "10000")

    def test_ringcast_is_pinned_with_taskset_and_its_own_cores_flag(self):
        layout = servers.Layout(server_cores="0-1", client_cores="2")
        argv, env = servers.start_command("ringcast", layout, servers.Binaries(Path("/r"), Path("/r/ringcast")))
        self.assertEqual(argv[:3], ["taskset", "-c", "0-1"])
        self.assertIn("--cores", argv)
        self.assertEqual(argv[argv.index("--cores") + 1], "0,1")
        self.assertEqual(argv[argv.index("--shards") + 1], "2")
        argv, env = servers.start_command("nchan", layout, servers.Binaries(Path("/r"), Path("/r/ringcast")))
        self.assertEqual(env, {"PORT": "18101", "CORES": "0-1"})


    def test_pusher_peers_are_known_but_not_in_the_default_list(self):
        self.assertEqual(servers.PORTS["soketi"], 18107)
        self.assertEqual(servers.PORTS["sockudo"], 18108)
        for name in servers.PUSHER_SERVER_NAMES:
            self.assertNotIn(name, servers.SERVER_NAMES)
        layout = servers.Layout(server_cores="0", client_cores="1")
        argv, env = servers.start_command("soketi", layout, servers.Binaries(Path("/r"), Path("/r/ringcast")))
        self.assertEqual(argv, ["/r/bench/peers/soketi/start.sh"])
        self.assertEqual(env, {"PORT": "18107", "CORES": "0"})

    def test_pusher_workload_starts_ringcast_with_the_app_and_asks_the_harness_for_pusher(self):
        layout = servers.Layout(server_cores="0", client_cores="1", workload="pusher")
        binaries = servers.Binaries(Path("/r"), Path("/r/ringcast"))
        for name in ("ringcast", servers.RINGCAST_RAW):
            argv, _ = servers.start_command(name, layout, binaries)
            self.assertEqual(argv[argv.index("--app-key") + 1], "app-key")
        argv, _ = servers.start_command("ringcast", servers.Layout("0", "1"), binaries)
        self.assertNotIn("--app-key", argv)
        self.assertTrue(servers.speaks_pusher("ringcast", "pusher"))
        self.assertFalse(servers.speaks_pusher(servers.RINGCAST_RAW, "pusher"))
        self.assertTrue(servers.speaks_pusher("soketi", "raw"))
        self.assertEqual(servers.publish_port("ringcast", pusher=True), 18100)
        self.assertEqual(servers.publish_port(servers.RINGCAST_RAW), 18200)
        settings = scenarios.full_settings(1)
        self.assertIn("--protocol", scenarios.harness_args("throughput", settings, "pusher"))
        self.assertNotIn("--protocol", scenarios.harness_args("throughput", settings))
        args = compare.parse_args(["--workload", "pusher"])
        self.assertEqual((args.server_list, args.scenario_list, args.repeat),
                         (["ringcast", "soketi", "sockudo"], ["idle", "throughput"], 2))

    def test_pusher_signing_matches_the_docs_worked_example(self):
        # Pusher docs, rest-api "Worked authentication example".
        app = servers.PusherApp(app_id="3", key="278d425bdf160c739803", secret="7ad3773142a6692b25b8")
        body = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
        path = servers.pusher_signed_path(app, "POST", "/apps/3/events", body, 1353088179)
        self.assertEqual(path, "/apps/3/events?auth_key=278d425bdf160c739803&auth_timestamp=1353088179"
                               "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
                               "&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")


def run(server, rep, metrics, ok=True, scenario="fanout"):
    return {"server": server, "rep": rep, "scenario": scenario, "ok": ok, "metrics": metrics, "problems": [], "notes": []}


class AggregateTest(unittest.TestCase):
    def test_fanout_metrics_come_from_the_subscribers(self):
        summary = {"delivery": {"latency": {"count": 10, "p50_us": 1000.0, "p99_us": 2000.0, "p99_9_us": 3000.0,
                                            "max_us": 4000.0},
                                "last_receiver": {"count": 0, "p99_us": 0.0},
                                "deliveries_per_s": 5000.0, "loss": {"lost": 3}}}
        metrics = aggregate.metrics_from_summary("fanout", summary)
        self.assertEqual(metrics["latency_p99_ms"], 2.0)
        self.assertIsNone(metrics["last_receiver_p99_ms"])
        self.assertEqual(metrics["lost"], 3)

    def test_throughput_takes_the_last_sustained_step(self):
        summary = {"throughput": {"max_sustained_deliveries_per_s": 9.0, "steps": [
            {"sustained": True, "delivery": {"latency": {"p99_us": 1000.0}}},
            {"sustained": True, "delivery": {"latency": {"p99_us": 2000.0}}},
            {"sustained": False, "delivery": {"latency": {"p99_us": 90000.0}}}]}}
        self.assertEqual(aggregate.metrics_from_summary("throughput", summary)["p99_at_max_ms"], 2.0)

    def test_median_range_and_ratio_skip_failed_runs(self):
        runs = [run("ringcast", 1, {"latency_p99_ms": 1.0}), run("ringcast", 2, {"latency_p99_ms": 3.0}),
                run("nchan", 1, {"latency_p99_ms": 4.0}), run("nchan", 2, {"latency_p99_ms": 99.0}, ok=False)]
        result = aggregate.aggregate(runs, ["ringcast", "nchan"], ["fanout"])["fanout"]
        self.assertEqual(result["ringcast"]["latency_p99_ms"]["median"], 2.0)
        self.assertEqual(result["nchan"]["latency_p99_ms"]["values"], [4.0])
        self.assertEqual(result["nchan"]["latency_p99_ms"]["ratio_to_ringcast"], 2.0)
        self.assertIsNone(result["nchan"]["latency_p50_ms"])
        table = "\n".join(aggregate.scenario_tables("fanout", result, ["ringcast", "nchan"]))
        self.assertIn("4 ms (1/2 runs)", table)
        self.assertIn("2×", table)

    def test_pusher_targets_are_ratios_ringcast_over_peer_with_ranges(self):
        key = "max_sustained_deliveries_per_s"
        runs = [run("ringcast", 1, {key: 2.0e6}, scenario="throughput"),
                run("ringcast", 2, {key: 1.0e6}, scenario="throughput"),
                run("soketi", 1, {key: 5.0e4}, scenario="throughput"),
                run("soketi", 2, {key: 1.0e5}, scenario="throughput")]
        result = aggregate.aggregate(runs, ["ringcast", "soketi"], ["throughput"])["throughput"]
        text = "\n".join(aggregate.pusher_target_lines("throughput", result, ["ringcast", "soketi"]))
        self.assertIn("ringcast / soketi: 20× [10–40]", text)
        self.assertIn("target >= 20×: met", text)
        idle = [run("ringcast", 1, {"tree_pss_per_connection_bytes": 2000.0}, scenario="idle")]
        result = aggregate.aggregate(idle, ["ringcast"], ["idle"])["idle"]
        self.assertIn("NOT met", "\n".join(aggregate.pusher_target_lines("idle", result, ["ringcast"])))

    def test_hold_memory_is_the_median_inside_the_window(self):
        readings = [procfs.TreeReading(t, pss, 0, 0.0, []) for t, pss in ((0.5, 1), (1.5, 10), (2.0, 30), (2.5, 20), (9, 99))]
        self.assertEqual(compare.hold_memory(readings, 1.0, 3.0), (20, 3))
        self.assertEqual(compare.hold_memory(readings, 10.0, 11.0), (None, 0))


class ExplainTest(unittest.TestCase):
    def test_publish_failures_are_never_explained_away(self):
        # The harness accepts every 2xx and sends text/plain, so a failed publish is a real one.
        throughput = {"steps": [{"step": 1, "sustained": False, "failure": "60 publishes failed"}]}
        self.assertEqual(explain.notes_for("throughput", "gorilla", 202, ["60 publishes failed"], throughput), [])
        self.assertEqual(explain.notes_for("fanout", "ringcast", 200, [], None), [])

    def test_pushpin_upgrade_refusals_are_explained(self):
        notes = explain.notes_for("idle", "pushpin", 200, ["handshake failed: server answered 502 instead of 101"], None)
        self.assertEqual(len(notes), 1)


if __name__ == "__main__":
    unittest.main()
