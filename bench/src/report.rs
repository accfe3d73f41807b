//! Results: the `summary.json` model, the human summary, and the files of a run.
//!
//! Every section is optional because scenarios measure different things; `problems` lists, in
//! words, everything that makes a number suspect (loss, duplicates, reordering, failed
//! connections, publisher backlog, server errors), so nothing is ignored silently.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::EpochReport;
use crate::client::accounting::{FrameCounters, LossCounters};
use crate::client::event_loop::ConnectionCounters;
use crate::error::{BenchError, BenchResult};
use crate::histogram::{LatencySummary, NS_PER_US, percentile_rows, summarize, write_hgrm};
use crate::plot::{Series, render_svg};
use crate::publisher::PublishReport;
use crate::sequence::SequenceCounters;
use crate::server::{ProcSample, SockStat};

/// Everything a run reports (`summary.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Unix time the run started.
    pub started_unix_s: u64,
    /// The exact command line.
    pub command_line: String,
    /// Every option, as parsed.
    pub config: serde_json::Value,
    /// The server measured.
    pub server: Option<ServerSummary>,
    /// Connection ramp and life cycle.
    pub connections: Option<ConnectionSummary>,
    /// Server and kernel memory per connection.
    pub memory: Option<MemorySummary>,
    /// Message delivery (fanout, channels, floor; the best step of throughput).
    pub delivery: Option<DeliverySummary>,
    /// Throughput steps.
    pub throughput: Option<ThroughputSummary>,
    /// Churn results.
    pub churn: Option<ChurnSummary>,
    /// Floor loop results.
    pub floor: Option<FloorSummary>,
    /// Ratios against floor runs.
    pub comparisons: Vec<Comparison>,
    /// Everything that makes the numbers suspect, in words.
    pub problems: Vec<String>,
}

/// The server process.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ServerSummary {
    /// Its pid.
    pub pid: Option<i32>,
    /// Started by the harness.
    pub spawned: bool,
    /// How it ended (spawned servers).
    pub exit: Option<String>,
    /// Its log file (spawned servers).
    pub log: Option<PathBuf>,
}

/// Connection ramp.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConnectionSummary {
    /// Connections asked for.
    pub requested: u64,
    /// Open when the ramp ended.
    pub open_after_ramp: u64,
    /// Given up during the ramp.
    pub failed: u64,
    /// Seconds the ramp took.
    pub ramp_s: f64,
    /// Achieved connects per second.
    pub ramp_rate_per_s: f64,
    /// Life-cycle counters at the end.
    pub counters: ConnectionCounters,
    /// First connection error seen.
    pub first_error: Option<String>,
}

/// Memory per connection.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MemorySummary {
    /// Server before the ramp.
    pub server_before: Option<ProcSample>,
    /// Server after the ramp and the settle pause.
    pub server_after: Option<ProcSample>,
    /// `(after - before) / open connections` of VmRSS.
    pub server_rss_per_connection_bytes: Option<f64>,
    /// Kernel TCP accounting before.
    pub sockstat_before: Option<SockStat>,
    /// Kernel TCP accounting after.
    pub sockstat_after: Option<SockStat>,
    /// `(after - before) / open connections` of TCP buffer memory.
    pub kernel_tcp_mem_per_connection_bytes: Option<f64>,
    /// How to read the kernel number.
    pub note: String,
}

/// Delivery of one measurement.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeliverySummary {
    /// What was published (absent for the floor).
    pub publish: Option<PublishSummary>,
    /// Seconds of the send window.
    pub send_window_s: f64,
    /// Distinct deliveries to accounted subscribers.
    pub delivered: u64,
    /// `delivered / send_window_s`.
    pub deliveries_per_s: f64,
    /// Publish->receive latency.
    pub latency: LatencySummary,
    /// Publish->last-receiver latency per complete broadcast.
    pub last_receiver: LatencySummary,
    /// Broadcasts every subscriber got.
    pub broadcasts_complete: u64,
    /// Broadcasts some subscriber missed.
    pub broadcasts_incomplete: u64,
    /// Broadcasts over the tracking bound.
    pub broadcasts_untracked: u64,
    /// Loss.
    pub loss: LossCounters,
    /// Sequence anomalies.
    pub sequence: SequenceCounters,
    /// Frame counters.
    pub frames: FrameCounters,
    /// Server CPU seconds during the window and drain.
    pub server_cpu_seconds: Option<f64>,
    /// `delivered / server_cpu_seconds`: deliveries per second per fully used server core.
    pub deliveries_per_server_core: Option<f64>,
}

