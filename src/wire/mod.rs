//! Client wire protocols as sans-IO codecs: what a connection's decoded WebSocket events mean
//! in the protocol it speaks, and how a publication is framed for it.
//!
//! - [`raw`]: the ws4redis-style protocol of `/ws/{channel}` and `/echo`.
//! - [`pusher`]: Pusher Channels protocol 7 (pusher-js, Laravel Echo, the Pusher SDKs).
//!
//! A connection speaks one protocol for its whole life; the fan-out frames each publication once
//! per [`WireFormat`] present among a channel's subscribers, never per subscriber.
//!
//! Deliberately not here: sockets, shards, runtimes. Imports point down: `wire` uses `apps`,
//! `auth`, `protocol` and `publication`, never `server`.

pub mod centrifugo;
pub mod pusher;
pub mod raw;

/// The ways a publication can be framed for subscribers. Each has an index into the fan-out's
/// per-message frame cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// ws4redis-style: the payload as one text or binary frame.
    Raw,
}

impl WireFormat {
    /// How many formats exist (the size of a per-message frame cache).
    pub const COUNT: usize = 1;

    /// Index into a per-message frame cache.
    pub fn index(self) -> usize {
        match self {
            WireFormat::Raw => 0,
        }
    }
}
