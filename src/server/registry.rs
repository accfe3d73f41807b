//! One shard's WebSocket connections and channels, and the fan-out over them.
//!
//! Owned by exactly one shard (no locks, no atomics). Connections live in a slab; a channel holds
//! the slab keys of its subscribers in a `Vec`, and each connection remembers its position in
//! every channel it joined, so joining and leaving are O(1) (swap-remove, then fix the moved
//! subscriber's position). The fan-out frames a message once and pushes a reference to the same
//! bytes into each subscriber's queue: no allocation or copy per subscriber.

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Waker;

use bytes::Bytes;
use slab::Slab;
use smallvec::SmallVec;

use super::event::LocalNotify;
use super::outbound::{Outbound, WriteOutcome, WriteTally};
use super::stats::{CloseReason, ShardStats};
use crate::channel::ChannelName;

/// A connection's key in its shard's slab.
pub type ConnectionKey = usize;

/// Why the shard wants a connection closed; the connection's task carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRequest {
    /// Nothing received for `--idle-timeout`.
    Idle,
    /// The server is draining (SIGTERM/SIGINT).
    Shutdown,
    /// The outbound queue exceeded `--outbound-queue-bytes`.
    SlowConsumer,
}

impl CloseRequest {
    /// The close code and reason sent, and the reason counted.
    pub fn close_frame(self) -> (u16, &'static str, CloseReason) {
        use crate::protocol::error::close_code;
        match self {
            CloseRequest::Idle => (
                close_code::GOING_AWAY,
                "idle timeout",
                CloseReason::IdleTimeout,
            ),
            CloseRequest::Shutdown => (
                close_code::GOING_AWAY,
                "server shutting down",
                CloseReason::Shutdown,
            ),
            CloseRequest::SlowConsumer => (
                close_code::POLICY_VIOLATION,
                "slow consumer",
                CloseReason::SlowConsumer,
            ),
        }
    }
}

/// A subscription: which channel, and where this connection sits in its subscriber list.
#[derive(Debug, Clone, Copy)]
struct Subscription {
    channel: usize,
    position: usize,
}

/// The shard-side state of one WebSocket connection. The socket itself and the input buffer
/// belong to the connection's task; this is what the fan-out and the ticker need.
#[derive(Debug)]
pub struct Connection {
    /// The socket, for the fan-out's writes. Valid while the connection is in the slab: the
    /// task removes it from the slab before it closes the socket.
    pub fd: RawFd,
    /// Frames waiting to be written.
    pub outbound: Outbound,
    /// Wakes the connection's task (write blocked, close requested).
    pub waker: Option<Waker>,
    /// Channels joined: usually one, kept inline so it costs no allocation.
    subscriptions: SmallVec<[Subscription; 1]>,
    /// Shard clock (ms) of the last bytes received.
    pub last_read_ms: u64,
    /// Shard clock (ms) of the last ping sent.
    pub last_ping_ms: u64,
    /// In the shard's list of connections to flush.
    in_flush_list: bool,
    /// The last write hit a full send buffer; the task waits for writability.
    pub write_blocked: bool,
    /// Writes are held back (the 101 waits for the Redis subscription of a new channel).
    pub writes_held: bool,
    /// A write is being prepared or submitted (between `begin_flush` and `end_flush`): a
    /// connection listed twice in one batch is written once.
    write_in_flight: bool,
    /// A write failed; the task ends the connection.
    pub write_failed: bool,
    /// Queued past the limit during this pass; checked again after the flush.
    over_limit: bool,
    /// A close frame is queued: nothing but it goes out any more.
    pub closing: bool,
    /// A close the task has yet to carry out.
    pub close_request: Option<CloseRequest>,
}

