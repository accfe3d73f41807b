//! One Centrifugo connection's protocol state, as a pure state machine the connection's owner
//! keeps beside its socket: where the handshake stands, the server ping/pong cycle, when the
//! connection expires, and each subscription with its stream cursor.
//!
//! The owner asks it before acting on a command ([`Session::admit`]: the rules of centrifuge's
//! `client.go` that depend on the connection's state), tells it what the server decided
//! ([`Session::connected`], [`Session::begin_subscribe`], ...), passes every live publication
//! through [`Session::on_publication`], and calls [`Session::tick`] from its timer.
//!
//! Deliberately not here: tokens (the server verifies them and passes the result), channel
//! policy, history reads, sockets, clocks (`now_ms` is an argument).
//!
//! Invariants: a connection has at most one subscription per channel and at most
//! `SessionLimits::channels_max`; a subscribing channel buffers at most
//! `SessionLimits::subscribe_buffer_max` publications; a positioned subscription only ever
//! delivers the publication right after its cursor.

use std::sync::Arc;

use bytes::Bytes;

use super::codes::DisconnectCode;
use super::command::Request;
use crate::channel::ChannelName;
use crate::history::StreamPosition;
use crate::history::recovery::{
    HistoryRead, InsufficientState, LivePublication, LiveStep, Synchronized, advance, synchronize,
};

/// The session's limits (from the validated configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most subscriptions per connection (`--max-channels`; Centrifugo's
    /// `client_channel_limit`, default 128). A subscribe beyond it gets error 106.
    pub channels_max: usize,
    /// Most publications buffered per channel while its subscribe reads history. Default 1024:
    /// more arriving during one history read means the read is too slow; the subscribe then
    /// ends in 3010 "insufficient state" and the client reconnects and recovers.
    pub subscribe_buffer_max: usize,
    /// Between server pings, ms. Default 25 000 (Centrifugo's). Sent as whole seconds in the
    /// connect reply; 0 sends no pings.
    pub ping_interval_ms: u64,
    /// How long a pong may take, ms; 0 expects none. Default 8 000 (Centrifugo's).
    pub pong_timeout_ms: u64,
    /// How long a connection may stay without a successful `connect`, ms (Centrifugo's
    /// `client_stale_close_delay`). Default 10 000.
    pub connect_timeout_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            channels_max: 128,
            subscribe_buffer_max: 1024,
            ping_interval_ms: 25_000,
            pong_timeout_ms: 8_000,
            connect_timeout_ms: 10_000,
        }
    }
}

/// When a connection's credentials run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Never (no `exp` in the token, or an anonymous connection).
    Never,
    /// At this time, ms (the token's `exp`, plus any grace the server allows for the refresh).
    AtMs(u64),
}

/// A command refused because of the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// client.go: "unexpected frame before connect" -> `DisconnectBadRequest`.
    #[error("a command before connect")]
    BeforeConnect,
    /// client.go marks a connection whose connect failed `unusable`; its next command ends in
    /// `DisconnectBadRequest`.
    #[error("a command after a refused connect")]
    AfterRefusedConnect,
    /// client.go: "client already authenticated" -> `DisconnectBadRequest`.
    #[error("connect on a connected connection")]
    AlreadyConnected,
    /// client.go: "disconnect client due to unnecessary pong" (no ping was sent).
    #[error("a pong without a ping")]
    UnexpectedPong,
    /// client.go: "client already subscribed on channel" -> `ErrorAlreadySubscribed`.
    #[error("already subscribed")]
    AlreadySubscribed,
    /// client.go: "maximum limit of channels per client reached" -> `ErrorLimitExceeded`.
    #[error("channel limit reached")]
    ChannelLimit,
    /// client.go `handleSubRefresh`: "Must be subscribed to refresh subscription" ->
    /// `ErrorPermissionDenied`.
    #[error("not subscribed")]
    NotSubscribed,
    /// ringcast keeps no presence for this protocol: client.go answers `ErrorNotAvailable`
    /// without a presence handler.
    #[error("presence is not available")]
    PresenceOff,
    /// client.go `handlePing`: "Ping not supported by protocol v2 at the moment" ->
    /// `ErrorNotAvailable`.
    #[error("the ping command is not available")]
    PingCommand,
    /// ringcast has no RPC methods: Centrifugo answers an RPC no proxy handles with
    /// `ErrorMethodNotFound`.
    #[error("no RPC method")]
    NoRpc,
    /// client.go `handleSend`: without a message handler, `DisconnectNotAvailable` "since
    /// otherwise client won't even know server does not have asynchronous message handler".
    #[error("asynchronous messages are not available")]
    NoAsyncMessages,
}

