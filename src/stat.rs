//! `GET /stat`: a human status page in the spirit of ws4redis's, and the same as JSON
//! (`/stat?format=json`). Built from the shards' snapshots at request time; sans-IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::metrics::ProcessReadings;
use crate::server::stats::{CloseReason, ShardStats};
use crate::server::{ShardSnapshot, Shared};

/// Everything the page shows.
pub struct StatReport<'a> {
    shared: &'a Shared,
    snapshots: &'a [ShardSnapshot],
    channels: BTreeMap<&'a str, usize>,
    totals: ShardStats,
    process: ProcessReadings,
}

impl<'a> StatReport<'a> {
    /// Merges the snapshots (shards that did not answer are absent).
    pub fn new(
        shared: &'a Shared,
        snapshots: &'a [ShardSnapshot],
        process: ProcessReadings,
    ) -> Self {
        let mut channels: BTreeMap<&str, usize> = BTreeMap::new();
        let mut totals = ShardStats::default();
        for snapshot in snapshots {
            for (name, count) in &snapshot.top_channels {
                *channels.entry(name.as_str()).or_default() += count;
            }
            totals.merge(&snapshot.stats);
        }
        StatReport {
            shared,
            snapshots,
            channels,
            totals,
            process,
        }
    }

    fn connections(&self) -> usize {
        self.snapshots.iter().map(|s| s.websocket_connections).sum()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let totals = &self.totals;
        vec![
            ("published_http", totals.published_http),
            ("deliveries", totals.frames_queued),
            ("frames_written", totals.frames_written),
            ("write_calls", totals.write_calls),
            ("bytes_written", totals.bytes_written),
            (
                "slow_consumer_closes",
                totals.closes_for(CloseReason::SlowConsumer),
            ),
            ("publish_refusals", totals.publish_refusals),
            ("connections_accepted", totals.connections_accepted),
            ("handshake_timeouts", totals.handshake_timeouts),
        ]
    }

    fn redis_counters(&self) -> Option<(&'static str, Vec<(&'static str, u64)>)> {
        let redis = self.shared.redis.as_ref()?;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        Some((
            redis.state(),
            vec![
                ("subscribed_channels", load(&redis.subscribed_channels)),
                ("reconnects", load(&redis.reconnects)),
                ("messages_received", load(&redis.messages_received)),
                ("messages_dropped", load(&redis.messages_dropped)),
                ("messages_invalid", load(&redis.messages_invalid)),
                ("published", load(&redis.published)),
                ("publish_failures", load(&redis.publish_failures)),
            ],
        ))
    }

    /// The plain-text page.
    pub fn text(&self) -> String {
        let mut page = String::new();
        let _ = writeln!(page, "ringcast {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(
            page,
            "uptime_s {}",
            self.shared.started_at.elapsed().as_secs()
        );
        let _ = writeln!(
            page,
            "shards {} (answered: {})",
            self.shared.shards.len(),
            self.snapshots.len()
        );
        let _ = writeln!(page, "connections {}", self.connections());
        for snapshot in self.snapshots {
            let _ = writeln!(
                page,
                "\tshard {}: {} websocket connections, {} sockets, {} channels",
                snapshot.shard,
                snapshot.websocket_connections,
                snapshot.open_sockets,
                snapshot.channel_count
            );
        }
        let _ = writeln!(page, "channels {}", self.channels.len());
        for (name, count) in &self.channels {
            let _ = writeln!(page, "\tchannel {name}: {count} clients");
        }
        for (name, value) in self.counters() {
            let _ = writeln!(page, "{name} {value}");
        }
        if let Some((state, counters)) = self.redis_counters() {
            let _ = writeln!(page, "redis {state}");
            for (name, value) in counters {
                let _ = writeln!(page, "redis_{name} {value}");
            }
        }
        if let Some(rss) = self.process.resident_memory_bytes {
            let _ = writeln!(page, "memory_rss_bytes {rss}");
        }
        page
    }

    /// The same as JSON.
    pub fn json(&self) -> String {
        let shards: Vec<Value> = self
            .snapshots
            .iter()
            .map(|snapshot| {
                json!({
                    "shard": snapshot.shard,
                    "connections": snapshot.websocket_connections,
                    "sockets": snapshot.open_sockets,
                    "channels": snapshot.channel_count,
                })
            })
            .collect();
        let counters: serde_json::Map<String, Value> = self
            .counters()
            .into_iter()
            .map(|(name, value)| (name.to_string(), json!(value)))
            .collect();
        let redis = self.redis_counters().map(|(state, counters)| {
            let mut object: serde_json::Map<String, Value> = counters
                .into_iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect();
            object.insert("state".into(), json!(state));
            Value::Object(object)
        });
        let report = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.shared.started_at.elapsed().as_secs(),
            "shards": self.shared.shards.len(),
            "shards_answered": self.snapshots.len(),
            "connections": self.connections(),
            "per_shard": shards,
            "channels": self.channels,
            "counters": counters,
            "redis": redis,
            "memory_rss_bytes": self.process.resident_memory_bytes,
            "open_fds": self.process.open_fds,
        });
        let mut text = report.to_string();
        text.push('\n');
        text
    }
}