impl Connection {
    fn new(fd: RawFd, now_ms: u64) -> Connection {
        Connection {
            fd,
            outbound: Outbound::default(),
            waker: None,
            subscriptions: SmallVec::new(),
            last_read_ms: now_ms,
            last_ping_ms: now_ms,
            in_flush_list: false,
            write_blocked: false,
            writes_held: false,
            write_in_flight: false,
            write_failed: false,
            over_limit: false,
            closing: false,
            close_request: None,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = &self.waker {
            waker.wake_by_ref();
        }
    }
}

/// A channel with subscribers on this shard.
#[derive(Debug)]
struct Channel {
    name: ChannelName,
    subscribers: Vec<ConnectionKey>,
    /// The Redis subscriber core confirmed the channel is subscribed (always false without
    /// Redis).
    confirmed: bool,
}

/// Refusal to join a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyChannels;

/// Everything one shard owns about its WebSocket connections.
#[derive(Debug)]
pub struct Registry {
    /// Open WebSocket connections.
    pub connections: Slab<Connection>,
    /// Channels with at least one subscriber here.
    channels: Slab<Channel>,
    /// Channel name to key in `channels`.
    channel_keys: HashMap<ChannelName, usize>,
    /// `--max-channels`.
    max_channels: usize,
    /// Connections with frames queued since the last flush.
    flush_list: Vec<ConnectionKey>,
    /// An emptied flush list kept for its allocation (the flush list and this one take turns).
    spare_flush_list: Vec<ConnectionKey>,
    /// Connections that went over the queue limit during the current pass.
    over_limit: Vec<ConnectionKey>,
    /// `--outbound-queue-bytes`.
    outbound_limit_bytes: usize,
    /// Channels that appeared or disappeared on this shard since the Redis subscription task
    /// last looked (`None` without Redis). A set: bounded by the number of channel names.
    interest_changes: Option<HashSet<ChannelName>>,
    /// Wakes the Redis subscription task when `interest_changes` grows.
    pub interest_changed: Rc<LocalNotify>,
    /// Counters.
    pub stats: ShardStats,
}

impl Registry {
    /// An empty registry.
    pub fn new(max_channels: usize, outbound_limit_bytes: usize) -> Registry {
        Registry {
            connections: Slab::new(),
            channels: Slab::new(),
            channel_keys: HashMap::new(),
            max_channels,
            flush_list: Vec::new(),
            spare_flush_list: Vec::new(),
            over_limit: Vec::new(),
            outbound_limit_bytes,
            interest_changes: None,
            interest_changed: Rc::new(LocalNotify::default()),
            stats: ShardStats::default(),
        }
    }

    /// Records which channels appear and disappear, for the Redis subscription task.
    pub fn track_interest(&mut self) {
        self.interest_changes = Some(HashSet::new());
    }

    /// Channels that appeared or disappeared since the last call.
    pub fn take_interest_changes(&mut self) -> Vec<ChannelName> {
        self.interest_changes
            .as_mut()
            .map(|changes| changes.drain().collect())
            .unwrap_or_default()
    }

    fn record_interest_change(&mut self, name: &ChannelName) {
        if let Some(changes) = &mut self.interest_changes
            && changes.insert(name.clone())
        {
            self.interest_changed.notify_all();
        }
    }

    /// Marks `names` (those still present) as subscribed in Redis.
    pub fn confirm_channels(&mut self, names: &[ChannelName]) {
        for name in names {
            if let Some(&channel) = self.channel_keys.get(name) {
                self.channels[channel].confirmed = true;
            }
        }
    }

    /// Is `name` confirmed as subscribed in Redis?
    pub fn channel_confirmed(&self, name: &str) -> bool {
        self.channel_keys
            .get(name)
            .is_some_and(|&channel| self.channels[channel].confirmed)
    }

    /// Holds or releases writes to `key` (held writes stay queued, in order).
    pub fn hold_writes(&mut self, key: ConnectionKey, held: bool) {
        self.connections[key].writes_held = held;
    }

    /// Adds a connection; returns its key.
    pub fn insert(&mut self, fd: RawFd, now_ms: u64) -> ConnectionKey {
        self.connections.insert(Connection::new(fd, now_ms))
    }

