//! The raw protocol of `/ws/{channel}` (ws4redis-compatible) and `/echo`: publications arrive
//! unchanged as one frame each; what a client sends is answered here, as a pure function of the
//! event (the connection's owner queues what it returns).

use bytes::Bytes;

use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::protocol::message::DataKind;
use crate::publication::Publication;

/// What a raw connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRole {
    /// `/ws/{channel}`: receives broadcasts; answers heartbeats.
    Subscriber,
    /// `/echo`: sends every message back (conformance testing).
    Echo,
}

/// What to do about one data message or ping from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing to send.
    None,
    /// A message ringcast does not act on (counted).
    Ignored,
    /// Queue this frame.
    Frame(Bytes),
}

/// Close code of a `/ws/{channel}?since=` connection whose position cannot be recovered (sent
/// before any message: the client missed publications and must reload its state).
pub const POSITION_UNRECOVERABLE: (u16, &str) = (4010, "position unrecoverable");
/// Close code of a positioned connection that found a publication missing in the live stream
/// (or could not merge it with history): reconnect with `?since=` the last offset received.
pub const STREAM_GAP: (u16, &str) = (4011, "stream gap: reconnect with since");
/// Close code when the channel's history did not answer in time (try again).
pub const HISTORY_UNAVAILABLE: (u16, &str) = (1013, "history unavailable, try again");

/// A payload as the one frame a raw subscriber receives: text when it is UTF-8, else binary.
pub fn frame_payload(payload: &[u8]) -> Bytes {
    let opcode = if std::str::from_utf8(payload).is_ok() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    encode_server_frame(opcode, payload)
}

/// The text heartbeat of browsers, which cannot send ping frames (the seeds' convention).
const TEXT_PING: &[u8] = b"ping";

/// RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
/// response ... The Pong frame sent in response MUST have identical Application data".
pub fn answer_ping(payload: &[u8]) -> Reply {
    if payload.is_empty() {
        // The common heartbeat: no allocation.
        return Reply::Frame(Bytes::from_static(b"\x8a\x00"));
    }
    Reply::Frame(encode_server_frame(OpCode::Pong, payload))
}

/// The answer to a complete data message.
pub fn answer_message(role: RawRole, kind: DataKind, payload: &[u8]) -> Reply {
    match role {
        RawRole::Echo => Reply::Frame(encode_server_frame(opcode_for(kind), payload)),
        RawRole::Subscriber if kind == DataKind::Text && payload == TEXT_PING => {
            Reply::Frame(encode_server_frame(OpCode::Text, b"pong"))
        }
        RawRole::Subscriber => Reply::Ignored,
    }
}

/// The frame every raw subscriber of the publication's channel receives (built once per
/// message and shared).
pub fn frame_publication(publication: &Publication) -> Bytes {
    encode_server_frame(opcode_for(publication.kind), &publication.payload)
}

fn opcode_for(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::Text,
        DataKind::Binary => OpCode::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelName;

    #[test]
    fn ping_gets_a_pong_with_the_same_payload() {
        assert_eq!(
            answer_ping(b""),
            Reply::Frame(encode_server_frame(OpCode::Pong, b""))
        );
        assert_eq!(
            answer_ping(b"abc"),
            Reply::Frame(Bytes::from_static(b"\x8a\x03abc"))
        );
    }

    #[test]
    fn text_ping_gets_text_pong() {
        assert_eq!(
            answer_message(RawRole::Subscriber, DataKind::Text, b"ping"),
            Reply::Frame(Bytes::from_static(b"\x81\x04pong"))
        );
        assert_eq!(
            answer_message(RawRole::Subscriber, DataKind::Text, b"hello"),
            Reply::Ignored
        );
        assert_eq!(
            answer_message(RawRole::Subscriber, DataKind::Binary, b"ping"),
            Reply::Ignored
        );
    }

    #[test]
    fn echo_keeps_the_message_type() {
        assert_eq!(
            answer_message(RawRole::Echo, DataKind::Binary, &[0xff]),
            Reply::Frame(Bytes::from_static(b"\x82\x01\xff"))
        );
    }

    #[test]
    fn publications_are_framed_by_kind() {
        let channel = ChannelName::new("a").unwrap();
        let text = Publication::new(channel.clone(), Bytes::from_static(b"hi"));
        assert_eq!(&frame_publication(&text)[..], b"\x81\x02hi");
        let binary = Publication::new(channel, Bytes::from_static(&[0xff]));
        assert_eq!(&frame_publication(&binary)[..], b"\x82\x01\xff");
    }
}
