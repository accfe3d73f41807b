//! `GET /stat`: a human status page in the spirit of ws4redis's, and the same as JSON
//! (`/stat?format=json`). Built from [`NodeReadings`] at request time; sans-IO.
//!
//! Every counter of the tables in [`super::counters`] appears under its one name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::NodeReadings;
use super::counters::{CloseReason, Counter, RedisCounter, ShardStats, WebhookCounter};

/// Everything the page shows.
pub struct StatReport<'a> {
    node: &'a NodeReadings<'a>,
    channels: BTreeMap<&'a str, usize>,
    totals: ShardStats,
}

impl<'a> StatReport<'a> {
    /// Merges the snapshots (shards that did not answer are absent).
    pub fn new(node: &'a NodeReadings<'a>) -> Self {
        let mut channels: BTreeMap<&str, usize> = BTreeMap::new();
        for snapshot in node.snapshots {
            for (name, count) in &snapshot.top_channels {
                *channels.entry(name.as_str()).or_default() += count;
            }
        }
        StatReport {
            node,
            channels,
            totals: node.totals(),
        }
    }

    fn connections(&self) -> usize {
        self.node
            .snapshots
            .iter()
            .map(|s| s.websocket_connections)
            .sum()
    }

    /// (name, value) of every counter row, then the closes by reason.
    fn counters(&self) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = Counter::ALL
            .iter()
            .map(|&counter| (counter.name().to_string(), self.totals.get(counter)))
            .collect();
        rows.extend(CloseReason::ALL.iter().map(|&reason| {
            (
                format!("closed_{}", reason.name()),
                self.totals.closes_for(reason),
            )
        }));
        rows
    }

    /// The plain-text page.
    pub fn text(&self) -> String {
        let node = self.node;
        let mut page = String::new();
        let _ = writeln!(page, "ringcast {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(page, "uptime_s {}", node.uptime_s);
        let _ = writeln!(
            page,
            "shards {} (answered: {}, up: {})",
            node.shards,
            node.snapshots.len(),
            node.shard_up.iter().filter(|up| **up).count()
        );
        let _ = writeln!(page, "connections {}", self.connections());
        for snapshot in node.snapshots {
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
        let _ = writeln!(page, "deflate_ratio {:.2}", self.totals.deflate_ratio());
        if let Some(redis) = &node.redis {
            let _ = writeln!(page, "redis {} ({})", redis.state, redis.mode);
            let _ = writeln!(
                page,
                "redis_subscribed_channels {}",
                redis.subscribed_channels
            );
            for master in &redis.masters {
                let _ = writeln!(
                    page,
                    "\tredis master {}: {}, {} channels, {} resubscriptions, publisher {}",
                    master.address,
                    master.state,
                    master.subscribed_channels,
                    master.resubscriptions,
                    if master.publisher_connected {
                        "up"
                    } else {
                        "down"
                    }
                );
            }
            for &counter in RedisCounter::ALL {
                let _ = writeln!(
                    page,
                    "{} {}",
                    counter.name(),
                    redis.counters[counter.index()]
                );
            }
        }
        if let Some(webhooks) = &node.webhooks {
            for &counter in WebhookCounter::ALL {
                let _ = writeln!(page, "{} {}", counter.name(), webhooks.get(counter));
            }
        }
        if let Some(rss) = node.process.resident_memory_bytes {
            let _ = writeln!(page, "memory_rss_bytes {rss}");
        }
        page
    }

    /// The same as JSON.
    pub fn json(&self) -> Value {
        let node = self.node;
        let shards: Vec<Value> = node
            .snapshots
            .iter()
            .map(|snapshot| {
                json!({
                    "shard": snapshot.shard.0,
                    "connections": snapshot.websocket_connections,
                    "sockets": snapshot.open_sockets,
                    "channels": snapshot.channel_count,
                })
            })
            .collect();
        let counters: Map<String, Value> = self
            .counters()
            .into_iter()
            .map(|(name, value)| (name, json!(value)))
            .collect();
        let redis = node.redis.as_ref().map(|redis| {
            let mut object: Map<String, Value> = RedisCounter::ALL
                .iter()
                .map(|&counter| {
                    (
                        counter.name().to_string(),
                        json!(redis.counters[counter.index()]),
                    )
                })
                .collect();
            object.insert("state".into(), json!(redis.state));
            object.insert("mode".into(), json!(redis.mode));
            let masters: Vec<Value> = redis
                .masters
                .iter()
                .map(|master| {
                    json!({
                        "address": master.address,
                        "state": master.state,
                        "subscribed_channels": master.subscribed_channels,
                        "resubscriptions": master.resubscriptions,
                        "publisher_connected": master.publisher_connected,
                    })
                })
                .collect();
            object.insert("masters".into(), json!(masters));
            object.insert(
                "redis_subscribed_channels".into(),
                json!(redis.subscribed_channels),
            );
            Value::Object(object)
        });
        let webhooks = node.webhooks.as_ref().map(|webhooks| {
            WebhookCounter::ALL
                .iter()
                .map(|&counter| (counter.name().to_string(), json!(webhooks.get(counter))))
                .collect::<Map<String, Value>>()
        });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": node.uptime_s,
            "shards": node.shards,
            "shards_answered": node.snapshots.len(),
            "shards_up": node.shard_up.iter().filter(|up| **up).count(),
            "connections": self.connections(),
            "per_shard": shards,
            "channels": self.channels,
            "counters": counters,
            "deflate_ratio": self.totals.deflate_ratio(),
            "redis": redis,
            "webhooks": webhooks,
            "memory_rss_bytes": node.process.resident_memory_bytes,
            "open_fds": node.process.open_fds,
        })
    }
}
