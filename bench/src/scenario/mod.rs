//! Scenario plumbing shared by every subcommand: resolve the options, start (or find) the
//! server, ramp the clients with a progress bar, measure one publishing epoch, and write results.
//!
//! Each scenario file is a short script over these steps. Every wait here is bounded by a
//! deadline derived from the options, so a run always ends by itself.

pub mod churn;
pub mod delivery;
pub mod floor;
pub mod idle;
pub mod throughput;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{CommonArgs, PublishArgs, PublishVia, ScenarioCommand, WireProtocol};
use crate::client::{ClientConfig, ClientPool, EpochReport, PusherSubscription};
use crate::clock::parse_cpu_list;
use crate::error::{BenchError, BenchResult};
use crate::payload::{self, PayloadKind};
use crate::publisher::{PublishReport, PublishTarget, Publisher, PublisherConfig};
use crate::pusher::{self, PusherApp};
use crate::report::{
    ConnectionSummary, MemorySummary, OutputDir, ServerSummary, Summary, connection_problems,
    human_summary,
};
use crate::server::{ProcSample, ServerProcess, SockStat, read_sockstat, sample_process};
use crate::sysinfo::{environment_text, raise_nofile_limit, shell_quote};
use crate::ws::frame::Opcode;

/// Connections a run may ask for (the design target, not what one process here can hold).
const CONNECTIONS_MAX: usize = 10_000_000;
/// Client threads at most.
const CLIENT_THREADS_MAX: usize = 1024;
/// Broadcasts tracked per client thread for the last-receiver histogram.
const BROADCASTS_TRACKED_MAX: usize = 4_000_000;
/// How often the ramp and drain loops look at the counters.
const WAIT_TICK: Duration = Duration::from_millis(5);

/// Runs the chosen scenario.
pub fn run(command: ScenarioCommand) -> BenchResult<()> {
    match command {
        ScenarioCommand::Idle(args) => idle::run(&args),
        ScenarioCommand::Fanout(args) => delivery::run_fanout(&args),
        ScenarioCommand::Channels(args) => delivery::run_channels(&args),
        ScenarioCommand::Throughput(args) => throughput::run(&args),
        ScenarioCommand::Churn(args) => churn::run(&args),
        ScenarioCommand::Floor(args) => floor::run(&args),
    }
}

/// Resolved common options and the run's output.
pub struct Setup {
    /// The options as given.
    pub common: CommonArgs,
    /// Server address.
    pub server_addr: SocketAddr,
    /// `Host` header.
    pub host_header: String,
    /// CPUs for client threads.
    pub client_cores: Option<Vec<usize>>,
    /// CPUs for the server (or floor loop).
    pub server_cores: Option<Vec<usize>>,
    /// Where results go.
    pub output: OutputDir,
    /// The summary being filled.
    pub summary: Summary,
}