/// Why a subscribe could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishError {
    /// The live stream and history do not join (see [`InsufficientState`]).
    #[error(transparent)]
    Insufficient(#[from] InsufficientState),
    /// The channel is not subscribing any more (the client unsubscribed meanwhile): client.go
    /// "client closed or unsubscribed before adding subscription" -> `DisconnectServerError`.
    #[error("the channel is not subscribing")]
    NotSubscribing,
}

/// What to do with a live publication for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send the shared publication frame.
    Deliver,
    /// Held until the channel's subscribe completes ([`Session::finish_subscribe`]).
    Buffered,
    /// Nothing to send: not subscribed, already delivered, or no position while subscribing.
    Skip,
    /// A publication is missing or the stream changed epoch: the subscription was dropped;
    /// push `unsubscribe` with [`super::codes::LIVE_GAP`] (2500): the client subscribes again
    /// from its position and recovers.
    Insufficient,
}

/// What the timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing now.
    Idle,
    /// Send the server ping `{}`.
    SendPing,
    /// Close the connection.
    Disconnect(DisconnectCode),
}

/// The server ping cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PingState {
    /// No pings (interval 0).
    Off,
    /// The next ping is due then.
    NextAtMs(u64),
    /// A ping was sent; its pong is due by `deadline_ms`.
    AwaitingPong {
        /// When the ping was sent.
        sent_at_ms: u64,
        /// When the connection is closed without a pong.
        deadline_ms: u64,
    },
}

/// Live publications held while a subscribe reads history.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Buffer {
    /// Every publication so far.
    Collecting(Vec<LivePublication>),
    /// More arrived than the limit: the subscribe will fail.
    Overflowed,
}

/// Where a subscription's stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// A channel without history: every publication is delivered.
    Unpositioned,
    /// The last offset delivered in its epoch.
    Positioned {
        /// The last publication delivered.
        position: StreamPosition,
        /// Position checks in a row that found the stream ahead of it.
        checks_behind: u8,
    },
}

/// Position checks in a row that may find a subscription behind its stream before it is in
/// insufficient state (client.go `maxCheckPositionFailures`: "If client position is wrong
/// maxCheckPositionFailures times in a row then client will be disconnected").
pub const POSITION_CHECKS_BEHIND_MAX: u8 = 2;

/// What a periodic position check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionCheck {
    /// The subscription has everything up to the stream's top (or is not positioned).
    InSync,
    /// The stream is ahead: a publication may still be on its way; check again later.
    Behind,
    /// Behind too many checks in a row, or the epoch changed: the subscription was dropped;
    /// push `unsubscribe` with [`super::codes::LIVE_GAP`] (2500).
    Insufficient,
}

/// A subscription's phase.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubscriptionState {
    /// Joined live, reading history, buffering.
    Subscribing(Buffer),
    /// Replied to; publications flow.
    Live(Cursor),
}

/// One subscription and its place in the channel's stream. A session keeps a list of them;
/// a raw `/ws` subscriber of a channel with history keeps exactly one, on its own (the
/// fan-out reads it for every subscriber of every publication, so it stays one hop away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The channel.
    channel: ChannelName,
    /// Its phase.
    state: SubscriptionState,
}

