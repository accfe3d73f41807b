//! One shard's WebSocket connections: the single owner of every connection's state, its socket,
//! its channels, and the lists the reactor, the fan-out and the writer work from.
//!
//! Owned by exactly one shard (no locks, no atomics). Connections live in a slab; a channel holds
//! the slab keys of its subscribers in a `Vec`, and each connection remembers its position in
//! every channel it joined, so joining and leaving are O(1) (swap-remove, then fix the moved
//! subscriber's position). The fan-out frames a message once per wire format and pushes a
//! reference to the same bytes into each subscriber's queue: no allocation or copy per
//! subscriber.
//!
//! This is the one place where a connection's write state, read state and lifecycle change
//! (through the pure machines of [`super::state`]); the reactor (reads), the writer (writes),
//! the fan-out and the ticker ask it for transitions and never set a state themselves.
//!
//! Invariants it owns:
//! - a connection's socket is an `OwnedFd` inside its entry: no entry outlives its socket, and
//!   no socket outlives its entry except as a lingering entry (which owns it in turn);
//! - an entry is only removed by [`Registry::finish_ended`] (and after a handler panic by
//!   [`Registry::discard`]), never while a write batch runs, so a raw descriptor lent to a writer
//!   by [`Registry::begin_write`] stays valid until the batch ends;
//! - a connection is on the flush list at most once per `Listed` state, and only an open one
//!   receives broadcasts.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::Bytes;
use slab::Slab;
use smallvec::SmallVec;

use super::deflate::{Deflate, DeflateTally, FrameCache, ShardCompressor};
use super::event::LocalNotify;
use super::outbound::{Outbound, WriteOutcome, WriteTally};
use super::poller::{GENERATION_MASK, Poller, Readiness, Token, TokenKind};
use super::shared::{AddressTicket, AppTicket};
use super::state::{
    CloseRequest, Closer, LifeAction, LifeEvent, Lifecycle, ReadState, WriteAction, WriteEnd,
    WriteEvent, WriteState,
};
use crate::channel::{AppSlot, ChannelName};
use crate::history::recovery::{HistoryRead, Synchronized};
use crate::history::{Epoch, StreamPosition};
use crate::protocol::close::encode_close_frame;
use crate::protocol::message::MessageDecoder;
use crate::publication::Publication;
use crate::socket_id::SocketId;
use crate::telemetry::counters::{CloseReason, Counter, ShardStats};
use crate::wire::WireFormat;
use crate::wire::centrifugo::codes::{DisconnectCode, LIVE_GAP};
use crate::wire::centrifugo::reply::ReplyBatch;
use crate::wire::centrifugo::session::{
    Delivery, FinishError, Session, SessionLimits, Subscription as StreamSubscription, Tick,
};
use crate::wire::pusher::authorize::ClientEventRateLimiter;
use crate::wire::pusher::outgoing::{MEMBER_ADDED_EVENT, MEMBER_REMOVED_EVENT, TERMINATE_EVENT};
use crate::wire::pusher::presence::SignedInUser;
use crate::wire::raw::RawRole;

/// A connection's key in its shard's slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionKey(u32);

impl ConnectionKey {
    fn index(self) -> usize {
        self.0 as usize
    }

    fn from_index(index: usize) -> ConnectionKey {
        ConnectionKey(u32::try_from(index).expect("fewer than 2^32 connections per shard"))
    }
}

/// The limits the owner enforces (from the validated configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--outbound-queue-bytes`.
    pub outbound_queue_bytes: usize,
    /// `--max-message-bytes`.
    pub max_message_bytes: u64,
    /// `--close-timeout`, ms.
    pub close_timeout_ms: u64,
    /// `--max-channels`.
    pub max_channels: usize,
    /// `--max-fragments`.
    pub max_fragments: u32,
    /// `--max-subscriptions`.
    pub max_subscriptions: usize,
}

/// How long a closed socket is lingered on (read and discarded) before it is closed, ms: so our
/// last bytes are not destroyed by a reset when the client still had data in flight.
pub const LINGER_MS: u64 = 1000;
/// Most bytes read and discarded while lingering.
pub const LINGER_BYTES_MAX: usize = 64 << 10;

/// A list entry that names one connection for good: a key reused by a later connection has
/// another generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tagged {
    key: ConnectionKey,
    generation: u32,
}

/// When a connection's token expires (seconds since the Unix epoch; 4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpiry(std::num::NonZeroU32);

impl TokenExpiry {
    /// The expiry of a token whose `exp` claim is `unix_s` (clamped to the representable
    /// range, which ends in 2106).
    pub fn at_unix_s(unix_s: u64) -> TokenExpiry {
        let clamped = unix_s.clamp(1, u64::from(u32::MAX)) as u32;
        TokenExpiry(std::num::NonZeroU32::new(clamped).expect("clamped to at least 1"))
    }

    /// Has it passed at `now_unix_s`?
    pub fn passed(self, now_unix_s: u64) -> bool {
        u64::from(self.0.get()) <= now_unix_s
    }
}

/// What an upgrade was admitted with, kept by its connection.
#[derive(Debug)]
pub struct Admission {
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// When its subscription token expires (the connection is closed with 4009 then).
    pub expiry: Option<TokenExpiry>,
    /// Its place in its address's count (`--max-connections-per-ip`).
    pub ticket: Option<AddressTicket>,
    /// What it negotiated about permessage-deflate.
    pub deflate: Deflate,
}

/// The protocol a connection speaks, with what that protocol keeps per connection.
#[derive(Debug)]
pub enum Protocol {
    /// `/ws/{channel}` or `/echo`.
    Raw(RawRole),
    /// Pusher Channels protocol 7 (`/app/{key}`); boxed: a raw connection pays one word.
    Pusher(Box<PusherConnection>),
    /// The Centrifugo client protocol (`/connection/websocket`): its session (handshake,
    /// pings, subscriptions and their stream cursors).
    Centrifugo(Box<CentrifugoConnection>),
    /// A `/ws/{channel}` subscriber of a channel with history (frames as [`Protocol::Raw`]).
    RawStream(Box<RawStream>),
}

/// What a `/ws/{channel}` subscriber of a channel with history keeps: its place in the
/// channel's stream (the Centrifugo subscription's cursor machinery, held directly: the
/// fan-out checks it for every publication, so it is one hop from the connection).
#[derive(Debug)]
pub enum RawStream {
    /// Subscribed: reading history, or live from its cursor.
    Following(StreamSubscription),
    /// It missed a publication; it is closed after the pass (4011) and takes nothing more.
    Lost,
}

impl RawStream {
    /// A subscriber of `channel` whose history read has not completed yet (publications are
    /// held until it does).
    pub fn subscribing(channel: &ChannelName) -> RawStream {
        RawStream::Following(StreamSubscription::new(channel, true))
    }

    /// A live publication of its channel.
    fn on_publication(
        &mut self,
        position: Option<&StreamPosition>,
        payload: &Bytes,
        limits: &SessionLimits,
    ) -> Delivery {
        let RawStream::Following(subscription) = self else {
            return Delivery::Skip;
        };
        let delivery = subscription.on_publication(position, payload, limits);
        if delivery == Delivery::Insufficient {
            *self = RawStream::Lost;
        }
        delivery
    }

    /// History was read: joins it with what was buffered (see [`StreamSubscription::finish`]).
    pub fn finish(&mut self, read: HistoryRead) -> Result<Synchronized, FinishError> {
        let RawStream::Following(subscription) = self else {
            return Err(FinishError::NotSubscribing);
        };
        let finished = subscription.finish(read);
        if finished.is_err() {
            *self = RawStream::Lost;
        }
        finished
    }
}

/// What a Centrifugo connection keeps.
#[derive(Debug)]
pub struct CentrifugoConnection {
    /// The protocol state.
    pub session: Session,
}

/// What a Pusher connection keeps.
#[derive(Debug)]
pub struct PusherConnection {
    /// Its application.
    pub app: AppSlot,
    /// Its socket id (sent in `pusher:connection_established`, signed into authorizations,
    /// and given back by publishers to exclude it).
    pub socket_id: SocketId,
    /// Its place in its application's connection count (`max_connections`, 4004).
    #[expect(dead_code, reason = "held for its Drop, which gives the place back")]
    pub ticket: Option<AppTicket>,
    /// The user it signed in as (`pusher:signin`).
    pub user: Option<Box<SignedInUser>>,
    /// Its presence channel memberships.
    pub seats: Vec<PresenceSeat>,
    /// Its client events' rate limiter.
    pub client_events: ClientEventRateLimiter,
}

impl PusherConnection {
    /// A connection of `app` with socket id `socket_id`, signed in as nobody, in no presence
    /// channel.
    pub fn new(
        app: AppSlot,
        socket_id: SocketId,
        ticket: Option<AppTicket>,
        client_event_rate_per_s: u32,
        now_ms: u64,
    ) -> PusherConnection {
        PusherConnection {
            app,
            socket_id,
            ticket,
            user: None,
            seats: Vec::new(),
            client_events: ClientEventRateLimiter::new(client_event_rate_per_s, now_ms),
        }
    }