impl Setup {
    /// Validates the common options, creates the output directory and writes env.txt.
    pub fn new(
        scenario: &'static str,
        common: &CommonArgs,
        config: serde_json::Value,
        default_host: &str,
    ) -> BenchResult<Setup> {
        let host = match (&common.url, &common.host) {
            (Some(url), _) => url
                .trim_start_matches("ws://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, Some(host)) => host.clone(),
            (None, None) => default_host.to_owned(),
        };
        let server_addr = resolve(&host)?;
        if common.protocol == WireProtocol::Pusher && (common.deflate || scenario == "floor") {
            return Err(BenchError::Config(
                "--protocol pusher works without --deflate, and not for the floor".into(),
            ));
        }
        if common.connections == 0 || common.connections > CONNECTIONS_MAX {
            return Err(BenchError::Config(format!(
                "--connections must be in 1..={CONNECTIONS_MAX}"
            )));
        }
        if common.client_threads == 0 || common.client_threads > CLIENT_THREADS_MAX {
            return Err(BenchError::Config(format!(
                "--client-threads must be in 1..={CLIENT_THREADS_MAX}"
            )));
        }
        if !(common.ramp_rate > 0.0 && common.ramp_rate.is_finite()) {
            return Err(BenchError::Config("--ramp-rate must be positive".into()));
        }
        if common.connect_attempts == 0 || common.connect_attempts > 255 {
            return Err(BenchError::Config(
                "--connect-attempts must be in 1..=255".into(),
            ));
        }
        let cores = |text: &Option<String>| {
            text.as_deref()
                .map(parse_cpu_list)
                .transpose()
                .map_err(BenchError::Config)
        };
        let (client_cores, server_cores) =
            (cores(&common.client_cores)?, cores(&common.server_cores)?);
        let started_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or(0);
        let output_path = common
            .output_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("results/{scenario}-{started_unix_s}")));
        let output = OutputDir::create(&output_path)?;
        let nofile = raise_nofile_limit();
        // The floor holds both ends of every connection in this process.
        let ends = if scenario == "floor" { 2 } else { 1 };
        let needed = ends * common.connections as u64 + 256;
        if nofile.0 < needed {
            let message = format!(
                "RLIMIT_NOFILE is {} but {} connections need about {needed} descriptors in this process",
                nofile.0, common.connections
            );
            if scenario == "floor" {
                // Otherwise accept() fails with EMFILE and the floor never starts.
                return Err(BenchError::Config(message));
            }
            eprintln!("warning: {message}");
        }
        output.write(
            "env.txt",
            &environment_text(
                common.server_git_dir.as_deref(),
                common.spawn.as_deref(),
                nofile,
            ),
        )?;
        let command_line: Vec<String> = std::env::args()
            .map(|argument| shell_quote(&argument))
            .collect();
        let summary = Summary {
            scenario: scenario.to_owned(),
            started_unix_s,
            command_line: command_line.join(" "),
            config,
            ..Summary::default()
        };
        Ok(Setup {
            common: common.clone(),
            server_addr,
            host_header: host,
            client_cores,
            server_cores,
            output,
            summary,
        })
    }

    /// Channel names `<prefix>-<index>` for `channels` channels, validated.
    pub fn channel_names(&self, channels: usize) -> BenchResult<Vec<String>> {
        let names: Vec<String> = (0..channels)
            .map(|index| format!("{}-{index}", self.common.channel_prefix))
            .collect();
        let valid = |name: &String| {
            name.len() <= 128
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"_.:-".contains(&byte))
        };
        if let Some(bad) = names.iter().find(|name| !valid(name)) {
            return Err(BenchError::Config(format!(
                "channel name {bad:?} is not [A-Za-z0-9_.:-]{{1,128}}"
            )));
        }
        Ok(names)
    }

    /// Client configuration for `channels` channels and `publishers` streams per channel.
    pub fn client_config(
        &self,
        channel_names: &[String],
        publishers: usize,
        payload_bytes: usize,
        payload_kind: PayloadKind,
    ) -> ClientConfig {
        ClientConfig {
            server_addr: self.server_addr,
            host_header: self.host_header.clone(),
            source_ips: self
                .common
                .source_ips
                .as_ref()
                .map(|ips| ips.0.clone())
                .unwrap_or_default(),
            threads: self.common.client_threads,
            cores: self.client_cores.clone(),
            connections: self.common.connections,
            ramp_rate_per_s: self.common.ramp_rate,
            connect_timeout: self.common.connect_timeout,
            connect_attempts_max: self.common.connect_attempts,
            channel_paths: channel_names
                .iter()
                .map(|name| match self.common.protocol {
                    WireProtocol::Raw => format!("/ws/{name}"),
                    WireProtocol::Pusher => pusher::subscriber_path(&self.pusher_app()),
                })
                .collect(),
            publishers,
            payload_bytes,
            expected_opcode: if payload_kind.is_text() {
                Opcode::Text
            } else {
                Opcode::Binary
            },
            deflate: self.common.deflate,
            broadcasts_tracked_max: BROADCASTS_TRACKED_MAX,
            pusher_subscriptions: (self.common.protocol == WireProtocol::Pusher).then(|| {
                channel_names
                    .iter()
                    .map(|name| PusherSubscription {
                        channel: name.clone(),
                        subscribe_message: pusher::subscribe_message(name),
                    })
                    .collect()
            }),
        }
    }

    /// The Pusher application of `--app-id/--app-key/--app-secret`.
    pub fn pusher_app(&self) -> PusherApp {
        PusherApp {
            id: self.common.app_id.clone(),
            key: self.common.app_key.clone(),
            secret: self.common.app_secret.clone(),
        }
    }

    /// Subscribers per channel when every connection is open (connection i is on channel i mod M).
    pub fn subscribers_per_channel(&self, channels: usize) -> Vec<u64> {
        let connections = self.common.connections;
        (0..channels)
            .map(|channel| ((connections + channels - 1 - channel) / channels) as u64)
            .collect()
    }

    /// Writes summary.json and prints the human summary.
    pub fn finish(mut self) -> BenchResult<()> {
        self.summary.problems.dedup();
        self.output.write_summary(&self.summary)?;
        let text = human_summary(&self.summary, &self.output.path);
        self.output.write("summary.txt", &text)?;
        print!("{text}");
        Ok(())
    }
}