    /// Removes a connection and all its subscriptions. Call before closing its socket.
    pub fn remove(&mut self, key: ConnectionKey) {
        self.unsubscribe_all(key);
        if self.connections.try_remove(key).is_none() {
            debug_assert!(false, "removed an unknown connection {key}");
        }
    }

    /// Subscribes `key` to `name` (idempotent).
    pub fn subscribe(
        &mut self,
        key: ConnectionKey,
        name: &ChannelName,
    ) -> Result<(), TooManyChannels> {
        let channel = match self.channel_keys.get(name) {
            Some(&channel) => channel,
            None => {
                if self.channels.len() >= self.max_channels {
                    return Err(TooManyChannels);
                }
                let channel = self.channels.insert(Channel {
                    name: name.clone(),
                    subscribers: Vec::new(),
                    confirmed: false,
                });
                self.channel_keys.insert(name.clone(), channel);
                self.record_interest_change(name);
                channel
            }
        };
        let connection = &mut self.connections[key];
        if connection
            .subscriptions
            .iter()
            .any(|s| s.channel == channel)
        {
            return Ok(());
        }
        let subscribers = &mut self.channels[channel].subscribers;
        connection.subscriptions.push(Subscription {
            channel,
            position: subscribers.len(),
        });
        subscribers.push(key);
        Ok(())
    }

    /// Leaves every channel; channels left empty are forgotten.
    pub fn unsubscribe_all(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let subscriptions = std::mem::take(&mut connection.subscriptions);
        for subscription in subscriptions {
            let channel = &mut self.channels[subscription.channel];
            debug_assert_eq!(channel.subscribers[subscription.position], key);
            channel.subscribers.swap_remove(subscription.position);
            if let Some(&moved) = channel.subscribers.get(subscription.position) {
                let moved_subscription = self.connections[moved]
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.channel == subscription.channel)
                    .expect("a subscriber knows its subscription");
                moved_subscription.position = subscription.position;
            }
            if channel.subscribers.is_empty() {
                let channel = self.channels.remove(subscription.channel);
                self.channel_keys.remove(&channel.name);
                self.record_interest_change(&channel.name);
            }
        }
    }

    /// Subscribers of `name` on this shard.
    pub fn subscriber_count(&self, name: &str) -> usize {
        self.channel_keys
            .get(name)
            .map_or(0, |&channel| self.channels[channel].subscribers.len())
    }

    /// (sum, max) of the connections' queued bytes: O(connections), for scrapes only.
    pub fn outbound_totals(&self) -> (usize, usize) {
        self.connections
            .iter()
            .map(|(_, connection)| connection.outbound.queued_bytes())
            .fold((0, 0), |(sum, max), bytes| (sum + bytes, max.max(bytes)))
    }

    /// Number of channels with subscribers here.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Up to `limit` channels with their subscriber counts, largest first.
    pub fn top_channels(&self, limit: usize) -> Vec<(String, usize)> {
        let mut channels: Vec<(String, usize)> = self
            .channels
            .iter()
            .map(|(_, channel)| (channel.name.to_string(), channel.subscribers.len()))
            .collect();
        channels.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        channels.truncate(limit);
        channels
    }

    /// Queues `frame` for every subscriber of `name`; returns how many it was queued for.
    /// The frame is shared, never copied. Connections already closing are skipped (counted).
    pub fn fan_out(&mut self, name: &str, frame: &Bytes) -> usize {
        let Some(&channel) = self.channel_keys.get(name) else {
            return 0;
        };
        let mut queued = 0;
        for &key in &self.channels[channel].subscribers {
            let connection = &mut self.connections[key];
            if connection.closing {
                self.stats.frames_dropped_closing += 1;
                continue;
            }
            connection.outbound.push(frame.clone());
            queued += 1;
            if !connection.in_flush_list {
                connection.in_flush_list = true;
                self.flush_list.push(key);
            }
            if !connection.over_limit
                && connection.outbound.queued_bytes() > self.outbound_limit_bytes
            {
                connection.over_limit = true;
                self.over_limit.push(key);
            }
        }
        self.stats.frames_queued += queued as u64;
        queued
    }

