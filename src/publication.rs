//! A message on its way from a publisher to every subscriber of a channel: the one type that
//! travels the whole path (HTTP or Redis in, the broker, each shard's inbox, the fan-out).
//!
//! A leaf module: it knows channel names and payload kinds, nothing of shards, Redis or HTTP, so
//! every layer above can use it without import cycles. It carries the payload once; each shard
//! frames it once per wire format its subscribers speak.

use std::time::Instant;

use bytes::Bytes;

use crate::channel::ChannelName;
use crate::protocol::message::DataKind;

/// A message published to a channel.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The channel.
    pub channel: ChannelName,
    /// The payload, shared by every shard (framed separately by each).
    pub payload: Bytes,
    /// Text if the payload is valid UTF-8, else binary (decided once, in [`Publication::new`]).
    pub kind: DataKind,
    /// When the publish arrived (start of the latency measurement).
    pub published_at: Instant,
}

impl Publication {
    /// A publication of `payload` on `channel`, published now: text when the payload is valid
    /// UTF-8, binary otherwise.
    pub fn new(channel: ChannelName, payload: Bytes) -> Publication {
        let kind = if std::str::from_utf8(&payload).is_ok() {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        Publication {
            channel,
            payload,
            kind,
            published_at: Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_follows_the_payload() {
        let channel = ChannelName::new("a").unwrap();
        let text = Publication::new(channel.clone(), Bytes::from_static("héllo".as_bytes()));
        assert_eq!(text.kind, DataKind::Text);
        let binary = Publication::new(channel, Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(binary.kind, DataKind::Binary);
    }
}