/// The publisher side of a measurement.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PublishSummary {
    /// Target rate.
    pub rate_target_per_s: f64,
    /// Achieved rate.
    pub rate_achieved_per_s: f64,
    /// Messages written.
    pub published: u64,
    /// Largest backlog behind schedule.
    pub backlog_max: u64,
    /// 200 / Redis OK answers.
    pub ok: u64,
    /// 413 answers.
    pub too_large: u64,
    /// 503 answers.
    pub overloaded: u64,
    /// Other answers.
    pub other: u64,
    /// Connection errors and unanswered requests.
    pub connection_errors: u64,
    /// Idle publisher connections the server closed (replaced before use).
    pub idle_reconnects: u64,
    /// Requests sent again after their idle connection was closed under them.
    pub stale_retries: u64,
    /// Connections replaced after an answer with `Connection: close` (not errors).
    #[serde(default)]
    pub closed_after_answer: u64,
    /// Publish round trip.
    pub round_trip: LatencySummary,
}

impl From<&PublishReport> for PublishSummary {
    fn from(report: &PublishReport) -> Self {
        PublishSummary {
            rate_target_per_s: report.rate_target_per_s,
            rate_achieved_per_s: report.rate_achieved_per_s,
            published: report.published,
            backlog_max: report.backlog_max,
            ok: report.responses.ok,
            too_large: report.responses.too_large,
            overloaded: report.responses.overloaded,
            other: report.responses.other,
            connection_errors: report.responses.connection_errors + report.responses.unanswered,
            idle_reconnects: report.responses.idle_reconnects,
            stale_retries: report.responses.stale_retries,
            closed_after_answer: report.responses.closed_after_answer,
            round_trip: report.round_trip,
        }
    }
}

/// One throughput step.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step number from 1.
    pub step: u32,
    /// The step's delivery results.
    pub delivery: DeliverySummary,
    /// Passed the loss and latency budgets.
    pub sustained: bool,
    /// Why not.
    pub failure: Option<String>,
}

/// Throughput search.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ThroughputSummary {
    /// Latency budget (p99).
    pub p99_budget_ms: f64,
    /// Every step.
    pub steps: Vec<StepSummary>,
    /// Highest sustained deliveries per second.
    pub max_sustained_deliveries_per_s: Option<f64>,
    /// Deliveries per server CPU second at that step.
    pub max_sustained_deliveries_per_server_core: Option<f64>,
    /// Publish rate of that step.
    pub max_sustained_rate_per_s: Option<f64>,
    /// Why the search stopped.
    pub stop_reason: String,
}

/// Churn results.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChurnSummary {
    /// Cycles asked for.
    pub cycles_requested: u64,
    /// Cycles that reconnected.
    pub cycles_completed: u64,
    /// Seconds the churn took.
    pub churn_s: f64,
    /// Server before any connection.
    pub baseline: Option<ProcSample>,
    /// Server with the population open.
    pub after_ramp: Option<ProcSample>,
    /// Server after the churn, same population.
    pub after_churn: Option<ProcSample>,
    /// Server after every connection closed.
    pub after_close: Option<ProcSample>,
    /// `after_churn.fds - after_ramp.fds` (0 unless fds leak or connections were lost).
    pub fd_delta_after_churn: Option<i64>,
    /// `after_close.fds - baseline.fds` (0 when everything was released).
    pub fd_delta_after_close: Option<i64>,
    /// `after_churn.rss - after_ramp.rss`.
    pub rss_delta_after_churn_bytes: Option<i64>,
    /// `after_close.rss - baseline.rss`.
    pub rss_delta_after_close_bytes: Option<i64>,
    /// fds back to baseline after close.
    pub fds_returned_to_baseline: Option<bool>,
    /// RSS back within 1 MiB + 10% of the population's growth.
    pub rss_returned_to_baseline: Option<bool>,
}

