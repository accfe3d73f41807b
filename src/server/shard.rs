//! One shard: a glommio executor pinned to a core that owns its listener socket, its
//! connections, its channels and its fan-out.
//!
//! Tasks of a shard, each in its own task queue so one cannot starve another:
//! - accept: takes connections from this shard's SO_REUSEPORT listener and spawns their tasks;
//! - fan-out: takes messages from the local inbox and the mesh, frames each once, queues it for
//!   every local subscriber, then gives every connection with queued frames one vectored write;
//! - ticker: heartbeat for `/healthz`, pings and idle timeouts, drain on shutdown;
//! - one task per connection (`connection.rs`, `websocket.rs`).
//!
//! Cross-shard traffic is only [`ShardMessage`] over bounded glommio mesh channels. A publish
//! delivered locally never goes through the mesh.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use glommio::channels::channel_mesh::Senders;
use glommio::channels::shared_channel::ConnectedReceiver;

use super::event::{LocalEvent, LocalNotify};
use super::registry::{CloseRequest, Registry};
use super::stats::ShardStats;
use super::uring::UringWriter;
use crate::channel::{ChannelName, ChannelPolicy};
use crate::config::{
    Config, FLUSHES_PER_YIELD, MAX_MESSAGES_PER_PASS, READ_SCRATCH_BYTES, WritePath,
};
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::protocol::message::DataKind;
use crate::redis::{InterestUpdate, PublishRequest, RedisLink};
use crate::server::shared::{ShardSlot, Shared};

/// A message published to a channel, on its way to every shard.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The channel.
    pub channel: ChannelName,
    /// The payload, shared by every shard (framed separately by each).
    pub payload: Bytes,
    /// Text if the payload is valid UTF-8, else binary.
    pub kind: DataKind,
    /// When the publish arrived (start of the latency measurement).
    pub published_at: Instant,
}

/// A shard's view of itself for `/stat`.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: usize,
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
    /// The largest channels and their subscriber counts (bounded list).
    pub top_channels: Vec<(String, usize)>,
    /// Counters.
    pub stats: ShardStats,
}

/// Everything that travels between shards.
#[derive(Debug)]
pub enum ShardMessage {
    /// Deliver to local subscribers.
    Publish(Publication),
    /// Reply with a snapshot (for `/stat`).
    Snapshot(oneshot::Sender<ShardSnapshot>),
}

/// Most publications a shard holds between taking them from its sources and fanning them out.
const STAGED_MAX: usize = 4 * MAX_MESSAGES_PER_PASS;

/// Closed sockets, since the last trim, after which freed memory is handed back to the kernel.
const TRIM_AFTER_CLOSED_SOCKETS: usize = 1024;
/// Least time between two trims.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

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

fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory the allocator holds; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Most channels a snapshot lists.
pub const SNAPSHOT_CHANNELS_MAX: usize = 1000;

/// Where a shard's fan-out takes messages from, besides its own inbox.
pub struct Sources {
    /// One receiver per other shard.
    pub mesh: Vec<ConnectedReceiver<ShardMessage>>,
    /// Messages from the Redis subscriber core.
    pub redis: Option<mpsc::Receiver<Publication>>,
}

/// The fan-out task's working state.
struct FanoutState {
    sources: Sources,
    /// Publications taken from the sources, not yet released (see `collect`).
    staged: Vec<Publication>,
    /// Publications released for the next queueing.
    batch: Vec<Publication>,
    /// Publish time of each queued publication whose frames are not all written yet, with the
    /// pass that will have written them all (at most two passes away, so this stays bounded).
    unrecorded: Vec<(Instant, u64)>,
    /// Passes started so far.
    pass: u64,
}

/// Messages published on this shard for this shard: the local half of the fan-out's input.
#[derive(Debug)]
struct Inbox {
    queue: RefCell<VecDeque<ShardMessage>>,
    waker: RefCell<Option<Waker>>,
    capacity: usize,
}

impl Inbox {
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
}

