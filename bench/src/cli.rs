//! Command line: one subcommand per scenario, all sharing `CommonArgs`.
//!
//! Parsing only: values are checked for shape here (durations, CPU lists, address ranges) and for
//! consistency in `scenario::Setup::from_args`. Every option has a default that runs in seconds
//! on a laptop; the README shows the values for a C1M host.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::payload::PayloadKind;

/// Load generator and measurement harness for ringcast (and any server speaking its interface).
#[derive(Debug, Parser)]
#[command(name = "ringcast-bench", version, about)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: ScenarioCommand,
}

/// The scenarios; each prints a summary and writes its files into `--output-dir`.
#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// N connections, no traffic: server memory (user and kernel) per connection.
    Idle(IdleArgs),
    /// N subscribers on one channel, R msg/s: publish->receive and publish->last-receiver latency.
    Fanout(FanoutArgs),
    /// Step the rate up until loss or the p99 budget: max sustained deliveries/s (and per core).
    Throughput(ThroughputArgs),
    /// N subscribers spread over M channels, publishes spread over the channels.
    Channels(ChannelsArgs),
    /// Fixed population with connects+disconnects: fds and RSS must return to baseline.
    Churn(ChurnArgs),
    /// The kernel's own cost: a built-in tight loop writes one frame to N sockets per round.
    Floor(FloorArgs),
}

/// How publishes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
pub enum PublishVia {
    /// `POST /publish/{channel}` over HTTP/1.1 keep-alive.
    Http,
    /// `PUBLISH {prefix}:broadcast:{channel}` over RESP.
    Redis,
}

/// The protocol subscribers and publishers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
pub enum WireProtocol {
    /// `GET /ws/{channel}` subscribers, raw payloads; `POST /publish/{channel}` (or Redis).
    Raw,
    /// Pusher Channels protocol 7: `GET /app/{key}` then `pusher:subscribe`; signed
    /// `POST /apps/{id}/events` triggers; payloads arrive as the event's `data`.
    Pusher,
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args, Serialize)]
pub struct CommonArgs {
    /// Server address as ws://host:port (the path is ignored; channels set it).
    #[arg(long, conflicts_with = "host")]
    pub url: Option<String>,
    /// Server address as host:port [default: 127.0.0.1:9050; floor: 127.0.0.1:0].
    #[arg(long)]
    pub host: Option<String>,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections opened per second while ramping (all threads together).
    #[arg(long, default_value_t = 5000.0)]
    pub ramp_rate: f64,
    /// Source addresses, bound round-robin: a range 127.0.0.1-127.0.0.8 or a comma list.
    #[arg(long, value_parser = parse_source_ips)]
    pub source_ips: Option<SourceIps>,
    /// Client event-loop threads.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// CPUs to pin client threads to, round-robin (e.g. 1 or 2-5).
    #[arg(long)]
    pub client_cores: Option<String>,
    /// How long traffic (or the idle hold) lasts: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub duration: Duration,
    /// After publishing stops, how long to wait for the last messages.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub drain: Duration,
    /// Pause after the ramp before memory is read (lets the server settle).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub settle: Duration,
    /// A connect plus handshake slower than this fails (and is retried).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// Attempts per connection before it counts as failed.
    #[arg(long, default_value_t = 3)]
    pub connect_attempts: u32,
    /// Where summary.json, *.hgrm, latency.svg and env.txt go [default: results/<scenario>-<time>].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Channel names are <prefix>-<index>.
    #[arg(long, default_value = "bench")]
    pub channel_prefix: String,
    /// Start this server binary (arguments after `--`), wait for "listening on", stop it at the end.
    #[arg(long)]
    pub spawn: Option<PathBuf>,
    /// CPUs for the spawned server (or the floor loop), e.g. 0.
    #[arg(long)]
    pub server_cores: Option<String>,
    /// Measure a server started by hand (memory, fds, CPU from /proc/<pid>).
    #[arg(long, conflicts_with = "spawn")]
    pub server_pid: Option<i32>,
    /// How long a spawned server may take to print "listening on".
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    #[serde(serialize_with = "serialize_duration")]
    pub server_ready_timeout: Duration,
    /// Git checkout of the server, for env.txt [default: found from --spawn].
    #[arg(long)]
    pub server_git_dir: Option<PathBuf>,
    /// Floor results (summary.json of a floor run, or its directory) to compare against.
    #[arg(long)]
    pub compare_floor: Vec<PathBuf>,
    /// Offer permessage-deflate (RFC 7692) in every handshake. Compressed frames are counted with
    /// their compressed size (the bytes on the wire) and only their 48-byte stamp is inflated,
    /// so the client's CPU stays what it is without compression.
    #[arg(long, default_value_t = false)]
    pub deflate: bool,
    /// Wire protocol of subscribers and publishers (`pusher`: text payloads over HTTP only).
    #[arg(long, value_enum, default_value_t = WireProtocol::Raw)]
    pub protocol: WireProtocol,
    /// Pusher application id (`--protocol pusher`), as in bench/peers/common.sh `pusher_env`.
    #[arg(long, default_value = "1")]
    pub app_id: String,
    /// Pusher application key.
    #[arg(long, default_value = "app-key")]
    pub app_key: String,
    /// Pusher application secret (signs the triggers).
    #[arg(long, default_value = "app-secret")]
    pub app_secret: String,
    /// Arguments for the spawned server, after `--`.
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

/// Options of scenarios that publish.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PublishArgs {
    /// Publish over HTTP or Redis.
    #[arg(long, value_enum, default_value_t = PublishVia::Http)]
    pub publish: PublishVia,
    /// Concurrent publisher connections (each has its own sequence per channel).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// HTTP publish address host:port [default: the server address].
    #[arg(long)]
    pub publish_host: Option<String>,
    /// Redis address (redis://host:port) when --publish redis.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Redis channel prefix: PUBLISH <prefix>:broadcast:<channel>.
    #[arg(long, default_value = "ws")]
    pub redis_prefix: String,
    /// Publishes per second (all channels together).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Payload size in bytes (at least 48: the timestamp and sequence header).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Text (printable ASCII) or binary payloads.
    #[arg(long, value_enum, default_value_t = PayloadKind::Text)]
    pub payload_kind: PayloadKind,
}

