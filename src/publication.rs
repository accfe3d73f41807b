//! A message on its way from a publisher to every subscriber of a channel: the one type that
//! travels the whole path (HTTP or Redis in, the broker, each shard's inbox, the fan-out).
//!
//! A leaf module: it knows channel names and payload kinds, nothing of shards, Redis or HTTP, so
//! every layer above can use it without import cycles. It carries the payload once; each shard
//! frames it once per wire format its subscribers speak.

use std::time::Instant;

use bytes::Bytes;

use std::sync::Arc;

use crate::channel::{AppSlot, ChannelName};
use crate::history::StreamPosition;
use crate::protocol::message::DataKind;
use crate::socket_id::SocketId;

/// Who sent a Pusher event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// A connection that must not receive it (Pusher's `socket_id` exclusion).
    pub exclude: Option<SocketId>,
    /// The sender's user id: a client event on a presence channel carries it to Pusher
    /// subscribers (`user_id` beside `data`).
    pub user_id: Option<String>,
}

/// A message published to a channel.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The application whose namespace the channel is in.
    pub app: AppSlot,
    /// The channel.
    pub channel: ChannelName,
    /// The Pusher event name of a trigger (`None` for a raw publish: Pusher subscribers see it
    /// as the event `message`).
    pub event: Option<Arc<str>>,
    /// Who sent it, when that matters (boxed: most publications have no such detail, and a
    /// publication crosses the shard mesh by value).
    pub origin: Option<Box<Origin>>,
    /// The payload, shared by every shard (framed separately by each).
    pub payload: Bytes,
    /// Text if the payload is valid UTF-8, else binary (decided once, in [`Publication::new`]).
    pub kind: DataKind,
    /// When the publish arrived (start of the latency measurement).
    pub published_at: Instant,
    /// Where it goes in a shard's release order (see `server::fanout::collect`): its publish
    /// time, until the shard keeping its channel's history positions it; from then on the time
    /// it was positioned. That shard assigns offsets in that same order, so every shard
    /// releases a channel's publications in offset order, whichever shard each was published
    /// on (publish times of two shards' publishes can be in either order).
    pub ordered_at: Instant,
    /// Its place in the channel's history stream (`None`: the channel keeps no history).
    /// Stamped once, by the shard that keeps the channel's history, before the fan-out.
    pub position: Option<Arc<StreamPosition>>,
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
        let now = Instant::now();
        Publication {
            app: AppSlot::DEFAULT,
            channel,
            event: None,
            origin: None,
            payload,
            kind,
            published_at: now,
            ordered_at: now,
            position: None,
        }
    }

    /// Stamps its place in the channel's history stream (once, by the shard that keeps it),
    /// and orders it from now on by when that happened.
    pub fn set_position(&mut self, position: Arc<StreamPosition>) {
        self.position = Some(position);
        self.ordered_at = Instant::now();
    }

    /// A Pusher trigger: event `event` with `data` (a string, as the REST API defines it) on
    /// `channel` of `app`, not sent to `exclude`. Raw subscribers of the channel receive `data`
    /// as a text frame.
    pub fn event(
        app: AppSlot,
        channel: ChannelName,
        event: Arc<str>,
        data: Bytes,
        exclude: Option<SocketId>,
    ) -> Publication {
        let mut publication = Publication::new(channel, data);
        publication.app = app;
        publication.event = Some(event);
        publication.origin = exclude.map(|exclude| {
            Box::new(Origin {
                exclude: Some(exclude),
                user_id: None,
            })
        });
        publication
    }

    /// The connection that must not receive it.
    pub fn exclude(&self) -> Option<SocketId> {
        self.origin.as_ref().and_then(|origin| origin.exclude)
    }

    /// The sender's user id (client events on presence channels).
    pub fn user_id(&self) -> Option<&str> {
        self.origin.as_ref()?.user_id.as_deref()
    }

    /// Sets the sender's user id.
    pub fn set_user_id(&mut self, user_id: Option<String>) {
        if user_id.is_none() && self.origin.is_none() {
            return;
        }
        self.origin.get_or_insert_with(Box::default).user_id = user_id;
    }
}