/// The state of one shard, shared by its tasks through an `Rc`.
pub struct Shard {
    /// Index of this shard (0..shards).
    pub id: usize,
    /// Configuration (validated).
    pub config: Arc<Config>,
    /// Which channel names are allowed.
    pub policy: ChannelPolicy,
    /// State every shard can see.
    pub shared: Arc<Shared>,
    /// Connections, channels, counters.
    pub registry: RefCell<Registry>,
    /// Every recv() of every connection reads here first; only unfinished frames are copied
    /// into a connection's own buffer, so an idle connection owns no read buffer.
    pub scratch: RefCell<Box<[u8]>>,
    /// Local publishes waiting for the fan-out.
    inbox: Inbox,
    /// Senders to the other shards (`None` with one shard).
    mesh: Option<Senders<ShardMessage>>,
    /// Open sockets of any kind on this shard.
    pub open_sockets: Cell<usize>,
    /// Set when the shard starts draining.
    pub draining: LocalEvent,
    /// Origin of the shard clock (`now_ms`).
    epoch: Instant,
    /// Batched io_uring writer, with `--write-path uring`.
    uring: RefCell<Option<UringWriter>>,
    /// The Redis subscriber core, with `--redis`.
    pub redis: Option<RedisLink>,
    /// Notified when the Redis core confirms channel subscriptions.
    pub confirmations: LocalNotify,
}

impl Shard {
    /// A shard with no connections yet.
    pub fn new(
        id: usize,
        config: Arc<Config>,
        shared: Arc<Shared>,
        mesh: Option<Senders<ShardMessage>>,
        redis: Option<RedisLink>,
    ) -> Shard {
        let uring = match config.write_path {
            WritePath::Uring => match UringWriter::new() {
                Ok(writer) => Some(writer),
                Err(error) => {
                    log::warn!("shard {id}: no io_uring write ring ({error}); using sendmsg");
                    None
                }
            },
            WritePath::Sendmsg => None,
        };
        let mut registry = Registry::new(config.max_channels, config.outbound_queue_bytes);
        if redis.is_some() {
            registry.track_interest();
        }
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
            mesh,
            open_sockets: Cell::new(0),
            draining: LocalEvent::default(),
            epoch: Instant::now(),
            uring: RefCell::new(uring),
            redis,
            confirmations: LocalNotify::default(),
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
        &self.shared.shards[self.id]
    }

    /// Publishes the current count of open WebSocket connections.
    pub fn publish_connection_count(&self) {
        let count = self.registry.borrow().connections.len() as u64;
        self.slot()
            .websocket_connections
            .store(count, Ordering::Relaxed);
    }