/// `idle` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct IdleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `fanout` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FanoutArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishing options.
    #[command(flatten)]
    pub publish: PublishArgs,
}

/// `throughput` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ThroughputArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishing options (`--rate` is the first step).
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Channels the subscribers are spread over (1 = pure fan-out).
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub rate_factor: f64,
    /// Steps at most.
    #[arg(long, default_value_t = 12)]
    pub steps_max: u32,
    /// Stop when a step's publish->receive p99 exceeds this.
    #[arg(long, default_value_t = 50.0)]
    pub p99_budget_ms: f64,
}

/// `channels` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ChannelsArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishing options (publishes go round-robin over the channels).
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Channels; connection i subscribes to channel i mod M.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
}

/// `churn` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct ChurnArgs {
    /// Shared options (`--duration` bounds the churn phase).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishing options (`--rate 0` churns without traffic).
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Disconnect+reconnect cycles per second.
    #[arg(long, default_value_t = 500.0)]
    pub churn_rate: f64,
    /// Cycles in total.
    #[arg(long, default_value_t = 2000)]
    pub cycles: u64,
}

/// `floor` options.
#[derive(Debug, Clone, Args, Serialize)]
pub struct FloorArgs {
    /// Shared options (`--spawn` and `--server-pid` do not apply).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Frames (rounds) written per send() call.
    #[arg(long, default_value_t = 1)]
    pub frames_per_send: usize,
    /// Rounds per second; 0 writes as fast as the sockets take it.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Text or binary frames.
    #[arg(long, value_enum, default_value_t = PayloadKind::Text)]
    pub payload_kind: PayloadKind,
}

/// Source addresses for client sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceIps(pub Vec<IpAddr>);

/// Parses `127.0.0.1-127.0.0.8` (IPv4 range) or `a,b,c`.
pub fn parse_source_ips(text: &str) -> Result<SourceIps, String> {
    /// More source addresses than this is a typo (each gives ~28k-64k ports).
    const SOURCE_IPS_MAX: u32 = 65_536;
    let mut addresses = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        if let Some((first, last)) = part.split_once('-') {
            let first: Ipv4Addr = first
                .trim()
                .parse()
                .map_err(|_| format!("bad address in {part:?}"))?;
            let last: Ipv4Addr = last
                .trim()
                .parse()
                .map_err(|_| format!("bad address in {part:?}"))?;
            let (first, last) = (u32::from(first), u32::from(last));
            if first > last || last - first >= SOURCE_IPS_MAX {
                return Err(format!("bad address range {part:?}"));
            }
            addresses.extend((first..=last).map(|address| IpAddr::V4(Ipv4Addr::from(address))));
        } else {
            addresses.push(part.parse().map_err(|_| format!("bad address {part:?}"))?);
        }
    }
    if addresses.is_empty() {
        return Err("empty source address list".to_owned());
    }
    Ok(SourceIps(addresses))
}

/// Parses `250ms`, `10s`, `2m` or a plain number of seconds (fractions allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale_s) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    if !value.is_finite() || value < 0.0 || value * scale_s > 86_400.0 {
        return Err(format!("duration {text:?} out of range (0..24h)"));
    }
    Ok(Duration::from_secs_f64(value * scale_s))
}

/// Serializes durations as fractional seconds in summary.json.
fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn source_ip_ranges_parse() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(ips.0.len(), 3);
        assert_eq!(ips.0[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(parse_source_ips("127.0.0.1,127.0.0.9").unwrap().0.len(), 2);
        assert!(parse_source_ips("127.0.0.9-127.0.0.1").is_err());
    }

    #[test]
    fn cli_parses_spawn_with_server_args() {
        let cli = Cli::try_parse_from([
            "ringcast-bench",
            "fanout",
            "--connections",
            "10",
            "--spawn",
            "/bin/server",
            "--",
            "--shards",
            "1",
        ])
        .unwrap();
        let ScenarioCommand::Fanout(args) = cli.scenario else {
            panic!("fanout expected")
        };
        assert_eq!(args.common.server_args, ["--shards", "1"]);
        assert_eq!(args.common.connections, 10);
    }
}