/// The first bytes of a message ringcast PUBLISHes to Redis with metadata (a Pusher event
/// name, an excluded socket): a NUL cannot start a ws4redis text message, and a raw payload
/// that happens to start with these bytes is wrapped too, so reading is unambiguous.
const REDIS_ENVELOPE_MAGIC: &[u8] = b"\0ringcast1\n";

/// The first bytes of a message on a channel with history, PUBLISHed by the history script
/// in Redis (`broker::redis`) right after it appended the message to the channel's stream:
/// magic, `OFFSET EPOCH` and a newline, then the message as [`Publication::to_redis_payload`]
/// wrote it.
pub const REDIS_POSITIONED_MAGIC: &[u8] = b"\0ringcast2\n";

/// The metadata line of a Redis envelope.
#[derive(serde::Serialize, serde::Deserialize)]
struct RedisEnvelope {
    /// The Pusher event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    /// The excluded socket id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exclude: Option<String>,
    /// The sender's user id (client events on presence channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

impl Publication {
    /// The bytes to PUBLISH on the channel's Redis channel: the payload itself when there is
    /// no metadata (so ws4redis clients and `redis-cli` publishers interoperate), else the
    /// envelope: magic, one JSON line, the payload.
    pub fn to_redis_payload(&self) -> Bytes {
        if self.event.is_none()
            && self.origin.is_none()
            && !self.payload.starts_with(REDIS_ENVELOPE_MAGIC)
            && !self.payload.starts_with(REDIS_POSITIONED_MAGIC)
        {
            return self.payload.clone();
        }
        let header = RedisEnvelope {
            event: self.event.as_deref().map(str::to_string),
            exclude: self.exclude().map(|id| id.to_string()),
            user_id: self.user_id().map(str::to_string),
        };
        let mut out = Vec::with_capacity(64 + self.payload.len());
        out.extend_from_slice(REDIS_ENVELOPE_MAGIC);
        serde_json::to_writer(&mut out, &header).expect("serialising strings cannot fail");
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        Bytes::from(out)
    }

