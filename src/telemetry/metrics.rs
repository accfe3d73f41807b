//! `GET /metrics`: the Prometheus/OpenMetrics text exposition, built at scrape time.
//!
//! Shards keep plain counters of their own (no atomics shared across cores, nothing per
//! delivery). A scrape asks every shard for a snapshot over the mesh, and this module turns
//! [`NodeReadings`] into one registry of constant metrics, encoded by `prometheus-client`.
//! Nothing here runs on the data path. Every row of the counter tables becomes
//! `ringcast_{name}_total`; the gauges and labelled families are listed here.
//!
//! Every metric is documented in the README's metrics table; keep the two in step.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::counters::{CloseReason, Counter, RedisCounter, WebhookCounter};
use super::{MasterReading, NodeReadings, RedisReadings, ShardSnapshot};

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

/// Renders the exposition (shards that did not answer are absent; `ringcast_shard_up` says so).
pub fn render(node: &NodeReadings<'_>) -> String {
    let mut registry = Registry::with_prefix("ringcast");
    register_connections(&mut registry, node);
    for &counter in Counter::ALL {
        registry.register(
            counter.name(),
            counter.help(),
            Samples::counter().per_shard(node.snapshots, |snapshot| {
                snapshot.stats.get(counter) as f64
            }),
        );
    }
    register_traffic(&mut registry, node);
    if let Some(redis) = &node.redis {
        register_redis(&mut registry, redis);
    }
    if let Some(webhooks) = &node.webhooks {
        for &counter in WebhookCounter::ALL {
            registry.register(
                counter.name(),
                counter.help(),
                Samples::counter().with(Vec::new(), webhooks.get(counter) as f64),
            );
        }
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
    if let Some(bytes) = node.process.resident_memory_bytes {
        process_registry.register_with_unit(
            "resident_memory",
            "Resident memory size",
            Unit::Bytes,
            Samples::gauge().with(Vec::new(), bytes as f64),
        );
    }
    if let Some(fds) = node.process.open_fds {
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

fn register_connections(registry: &mut Registry, node: &NodeReadings<'_>) {
    let mut up = Samples::gauge();
    for (shard, running) in node.shard_up.iter().enumerate() {
        let answered = node
            .snapshots
            .iter()
            .any(|snapshot| snapshot.shard.0 == shard);
        up = up.with(
            vec![("shard", shard.to_string())],
            f64::from(u8::from(answered && *running)),
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
        Samples::gauge().per_shard(node.snapshots, |s| s.websocket_connections as f64),
    );
    registry.register(
        "sockets_open",
        "Open sockets of any kind (WebSocket, HTTP, handshaking)",
        Samples::gauge().per_shard(node.snapshots, |s| s.open_sockets as f64),
    );
    registry.register(
        "channels",
        "Channels with at least one subscriber",
        Samples::gauge().per_shard(node.snapshots, |s| s.channel_count as f64),
    );
    let totals = node.totals();
    let mut closed = Samples::counter();
    for reason in CloseReason::ALL {
        let code = reason
            .close_code()
            .map_or_else(|| "none".to_string(), |code| code.to_string());
        closed = closed.with(
            vec![("reason", reason.name().to_string()), ("code", code)],
            totals.closes_for(reason) as f64,
        );
    }
    registry.register(
        "connections_closed",
        "WebSocket connections closed, by reason and close code sent",
        closed,
    );
    let mut rejected = Samples::counter();
    for (status, count) in totals.http_rejections() {
        rejected = rejected.with(vec![("status", status.to_string())], count as f64);
    }
    registry.register(
        "http_rejections",
        "Requests refused, by HTTP status",
        rejected,
    );
}

fn register_traffic(registry: &mut Registry, node: &NodeReadings<'_>) {
    registry.register_with_unit(
        "outbound_queue",
        "Bytes queued for all connections of the shard at scrape time",
        Unit::Bytes,
        Samples::gauge().per_shard(node.snapshots, |s| s.outbound_queued_bytes as f64),
    );
    registry.register_with_unit(
        "outbound_queue_max",
        "Largest single connection's queue at scrape time",
        Unit::Bytes,
        Samples::gauge().per_shard(node.snapshots, |s| s.outbound_queue_max_bytes as f64),
    );
    registry.register(
        "deflate_ratio",
        "Uncompressed over compressed bytes of the frames permessage-deflate compressed (1 when none)",
        Samples::gauge().with(Vec::new(), node.totals().deflate_ratio()),
    );
    registry.register_with_unit(
        "fanout_latency",
        "Publish arrival to the end of the write pass that reached every local subscriber",
        Unit::Seconds,
        ConstHistogram::from_microseconds(&node.totals().fanout_latency_us),
    );
}

fn register_redis(registry: &mut Registry, redis: &RedisReadings) {
    let flag = |flag: bool| f64::from(u8::from(flag));
    let gauges = [
        (
            "redis_connected",
            "1 while the subscriber connection is up",
            flag(redis.connected),
        ),
        (
            "redis_publisher_connected",
            "1 while the publishing connection is up",
            flag(redis.publisher_connected),
        ),
        (
            "redis_ready",
            "1 when every wanted channel is subscribed and the subscriber core runs",
            flag(redis.ready),
        ),
        (
            "redis_core_up",
            "1 while every task of the Redis subscriber core runs",
            flag(redis.core_up),
        ),
        (
            "redis_subscribed_channels",
            "Channels subscribed in Redis",
            redis.subscribed_channels as f64,
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, Samples::gauge().with(Vec::new(), value));
    }
    for &counter in RedisCounter::ALL {
        registry.register(
            counter.name(),
            counter.help(),
            Samples::counter().with(Vec::new(), redis.counters[counter.index()] as f64),
        );
    }
    let per_master = |value: &dyn Fn(&MasterReading) -> f64| {
        redis
            .masters
            .iter()
            .fold(Samples::gauge(), |samples, master| {
                samples.with(vec![("master", master.address.clone())], value(master))
            })
    };
    registry.register(
        "redis_master_up",
        "1 while the subscriber connection to this Redis master is up (one Redis: its server)",
        per_master(&|master| flag(master.up)),
    );
    registry.register(
        "redis_master_publisher_connected",
        "1 while the publishing connection to this Redis master is up",
        per_master(&|master| flag(master.publisher_connected)),
    );
    registry.register(
        "redis_master_subscribed_channels",
        "Channels confirmed on this Redis master",
        per_master(&|master| master.subscribed_channels as f64),
    );
    let resubscriptions = redis
        .masters
        .iter()
        .fold(Samples::counter(), |samples, master| {
            samples.with(
                vec![("master", master.address.clone())],
                master.resubscriptions as f64,
            )
        });
    registry.register(
        "redis_master_resubscriptions",
        "Channels subscribed again on this Redis master after a reconnect, a failover or a slot migration",
        resubscriptions,
    );
}