/// Resolves host:port to one address.
fn resolve(host: &str) -> BenchResult<SocketAddr> {
    host.to_socket_addrs()
        .map_err(|error| BenchError::Config(format!("cannot resolve {host:?}: {error}")))?
        .next()
        .ok_or_else(|| BenchError::Config(format!("{host:?} resolves to nothing")))
}

/// Validates the publishing options.
pub fn validate_publish(args: &PublishArgs) -> BenchResult<()> {
    payload::validate_size(args.payload_bytes, args.payload_kind).map_err(BenchError::Config)?;
    if args.publishers == 0 || args.publishers > 1024 {
        return Err(BenchError::Config(
            "--publishers must be in 1..=1024".into(),
        ));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(BenchError::Config("--rate must be >= 0".into()));
    }
    Ok(())
}

/// Connects the publishers described by `args`.
pub fn connect_publisher(
    setup: &Setup,
    args: &PublishArgs,
    channel_names: &[String],
) -> BenchResult<Publisher> {
    if setup.common.protocol == WireProtocol::Pusher
        && (args.publish != PublishVia::Http || args.payload_kind != PayloadKind::Text)
    {
        // The payload goes into a JSON string unescaped; only text payloads need no escaping.
        return Err(BenchError::Config(
            "--protocol pusher publishes text payloads over HTTP only".into(),
        ));
    }
    let target = match args.publish {
        PublishVia::Http if setup.common.protocol == WireProtocol::Pusher => {
            let host = args
                .publish_host
                .clone()
                .unwrap_or_else(|| setup.host_header.clone());
            PublishTarget::Pusher {
                addr: resolve(&host)?,
                host_header: host,
                app: setup.pusher_app(),
            }
        }
        PublishVia::Http => {
            let host = args
                .publish_host
                .clone()
                .unwrap_or_else(|| setup.host_header.clone());
            PublishTarget::Http {
                addr: resolve(&host)?,
                host_header: host,
            }
        }
        PublishVia::Redis => {
            let host = args
                .redis_url
                .trim_start_matches("redis://")
                .split('/')
                .next()
                .unwrap_or_default();
            let host = if host.contains(':') {
                host.to_owned()
            } else {
                format!("{host}:6379")
            };
            PublishTarget::Redis {
                addr: resolve(&host)?,
                prefix: args.redis_prefix.clone(),
            }
        }
    };
    Publisher::connect(PublisherConfig {
        target,
        publishers: args.publishers,
        channel_names: channel_names.to_vec(),
        payload_bytes: args.payload_bytes,
        payload_kind: args.payload_kind,
    })
}