impl Subscription {
    /// A new subscription to `channel`: one with history (`positioned`) buffers until
    /// [`Subscription::finish`]; one without is live at once.
    pub fn new(channel: &ChannelName, positioned: bool) -> Subscription {
        let state = if positioned {
            SubscriptionState::Subscribing(Buffer::Collecting(Vec::new()))
        } else {
            SubscriptionState::Live(Cursor::Unpositioned)
        };
        Subscription {
            channel: channel.clone(),
            state,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The last position delivered, once live on a channel with history.
    #[cfg(test)]
    pub fn position(&self) -> Option<&StreamPosition> {
        match &self.state {
            SubscriptionState::Live(Cursor::Positioned { position, .. }) => Some(position),
            _ => None,
        }
    }

    /// A live publication on this subscription's channel (with its position when the channel
    /// has history). [`Delivery::Insufficient`]: the owner drops the subscription.
    pub fn on_publication(
        &mut self,
        position: Option<&StreamPosition>,
        payload: &Bytes,
        limits: &SessionLimits,
    ) -> Delivery {
        match (&mut self.state, position) {
            (SubscriptionState::Subscribing(Buffer::Overflowed), _) => Delivery::Buffered,
            (SubscriptionState::Subscribing(Buffer::Collecting(_)), None) => Delivery::Skip,
            (SubscriptionState::Subscribing(buffer @ Buffer::Collecting(_)), Some(position)) => {
                if let Buffer::Collecting(held) = buffer {
                    if held.len() < limits.subscribe_buffer_max {
                        held.push(LivePublication {
                            position: position.clone(),
                            payload: payload.clone(),
                        });
                    } else {
                        *buffer = Buffer::Overflowed;
                    }
                }
                Delivery::Buffered
            }
            (SubscriptionState::Live(Cursor::Unpositioned), _)
            | (SubscriptionState::Live(Cursor::Positioned { .. }), None) => Delivery::Deliver,
            (
                SubscriptionState::Live(Cursor::Positioned {
                    position: cursor, ..
                }),
                Some(position),
            ) => match advance(cursor, position) {
                LiveStep::Deliver => Delivery::Deliver,
                LiveStep::Duplicate => Delivery::Skip,
                LiveStep::Gap { .. } | LiveStep::EpochChanged => Delivery::Insufficient,
            },
        }
    }

    /// History was read while subscribing: joins it with what was buffered. On success the
    /// subscription is live from the cursor (reply, then push `then_push`); on
    /// [`FinishError::Insufficient`] the owner drops it.
    pub fn finish(&mut self, read: HistoryRead) -> Result<Synchronized, FinishError> {
        let buffered = match &mut self.state {
            SubscriptionState::Subscribing(Buffer::Collecting(buffered)) => {
                Ok(std::mem::take(buffered))
            }
            SubscriptionState::Subscribing(Buffer::Overflowed) => {
                Err(InsufficientState::BufferOverflow)
            }
            SubscriptionState::Live(_) => return Err(FinishError::NotSubscribing),
        };
        let synchronized = buffered.and_then(|buffered| synchronize(read, &buffered))?;
        self.state = SubscriptionState::Live(Cursor::Positioned {
            position: synchronized.cursor.clone(),
            checks_behind: 0,
        });
        Ok(synchronized)
    }
}

/// A connected connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connected {
    /// Its id (the connect reply's `client`; also in refresh replies).
    client: Arc<str>,
    /// When its credentials run out.
    expiry: Expiry,
    /// The ping cycle.
    ping: PingState,
    /// Its subscriptions (at most `channels_max`; few, so a list).
    subscriptions: Vec<Subscription>,
}

/// Where the handshake stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionState {
    /// Waiting for `connect` until `deadline_ms`.
    AwaitingConnect {
        /// When the connection is closed as stale.
        deadline_ms: u64,
    },
    /// `connect` was refused with an error reply; the next command closes the connection.
    Refused,
    /// Connected (boxed: an idle, unconnected connection costs 16 bytes).
    Connected(Box<Connected>),
}

/// One connection's Centrifugo protocol state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Where it stands.
    state: SessionState,
}

impl Session {
    /// A new connection, opened at `now_ms`.
    pub fn new(now_ms: u64, limits: &SessionLimits) -> Session {
        Session {
            state: SessionState::AwaitingConnect {
                deadline_ms: now_ms.saturating_add(limits.connect_timeout_ms),
            },
        }
    }

    /// The rules that depend on the connection's state, checked before the server acts on a
    /// command (a pong is consumed here: nothing else to do for it).
    pub fn admit(
        &mut self,
        request: &Request,
        now_ms: u64,
        limits: &SessionLimits,
    ) -> Result<(), SessionError> {
        let connected = match &mut self.state {
            SessionState::AwaitingConnect { .. } => {
                return match request {
                    Request::Connect(_) => Ok(()),
                    _ => Err(SessionError::BeforeConnect),
                };
            }
            SessionState::Refused => return Err(SessionError::AfterRefusedConnect),
            SessionState::Connected(connected) => connected,
        };
        match request {
            Request::Connect(_) => Err(SessionError::AlreadyConnected),
            Request::Pong => connected.pong(now_ms, limits),
            Request::Subscribe(subscribe) => connected.can_subscribe(&subscribe.channel, limits),
            Request::SubRefresh { channel, .. } if connected.find(channel).is_none() => {
                Err(SessionError::NotSubscribed)
            }
            Request::Presence(_) | Request::PresenceStats(_) => Err(SessionError::PresenceOff),
            Request::Ping => Err(SessionError::PingCommand),
            Request::Rpc { .. } => Err(SessionError::NoRpc),
            Request::Send { .. } => Err(SessionError::NoAsyncMessages),
            _ => Ok(()),
        }
    }

    /// The server accepted `connect`: the connection is `client` until `expiry`.
    pub fn connected(&mut self, client: &str, expiry: Expiry, now_ms: u64, limits: &SessionLimits) {
        let ping = match limits.ping_interval_ms {
            0 => PingState::Off,
            interval_ms => PingState::NextAtMs(now_ms.saturating_add(interval_ms)),
        };
        self.state = SessionState::Connected(Box::new(Connected {
            client: Arc::from(client),
            expiry,
            ping,
            subscriptions: Vec::new(),
        }));
    }

    /// The server refused `connect` with an error reply.
    pub fn connect_refused(&mut self) {
        self.state = SessionState::Refused;
    }

