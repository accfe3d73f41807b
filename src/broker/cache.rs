//! Pusher cache channels' last event (`cache-`, `private-cache-`, `presence-cache-`,
//! `private-encrypted-cache-`): kept for the application's `cache_ttl_s` (default 30 min) and
//! replayed to each new subscriber, who otherwise gets `pusher:cache_miss`.
//!
//! Without Redis the events are this node's, in memory ([`MemoryCache`], shared by the shards,
//! at most [`MEMORY_ENTRIES_MAX`] channels). With `--redis` / `--redis-cluster` they are in
//! Redis (`{PREFIX:cache:APP_ID:CHANNEL}`, value `EVENT \n DATA`, with the TTL as the key's
//! expiry), written by the node that publishes, so every node replays the same last event.
//!
//! Imports point down: channel names and the script runner, nothing of shards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};

use super::scripts::{Attempts, Scripts};
use crate::channel::{AppSlot, ChannelName};

/// Most cache channels one node keeps without Redis (expired ones make room first).
pub const MEMORY_ENTRIES_MAX: usize = 100_000;
/// Requests answered at once.
const IN_FLIGHT_MAX: usize = 32;

/// A cache channel's last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEvent {
    /// The event name.
    pub event: Arc<str>,
    /// Its data (a string, as triggers carry it).
    pub data: Bytes,
}

/// Which cache channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheChannel {
    /// The namespace on this node.
    pub app: AppSlot,
    /// The application's id (the same on every node).
    pub app_id: Arc<str>,
    /// The channel.
    pub channel: ChannelName,
}

/// What a shard asks.
#[derive(Debug)]
pub enum CacheCommand {
    /// Keep `event` as the channel's last for `ttl`.
    Put {
        /// The channel.
        channel: CacheChannel,
        /// The event.
        event: CachedEvent,
        /// How long.
        ttl: Duration,
        /// Whether it was kept.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The channel's last event, if any.
    Get {
        /// The channel.
        channel: CacheChannel,
        /// The answer.
        reply: oneshot::Sender<Result<Option<CachedEvent>, String>>,
    },
}

/// The shards' end of the Redis service.
pub type CacheLink = mpsc::Sender<CacheCommand>;

/// A link and its receiving end.
pub fn channel(capacity: usize) -> (CacheLink, mpsc::Receiver<CacheCommand>) {
    mpsc::channel(capacity)
}

/// Every cache channel's last event on this node (no Redis).
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: HashMap<(AppSlot, ChannelName), (CachedEvent, Instant)>,
}

/// The memory cache is full of live entries: the event was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheFull;

impl MemoryCache {
    /// Keeps `event` as `channel`'s last until `now + ttl`.
    pub fn put(
        &mut self,
        channel: &CacheChannel,
        event: CachedEvent,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), CacheFull> {
        let key = (channel.app, channel.channel.clone());
        if !self.entries.contains_key(&key) && self.entries.len() >= MEMORY_ENTRIES_MAX {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= MEMORY_ENTRIES_MAX {
                return Err(CacheFull);
            }
        }
        self.entries.insert(key, (event, now + ttl));
        Ok(())
    }

    /// `channel`'s last event, unless it expired.
    pub fn get(&mut self, channel: &CacheChannel, now: Instant) -> Option<CachedEvent> {
        let key = (channel.app, channel.channel.clone());
        match self.entries.get(&key) {
            Some((event, expires)) if *expires > now => Some(event.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }
}

/// `{PREFIX:cache:APP_ID:CHANNEL}`.
fn key(prefix: &str, channel: &CacheChannel) -> String {
    format!(
        "{{{prefix}:cache:{}:{}}}",
        channel.app_id,
        channel.channel.as_str()
    )
}

/// `EVENT \n DATA` (an event name has no newline).
fn encode(event: &CachedEvent) -> Bytes {
    let mut out = Vec::with_capacity(event.event.len() + 1 + event.data.len());
    out.extend_from_slice(event.event.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&event.data);
    Bytes::from(out)
}

fn decode(value: Bytes) -> Option<CachedEvent> {
    let newline = value.iter().position(|&byte| byte == b'\n')?;
    let event = std::str::from_utf8(&value[..newline]).ok()?;
    Some(CachedEvent {
        event: Arc::from(event),
        data: value.slice(newline + 1..),
    })
}

/// Runs the Redis cache service until the shards hang up.
pub async fn serve(scripts: Scripts, prefix: Arc<str>, commands: mpsc::Receiver<CacheCommand>) {
    commands
        .for_each_concurrent(IN_FLIGHT_MAX, |command| {
            let (scripts, prefix) = (scripts.clone(), prefix.clone());
            async move {
                match command {
                    CacheCommand::Put {
                        channel,
                        event,
                        ttl,
                        reply,
                    } => {
                        let result = scripts
                            .eval(
                                "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])",
                                vec![key(&prefix, &channel)],
                                vec![
                                    Value::Bytes(encode(&event)),
                                    Value::from(ttl.as_millis().max(1) as i64),
                                ],
                                Attempts::Retried,
                            )
                            .await
                            .map(drop);
                        let _ = reply.send(result);
                    }
                    CacheCommand::Get { channel, reply } => {
                        let result = scripts
                            .eval(
                                "return redis.call('GET', KEYS[1])",
                                vec![key(&prefix, &channel)],
                                Vec::new(),
                                Attempts::Retried,
                            )
                            .await
                            .map(|value| match value {
                                Value::Bytes(bytes) => decode(bytes),
                                Value::String(text) => decode(Bytes::from(text.to_string())),
                                _ => None,
                            });
                        let _ = reply.send(result);
                    }
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news() -> CacheChannel {
        CacheChannel {
            app: AppSlot::DEFAULT,
            app_id: Arc::from("1"),
            channel: ChannelName::new("cache-news").unwrap(),
        }
    }

    fn event(data: &'static str) -> CachedEvent {
        CachedEvent {
            event: Arc::from("headline"),
            data: Bytes::from_static(data.as_bytes()),
        }
    }

    #[test]
    fn the_last_event_is_kept_until_it_expires() {
        let mut cache = MemoryCache::default();
        let now = Instant::now();
        assert_eq!(cache.get(&news(), now), None);
        let ttl = Duration::from_secs(60);
        cache.put(&news(), event("1"), ttl, now).unwrap();
        cache.put(&news(), event("2"), ttl, now).unwrap();
        assert_eq!(cache.get(&news(), now), Some(event("2")));
        assert_eq!(cache.get(&news(), now + ttl), None);
        assert!(
            cache.entries.is_empty(),
            "an expired entry is dropped when read"
        );
    }

    #[test]
    fn stored_events_read_back() {
        let stored = event("{\"a\":\"b\\nc\"}");
        assert_eq!(decode(encode(&stored)), Some(stored));
        assert!(key("ws", &news()).starts_with("{ws:cache:1:cache-news}"));
    }
}
