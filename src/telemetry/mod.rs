//! Telemetry: the counter tables, the per-shard snapshots they travel in, and the two renderings
//! of them (`/stat` for humans, `/metrics` for Prometheus).
//!
//! The bottom layer: it imports nothing of the server, the broker or HTTP. The server fills the
//! counters and takes snapshots; the broker fills the Redis counters; the HTTP handlers hand
//! [`NodeReadings`] to [`stat`] or [`metrics`] and send back what they return.
//!
//! Adding a counter is one line in a table in [`counters`]: the struct, the merge, `/stat` and
//! `/metrics` all follow from it.

pub mod counters;
pub mod metrics;
pub mod stat;

use crate::telemetry::counters::{RedisCounter, ShardStats, WebhookCounter};

/// A shard's index (0..shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

impl std::fmt::Display for ShardId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A shard's view of itself, taken when someone asks (`/stat`, `/metrics`).
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    /// Which shard.
    pub shard: ShardId,
    /// Open WebSocket connections.
    pub websocket_connections: usize,
    /// Open sockets of any kind.
    pub open_sockets: usize,
    /// Channels with subscribers here.
    pub channel_count: usize,
    /// Bytes queued for all connections.
    pub outbound_queued_bytes: usize,
    /// The largest single connection's queue.
    pub outbound_queue_max_bytes: usize,
    /// The largest channels and their subscriber counts (bounded list; empty when the asker
    /// may not see channel names).
    pub top_channels: Vec<(String, usize)>,
    /// Counters.
    pub stats: ShardStats,
}

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

/// One Redis master's subscriber connection (the one Redis of `--redis`, or each master of
/// `--redis-cluster`) as seen at scrape time.
#[derive(Debug, Clone)]
pub struct MasterReading {
    /// `host:port`, no credentials.
    pub address: String,
    /// `connecting`, `up`, `down`.
    pub state: &'static str,
    /// The subscriber connection is up.
    pub up: bool,
    /// Channels confirmed on this master.
    pub subscribed_channels: u64,
    /// Channels subscribed here again after a reconnect, a failover or a slot migration.
    pub resubscriptions: u64,
    /// The publishing connection is up.
    pub publisher_connected: bool,
}

/// The Redis link as seen at scrape time.
#[derive(Debug, Clone)]
pub struct RedisReadings {
    /// A short word for humans: `disconnected`, `subscribing`, `subscribed`, `failed`.
    pub state: &'static str,
    /// `single` (`--redis`) or `cluster` (`--redis-cluster`).
    pub mode: &'static str,
    /// The subscriber connection is up.
    pub connected: bool,
    /// The publishing connection is up.
    pub publisher_connected: bool,
    /// Every wanted channel is subscribed and the subscriber core runs.
    pub ready: bool,
    /// The subscriber core's tasks all run (false once one of them died).
    pub core_up: bool,
    /// Channels subscribed in Redis.
    pub subscribed_channels: u64,
    /// The counters, indexed by [`RedisCounter`].
    pub counters: [u64; RedisCounter::COUNT],
    /// Per master, ordered by address.
    pub masters: Vec<MasterReading>,
}

/// The webhook sender as seen at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookReadings {
    /// The counters, indexed by [`WebhookCounter`].
    pub counters: [u64; WebhookCounter::COUNT],
}

impl WebhookReadings {
    /// The value of `counter`.
    pub fn get(&self, counter: WebhookCounter) -> u64 {
        self.counters[counter.index()]
    }
}

/// Everything `/stat` and `/metrics` show about one node.
#[derive(Debug, Clone)]
pub struct NodeReadings<'a> {
    /// Shards configured.
    pub shards: usize,
    /// Per shard (indexed by shard id): running and ticking.
    pub shard_up: Vec<bool>,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The snapshots of the shards that answered, ordered by shard.
    pub snapshots: &'a [ShardSnapshot],
    /// With `--redis` or `--redis-cluster`.
    pub redis: Option<RedisReadings>,
    /// When some application has webhooks.
    pub webhooks: Option<WebhookReadings>,
    /// The process.
    pub process: ProcessReadings,
}

impl NodeReadings<'_> {
    /// The counters of every shard that answered, added up.
    pub fn totals(&self) -> ShardStats {
        let mut totals = ShardStats::default();
        for snapshot in self.snapshots {
            totals.merge(&snapshot.stats);
        }
        totals
    }
}