/// Floor loop results.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FloorSummary {
    /// Frames per send() call.
    pub frames_per_send: usize,
    /// Sockets written.
    pub connections: u64,
    /// Frames written to each socket.
    pub frames_per_connection: u64,
    /// Batches (send() per socket).
    pub batches: u64,
    /// Seconds of the loop.
    pub elapsed_s: f64,
    /// Frames written per second over all sockets.
    pub frames_per_s: f64,
    /// send() calls per second.
    pub sends_per_s: f64,
    /// Time for one batch (one round when K = 1) to reach all sockets.
    pub batch_time: LatencySummary,
    /// CPU seconds of the loop thread.
    pub cpu_seconds: f64,
    /// Frames per CPU second of the loop thread.
    pub frames_per_cpu_second: f64,
    /// Sockets dropped after send errors.
    pub send_errors: u64,
    /// Upgrades that failed.
    pub handshake_errors: u64,
}

/// A ratio against a floor run.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Comparison {
    /// "floor" or "floor<K>".
    pub label: String,
    /// The floor's summary.json.
    pub path: PathBuf,
    /// The floor's deliveries per second.
    pub floor_deliveries_per_s: f64,
    /// This run's deliveries per second divided by the floor's.
    pub ratio_deliveries_per_s: Option<f64>,
    /// The floor's frames per CPU second of its loop.
    pub floor_deliveries_per_core: f64,
    /// This run's deliveries per server core divided by the floor's.
    pub ratio_per_core: Option<f64>,
}

/// Builds the delivery section from an epoch's merged report.
pub fn delivery_summary(
    report: &EpochReport,
    publish: Option<&PublishReport>,
    send_window_s: f64,
    server_cpu_seconds: Option<f64>,
) -> DeliverySummary {
    let delivered = report.loss.delivered_distinct;
    DeliverySummary {
        publish: publish.map(PublishSummary::from),
        send_window_s,
        delivered,
        deliveries_per_s: if send_window_s > 0.0 {
            delivered as f64 / send_window_s
        } else {
            0.0
        },
        latency: summarize(&report.latency_ns),
        last_receiver: summarize(&report.last_receiver_ns),
        broadcasts_complete: report.broadcasts_complete,
        broadcasts_incomplete: report.broadcasts_incomplete,
        broadcasts_untracked: report.broadcasts_untracked,
        loss: report.loss,
        sequence: report.sequence,
        frames: report.frames,
        server_cpu_seconds,
        deliveries_per_server_core: server_cpu_seconds
            .filter(|seconds| *seconds > 0.0)
            .map(|seconds| delivered as f64 / seconds),
    }
}

/// Lists what is wrong with a delivery, in words.
pub fn delivery_problems(delivery: &DeliverySummary, context: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |condition: bool, text: String| {
        if condition {
            problems.push(format!("{context}{text}"));
        }
    };
    let loss = &delivery.loss;
    note(
        loss.lost > 0,
        format!(
            "{} of {} expected deliveries lost ({} connections affected)",
            loss.lost, loss.expected_deliveries, loss.connections_with_loss
        ),
    );
    note(
        delivery.sequence.duplicates > 0,
        format!("{} duplicate messages", delivery.sequence.duplicates),
    );
    note(
        delivery.sequence.reordered > 0,
        format!("{} reordered messages", delivery.sequence.reordered),
    );
    note(
        delivery.sequence.beyond_window > 0,
        format!(
            "{} messages too late to classify (late or duplicate)",
            delivery.sequence.beyond_window
        ),
    );
    let frames = &delivery.frames;
    note(
        frames.wrong_size > 0,
        format!("{} payloads changed size", frames.wrong_size),
    );
    note(
        frames.wrong_opcode > 0,
        format!(
            "{} frames of the wrong type (text/binary)",
            frames.wrong_opcode
        ),
    );
    note(
        frames.decode_errors > 0,
        format!("{} payloads not ours", frames.decode_errors),
    );
    note(
        frames.stale_epoch > 0,
        format!("{} messages from an earlier step", frames.stale_epoch),
    );
    note(
        frames.wrong_channel > 0,
        format!("{} messages on the wrong channel", frames.wrong_channel),
    );
    note(
        frames.fragmented > 0,
        format!("{} fragmented frames", frames.fragmented),
    );
    note(
        loss.unexpected_extra > 0,
        format!(
            "{} more distinct messages than were sent",
            loss.unexpected_extra
        ),
    );
    if let Some(publish) = &delivery.publish {
        note(
            publish.overloaded > 0,
            format!("{} publishes answered 503", publish.overloaded),
        );
        note(
            publish.too_large > 0,
            format!("{} publishes answered 413", publish.too_large),
        );
        note(
            publish.other + publish.connection_errors > 0,
            format!(
                "{} publishes failed",
                publish.other + publish.connection_errors
            ),
        );
        let behind = publish.rate_target_per_s > 0.0
            && publish.rate_achieved_per_s < 0.95 * publish.rate_target_per_s;
        note(
            behind,
            format!(
                "publisher fell behind: {:.0}/s of {:.0}/s (backlog up to {})",
                publish.rate_achieved_per_s, publish.rate_target_per_s, publish.backlog_max
            ),
        );
    }
    problems
}