    /// Queues a frame for one connection (pong, echo, ping, close).
    pub fn queue(&mut self, key: ConnectionKey, frame: Bytes) {
        let connection = &mut self.connections[key];
        connection.outbound.push(frame);
        if !connection.in_flush_list {
            connection.in_flush_list = true;
            self.flush_list.push(key);
        }
    }

    /// Gives back the capacity of tables that grew for many more connections or channels than
    /// are here now (a burst, churn, or a mass close). Called rarely, before the allocator trim;
    /// keys stay valid. Each table is shrunk only when at most a quarter of it is in use.
    pub fn release_spare_capacity(&mut self) {
        fn mostly_empty(len: usize, capacity: usize) -> bool {
            len <= capacity / 4
        }
        if mostly_empty(self.connections.len(), self.connections.capacity()) {
            self.connections.shrink_to_fit();
        }
        if mostly_empty(self.channels.len(), self.channels.capacity()) {
            self.channels.shrink_to_fit();
        }
        if mostly_empty(self.channel_keys.len(), self.channel_keys.capacity()) {
            self.channel_keys.shrink_to_fit();
        }
        for (_, channel) in self.channels.iter_mut() {
            let subscribers = &mut channel.subscribers;
            if mostly_empty(subscribers.len(), subscribers.capacity()) {
                subscribers.shrink_to_fit();
            }
        }
        for list in [
            &mut self.flush_list,
            &mut self.spare_flush_list,
            &mut self.over_limit,
        ] {
            if mostly_empty(list.len(), list.capacity()) {
                list.shrink_to_fit();
            }
        }
    }

    /// Nothing is waiting to be written.
    pub fn flush_list_is_empty(&self) -> bool {
        self.flush_list.is_empty()
    }

    /// Takes the list of connections to flush (the caller flushes them in slices and hands the
    /// emptied vector back with [`Registry::return_flush_list`] to keep its capacity).
    pub fn take_flush_list(&mut self) -> Vec<ConnectionKey> {
        let spare = std::mem::take(&mut self.spare_flush_list);
        std::mem::replace(&mut self.flush_list, spare)
    }

    /// Gives back a flushed list so its allocation is reused (connections queued during the
    /// flush are on the other list by then; the two take turns).
    pub fn return_flush_list(&mut self, mut list: Vec<ConnectionKey>) {
        list.clear();
        if self.flush_list.is_empty() && self.flush_list.capacity() < list.capacity() {
            self.spare_flush_list = std::mem::replace(&mut self.flush_list, list);
        } else if self.spare_flush_list.capacity() < list.capacity() {
            self.spare_flush_list = list;
        }
    }

    /// Writes one connection's queue with one vectored write (`sendmsg`); a connection whose
    /// socket is full or broken is handed to its task (never waited on here).
    pub fn flush(&mut self, key: ConnectionKey) {
        let Some(fd) = self.begin_flush(key) else {
            return;
        };
        let connection = &mut self.connections[key];
        let mut tally = WriteTally::default();
        let outcome = connection.outbound.write_to(fd, &mut tally);
        self.stats.add_writes(&tally);
        self.end_flush(key, outcome);
    }

    /// Takes `key` off the flush list; returns its socket if there is something to write and
    /// the connection is not waiting for writability.
    pub fn begin_flush(&mut self, key: ConnectionKey) -> Option<RawFd> {
        let connection = self.connections.get_mut(key)?;
        connection.in_flush_list = false;
        let ready = !connection.write_blocked
            && !connection.write_failed
            && !connection.write_in_flight
            && !connection.writes_held;
        if !ready || connection.outbound.is_empty() {
            return None;
        }
        connection.write_in_flight = true;
        Some(connection.fd)
    }