/// The server being measured: spawned, given by pid, or unknown.
pub struct ServerUnderTest {
    /// The spawned process.
    process: Option<ServerProcess>,
    /// Its pid, if known.
    pid: Option<i32>,
}

impl ServerUnderTest {
    /// Spawns the server (`--spawn`) or adopts `--server-pid`.
    pub fn start(setup: &Setup) -> BenchResult<ServerUnderTest> {
        let common = &setup.common;
        match &common.spawn {
            Some(binary) => {
                let log = setup.output.path.join("server.log");
                let process = ServerProcess::spawn(
                    binary,
                    &common.server_args,
                    setup.server_cores.as_deref(),
                    common.server_ready_timeout,
                    &log,
                )?;
                let pid = Some(process.pid());
                Ok(ServerUnderTest {
                    process: Some(process),
                    pid,
                })
            }
            None => Ok(ServerUnderTest {
                process: None,
                pid: common.server_pid,
            }),
        }
    }

    /// A /proc reading of the server, if its pid is known and readable.
    pub fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(|pid| sample_process(pid).ok())
    }

    /// CPU seconds of the server so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.sample().map(|sample| sample.cpu_seconds)
    }

    /// Stops a spawned server and records it in the summary.
    pub fn finish(self, summary: &mut Summary) {
        let log = self
            .process
            .as_ref()
            .map(|process| process.log_path.clone());
        let exit = self.process.map(ServerProcess::stop);
        if let Some(exit) = &exit
            && exit != "exit status: 0"
        {
            summary.problems.push(format!("server ended with {exit}"));
        }
        summary.server = Some(ServerSummary {
            pid: self.pid,
            spawned: log.is_some(),
            exit,
            log,
        });
    }
}