/// Lists connection problems.
pub fn connection_problems(connections: &ConnectionSummary) -> Vec<String> {
    let mut problems = Vec::new();
    if connections.open_after_ramp < connections.requested {
        problems.push(format!(
            "only {} of {} connections opened ({} failed; first error: {})",
            connections.open_after_ramp,
            connections.requested,
            connections.failed,
            connections.first_error.as_deref().unwrap_or("none")
        ));
    }
    let counters = &connections.counters;
    let lost = counters.closed_by_server_frame
        + counters.closed_by_server_eof
        + counters.socket_errors
        + counters.protocol_errors
        + counters.outbound_overflows;
    if lost > 0 {
        problems.push(format!(
            "{lost} open connections ended without us asking (close frame {}, eof {}, socket {}, protocol {}, pong overflow {})",
            counters.closed_by_server_frame, counters.closed_by_server_eof, counters.socket_errors, counters.protocol_errors, counters.outbound_overflows
        ));
    }
    problems
}

/// The run's output directory.
pub struct OutputDir {
    /// Its path.
    pub path: PathBuf,
}

impl OutputDir {
    /// Creates the directory.
    pub fn create(path: &Path) -> BenchResult<OutputDir> {
        std::fs::create_dir_all(path)
            .map_err(|error| BenchError::io(format!("creating {}", path.display()), error))?;
        Ok(OutputDir {
            path: path.to_owned(),
        })
    }

    /// Writes one file.
    pub fn write(&self, name: &str, contents: &str) -> BenchResult<()> {
        let path = self.path.join(name);
        std::fs::write(&path, contents)
            .map_err(|error| BenchError::io(format!("writing {}", path.display()), error))
    }

    /// Writes `<name>_us.hgrm` for a nanosecond histogram.
    pub fn write_hgrm(&self, name: &str, histogram: &Histogram<u64>) -> BenchResult<()> {
        self.write(
            &format!("{name}_us.hgrm"),
            &write_hgrm(histogram, NS_PER_US),
        )
    }

    /// Writes `latency.svg` with the given (name, histogram) series.
    pub fn write_plot(&self, title: &str, series: &[(&str, &Histogram<u64>)]) -> BenchResult<()> {
        let rows: Vec<_> = series
            .iter()
            .map(|(_, histogram)| percentile_rows(histogram, NS_PER_US))
            .collect();
        let lines: Vec<Series<'_>> = series
            .iter()
            .zip(&rows)
            .filter(|(_, rows)| !rows.is_empty())
            .map(|((name, _), rows)| Series { name, rows })
            .collect();
        self.write(
            "latency.svg",
            &render_svg(title, "latency (microseconds)", &lines),
        )
    }

    /// Writes summary.json.
    pub fn write_summary(&self, summary: &Summary) -> BenchResult<()> {
        let text = serde_json::to_string_pretty(summary).expect("the summary is plain data");
        self.write("summary.json", &format!("{text}\n"))
    }
}