    /// The queue of `key`, for a writer that builds its own system calls.
    pub fn outbound_mut(&mut self, key: ConnectionKey) -> &mut Outbound {
        &mut self.connections[key].outbound
    }

    /// Records how a write of `key` ended: a full or broken socket is handed to its task.
    pub fn end_flush(&mut self, key: ConnectionKey, outcome: WriteOutcome) {
        let connection = &mut self.connections[key];
        connection.write_in_flight = false;
        match outcome {
            WriteOutcome::Drained => {}
            WriteOutcome::WouldBlock => {
                connection.write_blocked = true;
                connection.wake();
            }
            WriteOutcome::Failed(error) => {
                log::debug!("write to connection {key} failed: {error}");
                connection.write_failed = true;
                connection.wake();
            }
        }
    }

    /// After a fan-out pass and its flush: connections still over the queue limit are slow
    /// consumers; their tasks close them with 1008. Never done inside the pass itself.
    pub fn request_slow_consumer_closes(&mut self) {
        for key in std::mem::take(&mut self.over_limit) {
            let Some(connection) = self.connections.get_mut(key) else {
                continue;
            };
            connection.over_limit = false;
            if connection.outbound.queued_bytes() > self.outbound_limit_bytes && !connection.closing
            {
                connection.close_request = Some(CloseRequest::SlowConsumer);
                connection.wake();
            }
        }
    }

    /// Asks every connection's task to close with `request`.
    pub fn request_close_all(&mut self, request: CloseRequest) {
        for (_, connection) in self.connections.iter_mut() {
            if !connection.closing {
                connection.close_request = Some(request);
                connection.wake();
            }
        }
    }

    /// The heartbeat sweep: pings connections quiet for `ping_interval_ms`, asks the tasks of
    /// connections quiet for `idle_timeout_ms` to close them.
    pub fn sweep(
        &mut self,
        now_ms: u64,
        ping_interval_ms: u64,
        idle_timeout_ms: u64,
        ping: &Bytes,
    ) {
        let mut pings = 0;
        for (key, connection) in self.connections.iter_mut() {
            if connection.closing || connection.close_request.is_some() {
                continue;
            }
            let quiet_ms = now_ms.saturating_sub(connection.last_read_ms);
            if quiet_ms >= idle_timeout_ms {
                connection.close_request = Some(CloseRequest::Idle);
                connection.wake();
            } else if now_ms.saturating_sub(connection.last_read_ms.max(connection.last_ping_ms))
                >= ping_interval_ms
            {
                connection.last_ping_ms = now_ms;
                connection.outbound.push(ping.clone());
                if !connection.in_flush_list {
                    connection.in_flush_list = true;
                    self.flush_list.push(key);
                }
                pings += 1;
            }
        }
        self.stats.pings_sent += pings;
    }

