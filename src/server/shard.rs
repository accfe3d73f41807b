//! One shard: a glommio executor pinned to a core that owns its listener socket, its
//! connections, its channels and its fan-out.
//!
//! Tasks of a shard, each in its own task queue so one cannot starve another:
//! - accept: takes connections from this shard's SO_REUSEPORT listener and serves their HTTP
//!   requests (`accept.rs`); an upgraded connection is handed to the registry;
//! - reactor: reads every WebSocket connection of the shard (`reactor.rs`);
//! - fan-out: takes publications, queues them for subscribers, writes (`fanout.rs`);
//! - ticker: heartbeat for `/healthz`, pings, idle and closing deadlines, drain on shutdown.
//!
//! Cross-shard traffic is only [`ShardMessage`] over bounded glommio mesh channels. A publish
//! delivered locally never goes through the mesh.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;

use super::centrifugo::DeferredQueue;
use super::deflate::ShardCompressor;
use super::event::{LocalEvent, LocalNotify};
use super::history::{AppendRequest, HistoryAsk, ShardHistory};
use super::registry::{ConnectionKey, Limits, Registry};
use super::shared::{ShardSlot, Shared};
use super::state::CloseRequest;
use super::write::Writer;
use crate::apps::Apps;
use crate::auth::token::TokenVerifier;
use crate::broker::redis::{InterestUpdate, PublishRequest, Published, RedisLink};
use crate::channel::AppSlot;
use crate::channel::{ChannelName, ChannelPolicy};
use crate::config::{Compression, Config, FLUSHES_PER_YIELD, READ_SCRATCH_BYTES};
use crate::history::memory::{MemoryHistory, random_seed};
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::publication::Publication;
use crate::socket_id::{SocketId, SocketIdGenerator};
use crate::telemetry::counters::Counter;
use crate::telemetry::{ShardId, ShardSnapshot};

/// Everything that travels between shards.
#[derive(Debug)]
pub enum ShardMessage {
    /// Deliver to local subscribers.
    Publish(Publication),
    /// Reply with a snapshot (for `/stat`).
    Snapshot(oneshot::Sender<ShardSnapshot>),
    /// Reply with subscriber counts (for the Pusher channel queries).
    Channels(ChannelsRequest),
    /// Append to a channel's history here (its owner), then deliver it everywhere.
    Append(Box<AppendRequest>),
    /// A question to a channel's history here (its owner).
    History(HistoryAsk),
}

/// A question about channels and their subscriber counts on a shard.
#[derive(Debug)]
pub struct ChannelsRequest {
    /// The application namespace.
    pub app: AppSlot,
    /// Which channels.
    pub query: ChannelQuery,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Vec<(ChannelName, usize)>>,
}

/// Which channels a [`ChannelsRequest`] asks about.
#[derive(Debug, Clone)]
pub enum ChannelQuery {
    /// The channels whose name starts with this (at most `limit`).
    Prefix {
        /// The prefix (empty: every channel).
        prefix: String,
        /// Most channels answered.
        limit: usize,
    },
    /// One channel.
    One(ChannelName),
}

/// Why a message was not sent to another shard.
enum NotSent {
    /// Its channel is full now; here is the message back.
    NoRoom(ShardMessage),
    /// The shard is gone (its receivers closed).
    Gone,
}

/// Closed sockets, since the last trim, after which freed memory is handed back to the kernel.
const TRIM_AFTER_CLOSED_SOCKETS: usize = 1024;
/// Least time between two trims.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// Most channels a snapshot lists.
pub const SNAPSHOT_CHANNELS_MAX: usize = 1000;

/// Hands freed heap memory back to the kernel after many connections went away: glibc keeps
/// freed chunks in its arenas (RSS would stay at the peak after a burst or churn); `malloc_trim`
/// returns whole free pages. Rare and bounded (at most every `TRIM_INTERVAL`), never per event.
struct MemoryTrim {
    peak_sockets: usize,
    last_trim: Instant,
}

impl MemoryTrim {
    fn new() -> MemoryTrim {
        MemoryTrim {
            peak_sockets: 0,
            last_trim: Instant::now(),
        }
    }

