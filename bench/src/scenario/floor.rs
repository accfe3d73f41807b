//! `floor`: the same clients against the built-in send loop (`crate::floor`), reporting frames/s,
//! the time for one round to reach every socket, and the client-side latency and accounting, in
//! the same shape as a server run so `--compare-floor` can divide one by the other.

use std::time::{Duration, Instant};

use super::{Setup, ramp, record_final_connections, record_ramp, wait_for_deliveries};
use crate::cli::FloorArgs;
use crate::client::ClientPool;
use crate::error::{BenchError, BenchResult};
use crate::floor::{FLOOR_EPOCH, FloorConfig, FloorServer};
use crate::histogram::summarize;
use crate::payload;
use crate::report::{FloorSummary, delivery_problems, delivery_summary};

/// Frames per send() at most.
const FRAMES_PER_SEND_MAX: usize = 1024;

/// Runs the scenario.
pub fn run(args: &FloorArgs) -> BenchResult<()> {
    payload::validate_size(args.payload_bytes, args.payload_kind).map_err(BenchError::Config)?;
    if args.frames_per_send == 0 || args.frames_per_send > FRAMES_PER_SEND_MAX {
        return Err(BenchError::Config(format!(
            "--frames-per-send must be in 1..={FRAMES_PER_SEND_MAX}"
        )));
    }
    if args.common.spawn.is_some() || args.common.server_pid.is_some() {
        return Err(BenchError::Config(
            "floor runs its own server loop: --spawn and --server-pid do not apply".into(),
        ));
    }
    let config = serde_json::to_value(args).expect("options serialize");
    let mut setup = Setup::new("floor", &args.common, config, "127.0.0.1:0")?;
    let accept_timeout =
        Duration::from_secs_f64(args.common.connections as f64 / args.common.ramp_rate * 2.0)
            + Duration::from_secs(30);
    let floor = FloorServer::start(
        setup.server_addr,
        FloorConfig {
            connections: args.common.connections,
            frames_per_send: args.frames_per_send,
            sends_per_s: args.rate,
            duration: args.common.duration,
            payload_bytes: args.payload_bytes,
            payload_kind: args.payload_kind,
            cores: setup.server_cores.clone(),
            accept_timeout,
        },
    )?;
    setup.server_addr = floor.addr;
    setup.host_header = floor.addr.to_string();
    let channel_names = setup.channel_names(1)?;
    let pool = ClientPool::start(setup.client_config(
        &channel_names,
        1,
        args.payload_bytes,
        args.payload_kind,
    ))?;
    let outcome = ramp(&pool, &setup)?;
    let accepted_deadline = Instant::now() + Duration::from_secs(10);
    // Bounded: the floor has accepted whatever the clients opened, or 10 s passed.
    while floor.accepted() < outcome.open && Instant::now() < accepted_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ramp_report = pool.snapshot(vec![0], FLOOR_EPOCH)?;
    record_ramp(
        &mut setup.summary,
        args.common.connections,
        &outcome,
        &ramp_report,
    );
    let result = floor.run()?;
    wait_for_deliveries(
        &pool,
        result.frames_per_connection * outcome.open,
        args.common.drain,
    );
    let report = pool.snapshot(vec![result.frames_per_connection], FLOOR_EPOCH + 1)?;
    floor.finish()?;
    let frames_total = result.frames_per_connection * result.accepted;
    let delivery = delivery_summary(&report, None, result.elapsed_s, Some(result.cpu_seconds));
    setup
        .summary
        .problems
        .extend(delivery_problems(&delivery, ""));
    if result.send_errors > 0 {
        setup.summary.problems.push(format!(
            "{} floor sockets failed: {}",
            result.send_errors,
            result.first_error.as_deref().unwrap_or("")
        ));
    }
    setup.summary.floor = Some(FloorSummary {
        frames_per_send: args.frames_per_send,
        connections: result.accepted,
        frames_per_connection: result.frames_per_connection,
        batches: result.batches,
        elapsed_s: result.elapsed_s,
        frames_per_s: frames_total as f64 / result.elapsed_s.max(1e-9),
        sends_per_s: (result.batches * result.accepted) as f64 / result.elapsed_s.max(1e-9),
        batch_time: summarize(&result.batch_ns),
        cpu_seconds: result.cpu_seconds,
        frames_per_cpu_second: if result.cpu_seconds > 0.0 {
            frames_total as f64 / result.cpu_seconds
        } else {
            0.0
        },
        send_errors: result.send_errors,
        handshake_errors: result.handshake_errors,
    });
    setup.summary.delivery = Some(delivery);
    record_final_connections(&mut setup.summary, &report);
    setup.output.write_hgrm("latency", &report.latency_ns)?;
    setup
        .output
        .write_hgrm("last_receiver", &report.last_receiver_ns)?;
    setup.output.write_hgrm("batch", &result.batch_ns)?;
    let title = format!(
        "floor: {} sockets, {} frame(s) per send",
        result.accepted, args.frames_per_send
    );
    setup.output.write_plot(
        &title,
        &[
            ("publish -> receive", &report.latency_ns),
            ("publish -> last receiver", &report.last_receiver_ns),
            ("batch to all sockets", &result.batch_ns),
        ],
    )?;
    pool.close_all()?;
    pool.stop()?;
    setup.finish()
}
