//! Client wire protocols as sans-IO codecs: what a connection's decoded WebSocket events mean
//! in the protocol it speaks, and how a publication is framed for it.
//!
//! A connection speaks one protocol for its whole life; the fan-out frames each publication once
//! per [`WireFormat`] present among a channel's subscribers, never per subscriber.

pub mod centrifugo;
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