    /// Whether to trim now (many sockets closed since the peak, none too recently).
    fn due(&mut self, open_sockets: usize) -> bool {
        self.peak_sockets = self.peak_sockets.max(open_sockets);
        if self.peak_sockets - open_sockets >= TRIM_AFTER_CLOSED_SOCKETS
            && self.last_trim.elapsed() >= TRIM_INTERVAL
        {
            self.peak_sockets = open_sockets;
            self.last_trim = Instant::now();
            return true;
        }
        false
    }
}

/// Seconds since the Unix epoch (token expiries are in these).
fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory the allocator holds; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Messages published on this shard for this shard: the local half of the fan-out's input.
#[derive(Debug)]
pub struct Inbox {
    queue: RefCell<VecDeque<ShardMessage>>,
    waker: RefCell<Option<Waker>>,
    capacity: usize,
}

impl Inbox {
    /// Can it take `needed` more messages?
    fn has_room_for(&self, needed: usize) -> bool {
        self.queue.borrow().len() + needed <= self.capacity
    }

    fn try_push(&self, message: ShardMessage) -> Result<(), ShardMessage> {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= self.capacity {
            return Err(message);
        }
        queue.push_back(message);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
        Ok(())
    }

    /// Nothing waits in it.
    pub fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Moves at most `limit` messages into `out`.
    pub fn drain_into(&self, out: &mut Vec<ShardMessage>, limit: usize) {
        let mut queue = self.queue.borrow_mut();
        let count = queue.len().min(limit);
        out.extend(queue.drain(..count));
    }

    /// Wakes `waker` at the next push.
    pub fn set_waker(&self, waker: &Waker) {
        *self.waker.borrow_mut() = Some(waker.clone());
    }
}

/// The state of one shard, shared by its tasks through an `Rc`.
pub struct Shard {
    /// Index of this shard (0..shards).
    pub id: ShardId,
    /// Configuration (validated).
    pub config: Arc<Config>,
    /// Which channel names are allowed.
    pub policy: ChannelPolicy,
    /// State every shard can see.
    pub shared: Arc<Shared>,
    /// Connections, channels, counters: the one owner of every connection's state.
    pub registry: RefCell<Registry>,
    /// Every read of every connection lands here first; only unfinished frames are copied into
    /// a connection's own buffer, so an idle connection owns no read buffer.
    pub scratch: RefCell<Box<[u8]>>,
    /// Local publishes waiting for the fan-out.
    pub inbox: Inbox,
    /// Senders to the other shards (`None` with one shard).
    mesh: Option<Senders<ShardMessage>>,
    /// Messages sent to each shard's channel so far (indexed by shard; see
    /// [`Shared::mesh_consumed`]).
    mesh_sent: RefCell<Vec<u64>>,
    /// Sockets in their HTTP phase (handshaking, API requests) on this shard.
    pub http_sockets: Cell<usize>,
    /// Set when the shard starts draining.
    pub draining: LocalEvent,
    /// Origin of the shard clock (`now_ms`).
    epoch: Instant,
    /// The one write path.
    writer: RefCell<Writer>,
    /// The Redis subscriber core, with `--redis`.
    pub redis: Option<RedisLink>,
    /// Notified when the Redis core confirms channel subscriptions.
    pub confirmations: LocalNotify,
    /// Verifies subscription tokens, with `--token-secret`.
    pub tokens: Option<TokenVerifier>,
    /// The Pusher applications.
    pub apps: Arc<Apps>,
    /// Makes this shard's Pusher socket ids.
    socket_ids: RefCell<SocketIdGenerator>,
    /// Channel history (`None` when no channel keeps any).
    pub history: Option<ShardHistory>,
    /// Centrifugo work waiting for a channel's history owner.
    pub deferred: DeferredQueue,
    /// Pusher work waiting for a store (presence, cache) or a publish.
    pub pusher_work: super::pusher_state::PusherQueue,
}

