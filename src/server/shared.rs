//! The little state all shards can see: one slot per shard, written only by its owner (or by
//! its death guard), read by whoever answers `/healthz`, publishes, or asks for snapshots; plus
//! the process-wide shutdown flag.
//!
//! This is not the data path: a slot is written by the shard's ticker and when the shard starts
//! or dies, never per message or per delivery. Each slot sits on its own cache lines so one
//! shard's writes never contend with another's. Relaxed ordering is enough: readers want a
//! recent value, not a consistent snapshot across shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::broker::redis::RedisStatus;

/// A shard whose ticker has not run for this long is reported as stalled by `/healthz`.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(2);

/// Where a shard is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ShardLife {
    /// Not running yet.
    Starting = 0,
    /// Running its tasks.
    Running = 1,
    /// Stopped after draining.
    Stopped = 2,
    /// Its executor died (a panic outside any connection's handler): left out of publishes and
    /// snapshots, reported by `/healthz`.
    Dead = 3,
}

/// One shard's published figures.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardSlot {
    /// A [`ShardLife`].
    life: AtomicU8,
    /// Milliseconds since [`Shared::started_at`] at the shard's last tick.
    heartbeat_ms: AtomicU64,
}

impl ShardSlot {
    /// The shard's life.
    pub fn life(&self) -> ShardLife {
        match self.life.load(Ordering::Relaxed) {
            0 => ShardLife::Starting,
            1 => ShardLife::Running,
            2 => ShardLife::Stopped,
            _ => ShardLife::Dead,
        }
    }

    /// Records the shard's life.
    pub fn set_life(&self, life: ShardLife) {
        self.life.store(life as u8, Ordering::Relaxed);
    }

    /// The shard can take messages (it has not died).
    pub fn is_alive(&self) -> bool {
        self.life() != ShardLife::Dead
    }

    /// Records a tick at `now_ms`.
    pub fn beat(&self, now_ms: u64) {
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// State shared by every shard and the main thread.
#[derive(Debug)]
pub struct Shared {
    /// One slot per shard, indexed by shard id.
    pub shards: Box<[ShardSlot]>,
    /// Set once by the signal thread: every shard drains and stops.
    pub shutdown: AtomicBool,
    /// Process start: the epoch of heartbeats.
    pub started_at: Instant,
    /// WebSocket connections allowed per shard (`--max-connections`, or what the open-file
    /// limit allows).
    pub max_connections_per_shard: usize,
    /// Sockets of any kind per shard (what the open-file limit allows): beyond it, new
    /// connections are answered 503 at once without reading a request.
    pub max_sockets_per_shard: usize,
    /// The Redis link's status, with `--redis`.
    pub redis: Option<Arc<RedisStatus>>,
}

impl Shared {
    /// State for `shard_count` shards.
    pub fn new(
        shard_count: usize,
        max_connections_per_shard: usize,
        max_sockets_per_shard: usize,
    ) -> Shared {
        Shared {
            shards: (0..shard_count).map(|_| ShardSlot::default()).collect(),
            shutdown: AtomicBool::new(false),
            started_at: Instant::now(),
            max_connections_per_shard,
            max_sockets_per_shard,
            redis: None,
        }
    }

    /// Milliseconds since start, for heartbeats.
    pub fn now_ms(&self) -> u64 {
        self.started_at.elapsed().as_millis() as u64
    }

    /// Per shard: running and ticking.
    pub fn shard_health(&self) -> Vec<bool> {
        let now_ms = self.now_ms();
        let stale_ms = HEARTBEAT_STALE_AFTER.as_millis() as u64;
        self.shards
            .iter()
            .map(|slot| {
                slot.life() == ShardLife::Running
                    && now_ms.saturating_sub(slot.heartbeat_ms.load(Ordering::Relaxed)) < stale_ms
            })
            .collect()
    }

    /// Are all shards running and ticking?
    pub fn all_shards_healthy(&self) -> bool {
        self.shard_health().into_iter().all(|healthy| healthy)
    }

    /// Ready to deliver: every shard healthy, not draining, and with `--redis`, Redis connected,
    /// every wanted channel subscribed and the subscriber core alive.
    pub fn ready(&self) -> bool {
        self.all_shards_healthy()
            && !self.shutting_down()
            && self.redis.as_ref().is_none_or(|redis| redis.is_ready())
    }

    /// Has shutdown been requested?
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}
