//! End-to-end runs of the `ringcast-bench` binary: the floor loop, and every scenario against
//! the small tungstenite broadcast server in `common`. Each run is a second or two with tens of
//! connections; the assertions check the accounting, not the speed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A fresh output directory under the system temp dir.
fn output_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ringcast-bench-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the binary and returns the parsed summary.json.
fn run(args: &[&str], output: &Path) -> Value {
    let result = Command::new(env!("CARGO_BIN_EXE_ringcast-bench"))
        .args(args)
        .args(["--settle", "0s", "--output-dir"])
        .arg(output)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "{args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("== ringcast-bench"),
        "human summary missing:\n{stdout}"
    );
    let text = std::fs::read_to_string(output.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json parses")
}

/// Asserts the standard output files exist.
fn assert_files(output: &Path, names: &[&str]) {
    for name in names {
        assert!(
            output.join(name).is_file(),
            "{name} missing in {}",
            output.display()
        );
    }
}

/// Asserts a clean delivery: everything expected arrived exactly once and in order.
fn assert_clean_delivery(summary: &Value) -> u64 {
    let delivery = &summary["delivery"];
    let loss = &delivery["loss"];
    let expected = loss["expected_deliveries"].as_u64().unwrap();
    assert!(expected > 0, "nothing was expected: {summary:#}");
    assert_eq!(loss["lost"], 0, "{summary:#}");
    assert_eq!(loss["delivered_distinct"].as_u64().unwrap(), expected);
    assert_eq!(delivery["sequence"]["duplicates"], 0);
    assert_eq!(delivery["sequence"]["reordered"], 0);
    assert_eq!(delivery["frames"]["wrong_opcode"], 0);
    assert_eq!(delivery["frames"]["wrong_size"], 0);
    assert_eq!(delivery["latency"]["count"].as_u64().unwrap(), expected);
    assert_eq!(
        summary["problems"].as_array().unwrap().len(),
        0,
        "{:#}",
        summary["problems"]
    );
    expected
}

#[test]
fn floor_one_frame_per_send_delivers_every_frame() {
    let output = output_dir("floor1");
    let summary = run(
        &[
            "floor",
            "--connections",
            "50",
            "--duration",
            "1s",
            "--drain",
            "3s",
        ],
        &output,
    );
    let expected = assert_clean_delivery(&summary);
    let floor = &summary["floor"];
    assert_eq!(floor["connections"], 50);
    assert_eq!(
        expected,
        floor["frames_per_connection"].as_u64().unwrap() * 50
    );
    assert!(floor["frames_per_s"].as_f64().unwrap() > 0.0);
    assert!(floor["batch_time"]["count"].as_u64().unwrap() > 0);
    assert_eq!(
        summary["delivery"]["broadcasts_complete"],
        floor["frames_per_connection"]
    );
    assert_files(
        &output,
        &[
            "summary.json",
            "env.txt",
            "latency_us.hgrm",
            "last_receiver_us.hgrm",
            "batch_us.hgrm",
            "latency.svg",
        ],
    );
    let hgrm = std::fs::read_to_string(output.join("latency_us.hgrm")).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    let env = std::fs::read_to_string(output.join("env.txt")).unwrap();
    assert!(env.contains("command_line:") && env.contains("kernel:"));
}

#[test]
fn floor_eight_frames_per_send_and_binary_payloads() {
    let output = output_dir("floor8");
    let args = [
        "floor",
        "--connections",
        "50",
        "--duration",
        "1s",
        "--drain",
        "3s",
        "--frames-per-send",
        "8",
        "--payload-kind",
        "binary",
        "--payload-bytes",
        "100",
        "--rate",
        "200",
    ];
    let summary = run(&args, &output);
    assert_clean_delivery(&summary);
    assert_eq!(summary["floor"]["frames_per_send"], 8);
    assert_eq!(
        summary["floor"]["frames_per_connection"].as_u64().unwrap() % 8,
        0
    );
}