    /// A publication read from Redis on `channel` of `app`: an envelope written by
    /// [`Publication::to_redis_payload`], or a plain (ws4redis) message. `None` for an envelope
    /// that does not parse.
    pub fn from_redis(app: AppSlot, channel: ChannelName, payload: Bytes) -> Option<Publication> {
        if let Some(rest) = payload.strip_prefix(REDIS_POSITIONED_MAGIC) {
            let line_end = rest.iter().position(|&byte| byte == b'\n')?;
            let line = std::str::from_utf8(&rest[..line_end]).ok()?;
            let (offset, epoch) = line.split_once(' ')?;
            let position = StreamPosition {
                offset: offset.parse().ok()?,
                epoch: crate::history::Epoch::new(epoch),
            };
            let start = REDIS_POSITIONED_MAGIC.len() + line_end + 1;
            let inner = payload.slice(start..);
            // The inner message is never positioned again (the script writes it once).
            if inner.starts_with(REDIS_POSITIONED_MAGIC) {
                return None;
            }
            let mut publication = Publication::from_redis(app, channel, inner)?;
            publication.position = Some(Arc::new(position));
            return Some(publication);
        }
        let Some(rest) = payload.strip_prefix(REDIS_ENVELOPE_MAGIC) else {
            let mut publication = Publication::new(channel, payload);
            publication.app = app;
            return Some(publication);
        };
        let line_end = rest.iter().position(|&byte| byte == b'\n')?;
        let header: RedisEnvelope = serde_json::from_slice(&rest[..line_end]).ok()?;
        let start = REDIS_ENVELOPE_MAGIC.len() + line_end + 1;
        let body = payload.slice(start..);
        let exclude = match header.exclude {
            Some(text) => Some(SocketId::parse(&text).ok()?),
            None => None,
        };
        let mut publication = Publication::new(channel, body);
        publication.app = app;
        publication.event = header.event.map(|event| Arc::from(event.as_str()));
        if exclude.is_some() || header.user_id.is_some() {
            publication.origin = Some(Box::new(Origin {
                exclude,
                user_id: header.user_id,
            }));
        }
        Some(publication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_payloads_round_trip_and_plain_messages_stay_plain() {
        let channel = ChannelName::new("news").unwrap();
        let plain = Publication::new(channel.clone(), Bytes::from_static(b"hello"));
        assert_eq!(&plain.to_redis_payload()[..], b"hello");
        let read =
            Publication::from_redis(AppSlot::DEFAULT, channel.clone(), plain.to_redis_payload())
                .unwrap();
        assert_eq!(
            (read.event.clone(), read.exclude(), &read.payload[..]),
            (None, None, &b"hello"[..])
        );
        let exclude = SocketId::parse("12.34").unwrap();
        let event = Publication::event(
            AppSlot::DEFAULT,
            channel.clone(),
            Arc::from("my-event"),
            Bytes::from_static(b"{\"a\":1}"),
            Some(exclude),
        );
        let read =
            Publication::from_redis(AppSlot::DEFAULT, channel.clone(), event.to_redis_payload())
                .unwrap();
        assert_eq!(read.event.as_deref(), Some("my-event"));
        assert_eq!(read.exclude(), Some(exclude));
        // A client event on a presence channel carries its sender's user id across nodes.
        let mut event = event.clone();
        event.set_user_id(Some("ann".into()));
        let read =
            Publication::from_redis(AppSlot::DEFAULT, channel.clone(), event.to_redis_payload())
                .unwrap();
        assert_eq!(
            (read.user_id(), read.exclude()),
            (Some("ann"), Some(exclude))
        );
        assert_eq!(&read.payload[..], b"{\"a\":1}");
        // A raw payload that looks like an envelope is wrapped, so it reads back unchanged.
        let tricky = Publication::new(channel.clone(), Bytes::from_static(b"\0ringcast1\nxyz"));
        let read =
            Publication::from_redis(AppSlot::DEFAULT, channel.clone(), tricky.to_redis_payload())
                .unwrap();
        assert_eq!(&read.payload[..], b"\0ringcast1\nxyz");
        assert!(
            Publication::from_redis(
                AppSlot::DEFAULT,
                channel,
                Bytes::from_static(b"\0ringcast1\n{bad")
            )
            .is_none()
        );
    }

    #[test]
    fn positioned_messages_from_the_history_script_carry_their_position() {
        let channel = ChannelName::new("chat").unwrap();
        let event = Publication::event(
            AppSlot::DEFAULT,
            channel.clone(),
            Arc::from("e"),
            Bytes::from_static(b"{}"),
            None,
        );
        for inner in [Bytes::from_static(b"hello"), event.to_redis_payload()] {
            let mut wire = b"\0ringcast2\n17 abc\n".to_vec();
            wire.extend_from_slice(&inner);
            let read =
                Publication::from_redis(AppSlot::DEFAULT, channel.clone(), Bytes::from(wire))
                    .unwrap();
            let position = read.position.as_deref().unwrap();
            assert_eq!((position.offset, position.epoch.as_str()), (17, "abc"));
        }
        for bad in [
            &b"\0ringcast2\n17\nx"[..],
            b"\0ringcast2\nx e\nx",
            b"\0ringcast2\n1 e\n\0ringcast2\n1 e\nx",
        ] {
            assert!(
                Publication::from_redis(
                    AppSlot::DEFAULT,
                    channel.clone(),
                    Bytes::copy_from_slice(bad)
                )
                .is_none()
            );
        }
        // A raw payload that starts like a positioned message is wrapped, not misread.
        let tricky = Publication::new(channel.clone(), Bytes::from_static(b"\0ringcast2\n1 e\nx"));
        let read =
            Publication::from_redis(AppSlot::DEFAULT, channel, tricky.to_redis_payload()).unwrap();
        assert_eq!(&read.payload[..], b"\0ringcast2\n1 e\nx");
        assert!(read.position.is_none());
    }

    #[test]
    fn the_kind_follows_the_payload() {
        let channel = ChannelName::new("a").unwrap();
        let text = Publication::new(channel.clone(), Bytes::from_static("héllo".as_bytes()));
        assert_eq!(text.kind, DataKind::Text);
        let binary = Publication::new(channel, Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(binary.kind, DataKind::Binary);
    }
}