    /// Counts a closed connection.
    pub fn count_close(&mut self, reason: CloseReason) {
        self.stats.count_close(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ChannelName {
        ChannelName::new(text).unwrap()
    }

    #[test]
    fn subscribe_unsubscribe_keeps_positions_consistent() {
        let mut registry = Registry::new(10, 1 << 20);
        let keys: Vec<_> = (0..5).map(|i| registry.insert(100 + i, 0)).collect();
        for &key in &keys {
            registry.subscribe(key, &name("a")).unwrap();
        }
        registry.subscribe(keys[0], &name("b")).unwrap();
        registry.subscribe(keys[0], &name("b")).unwrap();
        assert_eq!(registry.subscriber_count("a"), 5);
        assert_eq!(registry.subscriber_count("b"), 1);
        registry.remove(keys[1]);
        registry.remove(keys[0]);
        assert_eq!(registry.subscriber_count("a"), 3);
        assert_eq!(registry.subscriber_count("b"), 0);
        assert_eq!(registry.channel_count(), 1);
        for &key in &keys[2..] {
            registry.remove(key);
        }
        assert_eq!(registry.channel_count(), 0);
    }

    #[test]
    fn channel_limit_is_enforced() {
        let mut registry = Registry::new(1, 1 << 20);
        let key = registry.insert(1, 0);
        registry.subscribe(key, &name("a")).unwrap();
        assert_eq!(registry.subscribe(key, &name("b")), Err(TooManyChannels));
    }

    #[test]
    fn fan_out_shares_one_frame_and_skips_closing() {
        let mut registry = Registry::new(10, 1 << 20);
        let first = registry.insert(1, 0);
        let second = registry.insert(2, 0);
        registry.subscribe(first, &name("a")).unwrap();
        registry.subscribe(second, &name("a")).unwrap();
        registry.connections[second].closing = true;
        let frame = Bytes::from_static(b"\x81\x02hi");
        assert_eq!(registry.fan_out("a", &frame), 1);
        assert_eq!(registry.fan_out("missing", &frame), 0);
        let queued = registry.connections[first]
            .outbound
            .head_remaining()
            .unwrap();
        assert_eq!(
            queued.as_ptr(),
            frame.as_ptr(),
            "the frame is shared, not copied"
        );
        assert_eq!(registry.stats.frames_dropped_closing, 1);
        assert_eq!(registry.take_flush_list(), vec![first]);
    }

    #[test]
    fn spare_capacity_is_given_back_once_connections_are_gone() {
        let mut registry = Registry::new(10, 1 << 20);
        let keys: Vec<_> = (0..1000).map(|i| registry.insert(i, 0)).collect();
        for &key in &keys {
            registry.subscribe(key, &name("a")).unwrap();
        }
        let frame = Bytes::from_static(b"\x81\x02hi");
        registry.fan_out("a", &frame);
        let flushed = registry.take_flush_list();
        registry.return_flush_list(flushed);
        for &key in &keys[..900] {
            registry.remove(key);
        }
        registry.release_spare_capacity();
        assert!(
            keys[900..]
                .iter()
                .all(|&key| registry.connections.contains(key)),
            "keys stay valid"
        );
        for &key in &keys[900..] {
            registry.remove(key);
        }
        registry.release_spare_capacity();
        assert_eq!(registry.connections.capacity(), 0);
        assert_eq!(registry.channel_count(), 0);
        assert_eq!(registry.flush_list.capacity(), 0);
        assert_eq!(registry.spare_flush_list.capacity(), 0);
    }

    #[test]
    fn slow_consumers_are_flagged_after_the_pass() {
        let mut registry = Registry::new(10, 100);
        let key = registry.insert(-1, 0);
        registry.subscribe(key, &name("a")).unwrap();
        let frame = Bytes::from(vec![0u8; 80]);
        registry.fan_out("a", &frame);
        registry.fan_out("a", &frame);
        assert_eq!(registry.connections[key].close_request, None);
        registry.request_slow_consumer_closes();
        assert_eq!(
            registry.connections[key].close_request,
            Some(CloseRequest::SlowConsumer)
        );
    }

    #[test]
    fn sweep_pings_quiet_and_closes_idle() {
        let mut registry = Registry::new(10, 1 << 20);
        let quiet = registry.insert(1, 0);
        let idle = registry.insert(2, 0);
        registry.connections[quiet].last_read_ms = 500;
        let ping = Bytes::from_static(b"\x89\x00");
        registry.sweep(1000, 400, 900, &ping);
        assert_eq!(
            registry.connections[idle].close_request,
            Some(CloseRequest::Idle)
        );
        assert_eq!(registry.connections[quiet].outbound.len(), 1);
        registry.sweep(1100, 400, 900, &ping);
        assert_eq!(
            registry.connections[quiet].outbound.len(),
            1,
            "no second ping so soon"
        );
    }
}
