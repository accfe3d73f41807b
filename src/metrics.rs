//! `GET /metrics`: the Prometheus/OpenMetrics text exposition, built at scrape time.
//!
//! Shards keep plain counters of their own (no atomics shared across cores, nothing per
//! delivery). A scrape asks every shard for a snapshot over the mesh, and this module turns the
//! snapshots, the shared slots, the Redis status and the process readings into one registry of
//! constant metrics, encoded by `prometheus-client`. Nothing here runs on the data path.
//!
//! Every metric is documented in the README's metrics table; keep the two in step.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::redis::RedisStatus;
use crate::server::stats::{CloseReason, ShardStats};
use crate::server::{ShardSnapshot, Shared};

/// Content type of the exposition (OpenMetrics 1.0, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds, in seconds, of the fan-out latency histogram buckets.
const LATENCY_BUCKETS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Labels of one sample.
type Labels = Vec<(&'static str, String)>;

/// A metric family made of constant samples (one per label set).
#[derive(Debug)]
struct Samples {
    metric_type: MetricType,
    samples: Vec<(Labels, f64)>,
}

impl Samples {
    fn counter() -> Samples {
        Samples {
            metric_type: MetricType::Counter,
            samples: Vec::new(),
        }
    }

    fn gauge() -> Samples {
        Samples {
            metric_type: MetricType::Gauge,
            samples: Vec::new(),
        }
    }

    fn with(mut self, labels: Labels, value: f64) -> Samples {
        self.samples.push((labels, value));
        self
    }

    fn per_shard(
        mut self,
        snapshots: &[ShardSnapshot],
        value: impl Fn(&ShardSnapshot) -> f64,
    ) -> Samples {
        for snapshot in snapshots {
            self.samples
                .push((vec![("shard", snapshot.shard.to_string())], value(snapshot)));
        }
        self
    }
}

impl EncodeMetric for Samples {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.samples {
            if labels.is_empty() {
                // A single unlabelled sample (`name value`, not `name{} value`).
                return encode_value(encoder, self.metric_type, *value);
            }
            let encoder = encoder.encode_family(labels)?;
            encode_value(encoder, self.metric_type, *value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.metric_type
    }
}

fn encode_value(
    mut encoder: MetricEncoder,
    metric_type: MetricType,
    value: f64,
) -> Result<(), std::fmt::Error> {
    match metric_type {
        MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, u64>(&(value as u64), None),
        _ => encoder.encode_gauge(&value),
    }
}

/// A histogram with fixed buckets, computed from a shard's HdrHistogram (values in µs).
#[derive(Debug)]
struct ConstHistogram {
    sum_s: f64,
    count: u64,
    /// (upper bound in seconds, count of values in this bucket only): prometheus-client makes
    /// them cumulative when it encodes.
    buckets: Vec<(f64, u64)>,
}

impl ConstHistogram {
    fn from_microseconds(histogram: &hdrhistogram::Histogram<u64>) -> ConstHistogram {
        let count = histogram.len();
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_S
            .iter()
            .map(|&bound_s| {
                let cumulative = histogram.count_between(0, (bound_s * 1e6) as u64);
                let in_bucket = cumulative.saturating_sub(below);
                below = cumulative;
                (bound_s, in_bucket)
            })
            .collect();
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        ConstHistogram {
            sum_s: histogram.mean() * count as f64 / 1e6,
            count,
            buckets,
        }
    }
}

impl EncodeMetric for ConstHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_s, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Counters every shard keeps, exposed per shard: (name, help, field).
#[allow(clippy::type_complexity)]
const SHARD_COUNTERS: &[(&str, &str, fn(&ShardStats) -> u64)] = &[
    ("connections_accepted", "Sockets accepted", |stats| {
        stats.connections_accepted
    }),
    (
        "websocket_opened",
        "WebSocket connections opened (101 sent)",
        |stats| stats.websocket_opened,
    ),
    (
        "handshake_timeouts",
        "Connections closed for not sending a complete request in time",
        |stats| stats.handshake_timeouts,
    ),
    (
        "close_handshake_timeouts",
        "Close frames sent that got no answer within --close-timeout",
        |stats| stats.close_handshake_timeouts,
    ),
    (
        "accept_errors",
        "accept() failures (each followed by a back-off)",
        |stats| stats.accept_errors,
    ),
    (
        "connections_over_limit",
        "Connections refused with 503 at --max-connections or the open-file limit",
        |stats| stats.connections_over_limit,
    ),
    (
        "publications_fanned_out",
        "Publications taken by a shard's fan-out (each publication counts once per shard)",
        |stats| stats.publications_fanned_out,
    ),
    (
        "deliveries",
        "Broadcast frames queued for subscribers (one per subscriber per message)",
        |stats| stats.frames_queued,
    ),
    (
        "frames_written",
        "Frames completely written to sockets (broadcasts, pings, pongs, echoes, closes, 101s)",
        |stats| stats.frames_written,
    ),
    (
        "write_calls",
        "Write system calls (or io_uring send entries) to WebSocket sockets",
        |stats| stats.write_calls,
    ),
    (
        "mesh_drops",
        "Publishes refused (503) because a shard's inbox stayed full for --publish-timeout",
        |stats| stats.publish_refusals,
    ),
];

/// Process-wide readings taken at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessReadings {
    /// Resident set size, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

impl ProcessReadings {
    /// Reads `/proc/self`.
    pub fn read() -> ProcessReadings {
        let resident_memory_bytes =
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                    Some(kib * 1024)
                });
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        ProcessReadings {
            resident_memory_bytes,
            open_fds,
        }
    }
}