/// Reads a floor run's summary (file or directory) for `--compare-floor`.
pub fn load_floor(path: &Path) -> BenchResult<(String, f64, f64)> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_owned()
    };
    let error = |reason: String| BenchError::Results {
        path: file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&file).map_err(|source| error(source.to_string()))?;
    let summary: Summary =
        serde_json::from_str(&text).map_err(|source| error(source.to_string()))?;
    let floor = summary
        .floor
        .ok_or_else(|| error("not a floor run".into()))?;
    let delivery = summary
        .delivery
        .ok_or_else(|| error("no delivery section".into()))?;
    let label = if floor.frames_per_send > 1 {
        format!("floor{}", floor.frames_per_send)
    } else {
        "floor".to_owned()
    };
    Ok((
        label,
        delivery.deliveries_per_s,
        floor.frames_per_cpu_second,
    ))
}

/// Compares this run's delivery with each floor run.
pub fn compare_with_floors(
    delivery: &DeliverySummary,
    paths: &[PathBuf],
) -> BenchResult<Vec<Comparison>> {
    paths
        .iter()
        .map(|path| {
            let (label, floor_deliveries_per_s, floor_deliveries_per_core) = load_floor(path)?;
            Ok(Comparison {
                label,
                path: path.clone(),
                floor_deliveries_per_s,
                ratio_deliveries_per_s: (floor_deliveries_per_s > 0.0)
                    .then(|| delivery.deliveries_per_s / floor_deliveries_per_s),
                floor_deliveries_per_core,
                ratio_per_core: delivery
                    .deliveries_per_server_core
                    .filter(|_| floor_deliveries_per_core > 0.0)
                    .map(|per_core| per_core / floor_deliveries_per_core),
            })
        })
        .collect()
}

/// Formats a latency summary on one line.
fn latency_line(latency: &LatencySummary) -> String {
    format!(
        "p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} samples)",
        latency.p50_us,
        latency.p90_us,
        latency.p99_us,
        latency.p99_9_us,
        latency.max_us,
        latency.count
    )
}

/// Writes the delivery lines of the human summary.
fn human_delivery(out: &mut String, delivery: &DeliverySummary) {
    if let Some(publish) = &delivery.publish {
        let _ = writeln!(
            out,
            "  published      {} at {:.0}/s (target {:.0}/s), answers ok {} / 503 {} / 413 {} / other {}",
            publish.published,
            publish.rate_achieved_per_s,
            publish.rate_target_per_s,
            publish.ok,
            publish.overloaded,
            publish.too_large,
            publish.other + publish.connection_errors
        );
    }
    let loss = &delivery.loss;
    let _ = writeln!(
        out,
        "  delivered      {} of {} expected ({} lost), {:.0} deliveries/s",
        delivery.delivered, loss.expected_deliveries, loss.lost, delivery.deliveries_per_s
    );
    let _ = writeln!(
        out,
        "  anomalies      duplicates {}, reordered {}, beyond window {}",
        delivery.sequence.duplicates, delivery.sequence.reordered, delivery.sequence.beyond_window
    );
    let _ = writeln!(out, "  latency        {}", latency_line(&delivery.latency));
    if delivery.broadcasts_complete + delivery.broadcasts_incomplete == 0 {
        let _ = writeln!(out, "  last receiver  not measured");
    } else {
        let _ = writeln!(
            out,
            "  last receiver  {} ({} complete, {} incomplete broadcasts)",
            latency_line(&delivery.last_receiver),
            delivery.broadcasts_complete,
            delivery.broadcasts_incomplete
        );
    }
    if let (Some(cpu), Some(per_core)) = (
        delivery.server_cpu_seconds,
        delivery.deliveries_per_server_core,
    ) {
        let _ = writeln!(
            out,
            "  server CPU     {cpu:.2} s -> {per_core:.0} deliveries per server core-second"
        );
    }
}

