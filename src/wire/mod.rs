//! Client wire protocols as sans-IO codecs: what a connection's decoded WebSocket events mean
//! in the protocol it speaks, and how a publication is framed for it.
//!
//! - [`raw`]: the ws4redis-style protocol of `/ws/{channel}` and `/echo`.
//! - [`pusher`]: Pusher Channels protocol 7 (pusher-js, Laravel Echo, the Pusher SDKs).
//! - [`centrifugo`]: the Centrifugo bidirectional JSON protocol (centrifuge-js, centrifuge-python).
//!
//! A connection speaks one protocol for its whole life; the fan-out frames each publication once
//! per [`WireFormat`] present among a channel's subscribers, never per subscriber.
//!
//! Deliberately not here: sockets, shards, runtimes. Imports point down: `wire` uses `apps`,
//! `auth`, `protocol` and `publication`, never `server`.

pub mod centrifugo;
pub mod pusher;
pub mod raw;

use bytes::Bytes;

use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::publication::Publication;

/// The ways a publication can be framed for subscribers. Each has an index into the fan-out's
/// per-message frame cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// ws4redis-style: the payload as one text or binary frame.
    Raw,
    /// Pusher Channels: the `{"event","channel","data"}` envelope as a text frame.
    Pusher,
    /// Centrifugo: the publication push `{"push":{"channel","pub":{"data","offset"}}}`.
    Centrifugo,
}

impl WireFormat {
    /// How many formats exist (the size of a per-message frame cache).
    pub const COUNT: usize = 3;

    /// Index into a per-message frame cache.
    pub fn index(self) -> usize {
        match self {
            WireFormat::Raw => 0,
            WireFormat::Pusher => 1,
            WireFormat::Centrifugo => 2,
        }
    }
}

/// The one frame every subscriber speaking `format` receives for `publication` (built once per
/// message and format, then shared), or `None` when the publication cannot be sent in that
/// format (a non-UTF-8 raw publish has no Pusher form).
pub fn frame_publication(format: WireFormat, publication: &Publication) -> Option<Bytes> {
    // Pusher's own events (presence members, user termination) mean nothing to the other
    // protocols' subscribers of the same channel.
    let internal = publication
        .event
        .as_deref()
        .is_some_and(pusher::outgoing::is_internal_event);
    if internal && format != WireFormat::Pusher {
        return None;
    }
    match format {
        WireFormat::Raw => Some(raw::frame_publication(publication)),
        WireFormat::Pusher => {
            let data = std::str::from_utf8(&publication.payload).ok()?;
            let event = publication
                .event
                .as_deref()
                .unwrap_or(pusher::outgoing::RAW_MESSAGE_EVENT);
            let envelope = pusher::outgoing::event(
                publication.channel.as_str(),
                event,
                data,
                publication.user_id(),
            );
            Some(encode_server_frame(OpCode::Text, &envelope))
        }
        // Binary payloads have no JSON form (Centrifugo's JSON protocol cannot carry them).
        WireFormat::Centrifugo => centrifugo::reply::publication_frame(
            &publication.channel,
            &publication.payload,
            publication
                .position
                .as_ref()
                .map(|position| position.offset),
        )
        .ok(),
    }
}