/// Renders the exposition from every shard's snapshot (shards that did not answer are absent;
/// `ringcast_shard_up` says so).
pub fn render(snapshots: &[ShardSnapshot], shared: &Shared, process: ProcessReadings) -> String {
    let mut registry = Registry::with_prefix("ringcast");
    let mut total = ShardStats::default();
    for snapshot in snapshots {
        total.merge(&snapshot.stats);
    }
    register_connections(&mut registry, snapshots, shared);
    for &(name, help, field) in SHARD_COUNTERS {
        registry.register(
            name,
            help,
            Samples::counter().per_shard(snapshots, |snapshot| field(&snapshot.stats) as f64),
        );
    }
    let redis_received = shared
        .redis
        .as_ref()
        .map_or(0, |redis| redis.messages_received.load(Ordering::Relaxed));
    register_traffic(&mut registry, snapshots, &total, redis_received);
    if let Some(redis) = &shared.redis {
        register_redis(&mut registry, redis);
    }
    registry.register(
        "build_info",
        "Build information",
        Samples::gauge().with(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        ),
    );
    let mut process_registry = Registry::with_prefix("process");
    if let Some(bytes) = process.resident_memory_bytes {
        process_registry.register_with_unit(
            "resident_memory",
            "Resident memory size",
            Unit::Bytes,
            Samples::gauge().with(Vec::new(), bytes as f64),
        );
    }
    if let Some(fds) = process.open_fds {
        process_registry.register(
            "open_fds",
            "Open file descriptors",
            Samples::gauge().with(Vec::new(), fds as f64),
        );
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, &process_registry);
    let _ = prometheus_client::encoding::text::encode_eof(&mut text);
    text
}

fn register_connections(registry: &mut Registry, snapshots: &[ShardSnapshot], shared: &Shared) {
    let mut up = Samples::gauge();
    for (shard, slot) in shared.shards.iter().enumerate() {
        let answered = snapshots.iter().any(|snapshot| snapshot.shard == shard);
        let running = slot.running.load(Ordering::Relaxed);
        up = up.with(
            vec![("shard", shard.to_string())],
            f64::from(u8::from(answered && running)),
        );
    }
    registry.register(
        "shard_up",
        "1 if the shard runs and answered this scrape",
        up,
    );
    registry.register(
        "connections_open",
        "Open WebSocket connections",
        Samples::gauge().per_shard(snapshots, |s| s.websocket_connections as f64),
    );
    registry.register(
        "sockets_open",
        "Open sockets of any kind (WebSocket, HTTP, handshaking)",
        Samples::gauge().per_shard(snapshots, |s| s.open_sockets as f64),
    );
    registry.register(
        "channels",
        "Channels with at least one subscriber",
        Samples::gauge().per_shard(snapshots, |s| s.channel_count as f64),
    );
    let mut closed = Samples::counter();
    for reason in CloseReason::ALL {
        let value: u64 = snapshots.iter().map(|s| s.stats.closes_for(reason)).sum();
        let code = reason
            .close_code()
            .map_or_else(|| "none".to_string(), |code| code.to_string());
        closed = closed.with(
            vec![("reason", reason.name().to_string()), ("code", code)],
            value as f64,
        );
    }
    registry.register(
        "connections_closed",
        "WebSocket connections closed, by reason and close code sent",
        closed,
    );
    let mut rejected = Samples::counter();
    let mut statuses: Vec<(u16, u64)> = Vec::new();
    for snapshot in snapshots {
        for &(status, count) in &snapshot.stats.http_rejections {
            match statuses.iter_mut().find(|(s, _)| *s == status) {
                Some((_, total)) => *total += count,
                None => statuses.push((status, count)),
            }
        }
    }
    statuses.sort_unstable();
    for (status, count) in statuses {
        rejected = rejected.with(vec![("status", status.to_string())], count as f64);
    }
    registry.register(
        "http_rejections",
        "Requests refused, by HTTP status",
        rejected,
    );
}