/// Renders the human summary printed on stdout.
pub fn human_summary(summary: &Summary, output_dir: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== ringcast-bench {} ==", summary.scenario);
    if let Some(connections) = &summary.connections {
        let _ = writeln!(
            out,
            "  connections    {} of {} open after the ramp ({:.1} s, {:.0}/s), {} failed",
            connections.open_after_ramp,
            connections.requested,
            connections.ramp_s,
            connections.ramp_rate_per_s,
            connections.failed
        );
    }
    if let Some(memory) = &summary.memory {
        if let Some(per_connection) = memory.server_rss_per_connection_bytes {
            let _ = writeln!(
                out,
                "  server memory  {per_connection:.0} bytes RSS per connection"
            );
        }
        if let Some(per_connection) = memory.kernel_tcp_mem_per_connection_bytes {
            let _ = writeln!(
                out,
                "  kernel memory  {per_connection:.0} bytes TCP buffers per connection (both ends; see note)"
            );
        }
    }
    if let Some(floor) = &summary.floor {
        let _ = writeln!(
            out,
            "  floor          {} sockets, {} frame(s) per send: {:.0} frames/s, {:.0} send()/s",
            floor.connections, floor.frames_per_send, floor.frames_per_s, floor.sends_per_s
        );
        let _ = writeln!(
            out,
            "  batch to all   p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            floor.batch_time.p50_us, floor.batch_time.p99_us, floor.batch_time.max_us
        );
        let _ = writeln!(
            out,
            "  floor CPU      {:.2} s -> {:.0} frames per core-second",
            floor.cpu_seconds, floor.frames_per_cpu_second
        );
    }
    if let Some(throughput) = &summary.throughput {
        for step in &throughput.steps {
            let rate = step
                .delivery
                .publish
                .as_ref()
                .map_or(0.0, |publish| publish.rate_target_per_s);
            let _ = writeln!(
                out,
                "  step {:>2}  rate {:>9.0}/s  {:>11.0} deliveries/s  p99 {:>9.1} us  lost {:>6}  {}",
                step.step,
                rate,
                step.delivery.deliveries_per_s,
                step.delivery.latency.p99_us,
                step.delivery.loss.lost,
                step.failure.as_deref().unwrap_or("ok")
            );
        }
        match throughput.max_sustained_deliveries_per_s {
            Some(max) => {
                let _ = writeln!(
                    out,
                    "  max sustained  {max:.0} deliveries/s ({:.0} per server core-second)",
                    throughput
                        .max_sustained_deliveries_per_server_core
                        .unwrap_or(0.0)
                );
            }
            None => {
                let _ = writeln!(out, "  max sustained  none: the first step already failed");
            }
        }
        let _ = writeln!(out, "  stopped        {}", throughput.stop_reason);
    }
    if let Some(delivery) = &summary.delivery {
        human_delivery(&mut out, delivery);
    }
    if let Some(churn) = &summary.churn {
        let _ = writeln!(
            out,
            "  churn          {} of {} cycles in {:.1} s",
            churn.cycles_completed, churn.cycles_requested, churn.churn_s
        );
        let _ = writeln!(
            out,
            "  fds            delta after churn {:?}, after close {:?} (returned: {:?})",
            churn.fd_delta_after_churn, churn.fd_delta_after_close, churn.fds_returned_to_baseline
        );
        let _ = writeln!(
            out,
            "  RSS            delta after churn {:?} B, after close {:?} B (returned: {:?})",
            churn.rss_delta_after_churn_bytes,
            churn.rss_delta_after_close_bytes,
            churn.rss_returned_to_baseline
        );
    }
    for comparison in &summary.comparisons {
        let _ = writeln!(
            out,
            "  vs {:<11} deliveries/s ratio {}, per-core ratio {}",
            comparison.label,
            comparison
                .ratio_deliveries_per_s
                .map_or("n/a".into(), |ratio| format!("{ratio:.3}")),
            comparison
                .ratio_per_core
                .map_or("n/a".into(), |ratio| format!("{ratio:.3}"))
        );
    }
    if summary.problems.is_empty() {
        let _ = writeln!(out, "  problems       none");
    }
    for problem in &summary.problems {
        let _ = writeln!(out, "  PROBLEM        {problem}");
    }
    let _ = writeln!(out, "  results        {}", output_dir.display());
    out
}