impl Shard {
    /// A shard with no connections yet; `poller` is the epoll set of its reactor.
    pub fn new(
        id: ShardId,
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Option<Senders<ShardMessage>>,
        redis: Option<RedisLink>,
        poller: super::poller::Poller,
        apps: Arc<Apps>,
    ) -> Shard {
        let limits = Limits {
            outbound_queue_bytes: config.outbound_queue_bytes,
            max_message_bytes: config.max_message_bytes as u64,
            close_timeout_ms: config.close_timeout.as_millis() as u64,
            max_channels: config.max_channels,
            max_fragments: config.max_fragments,
            max_subscriptions: config.max_subscriptions,
        };
        let mut registry = Registry::new(limits, poller);
        if config.compression == Compression::On {
            registry.enable_compression(ShardCompressor::new(
                config.deflate_level(),
                config.compress_min_bytes,
            ));
        }
        if redis.is_some() {
            registry.track_interest();
        }
        registry.set_centrifugo_limits(crate::wire::centrifugo::session::SessionLimits {
            channels_max: config.max_subscriptions.clamp(1, 4096),
            ..Default::default()
        });
        let history = match config.history_policy() {
            Ok(policy) if !policy.is_disabled() => {
                let limits = config.history_limits(shared.shards.len());
                let seed = random_seed() ^ (id.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                // Validated at start; a store that cannot be made leaves history off here.
                MemoryHistory::new(limits, seed)
                    .ok()
                    .map(|store| ShardHistory::new(policy, store))
            }
            _ => None,
        };
        Shard {
            id,
            policy: config.channel_policy(),
            registry: RefCell::new(registry),
            scratch: RefCell::new(vec![0u8; READ_SCRATCH_BYTES].into_boxed_slice()),
            inbox: Inbox {
                queue: RefCell::new(VecDeque::new()),
                waker: RefCell::new(None),
                capacity: config.mesh_capacity,
            },
            mesh_sent: RefCell::new(vec![0; shared.shards.len()]),
            mesh,
            http_sockets: Cell::new(0),
            draining: LocalEvent::default(),
            epoch: Instant::now(),
            writer: RefCell::new(Writer::new(config.write_path, id.0)),
            redis,
            confirmations: LocalNotify::default(),
            tokens: config.token_secret.as_ref().map(TokenVerifier::new),
            apps,
            socket_ids: RefCell::new(SocketIdGenerator::from_entropy()),
            history,
            deferred: DeferredQueue::default(),
            pusher_work: Default::default(),
            config,
            shared,
        }
    }

    /// Milliseconds on this shard's clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// This shard's slot in the shared state.
    pub fn slot(&self) -> &ShardSlot {
        &self.shared.shards[self.id.0]
    }

    /// Open sockets of any kind: HTTP phase, WebSocket, lingering.
    pub fn open_sockets(&self) -> usize {
        let registry = self.registry.borrow();
        self.http_sockets.get() + registry.len() + registry.lingering_count()
    }

    /// Delivers `publication` to every live shard, this one included, or to none: it waits (at
    /// most `--publish-timeout`) until every live shard's channel has room, then sends to all at
    /// once. On `Err` nothing was sent anywhere, so a 503 never leaves a partial delivery that
    /// a retry would duplicate. Shards that died are left out (they have no subscribers any
    /// more).
    /// A publication to a channel with history goes through the channel's history owner first
    /// (see `history.rs`).
    pub async fn publish(&self, publication: Publication) -> Result<(), Vec<ShardId>> {
        self.publish_positioned(publication).await.map(|_| ())
    }

    /// Delivers every publication of `publications` to every live shard, or none of them
    /// (room for all of them is checked in every channel first, as for one).
    pub async fn publish_all(&self, publications: Vec<Publication>) -> Result<(), Vec<ShardId>> {
        let deadline = Instant::now() + self.config.publish_timeout;
        let needed = publications.len();
        // Bounded by the deadline; each round sleeps 1 ms.
        loop {
            let full = self.shards_without_room(needed);
            if full.is_empty() {
                for publication in publications {
                    self.send_everywhere(publication);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.registry
                    .borrow_mut()
                    .stats
                    .count(Counter::PublishRefusals);
                return Err(full);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Live shards whose channel from this shard (or this shard's own inbox) has no room for
    /// `needed` more messages.
    fn shards_without_room(&self, needed: usize) -> Vec<ShardId> {
        let mut full = Vec::new();
        if !self.inbox.has_room_for(needed) {
            full.push(self.id);
        }
        if let Some(mesh) = &self.mesh {
            for peer in 0..mesh.nr_consumers() {
                if peer != mesh.peer_id()
                    && self.shared.shards[peer].is_alive()
                    && !self.mesh_has_room_for(peer, needed)
                {
                    full.push(ShardId(peer));
                }
            }
        }
        full
    }

    /// Does this shard's channel to `peer` have room for one more message? Exact, not a guess:
    /// only this shard sends on it, and the receiver only ever makes room.
    fn mesh_has_room(&self, peer: usize) -> bool {
        self.mesh_has_room_for(peer, 1)
    }

    /// Room for `needed` more messages on the channel to `peer`.
    fn mesh_has_room_for(&self, peer: usize, needed: usize) -> bool {
        let sent = self.mesh_sent.borrow()[peer];
        let consumed = self.shared.mesh_consumed(peer, self.id.0);
        sent.saturating_sub(consumed) + needed as u64 <= self.shared.mesh_capacity as u64
    }

    /// Sends one message to `peer` if its channel has room (counted as sent).
    fn try_send_to_peer(&self, peer: usize, message: ShardMessage) -> Result<(), NotSent> {
        let Some(mesh) = &self.mesh else {
            return Err(NotSent::Gone);
        };
        if !self.mesh_has_room(peer) {
            return Err(NotSent::NoRoom(message));
        }
        match mesh.try_send_to(peer, message) {
            Ok(()) => {
                self.mesh_sent.borrow_mut()[peer] += 1;
                Ok(())
            }
            Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(message))) => {
                Err(NotSent::NoRoom(message))
            }
            Err(_) => Err(NotSent::Gone),
        }
    }

    /// Sends `publication` to every live shard; every channel was checked for room just before,
    /// with no await in between, so none refuses.
    fn send_everywhere(&self, publication: Publication) {
        self.send_to_peers(&publication);
        if self
            .inbox
            .try_push(ShardMessage::Publish(publication))
            .is_err()
        {
            log::warn!(
                "shard {}: its own inbox refused a publish it had room for",
                self.id
            );
        }
    }

    /// Sends `publication` to every other live shard; every channel was checked for room just
    /// before, with no await in between, so none refuses.
    pub fn send_to_peers(&self, publication: &Publication) {
        if let Some(mesh) = &self.mesh {
            for peer in 0..mesh.nr_consumers() {
                if peer == mesh.peer_id() || !self.shared.shards[peer].is_alive() {
                    continue;
                }
                let message = ShardMessage::Publish(publication.clone());
                if self.try_send_to_peer(peer, message).is_err() {
                    // Only a shard that died since the check can refuse.
                    log::warn!(
                        "shard {}: shard {peer} refused a publish it had room for",
                        self.id
                    );
                }
            }
        }
    }

    /// Other live shards whose channel from this shard has no room for one more message.
    pub fn peers_without_room(&self) -> bool {
        let Some(mesh) = &self.mesh else {
            return false;
        };
        (0..mesh.nr_consumers()).any(|peer| {
            peer != mesh.peer_id()
                && self.shared.shards[peer].is_alive()
                && !self.mesh_has_room_for(peer, 1)
        })
    }

    /// Sends one message to shard `peer`, this one included (its own inbox): `Err(Some)` when
    /// there is no room now, `Err(None)` when the shard is gone.
    pub fn try_send_to(
        &self,
        peer: usize,
        message: ShardMessage,
    ) -> Result<(), Option<ShardMessage>> {
        if peer == self.id.0 {
            return self.inbox.try_push(message).map_err(Some);
        }
        match self.try_send_to_peer(peer, message) {
            Ok(()) => Ok(()),
            Err(NotSent::NoRoom(message)) => Err(Some(message)),
            Err(NotSent::Gone) => Err(None),
        }
    }

    /// The fan-out took `count` more messages from `peer`'s channel.
    pub fn mesh_consumed(&self, peer: ShardId, count: u64) {
        if count > 0 {
            self.shared.mesh_consumed_add(self.id.0, peer.0, count);
        }
    }

    /// Snapshots of every live shard, this one first; shards that do not answer within a
    /// second are left out.
    pub async fn snapshots(&self) -> Vec<ShardSnapshot> {
        let mut snapshots = vec![self.snapshot()];
        let Some(mesh) = &self.mesh else {
            return snapshots;
        };
        for peer in 0..mesh.nr_consumers() {
            if peer == mesh.peer_id() || !self.shared.shards[peer].is_alive() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            if let Ok(snapshot) = self.ask(peer, ShardMessage::Snapshot(reply), answer).await {
                snapshots.push(snapshot);
            }
        }
        snapshots.sort_by_key(|snapshot| snapshot.shard);
        snapshots
    }

    /// A new Pusher socket id.
    pub fn next_socket_id(&self) -> SocketId {
        self.socket_ids.borrow_mut().next_id()
    }

    /// Subscribers of `name` in `app`'s namespace on every live shard of this node.
    pub async fn subscription_count(&self, app: AppSlot, name: &ChannelName) -> u64 {
        let answers = self
            .ask_channels(app, ChannelQuery::One(name.clone()))
            .await;
        answers.iter().map(|(_, count)| *count as u64).sum()
    }

    /// The channels of `app` starting with `prefix` on every live shard of this node, with
    /// their subscriber counts added up (at most `limit` channels).
    pub async fn channel_counts(
        &self,
        app: AppSlot,
        prefix: &str,
        limit: usize,
    ) -> Vec<(ChannelName, u64)> {
        let query = ChannelQuery::Prefix {
            prefix: prefix.to_string(),
            limit,
        };
        let mut totals: std::collections::BTreeMap<ChannelName, u64> = Default::default();
        for (name, count) in self.ask_channels(app, query).await {
            *totals.entry(name).or_default() += count as u64;
        }
        totals.into_iter().take(limit).collect()
    }

    /// Asks every live shard (this one directly) about channels; shards that do not answer
    /// within a second are left out.
    async fn ask_channels(&self, app: AppSlot, query: ChannelQuery) -> Vec<(ChannelName, usize)> {
        let mut answers = self.answer_channels(app, &query);
        let Some(mesh) = &self.mesh else {
            return answers;
        };
        for peer in 0..mesh.nr_consumers() {
            if peer == mesh.peer_id() || !self.shared.shards[peer].is_alive() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let request = ShardMessage::Channels(ChannelsRequest {
                app,
                query: query.clone(),
                reply,
            });
            if let Ok(mut answered) = self.ask(peer, request, answer).await {
                answers.append(&mut answered);
            }
        }
        answers
    }

    /// This shard's answer to a channels query.
    pub fn answer_channels(&self, app: AppSlot, query: &ChannelQuery) -> Vec<(ChannelName, usize)> {
        let registry = self.registry.borrow();
        match query {
            ChannelQuery::One(name) => vec![(name.clone(), registry.subscriber_count(app, name))],
            ChannelQuery::Prefix { prefix, limit } => registry.channels_of(app, prefix, *limit),
        }
    }

    /// Sends `request` to `peer` (room checked, like a publish) and waits at most a second
    /// for the answer.
    async fn ask<T>(
        &self,
        peer: usize,
        request: ShardMessage,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, ()> {
        let asked = glommio::timer::timeout(Duration::from_secs(1), async {
            let mut message = request;
            // Bounded by the timeout around it; each round sleeps 1 ms.
            loop {
                match self.try_send_to_peer(peer, message) {
                    Ok(()) => break,
                    Err(NotSent::Gone) => {
                        return Err(glommio::GlommioError::<()>::Closed(
                            glommio::ResourceType::Channel(()),
                        ));
                    }
                    Err(NotSent::NoRoom(returned)) => message = returned,
                }
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            answer.await.map_err(|_| {
                glommio::GlommioError::<()>::Closed(glommio::ResourceType::Channel(()))
            })
        })
        .await;
        asked.map_err(|_| ())
    }

    /// This shard's snapshot.
    pub fn snapshot(&self) -> ShardSnapshot {
        let registry = self.registry.borrow();
        let (queued_total, queued_max) = registry.outbound_totals();
        ShardSnapshot {
            shard: self.id,
            websocket_connections: registry.len(),
            open_sockets: self.http_sockets.get() + registry.len() + registry.lingering_count(),
            channel_count: registry.channel_count(),
            outbound_queued_bytes: queued_total,
            outbound_queue_max_bytes: queued_max,
            top_channels: registry.top_channels(SNAPSHOT_CHANNELS_MAX),
            stats: registry.stats.clone(),
        }
    }

    /// One vectored write for each connection of `keys` (at most `FLUSHES_PER_YIELD`), then
    /// the removal of the connections whose writes ended them.
    pub fn write_slice(&self, keys: &[ConnectionKey]) {
        let now_ms = self.now_ms();
        let mut registry = self.registry.borrow_mut();
        self.writer.borrow_mut().write(&mut registry, keys, now_ms);
        registry.finish_ended(now_ms);
    }

    /// Gives every connection with queued frames one vectored write, yielding between slices
    /// so a write to many connections never starves accepts and reads.
    pub async fn flush_all(&self) {
        if self.registry.borrow().flush_list_is_empty() {
            return;
        }
        let list = self.registry.borrow_mut().take_flush_list();
        for slice in list.chunks(FLUSHES_PER_YIELD) {
            self.write_slice(slice);
            if list.len() > FLUSHES_PER_YIELD {
                glommio::yield_if_needed().await;
            }
        }
        self.registry.borrow_mut().return_flush_list(list);
    }

    /// The ticker: heartbeat, pings and idle timeouts, closing deadlines, and the start of a
    /// drain.
    pub async fn run_ticker(self: Rc<Self>) {
        let ping = encode_server_frame(OpCode::Ping, b"");
        let ping_interval_ms = self.config.ping_interval.as_millis() as u64;
        let idle_timeout_ms = self.config.idle_timeout.as_millis() as u64;
        // The heartbeat, deadlines and the drain check run every tick; the sweep over all
        // connections only as often as the ping and idle settings need (a quarter of the
        // shorter one, <= 1 s).
        let sweep_interval = (self.config.ping_interval.min(self.config.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let tick = sweep_interval.min(Duration::from_millis(250));
        let mut last_sweep = Instant::now();
        let mut memory = MemoryTrim::new();
        loop {
            crate::faults::on_shard_tick(self.id.0, self.now_ms());
            self.slot().beat(self.shared.now_ms());
            if self.shared.shutting_down() && !self.draining.is_set() {
                self.begin_drain();
            }
            let now_ms = self.now_ms();
            {
                let mut registry = self.registry.borrow_mut();
                if !self.draining.is_set() && last_sweep.elapsed() >= sweep_interval {
                    last_sweep = Instant::now();
                    registry.sweep(
                        now_ms,
                        unix_now_s(),
                        ping_interval_ms,
                        idle_timeout_ms,
                        &ping,
                    );
                }
                registry.check_deadlines(now_ms);
                registry.finish_ended(now_ms);
            }
            self.expire_history();
            self.flush_all().await;
            if memory.due(self.open_sockets()) {
                self.registry.borrow_mut().release_spare_capacity();
                release_free_memory();
            }
            glommio::timer::sleep(tick).await;
        }
    }

    /// With `--redis`: PUBLISH through the subscriber core, so every node (this one included)
    /// delivers it exactly once. A channel with history is appended to its stream in Redis in
    /// the same step. Returns Redis's receiver count and the position, or why it failed
    /// (answered 503).
    pub async fn publish_through_redis(
        &self,
        link: &RedisLink,
        app: AppSlot,
        channel: ChannelName,
        payload: Bytes,
    ) -> Result<Published, String> {
        let (reply, answer) = oneshot::channel();
        let request = PublishRequest {
            history: self.history_of(app, &channel),
            app,
            channel,
            payload,
            reply,
        };
        let mut sender = link.publish.clone();
        let exchange = async {
            sender
                .send(request)
                .await
                .map_err(|_| "the Redis core stopped".to_string())?;
            answer
                .await
                .map_err(|_| "the Redis core dropped the request".to_string())?
        };
        // The core answers within its own command timeout; this bound is a backstop.
        let bound = self.config.publish_timeout + Duration::from_secs(5);
        match glommio::timer::timeout(bound, async { Ok(exchange.await) }).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer from Redis within {bound:?}")),
        }
    }

    /// With `--redis`: a publication with its metadata (a Pusher trigger) through Redis, in
    /// its application's namespace.
    pub async fn publish_publication_through_redis(
        &self,
        link: &RedisLink,
        publication: Publication,
    ) -> Result<Published, String> {
        let payload = publication.to_redis_payload();
        self.publish_through_redis(link, publication.app, publication.channel, payload)
            .await
    }

    /// With `--redis`: tells the subscriber core which channels this shard gained or lost, in
    /// batches (everything that changed while the previous report was in flight goes in the
    /// next one), and marks channels confirmed when the core has subscribed them.
    pub async fn run_redis_interest(self: Rc<Self>) {
        let Some(link) = self.redis.clone() else {
            return;
        };
        let changed = self.registry.borrow().interest_changed.clone();
        // Channels this shard has reported as wanted (bounded by the channel limit).
        let mut announced: std::collections::HashSet<(AppSlot, ChannelName)> = Default::default();
        // One sender for the task's life: a futures mpsc channel gives every sender a slot of
        // its own, so a clone per update would never wait for the bounded queue.
        let mut interest = link.interest.clone();
        loop {
            let notified = changed.notified();
            let changes = self.registry.borrow_mut().take_interest_changes();
            if changes.is_empty() {
                notified.await;
                continue;
            }
            let (mut added, mut removed) = (Vec::new(), Vec::new());
            {
                let registry = self.registry.borrow();
                for key in changes {
                    let (app, name) = (key.0, &key.1);
                    let present = registry.subscriber_count(app, name) > 0;
                    // A channel removed and made again since the last look is announced but
                    // new, so unconfirmed: ask again (the core's update is idempotent).
                    let unconfirmed = !registry.channel_confirmed(app, name);
                    if present && (announced.insert(key.clone()) || unconfirmed) {
                        added.push(key);
                    } else if !present && announced.remove(&key) {
                        removed.push(key);
                    }
                }
            }
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            let (confirmed, confirmation) = oneshot::channel();
            let update = InterestUpdate {
                shard: self.id.0,
                added: added.clone(),
                removed,
                confirmed,
            };
            if interest.send(update).await.is_err() {
                log::error!("shard {}: the Redis core stopped", self.id);
                return;
            }
            let shard = self.clone();
            let confirm = async move {
                if confirmation.await.is_ok() {
                    shard.registry.borrow_mut().confirm_channels(&added);
                    shard.confirmations.notify_all();
                }
            };
            glommio::spawn_local(confirm).detach();
        }
    }

    /// With `--redis`: waits (at most `--redis-subscribe-wait`) until `channel` is subscribed in
    /// Redis, so a client whose handshake completes misses nothing published after it.
    pub async fn wait_for_redis_subscription(&self, channel: &ChannelName) -> bool {
        self.wait_for_redis_subscription_in(AppSlot::DEFAULT, channel)
            .await
    }

    /// [`Shard::wait_for_redis_subscription`] for a channel of application `app`.
    pub async fn wait_for_redis_subscription_in(
        &self,
        app: AppSlot,
        channel: &ChannelName,
    ) -> bool {
        let deadline = Instant::now() + self.config.redis_subscribe_wait;
        // Bounded by the deadline; each round is a confirmation from the Redis core.
        loop {
            let notified = self.confirmations.notified();
            if self.registry.borrow().channel_confirmed(app, channel) {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            let waited = glommio::timer::timeout(remaining, async {
                notified.await;
                Ok(())
            })
            .await;
            if waited.is_err() {
                return self.registry.borrow().channel_confirmed(app, channel);
            }
        }
    }

    /// Stops accepting and asks every WebSocket client to close with 1001.
    fn begin_drain(&self) {
        log::info!(
            "shard {}: draining {} connections",
            self.id,
            self.open_sockets()
        );
        self.draining.set();
        let now_ms = self.now_ms();
        self.registry
            .borrow_mut()
            .request_close_all(CloseRequest::Shutdown, now_ms);
    }
}