    /// The connection's id, once connected.
    pub fn client(&self) -> Option<&str> {
        match &self.state {
            SessionState::Connected(connected) => Some(&connected.client),
            _ => None,
        }
    }

    /// The server accepted a new token: the connection now runs until `expiry`.
    pub fn refreshed(&mut self, expiry: Expiry) {
        if let SessionState::Connected(connected) = &mut self.state {
            connected.expiry = expiry;
        }
    }

    /// The server accepted a subscribe and joined the channel's live stream. A channel with
    /// history (`positioned`) buffers until [`Session::finish_subscribe`]; one without is live
    /// at once (reply `{}`).
    pub fn begin_subscribe(
        &mut self,
        channel: &ChannelName,
        positioned: bool,
        limits: &SessionLimits,
    ) -> Result<(), SessionError> {
        let SessionState::Connected(connected) = &mut self.state else {
            return Err(SessionError::BeforeConnect);
        };
        connected.can_subscribe(channel, limits)?;
        connected
            .subscriptions
            .push(Subscription::new(channel, positioned));
        Ok(())
    }

    /// History was read for a subscribing channel: joins it with what was buffered. On success
    /// the subscription is live from `cursor` (reply, then push `then_push`); on failure it is
    /// dropped (close with [`FinishError::disconnect`]).
    pub fn finish_subscribe(
        &mut self,
        channel: &ChannelName,
        read: HistoryRead,
    ) -> Result<Synchronized, FinishError> {
        let Some(subscription) = self.subscription_mut(channel) else {
            return Err(FinishError::NotSubscribing);
        };
        let finished = subscription.finish(read);
        if matches!(finished, Err(FinishError::Insufficient(_))) {
            self.unsubscribe(channel);
        }
        finished
    }

    /// Drops a subscription (the client unsubscribed, or its subscribe failed after
    /// [`Session::begin_subscribe`]). Returns whether there was one.
    pub fn unsubscribe(&mut self, channel: &ChannelName) -> bool {
        let SessionState::Connected(connected) = &mut self.state else {
            return false;
        };
        match connected.find(channel) {
            Some(index) => {
                connected.subscriptions.swap_remove(index);
                true
            }
            None => false,
        }
    }

    /// Whether the connection is subscribed (or subscribing) to `channel`.
    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        match &self.state {
            SessionState::Connected(connected) => connected.find(channel).is_some(),
            _ => false,
        }
    }

    /// The channels it is subscribed to (to leave them when it closes).
    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        let subscriptions = match &self.state {
            SessionState::Connected(connected) => connected.subscriptions.as_slice(),
            _ => &[],
        };
        subscriptions
            .iter()
            .map(|subscription| &subscription.channel)
    }

    /// A live publication on `channel` (with its position when the channel has history).
    pub fn on_publication(
        &mut self,
        channel: &ChannelName,
        position: Option<&StreamPosition>,
        payload: &Bytes,
        limits: &SessionLimits,
    ) -> Delivery {
        let Some(subscription) = self.subscription_adopting(channel) else {
            return Delivery::Skip;
        };
        let delivery = subscription.on_publication(position, payload, limits);
        if delivery == Delivery::Insufficient {
            self.unsubscribe(channel);
        }
        delivery
    }

    /// The periodic position check (client.go `checkPosition`, every
    /// `client_channel_position_check_delay`, 40 s in Centrifugo): `top` is the stream's top
    /// from history. Catches a live publication lost when no later one came to reveal the gap.
    pub fn check_position(&mut self, channel: &ChannelName, top: &StreamPosition) -> PositionCheck {
        let Some(subscription) = self.subscription_mut(channel) else {
            return PositionCheck::InSync;
        };
        let SubscriptionState::Live(Cursor::Positioned {
            position,
            checks_behind,
        }) = &mut subscription.state
        else {
            return PositionCheck::InSync;
        };
        let epoch_changed = top.epoch != position.epoch;
        if !epoch_changed && top.offset <= position.offset {
            *checks_behind = 0;
            return PositionCheck::InSync;
        }
        *checks_behind += 1;
        if epoch_changed || *checks_behind >= POSITION_CHECKS_BEHIND_MAX {
            self.unsubscribe(channel);
            return PositionCheck::Insufficient;
        }
        PositionCheck::Behind
    }

    /// What is due at `now_ms`: the stale deadline, the expiry, a ping or a missing pong.
    pub fn tick(&mut self, now_ms: u64, limits: &SessionLimits) -> Tick {
        let connected = match &mut self.state {
            SessionState::AwaitingConnect { deadline_ms } if now_ms >= *deadline_ms => {
                return Tick::Disconnect(DisconnectCode::Stale);
            }
            SessionState::AwaitingConnect { .. } | SessionState::Refused => return Tick::Idle,
            SessionState::Connected(connected) => connected,
        };
        if let Expiry::AtMs(at_ms) = connected.expiry
            && now_ms >= at_ms
        {
            return Tick::Disconnect(DisconnectCode::Expired);
        }
        match connected.ping {
            PingState::NextAtMs(at_ms) if now_ms >= at_ms => {
                connected.ping = match limits.pong_timeout_ms {
                    0 => PingState::NextAtMs(now_ms.saturating_add(limits.ping_interval_ms)),
                    timeout_ms => PingState::AwaitingPong {
                        sent_at_ms: now_ms,
                        deadline_ms: now_ms.saturating_add(timeout_ms),
                    },
                };
                Tick::SendPing
            }
            PingState::AwaitingPong { deadline_ms, .. } if now_ms >= deadline_ms => {
                Tick::Disconnect(DisconnectCode::NoPong)
            }
            _ => Tick::Idle,
        }
    }

    /// When [`Session::tick`] next has something to do, ms (for the owner's timer).
    pub fn next_tick_ms(&self) -> Option<u64> {
        match &self.state {
            SessionState::AwaitingConnect { deadline_ms } => Some(*deadline_ms),
            SessionState::Refused => None,
            SessionState::Connected(connected) => {
                let ping = match connected.ping {
                    PingState::Off => None,
                    PingState::NextAtMs(at_ms) => Some(at_ms),
                    PingState::AwaitingPong { deadline_ms, .. } => Some(deadline_ms),
                };
                let expiry = match connected.expiry {
                    Expiry::Never => None,
                    Expiry::AtMs(at_ms) => Some(at_ms),
                };
                ping.into_iter().chain(expiry).min()
            }
        }
    }

    fn subscription_mut(&mut self, channel: &ChannelName) -> Option<&mut Subscription> {
        let SessionState::Connected(connected) = &mut self.state else {
            return None;
        };
        let index = connected.find(channel)?;
        connected.subscriptions.get_mut(index)
    }

    /// The subscription to `channel`, which from now on holds this very name (the fan-out
    /// passes the registry's, so later lookups compare pointers, not text).
    fn subscription_adopting(&mut self, channel: &ChannelName) -> Option<&mut Subscription> {
        let SessionState::Connected(connected) = &mut self.state else {
            return None;
        };
        let subscription = connected
            .subscriptions
            .iter_mut()
            .find(|subscription| subscription.channel.same(channel))?;
        if !subscription.channel.shares(channel) {
            subscription.channel = channel.clone();
        }
        Some(subscription)
    }
}

