//! The little state all shards can see: one slot per shard, written only by its owner (or by
//! its death guard), read by whoever answers `/healthz`, publishes, or asks for snapshots; plus
//! the process-wide shutdown flag.
//!
//! This is not the data path: a slot is written by the shard's ticker and when the shard starts
//! or dies, never per message or per delivery. Each slot sits on its own cache lines so one
//! shard's writes never contend with another's. Relaxed ordering is enough: readers want a
//! recent value, not a consistent snapshot across shards.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::cache::MemoryCache;
use crate::broker::occupancy::Ledger;
use crate::broker::presence::MemoryPresence;
use crate::broker::redis::RedisStatus;
use crate::broker::webhook::WebhookQueue;

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

/// Stripes of the per-address table (a lock each): shards upgrading connections from different
/// addresses rarely wait on each other.
const ADDRESS_STRIPES: usize = 64;

/// `--max-connections-per-ip`: WebSocket connections per client address across the node.
///
/// Touched when a connection is upgraded and when it ends, never per message; a striped table
/// of counts behind short locks (the only lock in ringcast, and off the data path).
#[derive(Debug)]
pub struct AddressLimit {
    max_per_address: u32,
    stripes: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

/// One connection's place in its address's count; released when dropped (however the
/// connection ends).
#[derive(Debug)]
pub struct AddressTicket {
    address: IpAddr,
    limit: Arc<AddressLimit>,
}

impl AddressLimit {
    /// A limit of `max_per_address` connections per address.
    pub fn new(max_per_address: u32) -> AddressLimit {
        AddressLimit {
            max_per_address,
            stripes: (0..ADDRESS_STRIPES)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn stripe(&self, address: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        use std::hash::{Hash, Hasher};
        // A fixed hasher: the stripe of an address must not change between calls.
        let mut hasher = std::hash::DefaultHasher::new();
        address.hash(&mut hasher);
        &self.stripes[hasher.finish() as usize % self.stripes.len()]
    }

    /// Takes a place for `address`, or `None` when it holds the maximum already.
    pub fn acquire(limit: &Arc<AddressLimit>, address: IpAddr) -> Option<AddressTicket> {
        // A poisoned stripe means a panic while counting; the counts are still plain numbers.
        let mut counts = limit
            .stripe(&address)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(address).or_insert(0);
        if *count >= limit.max_per_address {
            return None;
        }
        *count += 1;
        Some(AddressTicket {
            address,
            limit: limit.clone(),
        })
    }

    /// Connections `address` holds now.
    pub fn count(&self, address: IpAddr) -> u32 {
        self.stripe(&address)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&address)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for AddressTicket {
    fn drop(&mut self) {
        let mut counts = self
            .limit
            .stripe(&self.address)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // Bounded: the table holds only addresses with connections.
                counts.remove(&self.address);
            }
        }
    }
}

/// One Pusher connection's place in its application's count (given back on drop).
#[derive(Debug)]
pub struct AppTicket {
    counts: Arc<[PaddedCounter]>,
    app: usize,
}

impl Drop for AppTicket {
    fn drop(&mut self) {
        if let Some(counter) = self.counts.get(self.app) {
            counter.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A counter on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct PaddedCounter(pub AtomicU64);

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
    /// `--max-connections-per-ip`, when set.
    pub address_limit: Option<Arc<AddressLimit>>,
    /// Messages each shard has taken from each other shard's mesh channel, indexed
    /// `[receiver * shards + sender]`: written only by the receiver (once per batch), read by
    /// the sender to know, before it sends anything, that every channel of a publish has room
    /// (each mesh channel has exactly one sender, so its room can only grow meanwhile).
    mesh_consumed: Box<[PaddedCounter]>,
    /// Capacity of each mesh channel (`--mesh-capacity`).
    pub mesh_capacity: usize,
    /// Pusher connections per application on this node (for `max_connections`; touched when
    /// a connection opens or closes, never per message).
    app_connections: Arc<[PaddedCounter]>,
    /// Presence members of this node's channels, without Redis (with it, they are in Redis).
    /// Locked for one map operation when a member joins or leaves, never on the fan-out path.
    pub presence: Mutex<MemoryPresence>,
    /// Cache channels' last events, without Redis (locked per trigger or subscribe to a cache
    /// channel, never on the fan-out path).
    pub cache: Mutex<MemoryCache>,
    /// Where webhooks go (`None`: no application has any).
    pub webhooks: Option<WebhookQueue>,
    /// This node's channel transitions, without Redis (locked once per shard report, at most
    /// once a second per shard).
    pub ledger: Mutex<Ledger>,
}

impl Shared {
    /// State for `shard_count` shards.
    pub fn new(
        shard_count: usize,
        max_connections_per_shard: usize,
        max_sockets_per_shard: usize,
        mesh_capacity: usize,
    ) -> Shared {
        Shared {
            shards: (0..shard_count).map(|_| ShardSlot::default()).collect(),
            shutdown: AtomicBool::new(false),
            started_at: Instant::now(),
            max_connections_per_shard,
            max_sockets_per_shard,
            redis: None,
            address_limit: None,
            mesh_consumed: (0..shard_count * shard_count)
                .map(|_| PaddedCounter::default())
                .collect(),
            mesh_capacity,
            app_connections: Arc::from([]),
            presence: Mutex::default(),
            cache: Mutex::default(),
            webhooks: None,
            ledger: Mutex::default(),
        }
    }

    /// Counts Pusher connections for `apps` applications.
    pub fn count_app_connections(&mut self, apps: usize) {
        self.app_connections = (0..apps).map(|_| PaddedCounter::default()).collect();
    }

    /// Pusher connections of `app` on this node.
    pub fn app_connections(&self, app: crate::channel::AppSlot) -> u64 {
        self.app_connections
            .get(usize::from(app.0))
            .map_or(0, |counter| counter.0.load(Ordering::Relaxed))
    }

    /// Counts one more connection of `app` until the ticket drops.
    pub fn app_connection_ticket(&self, app: crate::channel::AppSlot) -> AppTicket {
        let index = usize::from(app.0);
        if let Some(counter) = self.app_connections.get(index) {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
        AppTicket {
            counts: self.app_connections.clone(),
            app: index,
        }
    }

    /// `receiver` took `count` more messages from `sender`'s channel.
    pub fn mesh_consumed_add(&self, receiver: usize, sender: usize, count: u64) {
        let shards = self.shards.len();
        self.mesh_consumed[receiver * shards + sender]
            .0
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Messages `receiver` has taken from `sender`'s channel so far.
    pub fn mesh_consumed(&self, receiver: usize, sender: usize) -> u64 {
        let shards = self.shards.len();
        self.mesh_consumed[receiver * shards + sender]
            .0
            .load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_share_and_gets_it_back() {
        let limit = Arc::new(AddressLimit::new(2));
        let address: IpAddr = "127.0.0.7".parse().unwrap();
        let other: IpAddr = "::1".parse().unwrap();
        let first = AddressLimit::acquire(&limit, address).unwrap();
        let second = AddressLimit::acquire(&limit, address).unwrap();
        assert!(AddressLimit::acquire(&limit, address).is_none());
        assert!(AddressLimit::acquire(&limit, other).is_some());
        drop(first);
        assert_eq!(limit.count(address), 1);
        let third = AddressLimit::acquire(&limit, address).unwrap();
        drop((second, third));
        assert_eq!(limit.count(address), 0);
    }
}