fn register_traffic(
    registry: &mut Registry,
    snapshots: &[ShardSnapshot],
    total: &ShardStats,
    redis_received: u64,
) {
    registry.register(
        "messages_published",
        "Messages published to ringcast, by source",
        Samples::counter()
            .with(vec![("source", "http".into())], total.published_http as f64)
            .with(vec![("source", "redis".into())], redis_received as f64),
    );
    registry.register_with_unit(
        "written",
        "Bytes written to WebSocket sockets",
        Unit::Bytes,
        Samples::counter().per_shard(snapshots, |s| s.stats.bytes_written as f64),
    );
    registry.register(
        "fanout_drops",
        "Deliveries not made: the subscriber was closing, or its queue was dropped as a slow consumer",
        Samples::counter()
            .with(vec![("reason", "closing".into())], total.frames_dropped_closing as f64)
            .with(vec![("reason", "slow_consumer".into())], total.frames_dropped_slow as f64),
    );
    registry.register(
        "slow_consumer_disconnects",
        "Connections closed with 1008 because their outbound queue overflowed",
        Samples::counter().with(
            Vec::new(),
            total.closes_for(CloseReason::SlowConsumer) as f64,
        ),
    );
    registry.register_with_unit(
        "outbound_queue",
        "Bytes queued for all connections of the shard at scrape time",
        Unit::Bytes,
        Samples::gauge().per_shard(snapshots, |s| s.outbound_queued_bytes as f64),
    );
    registry.register_with_unit(
        "outbound_queue_max",
        "Largest single connection's queue at scrape time",
        Unit::Bytes,
        Samples::gauge().per_shard(snapshots, |s| s.outbound_queue_max_bytes as f64),
    );
    registry.register(
        "pings_sent",
        "Heartbeat pings sent",
        Samples::counter().with(Vec::new(), total.pings_sent as f64),
    );
    registry.register(
        "client_messages_ignored",
        "Data messages from subscribers that ringcast does not act on",
        Samples::counter().with(Vec::new(), total.client_messages_ignored as f64),
    );
    registry.register_with_unit(
        "fanout_latency",
        "Publish arrival to the end of the write pass that reached every local subscriber",
        Unit::Seconds,
        ConstHistogram::from_microseconds(&total.fanout_latency_us),
    );
}

fn register_redis(registry: &mut Registry, redis: &RedisStatus) {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
    let flag =
        |flag: &std::sync::atomic::AtomicBool| f64::from(u8::from(flag.load(Ordering::Relaxed)));
    let gauges = [
        (
            "redis_connected",
            "1 while the subscriber connection is up",
            flag(&redis.connected),
        ),
        (
            "redis_publisher_connected",
            "1 while the publishing connection is up",
            flag(&redis.publisher_connected),
        ),
        (
            "redis_ready",
            "1 when every wanted channel is subscribed",
            if redis.is_ready() { 1.0 } else { 0.0 },
        ),
        (
            "redis_subscribed_channels",
            "Channels subscribed in Redis",
            load(&redis.subscribed_channels),
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, Samples::gauge().with(Vec::new(), value));
    }
    let counters = [
        (
            "redis_reconnects",
            "Reconnections to Redis",
            &redis.reconnects,
        ),
        (
            "redis_messages_received",
            "Messages received from Redis",
            &redis.messages_received,
        ),
        (
            "redis_messages_dropped",
            "Messages from Redis not handed to a shard (full shard channel or receive buffer), per shard",
            &redis.messages_dropped,
        ),
        (
            "redis_messages_invalid",
            "Messages on the broadcast prefix with an invalid channel name or value",
            &redis.messages_invalid,
        ),
        (
            "redis_published",
            "PUBLISH commands that succeeded",
            &redis.published,
        ),
        (
            "redis_publish_failures",
            "PUBLISH commands refused or failed (answered 503)",
            &redis.publish_failures,
        ),
    ];
    for (name, help, counter) in counters {
        registry.register(
            name,
            help,
            Samples::counter().with(Vec::new(), load(counter)),
        );
    }
}