    /// Its seat in presence channel `channel`, if any.
    pub fn seat(&mut self, channel: &ChannelName) -> Option<&mut PresenceSeat> {
        self.seats.iter_mut().find(|seat| seat.channel == *channel)
    }
}

/// Most `member_added`/`member_removed` one seat holds while its join is in flight (beyond it
/// they are dropped and counted).
pub const HELD_MEMBER_EVENTS_MAX: usize = 256;

/// A connection's membership of one presence channel.
#[derive(Debug, Clone)]
pub struct PresenceSeat {
    /// The presence channel.
    pub channel: ChannelName,
    /// The member's user id (client events on the channel carry it).
    pub user_id: std::sync::Arc<str>,
    /// Where its join stands.
    pub state: SeatState,
    /// Member events that reached the channel while the join was in flight: the client gets
    /// them after its `subscription_succeeded`, less those its member list already covers
    /// (`pusher_state::join`). Empty once joined.
    pub held: Vec<Publication>,
}

/// Where a presence join stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    /// Asked; the membership store has not answered (whoever gets the answer leaves again if
    /// the connection is gone by then).
    Joining,
    /// A member: leaving the channel or closing tells the store.
    Joined,
}

/// A member leaving a presence channel, for the shard's presence task to tell the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// The namespace.
    pub app: AppSlot,
    /// The presence channel.
    pub channel: ChannelName,
    /// The connection.
    pub socket_id: SocketId,
}

/// A channel's identity: the application namespace and the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    app: AppSlot,
    name: ChannelName,
}

/// A subscription: which channel, and where this connection sits in its subscriber list.
#[derive(Debug, Clone, Copy)]
struct Subscription {
    channel: u32,
    position: u32,
}

/// The input state a connection keeps only while a frame or a fragmented message is
/// unfinished; an idle connection holds none (`None` costs one pointer).
#[derive(Debug)]
pub struct PartialInput {
    /// Bytes of an unfinished frame.
    pub bytes: Vec<u8>,
    /// The decoder, with a fragmented message in progress, if any.
    pub decoder: MessageDecoder,
}

/// One WebSocket connection's state.
#[derive(Debug)]
pub struct Connection {
    /// The socket. Closed when the entry goes (or handed to a lingering entry).
    socket: OwnedFd,
    /// Distinguishes this connection's epoll events from those of an earlier user of the key.
    generation: u32,
    /// Where its writes stand.
    write: WriteState,
    /// Whether it is read.
    read: ReadState,
    /// Where it is in its life.
    life: Lifecycle,
    /// What it negotiated about permessage-deflate (a few bytes; its inflater, when it has
    /// one, lives in `input`).
    deflate: Deflate,
    /// The protocol it speaks (and that protocol's per-connection state).
    protocol: Protocol,
    /// Shard clock (ms) of the last bytes received.
    last_read_ms: u64,
    /// Shard clock (ms) of the last ping sent.
    last_ping_ms: u64,
    /// Frames waiting to be written.
    outbound: Outbound,
    /// Channels joined: usually one, kept inline so it costs no allocation.
    subscriptions: SmallVec<[Subscription; 1]>,
    /// An unfinished frame or message.
    input: Option<Box<PartialInput>>,
    /// When its subscription token expires.
    expiry: Option<TokenExpiry>,
    /// Its place in its address's count, given back when the connection goes (boxed: most
    /// deployments run without the limit, and then it costs one word).
    #[expect(dead_code, reason = "held for its Drop, which gives the place back")]
    ticket: Option<Box<AddressTicket>>,
}

impl Connection {
    /// The protocol it speaks.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// Its lifecycle.
    pub fn life(&self) -> Lifecycle {
        self.life
    }

    /// Whether it is read.
    pub fn read_state(&self) -> ReadState {
        self.read
    }

    /// Distinguishes it from an earlier or later connection with the same key.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The socket (valid while the entry exists).
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The wire format its broadcasts are framed in.
    fn format(&self) -> WireFormat {
        match self.protocol {
            Protocol::Raw(_) => WireFormat::Raw,
            Protocol::Pusher(_) => WireFormat::Pusher,
            Protocol::Centrifugo(_) => WireFormat::Centrifugo,
            Protocol::RawStream(_) => WireFormat::Raw,
        }
    }

    /// The close a request means in this connection's protocol: a Pusher client that stops
    /// answering gets 4201 ("Pong reply not received"), one the server sheds gets 4200
    /// ("Generic reconnect immediately"), so pusher-js reconnects as its docs say.
    fn protocol_close(&self, event: LifeEvent) -> LifeEvent {
        let application =
            |code, reason| LifeEvent::Request(CloseRequest::Application { code, reason });
        match (&self.protocol, event) {
            (Protocol::Pusher(_), LifeEvent::Request(CloseRequest::Idle)) => {
                application(4201, "Pong reply not received")
            }
            (Protocol::Pusher(_), LifeEvent::Request(CloseRequest::Shutdown)) => {
                application(4200, "Generic reconnect immediately")
            }
            // Centrifugo's codes: the SDK reconnects after 3001 and 3012 and recovers; 3008
            // (slow) too.
            (Protocol::Centrifugo(_), LifeEvent::Request(request)) => {
                let code = match request {
                    CloseRequest::Idle => DisconnectCode::NoPong,
                    CloseRequest::Shutdown => DisconnectCode::Shutdown,
                    CloseRequest::SlowConsumer => DisconnectCode::Slow,
                    CloseRequest::TokenExpired => DisconnectCode::Expired,
                    CloseRequest::Application { .. } => return event,
                };
                application(code.code(), code.reason())
            }
            (_, other) => other,
        }
    }

    /// Is it the connection a publication excludes?
    fn is_excluded(&self, exclude: Option<SocketId>) -> bool {
        match (&self.protocol, exclude) {
            (Protocol::Pusher(pusher), Some(excluded)) => pusher.socket_id == excluded,
            _ => false,
        }
    }
}

/// A socket whose connection has ended, read and discarded until the peer closes, for at most
/// [`LINGER_MS`] and [`LINGER_BYTES_MAX`].
#[derive(Debug)]
struct Lingering {
    socket: OwnedFd,
    generation: u32,
    until_ms: u64,
    discarded_bytes: usize,
}

/// A channel with subscribers on this shard.
#[derive(Debug)]
struct Channel {
    key: ChannelKey,
    subscribers: Vec<ConnectionKey>,
    /// The Redis subscriber core confirmed the channel is subscribed (always false without
    /// Redis).
    confirmed: bool,
    /// The epoch of the last positioned publication fanned out here. Each publication's
    /// position is given this one shared epoch when the text matches, so subscriptions (which
    /// adopt it) compare pointers, not text, per subscriber; publications read from Redis
    /// each carry their own copy of the text.
    epoch: Option<Epoch>,
}

/// How many subscribers ahead the fan-out asks the CPU for a connection's entry, and (half as
/// far) for the per-connection state it keeps behind a pointer (a raw subscriber of a channel
/// with history, a Centrifugo session). Without it each of those is a dependent cache miss per
/// subscriber: `perf annotate` put two thirds of the fan-out's samples on that one load at
/// 4000 subscribers of a history channel.
const PREFETCH_ENTRY_AHEAD: usize = 8;
const PREFETCH_STATE_AHEAD: usize = PREFETCH_ENTRY_AHEAD / 2;

/// Asks the CPU to start loading the entries (and boxed protocol state) of the subscribers a few
/// places after `index`: a hint only, with no effect on what the fan-out does.
#[inline(always)]
fn prefetch_ahead(connections: &Slab<Connection>, subscribers: &[ConnectionKey], index: usize) {
    if let Some(key) = subscribers.get(index + PREFETCH_ENTRY_AHEAD)
        && let Some(connection) = connections.get(key.index())
    {
        prefetch(connection);
    }
    if let Some(key) = subscribers.get(index + PREFETCH_STATE_AHEAD)
        && let Some(connection) = connections.get(key.index())
    {
        match &connection.protocol {
            Protocol::RawStream(stream) => prefetch(&**stream),
            Protocol::Centrifugo(centrifugo) => prefetch(&**centrifugo),
            Protocol::Raw(_) | Protocol::Pusher(_) => {}
        }
    }
}

/// Asks the CPU to load the cache line holding the start of `value` (a hint: never faults,
/// changes no result).
#[inline(always)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of every x86_64 CPU (the target's baseline), the only feature the
    // intrinsic needs; a prefetch reads nothing architecturally and cannot fault, and the
    // pointer comes from a live reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(value).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

impl Channel {
    /// `position` with the channel's shared epoch (kept as the new shared one when it differs).
    fn share_epoch(&mut self, position: &StreamPosition) -> StreamPosition {
        match &self.epoch {
            Some(epoch) if epoch.same(&position.epoch) => StreamPosition {
                offset: position.offset,
                epoch: epoch.clone(),
            },
            _ => {
                self.epoch = Some(position.epoch.clone());
                position.clone()
            }
        }
    }
}