impl Connected {
    fn find(&self, channel: &ChannelName) -> Option<usize> {
        // Bounded: at most channels_max subscriptions.
        self.subscriptions
            .iter()
            .position(|subscription| subscription.channel.same(channel))
    }

    fn can_subscribe(
        &self,
        channel: &ChannelName,
        limits: &SessionLimits,
    ) -> Result<(), SessionError> {
        if self.find(channel).is_some() {
            return Err(SessionError::AlreadySubscribed);
        }
        if self.subscriptions.len() >= limits.channels_max {
            return Err(SessionError::ChannelLimit);
        }
        Ok(())
    }

    fn pong(&mut self, now_ms: u64, limits: &SessionLimits) -> Result<(), SessionError> {
        let PingState::AwaitingPong { sent_at_ms, .. } = self.ping else {
            return Err(SessionError::UnexpectedPong);
        };
        let next_ms = sent_at_ms
            .saturating_add(limits.ping_interval_ms)
            .max(now_ms);
        self.ping = PingState::NextAtMs(next_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::recovery::RecoveryOutcome;
    use crate::history::{Epoch, Recovered};
    use crate::wire::centrifugo::codes::{ClientError, Verdict};
    use crate::wire::centrifugo::command::{ConnectRequest, SubscribeRequest, Token};

    const LIMITS: SessionLimits = SessionLimits {
        channels_max: 2,
        subscribe_buffer_max: 3,
        ping_interval_ms: 25_000,
        pong_timeout_ms: 8_000,
        connect_timeout_ms: 10_000,
    };

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn at(offset: u64) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: Epoch::new("e"),
        }
    }

    fn connect() -> Request {
        Request::Connect(ConnectRequest {
            token: Token::default(),
            data: None,
            subs: Vec::new(),
            name: String::new(),
            version: String::new(),
        })
    }

    fn subscribe(name: &str) -> Request {
        Request::Subscribe(SubscribeRequest {
            channel: channel(name),
            token: Token::default(),
            recover: None,
            data: None,
            positioned: false,
            recoverable: false,
            join_leave: false,
        })
    }

    fn connected_session() -> Session {
        let mut session = Session::new(0, &LIMITS);
        session.admit(&connect(), 0, &LIMITS).unwrap();
        session.connected("client-1", Expiry::Never, 0, &LIMITS);
        session
    }