/// What the ramp achieved.
pub struct RampOutcome {
    /// Open connections when it ended.
    pub open: u64,
    /// Connections given up.
    pub failed: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Waits (with a progress bar) until every connection is open or failed, bounded by a deadline
/// derived from the ramp rate, timeouts and attempts.
pub fn ramp(pool: &ClientPool, setup: &Setup) -> BenchResult<RampOutcome> {
    let common = &setup.common;
    let requested = common.connections as u64;
    let bar = ProgressBar::new(requested);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} ramp [{elapsed_precise}] {bar:40} {pos}/{len} open ({per_sec}) {msg}",
        )
        .expect("the template is valid"),
    );
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(requested as f64 / common.ramp_rate * 2.0)
        + common.connect_timeout * common.connect_attempts
        + Duration::from_secs(10);
    // Bounded by the deadline.
    loop {
        let totals = pool.totals();
        bar.set_position(totals.open);
        bar.set_message(format!(
            "{} failed, {} pending",
            totals.failed, totals.in_flight
        ));
        let settled = totals.open + totals.failed + totals.closed_unexpectedly >= requested
            || (totals.in_flight == 0 && started.elapsed() > Duration::from_millis(500));
        if settled || started.elapsed() > deadline {
            bar.finish_and_clear();
            if totals.open == 0 {
                return Err(BenchError::Ramp(format!(
                    "no connection to {} could be opened ({} failed)",
                    setup.server_addr, totals.failed
                )));
            }
            return Ok(RampOutcome {
                open: totals.open,
                failed: totals.failed,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(WAIT_TICK);
    }
}

/// Records the ramp in the summary.
pub fn record_ramp(
    summary: &mut Summary,
    setup_connections: usize,
    outcome: &RampOutcome,
    report: &EpochReport,
) {
    let connections = ConnectionSummary {
        requested: setup_connections as u64,
        open_after_ramp: outcome.open,
        failed: outcome.failed,
        ramp_s: outcome.seconds,
        ramp_rate_per_s: if outcome.seconds > 0.0 {
            outcome.open as f64 / outcome.seconds
        } else {
            0.0
        },
        counters: report.connections,
        first_error: report.first_error.clone(),
    };
    summary.problems.extend(connection_problems(&connections));
    summary.connections = Some(connections);
}

/// Updates the connection counters at the end of a run (they are cumulative).
pub fn record_final_connections(summary: &mut Summary, report: &EpochReport) {
    if let Some(connections) = summary.connections.as_mut() {
        connections.counters = report.connections;
        connections.first_error = connections
            .first_error
            .clone()
            .or_else(|| report.first_error.clone());
        let problems = connection_problems(connections);
        summary
            .problems
            .retain(|problem| !problem.contains("ended without us asking"));
        summary.problems.extend(
            problems
                .into_iter()
                .filter(|problem| problem.contains("ended without us asking")),
        );
    }
}

/// Memory per connection from before/after readings.
pub fn memory_summary(
    before: Option<ProcSample>,
    after: Option<ProcSample>,
    sock_before: Option<SockStat>,
    sock_after: Option<SockStat>,
    open: u64,
) -> MemorySummary {
    let per_connection =
        |before: u64, after: u64| (open > 0).then(|| (after as f64 - before as f64) / open as f64);
    MemorySummary {
        server_before: before,
        server_after: after,
        server_rss_per_connection_bytes: before.zip(after).and_then(|(before, after)| per_connection(before.rss_bytes, after.rss_bytes)),
        sockstat_before: sock_before,
        sockstat_after: sock_after,
        kernel_tcp_mem_per_connection_bytes: sock_before.zip(sock_after).and_then(|(before, after)| per_connection(before.tcp_mem_bytes, after.tcp_mem_bytes)),
        note: "kernel TCP memory is /proc/net/sockstat 'mem' pages x page size for the whole network namespace: on one host it \
               includes the client ends and any other TCP traffic; idle sockets with empty queues hold almost none"
            .to_owned(),
    }
}

/// Reads sockstat, ignoring failure.
pub fn sockstat() -> Option<SockStat> {
    read_sockstat().ok()
}

/// One measured epoch: publish, drain, server CPU, merged client report.
pub struct Measured {
    /// Merged client results.
    pub report: EpochReport,
    /// Publisher results.
    pub publish: PublishReport,
    /// Server CPU seconds over publish + drain.
    pub server_cpu_seconds: Option<f64>,
}

/// Publishes at `rate` for the run's duration in `epoch`, drains, and snapshots the clients.
pub fn measure_epoch(
    setup: &Setup,
    pool: &ClientPool,
    publisher: &mut Publisher,
    server: &ServerUnderTest,
    rate: f64,
    epoch: u8,
    subscribers: &[u64],
) -> BenchResult<Measured> {
    let cpu_before = server.cpu_seconds();
    let publish = publisher.run(rate, setup.common.duration, epoch)?;
    let publishers = publish.sent_per_stream.len() / subscribers.len();
    let expected_total: u64 = publish
        .sent_per_stream
        .iter()
        .enumerate()
        .map(|(stream, sent)| sent * subscribers[stream / publishers])
        .sum();
    wait_for_deliveries(pool, expected_total, setup.common.drain);
    let cpu_after = server.cpu_seconds();
    let report = pool.snapshot(publish.sent_per_stream.clone(), epoch.wrapping_add(1))?;
    Ok(Measured {
        report,
        publish,
        server_cpu_seconds: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
    })
}

/// Waits until the clients counted `expected` deliveries or `drain` passed.
pub fn wait_for_deliveries(pool: &ClientPool, expected: u64, drain: Duration) {
    let started = Instant::now();
    // Bounded by `drain`.
    while started.elapsed() < drain && pool.totals().deliveries < expected {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes the latency files of a delivery.
pub fn write_latency_files(setup: &Setup, report: &EpochReport, title: &str) -> BenchResult<()> {
    setup.output.write_hgrm("latency", &report.latency_ns)?;
    setup
        .output
        .write_hgrm("last_receiver", &report.last_receiver_ns)?;
    setup.output.write_plot(
        title,
        &[
            ("publish -> receive", &report.latency_ns),
            ("publish -> last receiver", &report.last_receiver_ns),
        ],
    )
}