/// Refusal to join a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyChannels;

/// Everything one shard owns about its WebSocket connections.
pub struct Registry {
    /// Open WebSocket connections.
    connections: Slab<Connection>,
    /// Channels with at least one subscriber here.
    channels: Slab<Channel>,
    /// Channel identity to key in `channels`.
    channel_keys: HashMap<ChannelKey, u32>,
    /// Connections with frames queued since the last flush (each `Listed` once).
    flush_list: Vec<ConnectionKey>,
    /// An emptied flush list kept for its allocation (the flush list and this one take turns).
    spare_flush_list: Vec<ConnectionKey>,
    /// Connections that went over the queue limit during the current pass.
    over_limit: Vec<ConnectionKey>,
    /// Positioned raw subscribers that saw a gap during the current pass (closed after it).
    stream_gaps: Vec<ConnectionKey>,
    /// Connections whose input may be waiting (`ReadState::Ready`).
    ready: Vec<ConnectionKey>,
    /// Connections closing, for their deadlines.
    closing: Vec<Tagged>,
    /// Connections whose lifecycle ended, removed by `finish_ended`.
    ended: Vec<Tagged>,
    /// Sockets lingering after their close.
    lingering: Slab<Lingering>,
    /// The epoll set every socket here is registered in.
    poller: Poller,
    /// The next generation handed out.
    next_generation: u32,
    /// The limits.
    limits: Limits,
    /// Channels that appeared or disappeared on this shard since the Redis subscription task
    /// last looked (`None` without Redis). A set: bounded by the number of channel names.
    interest_changes: Option<HashSet<ChannelKey>>,
    /// Channels whose subscriber count changed since the occupancy task last looked (`None`
    /// without Redis). A set: bounded by the number of channels.
    occupancy_changes: Option<HashSet<ChannelKey>>,
    /// Wakes the Redis subscription task when `interest_changes` grows.
    pub interest_changed: Rc<LocalNotify>,
    /// Presence members that left (a channel or for good), for the presence task; bounded
    /// by the connections' memberships, drained at every wake-up.
    departures: Vec<Departure>,
    /// Wakes the presence task when `departures` grows.
    pub departed: Rc<LocalNotify>,
    /// Connections whose user was terminated during the current pass (closed after it).
    terminated: Vec<ConnectionKey>,
    /// The shard's permessage-deflate compressor (`None` with `--compression off`).
    compressor: Option<ShardCompressor>,
    /// The Centrifugo protocol's per-connection limits.
    centrifugo: SessionLimits,
    /// Counters.
    pub stats: ShardStats,
}

impl Registry {
    /// An empty registry whose sockets are registered in `poller`.
    pub fn new(limits: Limits, poller: Poller) -> Registry {
        Registry {
            connections: Slab::new(),
            channels: Slab::new(),
            channel_keys: HashMap::new(),
            flush_list: Vec::new(),
            spare_flush_list: Vec::new(),
            over_limit: Vec::new(),
            stream_gaps: Vec::new(),
            ready: Vec::new(),
            closing: Vec::new(),
            ended: Vec::new(),
            lingering: Slab::new(),
            poller,
            next_generation: 0,
            limits,
            interest_changes: None,
            occupancy_changes: None,
            interest_changed: Rc::new(LocalNotify::default()),
            departures: Vec::new(),
            departed: Rc::new(LocalNotify::default()),
            terminated: Vec::new(),
            compressor: None,
            centrifugo: SessionLimits::default(),
            stats: ShardStats::default(),
        }
    }

    /// Compresses broadcasts and echoes for connections that negotiated permessage-deflate
    /// (`--compression on`).
    pub fn enable_compression(&mut self, compressor: ShardCompressor) {
        self.compressor = Some(compressor);
    }

    /// The Centrifugo protocol's per-connection limits.
    pub fn set_centrifugo_limits(&mut self, limits: SessionLimits) {
        self.centrifugo = limits;
    }

    /// The Centrifugo protocol's per-connection limits.
    pub fn centrifugo_limits(&self) -> SessionLimits {
        self.centrifugo
    }

    /// A Centrifugo connection's session, if `key` is one.
    pub fn centrifugo_session(&mut self, key: ConnectionKey) -> Option<&mut Session> {
        match &mut self.connections.get_mut(key.index())?.protocol {
            Protocol::Centrifugo(connection) => Some(&mut connection.session),
            _ => None,
        }
    }

    /// A positioned raw subscriber's place in its stream, if `key` is one.
    pub fn raw_stream(&mut self, key: ConnectionKey) -> Option<&mut RawStream> {
        match &mut self.connections.get_mut(key.index())?.protocol {
            Protocol::RawStream(stream) => Some(stream),
            _ => None,
        }
    }

    /// The epoll set (for the reactor).
    pub fn poller(&mut self) -> &mut Poller {
        &mut self.poller
    }

    /// Open WebSocket connections.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// No WebSocket connection is open.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Sockets lingering after their close.
    pub fn lingering_count(&self) -> usize {
        self.lingering.len()
    }

    /// A connection, if `key` is one.
    pub fn get(&self, key: ConnectionKey) -> Option<&Connection> {
        self.connections.get(key.index())
    }