    fn body() -> Bytes {
        Bytes::from_static(b"{}")
    }

    #[test]
    fn an_unconnected_session_is_small() {
        assert_eq!(std::mem::size_of::<Session>(), 16);
    }

    #[test]
    fn a_live_subscription_adopts_the_fan_outs_name_and_epoch() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        session
            .finish_subscribe(&a, HistoryRead::Top(at(0)))
            .unwrap();
        // The fan-out passes its own name; each publication has its own copy of the epoch.
        let registry_name = channel("a");
        let payload = Bytes::from_static(b"p");
        for offset in 1..=2 {
            let delivery =
                session.on_publication(&registry_name, Some(&at(offset)), &payload, &LIMITS);
            assert_eq!(delivery, Delivery::Deliver);
        }
        let shared = at(3);
        let delivery = session.on_publication(&registry_name, Some(&shared), &payload, &LIMITS);
        assert_eq!(delivery, Delivery::Deliver);
        let subscription = session.subscription_mut(&a).unwrap();
        assert!(subscription.channel().shares(&registry_name));
        let cursor = subscription.position().unwrap();
        assert_eq!(cursor.offset, 3);
        assert!(cursor.epoch.shares(&shared.epoch));
    }

    #[test]
    fn connect_comes_first_and_once() {
        let mut session = Session::new(0, &LIMITS);
        assert_eq!(session.client(), None);
        assert_eq!(
            session.admit(&subscribe("a"), 0, &LIMITS),
            Err(SessionError::BeforeConnect)
        );
        assert_eq!(
            session.admit(&Request::Pong, 0, &LIMITS),
            Err(SessionError::BeforeConnect)
        );
        let mut session = connected_session();
        assert_eq!(session.client(), Some("client-1"));
        assert_eq!(
            session.admit(&connect(), 0, &LIMITS),
            Err(SessionError::AlreadyConnected)
        );
        let mut refused = Session::new(0, &LIMITS);
        refused.connect_refused();
        assert_eq!(
            refused.admit(&connect(), 0, &LIMITS),
            Err(SessionError::AfterRefusedConnect)
        );
    }

    #[test]
    fn unavailable_methods() {
        let mut session = connected_session();
        let cases = [
            (Request::Presence(channel("a")), SessionError::PresenceOff),
            (
                Request::PresenceStats(channel("a")),
                SessionError::PresenceOff,
            ),
            (Request::Ping, SessionError::PingCommand),
            (
                Request::Rpc {
                    method: "m".into(),
                    data: None,
                },
                SessionError::NoRpc,
            ),
            (Request::Send { data: None }, SessionError::NoAsyncMessages),
            (
                Request::SubRefresh {
                    channel: channel("a"),
                    token: Token::default(),
                },
                SessionError::NotSubscribed,
            ),
        ];
        for (request, error) in cases {
            assert_eq!(session.admit(&request, 0, &LIMITS), Err(error));
        }
        assert_eq!(
            session.admit(&Request::Unsubscribe(channel("a")), 0, &LIMITS),
            Ok(())
        );
    }

    #[test]
    fn every_session_error_has_its_verdict() {
        use DisconnectCode as D;
        let table = [
            (
                SessionError::BeforeConnect,
                Verdict::Disconnect(D::BadRequest),
            ),
            (
                SessionError::AfterRefusedConnect,
                Verdict::Disconnect(D::BadRequest),
            ),
            (
                SessionError::AlreadyConnected,
                Verdict::Disconnect(D::BadRequest),
            ),
            (
                SessionError::UnexpectedPong,
                Verdict::Disconnect(D::BadRequest),
            ),
            (
                SessionError::AlreadySubscribed,
                Verdict::Reply(ClientError::AlreadySubscribed),
            ),
            (
                SessionError::ChannelLimit,
                Verdict::Reply(ClientError::LimitExceeded),
            ),
            (
                SessionError::NotSubscribed,
                Verdict::Reply(ClientError::PermissionDenied),
            ),
            (
                SessionError::PresenceOff,
                Verdict::Reply(ClientError::NotAvailable),
            ),
            (
                SessionError::PingCommand,
                Verdict::Reply(ClientError::NotAvailable),
            ),
            (
                SessionError::NoRpc,
                Verdict::Reply(ClientError::MethodNotFound),
            ),
            (
                SessionError::NoAsyncMessages,
                Verdict::Disconnect(D::NotAvailable),
            ),
        ];
        for (error, verdict) in table {
            assert_eq!(error.verdict(), verdict, "{error:?}");
        }
        assert_eq!(
            FinishError::Insufficient(InsufficientState::BufferOverflow).disconnect(),
            D::InsufficientState
        );
        assert_eq!(FinishError::NotSubscribing.disconnect(), D::ServerError);
    }

    #[test]
    fn subscriptions_are_unique_and_bounded() {
        let mut session = connected_session();
        session
            .begin_subscribe(&channel("a"), false, &LIMITS)
            .unwrap();
        assert_eq!(
            session.admit(&subscribe("a"), 0, &LIMITS),
            Err(SessionError::AlreadySubscribed)
        );
        session
            .begin_subscribe(&channel("b"), true, &LIMITS)
            .unwrap();
        assert_eq!(
            session.admit(&subscribe("c"), 0, &LIMITS),
            Err(SessionError::ChannelLimit)
        );
        assert_eq!(
            session.begin_subscribe(&channel("c"), false, &LIMITS),
            Err(SessionError::ChannelLimit)
        );
        assert!(session.is_subscribed(&channel("b")));
        assert_eq!(session.channels().count(), 2);
        assert!(session.unsubscribe(&channel("a")));
        assert!(!session.unsubscribe(&channel("a")));
        assert!(session.admit(&subscribe("c"), 0, &LIMITS).is_ok());
        let mut unconnected = Session::new(0, &LIMITS);
        assert_eq!(
            unconnected.begin_subscribe(&channel("a"), false, &LIMITS),
            Err(SessionError::BeforeConnect)
        );
        assert!(!unconnected.unsubscribe(&channel("a")));
        assert_eq!(unconnected.channels().count(), 0);
    }

    #[test]
    fn a_channel_without_history_delivers_everything() {
        let mut session = connected_session();
        session
            .begin_subscribe(&channel("a"), false, &LIMITS)
            .unwrap();
        assert_eq!(
            session.on_publication(&channel("a"), None, &body(), &LIMITS),
            Delivery::Deliver
        );
        assert_eq!(
            session.on_publication(&channel("z"), None, &body(), &LIMITS),
            Delivery::Skip
        );
    }

    #[test]
    fn a_recovering_subscribe_buffers_then_goes_live_exactly() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        for offset in [6, 5] {
            assert_eq!(
                session.on_publication(&a, Some(&at(offset)), &body(), &LIMITS),
                Delivery::Buffered
            );
        }
        assert_eq!(
            session.on_publication(&a, None, &body(), &LIMITS),
            Delivery::Skip
        );
        let read = HistoryRead::Recovered(Recovered {
            since: at(3),
            publications: vec![
                crate::history::HistoryPublication {
                    offset: 4,
                    payload: body(),
                },
                crate::history::HistoryPublication {
                    offset: 5,
                    payload: body(),
                },
            ],
            position: at(5),
        });
        let synchronized = session.finish_subscribe(&a, read).unwrap();
        assert_eq!(synchronized.outcome, RecoveryOutcome::Recovered);
        assert_eq!(synchronized.cursor, at(6));
        assert_eq!(
            session.finish_subscribe(&a, HistoryRead::Top(at(6))),
            Err(FinishError::NotSubscribing)
        );
        assert_eq!(
            session.on_publication(&a, Some(&at(6)), &body(), &LIMITS),
            Delivery::Skip
        );
        assert_eq!(
            session.on_publication(&a, Some(&at(7)), &body(), &LIMITS),
            Delivery::Deliver
        );
        assert_eq!(
            session.on_publication(&a, None, &body(), &LIMITS),
            Delivery::Deliver
        );
        assert_eq!(
            session.on_publication(&a, Some(&at(9)), &body(), &LIMITS),
            Delivery::Insufficient
        );
        assert!(!session.is_subscribed(&a));
    }

    #[test]
    fn position_checks_catch_a_silent_loss() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        session
            .finish_subscribe(&a, HistoryRead::Top(at(2)))
            .unwrap();
        assert_eq!(session.check_position(&a, &at(2)), PositionCheck::InSync);
        assert_eq!(session.check_position(&a, &at(3)), PositionCheck::Behind);
        session.on_publication(&a, Some(&at(3)), &body(), &LIMITS);
        assert_eq!(session.check_position(&a, &at(3)), PositionCheck::InSync);
        assert_eq!(session.check_position(&a, &at(4)), PositionCheck::Behind);
        assert_eq!(
            session.check_position(&a, &at(4)),
            PositionCheck::Insufficient
        );
        assert!(!session.is_subscribed(&a));
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        assert_eq!(session.check_position(&a, &at(9)), PositionCheck::InSync);
        session
            .finish_subscribe(&a, HistoryRead::Top(at(4)))
            .unwrap();
        let other = StreamPosition {
            offset: 0,
            epoch: Epoch::new("f"),
        };
        assert_eq!(
            session.check_position(&a, &other),
            PositionCheck::Insufficient
        );
        let b = channel("b");
        session.begin_subscribe(&b, false, &LIMITS).unwrap();
        assert_eq!(session.check_position(&b, &at(9)), PositionCheck::InSync);
        assert_eq!(
            session.check_position(&channel("z"), &at(9)),
            PositionCheck::InSync
        );
    }

    #[test]
    fn an_epoch_change_on_the_live_stream_is_insufficient() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        session
            .finish_subscribe(&a, HistoryRead::Top(at(2)))
            .unwrap();
        let other = StreamPosition {
            offset: 3,
            epoch: Epoch::new("f"),
        };
        assert_eq!(
            session.on_publication(&a, Some(&other), &body(), &LIMITS),
            Delivery::Insufficient
        );
    }

    #[test]
    fn an_overflowing_buffer_fails_the_subscribe() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        for offset in 1..=5 {
            assert_eq!(
                session.on_publication(&a, Some(&at(offset)), &body(), &LIMITS),
                Delivery::Buffered
            );
        }
        assert_eq!(
            session.finish_subscribe(&a, HistoryRead::Top(at(0))),
            Err(FinishError::Insufficient(InsufficientState::BufferOverflow))
        );
        assert!(!session.is_subscribed(&a));
    }

    #[test]
    fn a_gap_during_the_subscribe_fails_it() {
        let mut session = connected_session();
        let a = channel("a");
        session.begin_subscribe(&a, true, &LIMITS).unwrap();
        session.on_publication(&a, Some(&at(4)), &body(), &LIMITS);
        assert_eq!(
            session.finish_subscribe(&a, HistoryRead::Top(at(2))),
            Err(FinishError::Insufficient(InsufficientState::LiveGap {
                expected: 3,
                found: 4
            }))
        );
        assert!(!session.is_subscribed(&a));
        assert_eq!(
            session.finish_subscribe(&a, HistoryRead::Top(at(2))),
            Err(FinishError::NotSubscribing)
        );
    }

    #[test]
    fn ping_pong_cycle() {
        let mut session = connected_session();
        assert_eq!(session.next_tick_ms(), Some(25_000));
        assert_eq!(
            session.admit(&Request::Pong, 1, &LIMITS),
            Err(SessionError::UnexpectedPong)
        );
        assert_eq!(session.tick(24_999, &LIMITS), Tick::Idle);
        assert_eq!(session.tick(25_000, &LIMITS), Tick::SendPing);
        assert_eq!(session.next_tick_ms(), Some(33_000));
        assert_eq!(session.admit(&Request::Pong, 26_000, &LIMITS), Ok(()));
        assert_eq!(session.next_tick_ms(), Some(50_000));
        assert_eq!(session.tick(50_000, &LIMITS), Tick::SendPing);
        assert_eq!(session.tick(57_999, &LIMITS), Tick::Idle);
        assert_eq!(
            session.tick(58_000, &LIMITS),
            Tick::Disconnect(DisconnectCode::NoPong)
        );
    }

    #[test]
    fn pings_without_pongs_and_no_pings() {
        let no_pong = SessionLimits {
            pong_timeout_ms: 0,
            ..LIMITS
        };
        let mut session = Session::new(0, &no_pong);
        session.connected("c", Expiry::Never, 0, &no_pong);
        assert_eq!(session.tick(25_000, &no_pong), Tick::SendPing);
        assert_eq!(session.next_tick_ms(), Some(50_000));
        let silent = SessionLimits {
            ping_interval_ms: 0,
            ..LIMITS
        };
        let mut session = Session::new(0, &silent);
        session.connected("c", Expiry::Never, 0, &silent);
        assert_eq!(session.next_tick_ms(), None);
        assert_eq!(session.tick(u64::MAX, &silent), Tick::Idle);
    }

    #[test]
    fn stale_and_expired_connections_are_closed() {
        let mut session = Session::new(100, &LIMITS);
        assert_eq!(session.next_tick_ms(), Some(10_100));
        assert_eq!(session.tick(10_099, &LIMITS), Tick::Idle);
        assert_eq!(
            session.tick(10_100, &LIMITS),
            Tick::Disconnect(DisconnectCode::Stale)
        );
        let mut refused = Session::new(0, &LIMITS);
        refused.connect_refused();
        assert_eq!(refused.tick(u64::MAX, &LIMITS), Tick::Idle);
        assert_eq!(refused.next_tick_ms(), None);

        let mut session = Session::new(0, &LIMITS);
        session.connected("c", Expiry::AtMs(5_000), 0, &LIMITS);
        assert_eq!(session.next_tick_ms(), Some(5_000));
        session.refreshed(Expiry::AtMs(60_000));
        assert_eq!(session.tick(30_000, &LIMITS), Tick::SendPing);
        assert_eq!(
            session.tick(60_000, &LIMITS),
            Tick::Disconnect(DisconnectCode::Expired)
        );
    }
}