    /// Delivers `publication` to every shard, this one included. Waits at most
    /// `--publish-timeout` for a full inbox; returns the shards that could not take it.
    pub async fn publish(&self, publication: Publication) -> Vec<usize> {
        let mut refused = Vec::new();
        if let Some(mesh) = &self.mesh {
            for peer in 0..mesh.nr_consumers() {
                if peer == mesh.peer_id() {
                    continue;
                }
                let message = ShardMessage::Publish(publication.clone());
                let sent = match mesh.try_send_to(peer, message) {
                    Ok(()) => true,
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                        message,
                    ))) => {
                        let send = mesh.send_to(peer, message);
                        glommio::timer::timeout(self.config.publish_timeout, async {
                            Ok(send.await.is_ok())
                        })
                        .await
                        .unwrap_or(false)
                    }
                    Err(_) => false,
                };
                if !sent {
                    refused.push(peer);
                }
            }
        }
        if !self.push_local(ShardMessage::Publish(publication)).await {
            refused.push(self.mesh.as_ref().map_or(0, |mesh| mesh.peer_id()));
        }
        if !refused.is_empty() {
            self.registry.borrow_mut().stats.publish_refusals += 1;
        }
        refused
    }

    /// Queues a message for this shard's own fan-out, waiting at most `--publish-timeout`.
    async fn push_local(&self, message: ShardMessage) -> bool {
        let deadline = Instant::now() + self.config.publish_timeout;
        let mut message = message;
        // Bounded by the deadline; each round sleeps 1 ms.
        loop {
            match self.inbox.try_push(message) {
                Ok(()) => return true,
                Err(returned) if Instant::now() < deadline => {
                    message = returned;
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Err(_) => return false,
            }
        }
    }

    /// Snapshots of every shard, this one first; shards that do not answer within a second are
    /// left out.
    pub async fn snapshots(&self) -> Vec<ShardSnapshot> {
        let mut snapshots = vec![self.snapshot()];
        let Some(mesh) = &self.mesh else {
            return snapshots;
        };
        for peer in 0..mesh.nr_consumers() {
            if peer == mesh.peer_id() {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let asked = glommio::timer::timeout(Duration::from_secs(1), async {
                mesh.send_to(peer, ShardMessage::Snapshot(reply))
                    .await
                    .map_err(|_| {
                        glommio::GlommioError::<()>::Closed(glommio::ResourceType::Channel(()))
                    })?;
                answer.await.map_err(|_| {
                    glommio::GlommioError::<()>::Closed(glommio::ResourceType::Channel(()))
                })
            })
            .await;
            if let Ok(snapshot) = asked {
                snapshots.push(snapshot);
            }
        }
        snapshots.sort_by_key(|snapshot| snapshot.shard);
        snapshots
    }

    fn snapshot(&self) -> ShardSnapshot {
        let registry = self.registry.borrow();
        let (queued_total, queued_max) = registry.outbound_totals();
        ShardSnapshot {
            shard: self.id,
            websocket_connections: registry.connections.len(),
            open_sockets: self.open_sockets.get(),
            channel_count: registry.channel_count(),
            outbound_queued_bytes: queued_total,
            outbound_queue_max_bytes: queued_max,
            top_channels: registry.top_channels(SNAPSHOT_CHANNELS_MAX),
            stats: registry.stats.clone(),
        }
    }

    /// The fan-out task: forever take a batch of messages, queue them, write, then close the
    /// slow consumers of this pass.
    pub async fn run_fanout(self: Rc<Self>, sources: Sources) {
        let mut state = FanoutState {
            sources,
            staged: Vec::with_capacity(STAGED_MAX),
            batch: Vec::with_capacity(MAX_MESSAGES_PER_PASS),
            unrecorded: Vec::new(),
            pass: 0,
        };
        loop {
            // Wait for a message only when nothing is left to write.
            let idle = self.registry.borrow().flush_list_is_empty();
            let mut taken = self
                .take_messages(&mut state, idle, MAX_MESSAGES_PER_PASS)
                .await;
            if idle && !self.config.write_coalesce.is_zero() {
                glommio::timer::sleep(self.config.write_coalesce).await;
                let limit = MAX_MESSAGES_PER_PASS - taken;
                taken += self.take_messages(&mut state, false, limit).await;
            }
            // A connection gets at most `MAX_MESSAGES_PER_PASS` new frames between two writes
            // (the slow-consumer check comes after the pass): the pass takes only what is left.
            let budget = MAX_MESSAGES_PER_PASS.saturating_sub(taken);
            state.pass += 1;
            self.write_pass(Some((&mut state, budget))).await;
            let mut registry = self.registry.borrow_mut();
            // A publication's latency ends with the pass that wrote its last frame.
            let now = Instant::now();
            let pass = state.pass;
            state.unrecorded.retain(|&(at, written_by)| {
                if written_by > pass {
                    return true;
                }
                registry
                    .stats
                    .record_fanout_latency(now.duration_since(at).as_micros() as u64);
                false
            });
            registry.request_slow_consumer_closes();
        }
    }

    /// Takes available messages (waiting for one if `wait`), at most `limit`, and queues them
    /// for subscribers; returns how many it took.
    async fn take_messages(&self, state: &mut FanoutState, wait: bool, limit: usize) -> usize {
        let FanoutState {
            sources,
            staged,
            batch,
            unrecorded,
            pass,
        } = state;
        poll_fn(|context| self.collect(context, sources, staged, batch, wait, limit)).await;
        let taken = batch.len();
        if taken > 0 {
            // Queued between passes: the next pass writes every frame. Queued during pass k: the
            // subscribers it already wrote get theirs in pass k + 1. Either way: `pass + 1`.
            let written_by = *pass + 1;
            unrecorded.extend(
                self.queue_batch(batch)
                    .into_iter()
                    .map(|at| (at, written_by)),
            );
        }
        taken
    }

    /// One write pass over the connections listed at its start, yielding between slices so a
    /// fan-out to many connections never starves accepts and reads. With `absorb` (the fan-out's
    /// state and a message budget), it also takes the messages that arrived meanwhile, up to
    /// the budget: subscribers not yet written in this pass get them in the same write (one
    /// more frame per send call), the others in the next pass. So a message arriving during a
    /// long pass does not wait for the whole pass to end.
    async fn write_pass(&self, mut absorb: Option<(&mut FanoutState, usize)>) {
        let list = self.registry.borrow_mut().take_flush_list();
        for slice in list.chunks(FLUSHES_PER_YIELD) {
            self.write_slice(slice);
            if list.len() > FLUSHES_PER_YIELD {
                glommio::yield_if_needed().await;
                if let Some((state, budget)) = &mut absorb
                    && *budget > 0
                {
                    *budget -= self.take_messages(state, false, *budget).await;
                }
            }
        }
        self.registry.borrow_mut().return_flush_list(list);
    }

    /// One vectored write for each connection of `slice` (batched through io_uring when on).
    fn write_slice(&self, slice: &[usize]) {
        let mut registry = self.registry.borrow_mut();
        match self.uring.borrow_mut().as_mut() {
            Some(writer) => writer.flush(&mut registry, slice),
            None => {
                for &key in slice {
                    registry.flush(key);
                }
            }
        }
    }

    /// Moves publications into `batch` in publish order (until it holds `limit`). With `wait`,
    /// stays pending until there is at least one.
    ///
    /// Order across shards: a publish answered by one shard and then a publish made (by the same
    /// backend, after that answer) on another shard reach this shard through different channels.
    /// Each channel is FIFO, but which one is read first is not. So: take what every source has
    /// (pass 1), note the newest publish time seen, take what every source has again (pass 2:
    /// anything published before a pass-1 message was in its channel before that message, so it
    /// is visible now), then release, sorted by publish time, only what is not newer than pass 1's
    /// newest. Later messages wait for the next round, where the same rule applies.
    fn collect(
        &self,
        context: &mut Context<'_>,
        sources: &mut Sources,
        staged: &mut Vec<Publication>,
        batch: &mut Vec<Publication>,
        wait: bool,
        limit: usize,
    ) -> Poll<()> {
        self.take_available(context, sources, staged);
        if staged.is_empty() {
            if wait {
                *self.inbox.waker.borrow_mut() = Some(context.waker().clone());
                return Poll::Pending;
            }
            return Poll::Ready(());
        }
        let horizon = staged
            .iter()
            .map(|publication| publication.published_at)
            .max()
            .expect("staged is not empty");
        self.take_available(context, sources, staged);
        staged.sort_by_key(|publication| publication.published_at);
        let releasable = staged
            .partition_point(|publication| publication.published_at <= horizon)
            .min(limit.saturating_sub(batch.len()));
        batch.extend(staged.drain(..releasable));
        Poll::Ready(())
    }

    /// Moves what the inbox and the mesh hold into `staged` (at most `STAGED_MAX` in all);
    /// snapshot requests are answered at once.
    fn take_available(
        &self,
        context: &mut Context<'_>,
        sources: &mut Sources,
        staged: &mut Vec<Publication>,
    ) {
        // Redis delivers in Redis's order through one channel.
        while let Some(redis) = sources.redis.as_mut()
            && staged.len() < STAGED_MAX
        {
            match redis.poll_next_unpin(context) {
                Poll::Ready(Some(publication)) => staged.push(publication),
                Poll::Ready(None) => sources.redis = None,
                Poll::Pending => break,
            }
        }
        let receivers = &mut sources.mesh;
        let mut messages = Vec::new();
        {
            let mut queue = self.inbox.queue.borrow_mut();
            while staged.len() + messages.len() < STAGED_MAX {
                match queue.pop_front() {
                    Some(message) => messages.push(message),
                    None => break,
                }
            }
        }
        let mut index = 0;
        while index < receivers.len() && staged.len() + messages.len() < STAGED_MAX {
            match receivers[index].poll_next_unpin(context) {
                Poll::Ready(Some(message)) => messages.push(message),
                Poll::Ready(None) => {
                    receivers.swap_remove(index);
                }
                Poll::Pending => index += 1,
            }
        }
        for message in messages {
            match message {
                ShardMessage::Publish(publication) => staged.push(publication),
                // The asker may have given up; nothing to do then.
                ShardMessage::Snapshot(reply) => drop(reply.send(self.snapshot())),
            }
        }
    }

    /// Frames each publication once and queues it for every local subscriber; returns the
    /// publish times of those that had subscribers here (for the latency histogram).
    fn queue_batch(&self, batch: &mut Vec<Publication>) -> Vec<Instant> {
        // Returned times are recorded once the frames are written.
        let mut published_at = Vec::new();
        let mut registry = self.registry.borrow_mut();
        for publication in batch.drain(..) {
            registry.stats.publications_fanned_out += 1;
            if registry.subscriber_count(publication.channel.as_str()) == 0 {
                continue;
            }
            let opcode = match publication.kind {
                DataKind::Text => OpCode::Text,
                DataKind::Binary => OpCode::Binary,
            };
            let frame = encode_server_frame(opcode, &publication.payload);
            registry.fan_out(publication.channel.as_str(), &frame);
            published_at.push(publication.published_at);
        }
        published_at
    }

    /// Gives every connection with queued frames one vectored write, yielding between slices
    /// so a fan-out to many connections never starves accepts and reads.
    pub async fn flush_all(&self) {
        self.write_pass(None).await;
    }

    /// The ticker: heartbeat, pings and idle timeouts, and the start of a drain.
    pub async fn run_ticker(self: Rc<Self>) {
        let ping = encode_server_frame(OpCode::Ping, b"");
        let ping_interval_ms = self.config.ping_interval.as_millis() as u64;
        let idle_timeout_ms = self.config.idle_timeout.as_millis() as u64;
        // The heartbeat and the drain check run every tick; the sweep over all connections only
        // as often as the ping and idle settings need (a quarter of the shorter one, <= 1 s).
        let sweep_interval = (self.config.ping_interval.min(self.config.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let tick = sweep_interval.min(Duration::from_millis(250));
        let mut last_sweep = Instant::now();
        let mut memory = MemoryTrim::new();
        loop {
            self.slot()
                .heartbeat_ms
                .store(self.shared.now_ms(), Ordering::Relaxed);
            if self.shared.shutting_down() && !self.draining.is_set() {
                self.begin_drain();
            }
            if !self.draining.is_set() && last_sweep.elapsed() >= sweep_interval {
                last_sweep = Instant::now();
                let now_ms = self.now_ms();
                self.registry
                    .borrow_mut()
                    .sweep(now_ms, ping_interval_ms, idle_timeout_ms, &ping);
                self.flush_all().await;
            }
            if memory.due(self.open_sockets.get()) {
                self.registry.borrow_mut().release_spare_capacity();
                release_free_memory();
            }
            glommio::timer::sleep(tick).await;
        }
    }

    /// With `--redis`: PUBLISH through the subscriber core, so every node (this one included)
    /// delivers it exactly once. Returns Redis's receiver count, or why it failed (answered 503).
    pub async fn publish_through_redis(
        &self,
        link: &RedisLink,
        channel: ChannelName,
        payload: Bytes,
    ) -> Result<u64, String> {
        let (reply, answer) = oneshot::channel();
        let request = PublishRequest {
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

    /// With `--redis`: tells the subscriber core which channels this shard gained or lost, in
    /// batches (everything that changed while the previous report was in flight goes in the
    /// next one), and marks channels confirmed when the core has subscribed them.
    pub async fn run_redis_interest(self: Rc<Self>) {
        let Some(link) = self.redis.clone() else {
            return;
        };
        let changed = self.registry.borrow().interest_changed.clone();
        // Channels this shard has reported as wanted (bounded by the channel limit).
        let mut announced: std::collections::HashSet<ChannelName> = Default::default();
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
                for name in changes {
                    let present = registry.subscriber_count(name.as_str()) > 0;
                    // A channel removed and made again since the last look is announced but
                    // new, so unconfirmed: ask again (the core's update is idempotent).
                    let unconfirmed = !registry.channel_confirmed(name.as_str());
                    if present && (announced.insert(name.clone()) || unconfirmed) {
                        added.push(name);
                    } else if !present && announced.remove(&name) {
                        removed.push(name);
                    }
                }
            }
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            let (confirmed, confirmation) = oneshot::channel();
            let update = InterestUpdate {
                shard: self.id,
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
        let deadline = Instant::now() + self.config.redis_subscribe_wait;
        // Bounded by the deadline; each round is a confirmation from the Redis core.
        loop {
            let notified = self.confirmations.notified();
            if self.registry.borrow().channel_confirmed(channel.as_str()) {
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
                return self.registry.borrow().channel_confirmed(channel.as_str());
            }
        }
    }

    /// Stops accepting and asks every WebSocket client to close with 1001.
    fn begin_drain(&self) {
        log::info!(
            "shard {}: draining {} connections",
            self.id,
            self.open_sockets.get()
        );
        self.draining.set();
        self.registry
            .borrow_mut()
            .request_close_all(CloseRequest::Shutdown);
    }
}