#[test]
fn fanout_against_a_broadcast_server_answers_pings_and_accounts_everything() {
    let server = common::start();
    let output = output_dir("fanout");
    let host = server.addr.to_string();
    let floor_output = output_dir("fanout-floor");
    run(
        &[
            "floor",
            "--connections",
            "20",
            "--duration",
            "0.5s",
            "--drain",
            "2s",
        ],
        &floor_output,
    );
    let args = [
        "fanout",
        "--host",
        &host,
        "--connections",
        "50",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--drain",
        "3s",
        "--publishers",
        "2",
        "--compare-floor",
        floor_output.to_str().unwrap(),
    ];
    let summary = run(&args, &output);
    let expected = assert_clean_delivery(&summary);
    let published = summary["delivery"]["publish"]["published"]
        .as_u64()
        .unwrap();
    assert_eq!(expected, published * 50);
    assert_eq!(
        summary["delivery"]["broadcasts_complete"].as_u64().unwrap(),
        published
    );
    assert_eq!(
        summary["delivery"]["publish"]["ok"].as_u64().unwrap(),
        published
    );
    assert_eq!(summary["connections"]["open_after_ramp"], 50);
    assert_eq!(
        server.pongs.load(std::sync::atomic::Ordering::Relaxed),
        50,
        "every ping answered with a masked pong"
    );
    assert_eq!(summary["comparisons"][0]["label"], "floor");
    assert!(
        summary["comparisons"][0]["ratio_deliveries_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_files(
        &output,
        &[
            "latency_us.hgrm",
            "last_receiver_us.hgrm",
            "latency.svg",
            "env.txt",
        ],
    );
}

#[test]
fn channels_over_redis_with_binary_payloads() {
    let server = common::start();
    let output = output_dir("channels");
    let host = server.addr.to_string();
    let redis = format!("redis://{host}");
    let args = [
        "channels",
        "--host",
        &host,
        "--connections",
        "40",
        "--channels",
        "5",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--drain",
        "3s",
        "--publish",
        "redis",
        "--redis-url",
        &redis,
        "--payload-kind",
        "binary",
        "--payload-bytes",
        "100",
        "--client-threads",
        "2",
    ];
    let summary = run(&args, &output);
    let expected = assert_clean_delivery(&summary);
    let published = summary["delivery"]["publish"]["published"]
        .as_u64()
        .unwrap();
    assert_eq!(
        expected,
        published * 8,
        "each publish reaches the 8 subscribers of its channel"
    );
}

#[test]
fn loss_is_reported_never_ignored() {
    let server = common::start();
    let output = output_dir("lossy");
    let host = server.addr.to_string();
    let args = [
        "fanout",
        "--host",
        &host,
        "--connections",
        "10",
        "--rate",
        "100",
        "--duration",
        "0.5s",
        "--drain",
        "1s",
        "--channel-prefix",
        "lossy",
    ];
    let summary = run(&args, &output);
    let loss = &summary["delivery"]["loss"];
    let published = summary["delivery"]["publish"]["published"]
        .as_u64()
        .unwrap();
    assert_eq!(
        loss["lost"].as_u64().unwrap(),
        published / 5 * 10,
        "{summary:#}"
    );
    assert!(
        summary["delivery"]["sequence"]["gap_events"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        summary["delivery"]["broadcasts_incomplete"]
            .as_u64()
            .unwrap()
            > 0
    );
    let problems = summary["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|problem| problem.as_str().unwrap().contains("lost")),
        "{problems:?}"
    );
}

#[test]
fn idle_churn_and_throughput_run_against_a_server_pid() {
    let server = common::start();
    let host = server.addr.to_string();
    let pid = std::process::id().to_string();

    let output = output_dir("idle");
    let summary = run(
        &[
            "idle",
            "--host",
            &host,
            "--connections",
            "30",
            "--duration",
            "0.5s",
            "--server-pid",
            &pid,
        ],
        &output,
    );
    assert_eq!(summary["connections"]["open_after_ramp"], 30);
    assert!(summary["memory"]["server_rss_per_connection_bytes"].is_number());
    assert!(summary["memory"]["kernel_tcp_mem_per_connection_bytes"].is_number());

    let output = output_dir("churn");
    let args = [
        "churn",
        "--host",
        &host,
        "--connections",
        "30",
        "--churn-rate",
        "40",
        "--cycles",
        "20",
        "--rate",
        "50",
        "--duration",
        "0.5s",
        "--drain",
        "2s",
        "--server-pid",
        &pid,
    ];
    let summary = run(&args, &output);
    assert_eq!(summary["churn"]["cycles_completed"], 20);
    assert_eq!(summary["connections"]["counters"]["closed_by_churn"], 20);
    assert!(summary["churn"]["fd_delta_after_close"].is_number());
    assert_eq!(summary["delivery"]["loss"]["lost"], 0, "{summary:#}");

    let output = output_dir("throughput");
    let args = [
        "throughput",
        "--host",
        &host,
        "--connections",
        "20",
        "--rate",
        "50",
        "--rate-factor",
        "2",
        "--steps-max",
        "2",
        "--duration",
        "0.5s",
        "--drain",
        "2s",
        "--server-pid",
        &pid,
    ];
    let summary = run(&args, &output);
    let steps = summary["throughput"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert!(
        steps.iter().all(|step| step["sustained"] == true),
        "{steps:#?}"
    );
    assert!(
        summary["throughput"]["max_sustained_deliveries_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(summary["throughput"]["max_sustained_deliveries_per_server_core"].is_number());
}
