//! The little state all shards can see: one slot per shard, written only by its owner, read by
//! whoever answers `/healthz` or `/stat`, plus the process-wide shutdown flag.
//!
//! This is not the data path: a slot is written when a connection opens or closes and by the
//! shard's ticker, never per message or per delivery. Each slot sits on its own cache lines so
//! one shard's writes never contend with another's. Relaxed ordering is enough: readers want a
//! recent value, not a consistent snapshot across shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::redis::RedisStatus;
use std::time::{Duration, Instant};

/// A shard whose ticker has not run for this long is reported as stalled by `/healthz`.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(2);

/// One shard's published figures.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardSlot {
    /// The shard's executor is running its main loop.
    pub running: AtomicBool,
    /// Milliseconds since [`Shared::started_at`] at the shard's last tick.
    pub heartbeat_ms: AtomicU64,
    /// Open WebSocket connections.
    pub websocket_connections: AtomicU64,
    /// Open sockets of any kind (WebSocket, HTTP, handshaking).
    pub open_sockets: AtomicU64,
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

    /// Are all shards running and ticking?
    pub fn all_shards_healthy(&self) -> bool {
        let now_ms = self.now_ms();
        let stale_ms = HEARTBEAT_STALE_AFTER.as_millis() as u64;
        self.shards.iter().all(|slot| {
            slot.running.load(Ordering::Relaxed)
                && now_ms.saturating_sub(slot.heartbeat_ms.load(Ordering::Relaxed)) < stale_ms
        })
    }

    /// Ready to deliver: every shard healthy, not draining, and with `--redis`, Redis connected
    /// and every wanted channel subscribed.
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