    fn next_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1) & GENERATION_MASK;
        self.next_generation
    }

    // ----- joining and leaving -----

    /// Takes ownership of an upgraded socket and registers it for readiness. On failure the
    /// socket is closed and nothing is left behind.
    pub fn insert(
        &mut self,
        socket: OwnedFd,
        admission: Admission,
        now_ms: u64,
    ) -> io::Result<ConnectionKey> {
        let generation = self.next_generation();
        let fd = socket.as_raw_fd();
        let key = ConnectionKey::from_index(self.connections.insert(Connection {
            socket,
            generation,
            write: WriteState::Idle,
            // Bytes may have arrived before registration: look once.
            read: ReadState::Ready,
            life: Lifecycle::Open,
            deflate: admission.deflate,
            protocol: admission.protocol,
            last_read_ms: now_ms,
            last_ping_ms: now_ms,
            outbound: Outbound::default(),
            subscriptions: SmallVec::new(),
            input: None,
            expiry: admission.expiry,
            ticket: admission.ticket.map(Box::new),
        }));
        let token = Token {
            kind: TokenKind::Connection,
            key: key.0,
            generation,
        };
        if let Err(error) = self.poller.add(fd, token) {
            self.connections.remove(key.index());
            return Err(error);
        }
        self.ready.push(key);
        Ok(key)
    }

    /// Removes a connection registered a moment ago that cannot be served (before its 101):
    /// its socket is closed and nothing of it is left.
    pub fn abort(&mut self, key: ConnectionKey) {
        self.unsubscribe_all(key);
        self.connections.try_remove(key.index());
    }

    /// Subscribes `key` to `name` in `app`'s namespace (idempotent).
    pub fn subscribe(
        &mut self,
        key: ConnectionKey,
        app: AppSlot,
        name: &ChannelName,
    ) -> Result<(), TooManyChannels> {
        let channel_key = ChannelKey {
            app,
            name: name.clone(),
        };
        let channel = match self.channel_keys.get(&channel_key) {
            Some(&channel) => channel,
            None => {
                if self.channels.len() >= self.limits.max_channels {
                    return Err(TooManyChannels);
                }
                let channel = self.channels.insert(Channel {
                    key: channel_key.clone(),
                    subscribers: Vec::new(),
                    confirmed: false,
                    epoch: None,
                }) as u32;
                self.channel_keys.insert(channel_key.clone(), channel);
                self.record_interest_change(&channel_key);
                channel
            }
        };
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return Ok(());
        };
        if connection
            .subscriptions
            .iter()
            .any(|s| s.channel == channel)
        {
            return Ok(());
        }
        let subscribers = &mut self.channels[channel as usize].subscribers;
        connection.subscriptions.push(Subscription {
            channel,
            position: subscribers.len() as u32,
        });
        subscribers.push(key);
        if let Some(changes) = &mut self.occupancy_changes {
            changes.insert(channel_key);
        }
        Ok(())
    }

    /// Is `key` subscribed to `name` in `app`'s namespace?
    pub fn is_subscribed(&self, key: ConnectionKey, app: AppSlot, name: &ChannelName) -> bool {
        let channel_key = ChannelKey {
            app,
            name: name.clone(),
        };
        let (Some(&channel), Some(connection)) = (
            self.channel_keys.get(&channel_key),
            self.connections.get(key.index()),
        ) else {
            return false;
        };
        connection
            .subscriptions
            .iter()
            .any(|s| s.channel == channel)
    }

    /// Leaves one channel (nothing if `key` is not in it).
    pub fn unsubscribe(&mut self, key: ConnectionKey, app: AppSlot, name: &ChannelName) {
        let channel_key = ChannelKey {
            app,
            name: name.clone(),
        };
        let Some(&channel) = self.channel_keys.get(&channel_key) else {
            return;
        };
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        let Some(index) = connection
            .subscriptions
            .iter()
            .position(|s| s.channel == channel)
        else {
            return;
        };
        let subscription = connection.subscriptions.swap_remove(index);
        self.leave(key, subscription);
    }

    /// Leaves every channel; channels left empty are forgotten.
    fn unsubscribe_all(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        let subscriptions = std::mem::take(&mut connection.subscriptions);
        for subscription in subscriptions {
            self.leave(key, subscription);
        }
    }

    /// Takes `key` out of one channel's subscriber list (the connection's own record of the
    /// subscription is already gone).
    fn leave(&mut self, key: ConnectionKey, subscription: Subscription) {
        let channel = &mut self.channels[subscription.channel as usize];
        let position = subscription.position as usize;
        debug_assert_eq!(channel.subscribers[position], key);
        channel.subscribers.swap_remove(position);
        if let Some(&moved) = channel.subscribers.get(position)
            && let Some(moved_subscription) = self.connections[moved.index()]
                .subscriptions
                .iter_mut()
                .find(|s| s.channel == subscription.channel)
        {
            moved_subscription.position = subscription.position;
        }
        if let Some(changes) = &mut self.occupancy_changes
            && !changes.contains(&channel.key)
        {
            changes.insert(channel.key.clone());
        }
        if channel.subscribers.is_empty() {
            let channel = self.channels.remove(subscription.channel as usize);
            self.channel_keys.remove(&channel.key);
            self.record_interest_change(&channel.key);
        }
    }

    // ----- Pusher presence and users -----

    /// `key`'s Pusher state, if it is a Pusher connection.
    pub fn pusher_mut(&mut self, key: ConnectionKey) -> Option<&mut PusherConnection> {
        match &mut self.connections.get_mut(key.index())?.protocol {
            Protocol::Pusher(pusher) => Some(pusher),
            _ => None,
        }
    }

    /// `key` leaves presence channel `name`: out of the channel, and its membership (if it
    /// was one) is told to the store by the presence task.
    pub fn leave_presence(&mut self, key: ConnectionKey, app: AppSlot, name: &ChannelName) {
        self.unsubscribe(key, app, name);
        let Some(pusher) = self.pusher_mut(key) else {
            return;
        };
        let Some(index) = pusher.seats.iter().position(|seat| seat.channel == *name) else {
            return;
        };
        let seat = pusher.seats.swap_remove(index);
        if seat.state == SeatState::Joined {
            let socket_id = pusher.socket_id;
            self.departures.push(Departure {
                app,
                channel: seat.channel,
                socket_id,
            });
            self.departed.notify_all();
        }
    }

    /// A closing connection leaves every presence channel it joined (the presence task tells
    /// the store).
    fn depart_presence(&mut self, key: ConnectionKey) {
        let Some(pusher) = self.pusher_mut(key) else {
            return;
        };
        if pusher.seats.is_empty() {
            return;
        }
        let (app, socket_id) = (pusher.app, pusher.socket_id);
        let joined = std::mem::take(&mut pusher.seats)
            .into_iter()
            .filter(|seat| seat.state == SeatState::Joined);
        for seat in joined {
            self.departures.push(Departure {
                app,
                channel: seat.channel,
                socket_id,
            });
        }
        self.departed.notify_all();
    }

    /// The presence departures since the last call.
    pub fn take_departures(&mut self) -> Vec<Departure> {
        std::mem::take(&mut self.departures)
    }

    // ----- occupancy shared through Redis -----

    /// Records which channels' subscriber counts change, for the occupancy reports.
    pub fn track_occupancy(&mut self) {
        self.occupancy_changes = Some(HashSet::new());
    }

    /// Up to `max` channels whose count changed since they were last taken, with their count
    /// now (0: gone); the rest stay for the next call.
    pub fn take_occupancy_changes(&mut self, max: usize) -> Vec<(AppSlot, ChannelName, usize)> {
        let Some(changes) = &mut self.occupancy_changes else {
            return Vec::new();
        };
        let taken: Vec<ChannelKey> = changes.iter().take(max).cloned().collect();
        for key in &taken {
            changes.remove(key);
        }
        taken
            .into_iter()
            .map(|key| {
                let count = self.subscriber_count(key.app, &key.name);
                (key.app, key.name, count)
            })
            .collect()
    }

    // ----- Redis interest -----

    /// Records which channels appear and disappear, for the Redis subscription task.
    pub fn track_interest(&mut self) {
        self.interest_changes = Some(HashSet::new());
    }

    /// Channels (with their namespace) that appeared or disappeared since the last call.
    pub fn take_interest_changes(&mut self) -> Vec<(AppSlot, ChannelName)> {
        self.interest_changes
            .as_mut()
            .map(|changes| changes.drain().map(|key| (key.app, key.name)).collect())
            .unwrap_or_default()
    }

    /// Every namespace travels through Redis (see `broker::redis` for the channel names).
    fn record_interest_change(&mut self, key: &ChannelKey) {
        if let Some(changes) = &mut self.interest_changes
            && changes.insert(key.clone())
        {
            self.interest_changed.notify_all();
        }
    }

    /// Marks `names` (those still present) as subscribed in Redis.
    pub fn confirm_channels(&mut self, names: &[(AppSlot, ChannelName)]) {
        for (app, name) in names {
            let key = ChannelKey {
                app: *app,
                name: name.clone(),
            };
            if let Some(&channel) = self.channel_keys.get(&key) {
                self.channels[channel as usize].confirmed = true;
            }
        }
    }

    /// Is `name` of `app`'s namespace confirmed as subscribed in Redis?
    pub fn channel_confirmed(&self, app: AppSlot, name: &ChannelName) -> bool {
        let key = ChannelKey {
            app,
            name: name.clone(),
        };
        self.channel_keys
            .get(&key)
            .is_some_and(|&channel| self.channels[channel as usize].confirmed)
    }

    // ----- reading the state -----

    /// Subscribers of `name` in `app`'s namespace on this shard.
    pub fn subscriber_count(&self, app: AppSlot, name: &ChannelName) -> usize {
        let key = ChannelKey {
            app,
            name: name.clone(),
        };
        self.channel_keys.get(&key).map_or(0, |&channel| {
            self.channels[channel as usize].subscribers.len()
        })
    }

    /// The channels of `app` whose name starts with `prefix`, with their subscriber counts here
    /// (at most `limit`).
    pub fn channels_of(
        &self,
        app: AppSlot,
        prefix: &str,
        limit: usize,
    ) -> Vec<(ChannelName, usize)> {
        self.channels
            .iter()
            .filter(|(_, channel)| {
                channel.key.app == app && channel.key.name.as_str().starts_with(prefix)
            })
            .take(limit)
            .map(|(_, channel)| (channel.key.name.clone(), channel.subscribers.len()))
            .collect()
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
            .map(|(_, channel)| {
                let name = match channel.key.app {
                    AppSlot::DEFAULT => channel.key.name.to_string(),
                    AppSlot(app) => format!("app{app}/{}", channel.key.name),
                };
                (name, channel.subscribers.len())
            })
            .collect();
        channels.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        channels.truncate(limit);
        channels
    }

    // ----- queueing -----

    /// Queues `publication` for every open subscriber of its channel, framed once per wire
    /// format present (the frames are shared, never copied); returns how many it was queued
    /// for. Subscribers already closing are skipped (counted).
    pub fn fan_out(&mut self, publication: &Publication) -> usize {
        let key = ChannelKey {
            app: publication.app,
            name: publication.channel.clone(),
        };
        let Some(&channel) = self.channel_keys.get(&key) else {
            return 0;
        };
        if publication.event.as_deref() == Some(TERMINATE_EVENT) {
            // `terminate_connections`: the user's connections are closed after the pass.
            let subscribers = &self.channels[channel as usize].subscribers;
            self.terminated.extend(subscribers.iter().copied());
            return 0;
        }
        let exclude = publication.exclude();
        // A presence member event waits for a joining subscriber's member list.
        let member_event = matches!(
            publication.event.as_deref(),
            Some(MEMBER_ADDED_EVENT | MEMBER_REMOVED_EVENT)
        );
        let mut member_events_dropped = 0;
        let entry = &mut self.channels[channel as usize];
        let position = publication
            .position
            .as_deref()
            .map(|position| entry.share_epoch(position));
        // The registry's own name: subscriptions adopt it, then compare pointers.
        let name = &self.channels[channel as usize].key.name;
        let mut frames = FrameCache::default();
        let mut queued = 0;
        let mut dropped = 0;
        let mut excluded = 0;
        let mut unframable = 0;
        let mut held = 0;
        let mut gaps = Vec::new();
        let subscribers = &self.channels[channel as usize].subscribers;
        for (index, &key) in subscribers.iter().enumerate() {
            prefetch_ahead(&self.connections, subscribers, index);
            let connection = &mut self.connections[key.index()];
            if !connection.life.is_open() {
                dropped += 1;
                continue;
            }
            if connection.is_excluded(exclude) {
                excluded += 1;
                continue;
            }
            if member_event
                && let Protocol::Pusher(pusher) = &mut connection.protocol
                && let Some(seat) = pusher.seat(name)
                && seat.state == SeatState::Joining
            {
                if seat.held.len() < HELD_MEMBER_EVENTS_MAX {
                    seat.held.push(publication.clone());
                } else {
                    member_events_dropped += 1;
                }
                held += 1;
                continue;
            }
            // A Centrifugo subscription follows the channel's stream: it may be reading
            // history (the publication is held for the merge), have it already, or have
            // missed one (then it is dropped and told to resubscribe, which recovers).
            let payload = &publication.payload;
            let delivery = match &mut connection.protocol {
                Protocol::Centrifugo(centrifugo) => Some(centrifugo.session.on_publication(
                    name,
                    position.as_ref(),
                    payload,
                    &self.centrifugo,
                )),
                Protocol::RawStream(stream) => {
                    Some(stream.on_publication(position.as_ref(), payload, &self.centrifugo))
                }
                _ => None,
            };
            if let Some(delivery) = delivery {
                match delivery {
                    Delivery::Deliver => {}
                    Delivery::Buffered | Delivery::Skip => {
                        held += 1;
                        continue;
                    }
                    Delivery::Insufficient => {
                        gaps.push(key);
                        continue;
                    }
                }
            }
            let format = connection.format();
            let compressor = self.compressor.as_mut();
            let Some(frame) = frames.get(format, connection.deflate, publication, compressor)
            else {
                unframable += 1;
                continue;
            };
            let before_bytes = connection.outbound.queued_bytes();
            connection.outbound.push(frame);
            queued += 1;
            let (state, action) = connection.write.on(WriteEvent::Queued);
            connection.write = state;
            if action == WriteAction::List {
                self.flush_list.push(key);
            }
            // Checked after the pass (never close in the middle of a fan-out): listed once,
            // when the queue crosses the limit.
            let limit = self.limits.outbound_queue_bytes;
            if before_bytes <= limit && connection.outbound.queued_bytes() > limit {
                self.over_limit.push(key);
            }
        }
        self.stats.add(Counter::Deliveries, queued as u64);
        self.stats.add(Counter::DeliveriesDroppedClosing, dropped);
        self.stats.add(Counter::DeliveriesExcluded, excluded);
        self.stats.add(Counter::DeliveriesUnframable, unframable);
        if member_event {
            self.stats.add(Counter::PresenceMemberEventsHeld, held);
            self.stats
                .add(Counter::PresenceMemberEventsDropped, member_events_dropped);
        } else {
            self.stats.add(Counter::DeliveriesHeldByRecovery, held);
        }
        frames.tally.record(&mut self.stats);
        if !gaps.is_empty() {
            self.unsubscribe_gaps(publication.app, &publication.channel, &gaps);
        }
        queued
    }

    /// Centrifugo subscriptions that found a gap in the live stream: out of the channel, and
    /// told with an `unsubscribe` push (2500) so the client subscribes again and recovers.
    /// A raw subscriber cannot be told that way: it is closed with 4011 (reconnect with
    /// `?since=`), after the pass.
    fn unsubscribe_gaps(&mut self, app: AppSlot, channel: &ChannelName, gaps: &[ConnectionKey]) {
        let mut batch = ReplyBatch::new();
        batch.unsubscribe_push(channel, LIVE_GAP);
        let Some(frame) = batch.finish() else {
            return;
        };
        for &key in gaps {
            let raw = matches!(
                self.get(key).map(Connection::protocol),
                Some(Protocol::RawStream(_))
            );
            if raw {
                self.stream_gaps.push(key);
            } else {
                self.unsubscribe(key, app, channel);
                self.queue(key, frame.clone());
            }
        }
        self.stats
            .add(Counter::CentrifugoLiveGaps, gaps.len() as u64);
    }

    /// Queues a data frame for one connection, compressed if it negotiated permessage-deflate
    /// and the message is worth it (an echo).
    pub fn queue_compressible(&mut self, key: ConnectionKey, frame: Bytes) {
        let deflate = self.get(key).map_or(Deflate::Off, |c| c.deflate);
        let frame = match self.compressor.as_mut() {
            Some(compressor) if deflate != Deflate::Off => {
                let mut tally = DeflateTally::default();
                let frame = compressor.compress_reply(deflate, frame, &mut tally);
                tally.record(&mut self.stats);
                frame
            }
            _ => frame,
        };
        self.queue(key, frame);
    }

    /// Queues a frame for one connection (101, pong, echo, ping, close). Dropped if its writes
    /// failed.
    pub fn queue(&mut self, key: ConnectionKey, frame: Bytes) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        if connection.write == WriteState::Failed {
            return;
        }
        connection.outbound.push(frame);
        let (state, action) = connection.write.on(WriteEvent::Queued);
        connection.write = state;
        if action == WriteAction::List {
            self.flush_list.push(key);
        }
    }

    /// Releases `key`'s queue buffer if nothing is queued (after the 101, so an idle
    /// connection holds no queue memory).
    pub fn release_queue_if_empty(&mut self, key: ConnectionKey) {
        if let Some(connection) = self.connections.get_mut(key.index()) {
            connection.outbound.release_if_empty();
        }
    }

    /// Holds back writes to `key` (they queue in order) until [`Registry::release`].
    pub fn hold(&mut self, key: ConnectionKey) {
        if let Some(connection) = self.connections.get_mut(key.index()) {
            connection.write = connection.write.on(WriteEvent::Hold).0;
        }
    }

    /// Lets held writes go (the connection is listed if anything is queued).
    pub fn release(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        let queue_empty = connection.outbound.is_empty();
        let (state, action) = connection.write.on(WriteEvent::Release { queue_empty });
        connection.write = state;
        if action == WriteAction::List {
            self.flush_list.push(key);
        }
    }

    /// Are writes to `key` held?
    pub fn is_held(&self, key: ConnectionKey) -> bool {
        self.get(key)
            .is_some_and(|connection| connection.write == WriteState::Held)
    }

    // ----- writing -----

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

    /// A writer takes `key`: returns its socket if a write is to be submitted now. The
    /// descriptor stays valid until the batch ends (entries are only removed by
    /// `finish_ended`, which no batch calls).
    pub fn begin_write(&mut self, key: ConnectionKey) -> Option<RawFd> {
        let connection = self.connections.get_mut(key.index())?;
        let queue_empty = connection.outbound.is_empty();
        let (state, action) = connection.write.on(WriteEvent::Take { queue_empty });
        connection.write = state;
        (action == WriteAction::Write).then(|| connection.socket.as_raw_fd())
    }

    /// The queue of `key`, for a writer that builds its own system calls.
    pub fn outbound_mut(&mut self, key: ConnectionKey) -> Option<&mut Outbound> {
        self.connections
            .get_mut(key.index())
            .map(|connection| &mut connection.outbound)
    }

    /// Records how a write of `key` ended, and what follows from it: a full socket waits for
    /// epoll, a broken one ends, a drained one may end a closing connection or resume reading.
    pub fn end_write(
        &mut self,
        key: ConnectionKey,
        outcome: WriteOutcome,
        tally: &WriteTally,
        now_ms: u64,
    ) {
        self.stats.add(Counter::WriteCalls, tally.calls);
        self.stats.add(Counter::FramesWritten, tally.frames);
        self.stats.add(Counter::WrittenBytes, tally.bytes);
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        let end = match outcome {
            WriteOutcome::Drained => WriteEnd::Drained {
                queue_empty: connection.outbound.is_empty(),
            },
            WriteOutcome::WouldBlock => WriteEnd::WouldBlock,
            WriteOutcome::Failed(error) => {
                log::debug!("write to connection {} failed: {error}", key.0);
                WriteEnd::Failed
            }
        };
        let (state, action) = connection.write.on(WriteEvent::Ended(end));
        connection.write = state;
        let drained = connection.outbound.is_empty();
        match action {
            WriteAction::List => self.flush_list.push(key),
            WriteAction::Fail => self.life(key, LifeEvent::PeerGone, now_ms),
            WriteAction::None | WriteAction::Write => {}
        }
        if drained {
            self.life(key, LifeEvent::Drained, now_ms);
        }
    }

    /// A retired io_uring ring cannot tell how much of `key`'s write left: the stream position
    /// is lost, so the connection is closed without a close frame (counted). Its queued frames
    /// are handed to `keep` (the kernel may still read them).
    pub fn write_lost(&mut self, key: ConnectionKey, keep: &mut Vec<Bytes>) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        keep.extend(connection.outbound.take_all());
        connection.write = WriteState::Failed;
        self.stats.count(Counter::WritesUnknown);
        self.end_now(key, CloseReason::InternalError);
    }

    /// epoll said `token`'s socket is ready.
    pub fn on_ready(&mut self, token: Token, readiness: Readiness) {
        match token.kind {
            TokenKind::Connection => {
                let key = ConnectionKey(token.key);
                let Some(connection) = self.connections.get_mut(key.index()) else {
                    return;
                };
                if connection.generation != token.generation {
                    return;
                }
                if readiness.writable {
                    let queue_empty = connection.outbound.is_empty();
                    let (state, action) = connection.write.on(WriteEvent::Writable { queue_empty });
                    connection.write = state;
                    if action == WriteAction::List {
                        self.flush_list.push(key);
                    }
                }
                if readiness.readable && self.connections[key.index()].read == ReadState::Waiting {
                    self.set_read(key, ReadState::Ready);
                }
            }
            TokenKind::Lingering => {
                if readiness.readable
                    && self
                        .lingering
                        .get(token.key as usize)
                        .is_some_and(|lingering| lingering.generation == token.generation)
                {
                    self.drain_lingering(token.key as usize);
                }
            }
        }
    }

    // ----- reading -----

    /// Takes the connections whose input may be waiting (the reactor reads them).
    pub fn take_ready(&mut self, into: &mut Vec<ConnectionKey>) {
        into.append(&mut self.ready);
    }

    /// Lists `key` again for reading if its input may still be waiting.
    pub fn relist_ready(&mut self, key: ConnectionKey) {
        if self
            .get(key)
            .is_some_and(|connection| connection.read == ReadState::Ready)
        {
            self.ready.push(key);
        }
    }

    /// Some connection's input may be waiting.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Sets `key`'s read state (listing it when it becomes `Ready`).
    pub fn set_read(&mut self, key: ConnectionKey, read: ReadState) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        if connection.read == ReadState::Done {
            return;
        }
        if read == ReadState::Ready && connection.read != ReadState::Ready {
            self.ready.push(key);
        }
        connection.read = read;
    }

    /// Input arrived on `key` at `now_ms`.
    pub fn touch(&mut self, key: ConnectionKey, now_ms: u64) {
        if let Some(connection) = self.connections.get_mut(key.index()) {
            connection.last_read_ms = now_ms;
        }
    }

    /// Is `key`'s outbound queue over the limit?
    pub fn over_queue_limit(&self, key: ConnectionKey) -> bool {
        self.get(key).is_some_and(|connection| {
            connection.outbound.queued_bytes() > self.limits.outbound_queue_bytes
        })
    }

    /// Takes `key`'s unfinished input, if any.
    pub fn take_input(&mut self, key: ConnectionKey) -> Option<Box<PartialInput>> {
        self.connections.get_mut(key.index())?.input.take()
    }

    /// Keeps `key`'s unfinished input until the next read.
    pub fn keep_input(&mut self, key: ConnectionKey, input: Box<PartialInput>) {
        if let Some(connection) = self.connections.get_mut(key.index()) {
            connection.input = Some(input);
        }
    }

    /// `--max-subscriptions`.
    pub fn max_subscriptions(&self) -> usize {
        self.limits.max_subscriptions
    }

    /// Channels `key` is subscribed to.
    pub fn subscription_count(&self, key: ConnectionKey) -> usize {
        self.get(key)
            .map_or(0, |connection| connection.subscriptions.len())
    }

    /// A message decoder with this shard's limits, for `key` (RSV1 means what its
    /// permessage-deflate agreement says).
    pub fn new_decoder(&self, key: ConnectionKey) -> MessageDecoder {
        let inbound = self
            .get(key)
            .map_or(Deflate::Off, |connection| connection.deflate)
            .inbound();
        MessageDecoder::with_compression(self.limits.max_message_bytes, inbound)
            .limit_fragments(self.limits.max_fragments)
    }

    // ----- lifecycle -----

    /// Applies a lifecycle event to `key` at `now_ms` and carries out what it asks.
    pub fn life(&mut self, key: ConnectionKey, event: LifeEvent, now_ms: u64) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        let event = connection.protocol_close(event);
        let was_open = connection.life.is_open();
        let (life, action) = connection
            .life
            .on(event, now_ms, self.limits.close_timeout_ms);
        connection.life = life;
        let generation = connection.generation;
        let mut close_frame = None;
        match action {
            LifeAction::None => {}
            LifeAction::SendClose {
                code,
                reason,
                drop_queued,
            } => {
                if drop_queued {
                    let dropped = connection.outbound.drop_unstarted();
                    self.stats
                        .add(Counter::DeliveriesDroppedSlow, dropped as u64);
                }
                if matches!(
                    life,
                    Lifecycle::Closing {
                        by: Closer::Fault,
                        ..
                    }
                ) {
                    connection.read = ReadState::Done;
                }
                close_frame = Some(encode_close_frame(code, reason));
            }
            // The echo itself is queued by the reader, which has the client's payload.
            LifeAction::EchoClose | LifeAction::StopReading => connection.read = ReadState::Done,
            LifeAction::End { reason, unanswered } => {
                if unanswered {
                    self.stats.count(Counter::CloseHandshakeTimeouts);
                }
                self.stats.count_close(reason);
                self.ended.push(Tagged { key, generation });
            }
        }
        if was_open && !life.is_open() {
            // No broadcasts once our close is queued (or the connection is gone).
            self.depart_presence(key);
            self.unsubscribe_all(key);
            if matches!(life, Lifecycle::Closing { .. }) {
                self.closing.push(Tagged { key, generation });
            }
        }
        if let Some(frame) = close_frame {
            self.queue(key, frame);
        }
        // A closing connection whose queue is already empty may be done at once.
        if matches!(action, LifeAction::SendClose { .. } | LifeAction::EchoClose)
            && self.get(key).is_some_and(|c| c.outbound.is_empty())
        {
            self.life(key, LifeEvent::Drained, now_ms);
        }
    }

    /// Ends `key` now, counted as `reason` (no close frame).
    fn end_now(&mut self, key: ConnectionKey, reason: CloseReason) {
        let Some(connection) = self.connections.get_mut(key.index()) else {
            return;
        };
        if !matches!(connection.life, Lifecycle::Ended(_)) {
            connection.life = Lifecycle::Ended(reason);
            let generation = connection.generation;
            self.stats.count_close(reason);
            self.depart_presence(key);
            self.unsubscribe_all(key);
            self.ended.push(Tagged { key, generation });
        }
    }

    /// Is `tagged` still the connection it was listed as?
    fn is_current(&self, tagged: Tagged) -> bool {
        self.get(tagged.key)
            .is_some_and(|connection| connection.generation == tagged.generation)
    }

    /// After a fan-out pass and its writes: connections still over the queue limit are slow
    /// consumers, closed with 1008. Never done inside the pass itself.
    pub fn request_slow_consumer_closes(&mut self, now_ms: u64) {
        for key in std::mem::take(&mut self.over_limit) {
            if self.over_queue_limit(key) {
                self.life(key, LifeEvent::Request(CloseRequest::SlowConsumer), now_ms);
            }
        }
        let code = crate::wire::pusher::error::CloseCode::Unauthorized;
        for key in std::mem::take(&mut self.terminated) {
            let request = CloseRequest::Application {
                code: code.code(),
                reason: "user connections terminated",
            };
            self.life(key, LifeEvent::Request(request), now_ms);
        }
        let (code, reason) = crate::wire::raw::STREAM_GAP;
        for key in std::mem::take(&mut self.stream_gaps) {
            let request = CloseRequest::Application { code, reason };
            self.life(key, LifeEvent::Request(request), now_ms);
        }
    }

    /// Closes every connection with `request`.
    pub fn request_close_all(&mut self, request: CloseRequest, now_ms: u64) {
        let keys: Vec<ConnectionKey> = self
            .connections
            .iter()
            .map(|(index, _)| ConnectionKey::from_index(index))
            .collect();
        for key in keys {
            self.life(key, LifeEvent::Request(request), now_ms);
        }
    }

    /// The heartbeat sweep: pings connections quiet for `ping_interval_ms`, closes those quiet
    /// for `idle_timeout_ms` (1001).
    pub fn sweep(
        &mut self,
        now_ms: u64,
        now_unix_s: u64,
        ping_interval_ms: u64,
        idle_timeout_ms: u64,
        ping: &Bytes,
    ) {
        let mut idle = Vec::new();
        let mut waiting_input = Vec::new();
        let mut expired = Vec::new();
        let mut protocol_pings = Vec::new();
        let mut disconnects = Vec::new();
        let mut pings = 0;
        for (index, connection) in self.connections.iter_mut() {
            if !connection.life.is_open() {
                continue;
            }
            let key = ConnectionKey::from_index(index);
            if let Protocol::Centrifugo(centrifugo) = &mut connection.protocol {
                match centrifugo.session.tick(now_ms, &self.centrifugo) {
                    Tick::Idle => {}
                    Tick::SendPing => protocol_pings.push(key),
                    Tick::Disconnect(code) => disconnects.push((key, code)),
                }
            }
            let quiet_ms = now_ms.saturating_sub(connection.last_read_ms);
            if connection
                .expiry
                .is_some_and(|expiry| expiry.passed(now_unix_s))
            {
                expired.push(key);
            } else if quiet_ms >= idle_timeout_ms {
                // Unread input means the client did send: it is this shard that has not read
                // (it was frozen, or its reactor missed a wake-up). Read it instead of closing
                // (the reactor's round within `WAKE_WAIT_MAX` at the latest).
                if unread_bytes(connection.socket.as_raw_fd()) > 0 {
                    waiting_input.push(key);
                } else {
                    idle.push(key);
                }
            } else if now_ms.saturating_sub(connection.last_read_ms.max(connection.last_ping_ms))
                >= ping_interval_ms
                && connection.write != WriteState::Failed
            {
                connection.last_ping_ms = now_ms;
                connection.outbound.push(ping.clone());
                let (state, action) = connection.write.on(WriteEvent::Queued);
                connection.write = state;
                if action == WriteAction::List {
                    self.flush_list.push(key);
                }
                pings += 1;
            }
        }
        self.stats.add(Counter::PingsSent, pings);
        for key in waiting_input {
            self.stats.count(Counter::IdleInputWaiting);
            if self.get(key).is_some_and(|c| c.read == ReadState::Waiting) {
                self.set_read(key, ReadState::Ready);
            }
        }
        for key in idle {
            self.life(key, LifeEvent::Request(CloseRequest::Idle), now_ms);
        }
        for key in expired {
            self.life(key, LifeEvent::Request(CloseRequest::TokenExpired), now_ms);
        }
        if !protocol_pings.is_empty() {
            let mut batch = ReplyBatch::new();
            batch.ping();
            if let Some(frame) = batch.finish() {
                for &key in &protocol_pings {
                    self.queue(key, frame.clone());
                }
            }
        }
        for (key, code) in disconnects {
            let request = CloseRequest::Application {
                code: code.code(),
                reason: code.reason(),
            };
            self.life(key, LifeEvent::Request(request), now_ms);
        }
    }

    /// Ends the closing connections whose deadline passed, and closes lingering sockets whose
    /// time is up.
    pub fn check_deadlines(&mut self, now_ms: u64) {
        let closing = std::mem::take(&mut self.closing);
        for tagged in closing {
            if !self.is_current(tagged) {
                continue;
            }
            self.life(tagged.key, LifeEvent::Deadline, now_ms);
            if matches!(
                self.get(tagged.key).map(|c| c.life),
                Some(Lifecycle::Closing { .. })
            ) {
                self.closing.push(tagged);
            }
        }
        self.lingering
            .retain(|_, lingering| lingering.until_ms > now_ms);
    }

    /// Removes every connection whose lifecycle ended: its socket lingers (half-closed, read
    /// and discarded for a bounded time), or is closed at once if the connection was lost.
    /// Returns how many were removed.
    pub fn finish_ended(&mut self, now_ms: u64) -> usize {
        let ended = std::mem::take(&mut self.ended);
        let mut removed = 0;
        for tagged in ended {
            if !self.is_current(tagged) {
                continue;
            }
            let connection = self.connections.remove(tagged.key.index());
            removed += 1;
            let Lifecycle::Ended(reason) = connection.life else {
                debug_assert!(false, "only ended connections are listed");
                continue;
            };
            if reason != CloseReason::ConnectionLost && reason != CloseReason::InternalError {
                self.linger(connection.socket, now_ms);
            }
        }
        removed
    }

    /// After a panic in `key`'s handler: the connection is dropped at once (no close frame: its
    /// state may be half-changed), counted, and everything else stays as it was.
    pub fn discard(&mut self, key: ConnectionKey) {
        if self.connections.contains(key.index()) {
            self.stats.count(Counter::HandlerPanics);
            self.end_now(key, CloseReason::InternalError);
            self.connections.remove(key.index());
        }
    }

    /// The shard died: shuts every socket down (both directions) so its clients learn at once
    /// and reconnect elsewhere, without touching anything else.
    pub fn shutdown_all_sockets(&self) {
        for (_, connection) in self.connections.iter() {
            let _ = socket2::SockRef::from(&connection.socket).shutdown(std::net::Shutdown::Both);
        }
        for (_, lingering) in self.lingering.iter() {
            let _ = socket2::SockRef::from(&lingering.socket).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Half-closes `socket` and keeps reading (and discarding) until the peer closes, for at
    /// most `LINGER_MS` and `LINGER_BYTES_MAX`, so the peer receives everything we wrote
    /// (closing with unread input would send a reset).
    fn linger(&mut self, socket: OwnedFd, now_ms: u64) {
        let _ = socket2::SockRef::from(&socket).shutdown(std::net::Shutdown::Write);
        let generation = self.next_generation();
        let fd = socket.as_raw_fd();
        let entry = self.lingering.vacant_entry();
        let key = entry.key();
        entry.insert(Lingering {
            socket,
            generation,
            until_ms: now_ms + LINGER_MS,
            discarded_bytes: 0,
        });
        let token = Token {
            kind: TokenKind::Lingering,
            key: key as u32,
            generation,
        };
        // Re-registering reports the socket at once if input is already waiting.
        if self.poller.modify(fd, token).is_err() {
            self.lingering.remove(key);
        }
    }

    /// Reads and discards what a lingering socket received; closes it at the end of the stream,
    /// on an error, or past `LINGER_BYTES_MAX`.
    fn drain_lingering(&mut self, key: usize) {
        let mut sink = [0u8; 4096];
        let Some(lingering) = self.lingering.get_mut(key) else {
            return;
        };
        // Bounded: each round discards bytes towards LINGER_BYTES_MAX or stops.
        let done = loop {
            match recv(lingering.socket.as_raw_fd(), &mut sink) {
                Ok(0) => break true,
                Ok(read) => {
                    lingering.discarded_bytes += read;
                    if lingering.discarded_bytes >= LINGER_BYTES_MAX {
                        break true;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if done {
            self.lingering.remove(key);
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
        if mostly_empty(self.lingering.len(), self.lingering.capacity()) {
            self.lingering.shrink_to_fit();
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
            &mut self.ready,
        ] {
            if mostly_empty(list.len(), list.capacity()) {
                list.shrink_to_fit();
            }
        }
        for list in [&mut self.closing, &mut self.ended] {
            if mostly_empty(list.len(), list.capacity()) {
                list.shrink_to_fit();
            }
        }
    }
}

/// Bytes received on `fd` and not yet read (0 if it cannot tell).
fn unread_bytes(fd: RawFd) -> usize {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to a live local; the descriptor is open (its owner lends
    // it).
    let result = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    if result < 0 {
        0
    } else {
        unread.max(0) as usize
    }
}

/// One non-blocking `recv` into `buffer`.
pub fn recv(fd: RawFd, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buffer` is writable for its length; the descriptor is open (its owner lends it).
    let result = unsafe {
        libc::recv(
            fd,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn name(text: &str) -> ChannelName {
        ChannelName::new(text).unwrap()
    }

    fn registry(outbound_queue_bytes: usize) -> Registry {
        let limits = Limits {
            outbound_queue_bytes,
            max_message_bytes: 1 << 20,
            close_timeout_ms: 1000,
            max_channels: 10,
            max_fragments: 1024,
            max_subscriptions: 100,
        };
        Registry::new(limits, Poller::new().unwrap())
    }

    /// A registered connection over a socket pair; the peer end is returned.
    fn connect(registry: &mut Registry) -> (ConnectionKey, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let key = registry
            .insert(OwnedFd::from(ours), subscriber(), 0)
            .unwrap();
        (key, theirs)
    }

    fn subscriber() -> Admission {
        Admission {
            protocol: Protocol::Raw(RawRole::Subscriber),
            expiry: None,
            ticket: None,
            deflate: Deflate::Off,
        }
    }

    fn publication(channel: &str, payload: &'static [u8]) -> Publication {
        Publication::new(name(channel), Bytes::from_static(payload))
    }

    /// A positioned raw subscriber of `channel`, live from offset 0 of `epoch`.
    fn stream_subscriber(registry: &mut Registry, channel: &str, epoch: &str) -> ConnectionKey {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        std::mem::forget(theirs);
        let admission = Admission {
            protocol: Protocol::RawStream(Box::new(RawStream::subscribing(&name(channel)))),
            ..subscriber()
        };
        let key = registry.insert(OwnedFd::from(ours), admission, 0).unwrap();
        registry
            .subscribe(key, AppSlot::DEFAULT, &name(channel))
            .unwrap();
        let top = StreamPosition {
            offset: 0,
            epoch: Epoch::new(epoch),
        };
        registry
            .raw_stream(key)
            .unwrap()
            .finish(HistoryRead::Top(top))
            .unwrap();
        key
    }

    fn positioned(channel: &str, offset: u64, epoch: &str) -> Publication {
        let mut publication = publication(channel, b"p");
        publication.position = Some(std::sync::Arc::new(StreamPosition {
            offset,
            epoch: Epoch::new(epoch),
        }));
        publication
    }

    fn cursor(registry: &mut Registry, key: ConnectionKey) -> StreamPosition {
        match registry.raw_stream(key).unwrap() {
            RawStream::Following(subscription) => subscription.position().unwrap().clone(),
            RawStream::Lost => panic!("the subscriber lost its stream"),
        }
    }

    #[test]
    fn positioned_raw_subscribers_end_up_sharing_the_channels_epoch() {
        let mut registry = registry(1 << 20);
        let keys: Vec<_> = (0..3)
            .map(|_| stream_subscriber(&mut registry, "h", "e1"))
            .collect();
        // Every publication carries its own copy of the epoch text (as one read from Redis).
        assert_eq!(registry.fan_out(&positioned("h", 1, "e1")), 3);
        assert_eq!(registry.fan_out(&positioned("h", 2, "e1")), 3);
        let first = cursor(&mut registry, keys[0]);
        assert_eq!(first.offset, 2);
        for &key in &keys[1..] {
            let position = cursor(&mut registry, key);
            assert!(position.epoch.shares(&first.epoch), "one shared epoch");
        }
        // A duplicate is skipped; a new epoch is a gap: closed after the pass, listed once.
        assert_eq!(registry.fan_out(&positioned("h", 2, "e1")), 0);
        assert_eq!(registry.fan_out(&positioned("h", 3, "e2")), 0);
        assert_eq!(registry.fan_out(&positioned("h", 4, "e2")), 0);
        assert_eq!(registry.stream_gaps.len(), 3);
        assert!(matches!(
            registry.raw_stream(keys[0]),
            Some(RawStream::Lost)
        ));
    }

    #[test]
    fn subscribe_unsubscribe_keeps_positions_consistent() {
        let mut registry = registry(1 << 20);
        let keys: Vec<_> = (0..5).map(|_| connect(&mut registry)).collect();
        for (key, _) in &keys {
            registry
                .subscribe(*key, AppSlot::DEFAULT, &name("a"))
                .unwrap();
        }
        registry
            .subscribe(keys[0].0, AppSlot::DEFAULT, &name("b"))
            .unwrap();
        registry
            .subscribe(keys[0].0, AppSlot::DEFAULT, &name("b"))
            .unwrap();
        assert_eq!(registry.subscriber_count(AppSlot::DEFAULT, &name("a")), 5);
        assert_eq!(registry.subscriber_count(AppSlot::DEFAULT, &name("b")), 1);
        registry.discard(keys[1].0);
        registry.discard(keys[0].0);
        assert_eq!(registry.subscriber_count(AppSlot::DEFAULT, &name("a")), 3);
        assert_eq!(registry.subscriber_count(AppSlot::DEFAULT, &name("b")), 0);
        assert_eq!(registry.channel_count(), 1);
        for (key, _) in &keys[2..] {
            registry.discard(*key);
        }
        assert_eq!(registry.channel_count(), 0);
        assert!(registry.is_empty());
    }

    #[test]
    fn channel_limit_is_enforced() {
        let mut registry = registry(1 << 20);
        registry.limits.max_channels = 1;
        let (key, _peer) = connect(&mut registry);
        registry
            .subscribe(key, AppSlot::DEFAULT, &name("a"))
            .unwrap();
        assert_eq!(
            registry.subscribe(key, AppSlot::DEFAULT, &name("b")),
            Err(TooManyChannels)
        );
    }

    #[test]
    fn fan_out_shares_one_frame_lists_once_and_skips_closing() {
        let mut registry = registry(1 << 20);
        let (first, _a) = connect(&mut registry);
        let (second, _b) = connect(&mut registry);
        registry
            .subscribe(first, AppSlot::DEFAULT, &name("a"))
            .unwrap();
        registry
            .subscribe(second, AppSlot::DEFAULT, &name("a"))
            .unwrap();
        assert_eq!(registry.fan_out(&publication("a", b"hi")), 2);
        assert_eq!(registry.fan_out(&publication("a", b"hi")), 2);
        let first_frame = registry.connections[first.index()]
            .outbound
            .head_remaining()
            .unwrap()
            .as_ptr();
        let second_frame = registry.connections[second.index()]
            .outbound
            .head_remaining()
            .unwrap()
            .as_ptr();
        assert_eq!(first_frame, second_frame, "the frame is shared, not copied");
        assert_eq!(registry.take_flush_list(), vec![first, second]);
        registry.life(second, LifeEvent::Request(CloseRequest::Idle), 0);
        assert_eq!(registry.fan_out(&publication("a", b"x")), 1);
        assert_eq!(registry.fan_out(&publication("missing", b"x")), 0);
    }

    #[test]
    fn slow_consumers_are_closed_after_the_pass_with_their_queue_dropped() {
        let mut registry = registry(100);
        let (key, _peer) = connect(&mut registry);
        registry
            .subscribe(key, AppSlot::DEFAULT, &name("a"))
            .unwrap();
        let big = Publication::new(name("a"), Bytes::from(vec![b'x'; 80]));
        registry.fan_out(&big);
        registry.fan_out(&big);
        assert!(registry.get(key).unwrap().life().is_open());
        registry.request_slow_consumer_closes(0);
        let connection = registry.get(key).unwrap();
        assert!(matches!(
            connection.life(),
            Lifecycle::Closing {
                reason: CloseReason::SlowConsumer,
                ..
            }
        ));
        // Only the close frame is left.
        assert_eq!(connection.outbound.len(), 1);
        assert_eq!(registry.stats.get(Counter::DeliveriesDroppedSlow), 2);
        assert_eq!(registry.subscriber_count(AppSlot::DEFAULT, &name("a")), 0);
    }

    #[test]
    fn sweep_pings_quiet_and_closes_idle() {
        let mut registry = registry(1 << 20);
        let (quiet, _a) = connect(&mut registry);
        let (idle, _b) = connect(&mut registry);
        registry.touch(quiet, 500);
        let ping = Bytes::from_static(b"\x89\x00");
        registry.sweep(1000, 0, 400, 900, &ping);
        assert!(!registry.get(idle).unwrap().life().is_open());
        assert_eq!(registry.get(quiet).unwrap().outbound.len(), 1);
        registry.sweep(1100, 0, 400, 900, &ping);
        assert_eq!(
            registry.get(quiet).unwrap().outbound.len(),
            1,
            "no second ping so soon"
        );
    }

    #[test]
    fn sweep_reads_instead_of_closing_a_quiet_connection_whose_input_waits() {
        use std::io::Write;
        let mut registry = registry(1 << 20);
        let (late, mut theirs) = connect(&mut registry);
        let (idle, _b) = connect(&mut registry);
        let mut listed = Vec::new();
        registry.take_ready(&mut listed);
        registry.set_read(late, ReadState::Waiting);
        registry.set_read(idle, ReadState::Waiting);
        // The client sent; this shard has not read it (it was stopped, or missed a wake-up).
        theirs.write_all(b"\x81\x80\0\0\0\0").unwrap();
        let ping = Bytes::from_static(b"\x89\x00");
        registry.sweep(1000, 0, 400, 900, &ping);
        assert!(registry.get(late).unwrap().life().is_open());
        assert!(!registry.get(idle).unwrap().life().is_open());
        assert_eq!(registry.stats.get(Counter::IdleInputWaiting), 1);
        let mut listed = Vec::new();
        registry.take_ready(&mut listed);
        assert_eq!(listed, vec![late], "listed for reading");
    }

    #[test]
    fn a_failed_registration_leaves_nothing_behind() {
        let mut registry = registry(1 << 20);
        // epoll refuses regular files: the registration fails after the slab entry was made.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let error = registry.insert(OwnedFd::from(file), subscriber(), 0);
        assert!(error.is_err());
        assert!(registry.is_empty());
        assert!(!registry.has_ready());
    }

    #[test]
    fn a_close_answered_ends_and_lingers_and_the_socket_is_closed_after() {
        let mut registry = registry(1 << 20);
        let (key, mut peer) = connect(&mut registry);
        registry.life(key, LifeEvent::Request(CloseRequest::Idle), 0);
        registry.life(key, LifeEvent::CloseReceived, 10);
        assert_eq!(registry.finish_ended(10), 1);
        assert!(registry.get(key).is_none());
        assert_eq!(registry.lingering_count(), 1);
        assert_eq!(registry.stats.closes_for(CloseReason::IdleTimeout), 1);
        // The peer sees our half-close once the queued close frame... (not written here) and
        // the lingering socket goes at its deadline.
        registry.check_deadlines(10 + LINGER_MS + 1);
        assert_eq!(registry.lingering_count(), 0);
        let mut buffer = [0u8; 16];
        use std::io::Read;
        assert_eq!(peer.read(&mut buffer).unwrap(), 0, "closed");
    }
}

#[cfg(test)]
mod memory_budget {
    //! An idle connection's memory is its registry entry (a slab slot holding a `Connection`)
    //! and its place in a channel's subscriber list; nothing in glommio. Keep it from growing
    //! unnoticed (the idle benchmark measures the whole: `ringcast-bench idle`).

    #[test]
    fn an_idle_connection_is_one_small_slab_entry() {
        let connection = std::mem::size_of::<super::Connection>();
        eprintln!(
            "Connection {connection} B, slab entry {} B, Outbound {} B, Lifecycle {} B",
            std::mem::size_of::<slab::Slab<super::Connection>>(),
            std::mem::size_of::<super::Outbound>(),
            std::mem::size_of::<super::Lifecycle>()
        );
        assert!(connection <= 160, "Connection is {connection} bytes");
        assert!(std::mem::size_of::<super::ConnectionKey>() == 4);
    }
}
