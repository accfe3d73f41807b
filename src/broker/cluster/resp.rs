//! Sans-IO RESP2, just enough for a pub/sub subscriber connection: encode commands (arrays of
//! bulk strings), decode replies and pushes, and classify what a subscribed connection receives:
//! sharded pub/sub on a cluster (`smessage`, `ssubscribe`, `sunsubscribe`) or plain pub/sub on
//! one Redis (`message`, `subscribe`, `unsubscribe`), `pong`, `+OK` (the answer to AUTH or
//! SELECT before anything is subscribed), errors such as `MOVED`.
//!
//! Why not fred here: fred drops every `sunsubscribe` frame before the caller sees it, so a
//! subscriber cannot tell that a server unsubscribed it because the slot moved away, and fred
//! matches only the first of the N replies of an `SSUBSCRIBE` with N channels to the command (the
//! others may be taken as replies to a later command). This module reads every frame itself.
//!
//! It deliberately does not speak RESP3, does not decode nested arrays deeper than
//! `DEPTH_MAX` (a subscriber never receives them) and knows nothing about sockets or runtimes.
//!
//! Invariants: a partial frame is `Ok(None)` and consumes nothing; every length read from the
//! wire is checked against a limit before anything is allocated; decoding a frame consumes
//! exactly its bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest line (type byte, text, CRLF) of a simple string, error or length header.
pub const LINE_BYTES_MAX: usize = 4096;
/// Most elements in one array (a subscriber's replies have 3).
pub const ARRAY_ITEMS_MAX: usize = 16;
/// Deepest nesting of arrays accepted.
pub const DEPTH_MAX: usize = 2;

/// A RESP2 violation, or a frame a subscriber connection cannot use. Any of them ends the
/// connection (the stream cannot be resynchronised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// RESP: "The first byte in an RESP-serialized payload always identifies its type."
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// RESP: "the protocol's different parts are always terminated with \r\n (CRLF)."
    #[error("a RESP line is longer than {LINE_BYTES_MAX} bytes or lacks its CRLF")]
    LineTooLong,
    /// RESP: `$<length>\r\n<data>\r\n`: the length is a decimal number (or -1 for null).
    #[error("invalid RESP length or integer {0:?}")]
    InvalidNumber(String),
    /// RESP: `$<length>\r\n<data>\r\n`: the data is followed by a final CRLF.
    #[error("a bulk string is not followed by CRLF")]
    MissingCrlf,
    /// Our limit: a bulk string longer than the largest message we accept.
    #[error("a bulk string of {length} bytes exceeds the limit of {max} bytes")]
    BulkTooLarge {
        /// Announced length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// Our limit: a subscriber never receives large arrays.
    #[error("an array of {0} items exceeds the limit of {ARRAY_ITEMS_MAX}")]
    ArrayTooLong(usize),
    /// Our limit: a subscriber never receives deeply nested arrays.
    #[error("arrays nested deeper than {DEPTH_MAX}")]
    NestedTooDeep,
    /// A well-formed frame that a subscribed connection never receives.
    #[error("unexpected frame on a subscriber connection: {0}")]
    Unexpected(String),
}

/// One RESP2 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK\r\n`.
    Simple(Bytes),
    /// `-ERR message\r\n`.
    Error(Bytes),
    /// `:1\r\n`.
    Integer(i64),
    /// `$3\r\nfoo\r\n`; `None` for the null bulk string `$-1\r\n`.
    Bulk(Option<Bytes>),
    /// `*2\r\n...`; `None` for the null array `*-1\r\n`.
    Array(Option<Vec<Frame>>),
}

/// Appends `args` as one command: RESP "Clients send commands to a Redis server as an array of
/// bulk strings."
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    out.put_u8(b'*');
    out.put_slice(args.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.put_u8(b'$');
        out.put_slice(arg.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// Decodes one frame from the front of `buffer` and removes its bytes; `Ok(None)` (nothing
/// consumed) when the frame is not complete yet. `bulk_bytes_max` bounds every bulk string.
pub fn decode(buffer: &mut BytesMut, bulk_bytes_max: usize) -> Result<Option<Frame>, RespError> {
    let Some(length) = frame_length(buffer, 0, 0, bulk_bytes_max)? else {
        return Ok(None);
    };
    let mut bytes = buffer.split_to(length).freeze();
    parse(&mut bytes).map(Some).ok_or(RespError::Unexpected(
        "a checked frame did not parse".into(),
    ))
}

/// The line starting at `start` (without CRLF), or `None` if its CRLF has not arrived.
fn line(buffer: &[u8], start: usize) -> Result<Option<&[u8]>, RespError> {
    let available = &buffer[start.min(buffer.len())..];
    let window = &available[..available.len().min(LINE_BYTES_MAX)];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => Ok(Some(&window[..end])),
        None if available.len() >= LINE_BYTES_MAX => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn number(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| RespError::InvalidNumber(String::from_utf8_lossy(digits).into()))
}

/// Checks the frame at `start` without allocating; returns the offset just past it.
fn frame_length(
    buffer: &[u8],
    start: usize,
    depth: usize,
    bulk_bytes_max: usize,
) -> Result<Option<usize>, RespError> {
    let Some(header) = line(buffer, start)? else {
        return Ok(None);
    };
    let Some((&kind, text)) = header.split_first() else {
        return Err(RespError::InvalidNumber(String::new()));
    };
    let after_header = start + header.len() + 2;
    match kind {
        b'+' | b'-' => Ok(Some(after_header)),
        b':' => number(text).map(|_| Some(after_header)),
        b'$' => {
            let length = number(text)?;
            if length < 0 {
                return Ok(Some(after_header));
            }
            let length = usize::try_from(length).map_err(|_| RespError::MissingCrlf)?;
            if length > bulk_bytes_max {
                return Err(RespError::BulkTooLarge {
                    length,
                    max: bulk_bytes_max,
                });
            }
            let end = after_header + length + 2;
            if buffer.len() < end {
                return Ok(None);
            }
            if &buffer[end - 2..end] != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some(end))
        }
        b'*' => {
            let items = number(text)?;
            if items < 0 {
                return Ok(Some(after_header));
            }
            let items = items as usize;
            if items > ARRAY_ITEMS_MAX {
                return Err(RespError::ArrayTooLong(items));
            }
            if depth >= DEPTH_MAX {
                return Err(RespError::NestedTooDeep);
            }
            let mut position = after_header;
            // Bounded: at most ARRAY_ITEMS_MAX items.
            for _ in 0..items {
                match frame_length(buffer, position, depth + 1, bulk_bytes_max)? {
                    Some(next) => position = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(position))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

/// Parses a frame already checked by `frame_length` (payloads are slices of `bytes`, no copy).
fn parse(bytes: &mut Bytes) -> Option<Frame> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let header = bytes.split_to(end);
    bytes.advance(2);
    let text = &header[1..];
    Some(match header.first()? {
        b'+' => Frame::Simple(header.slice(1..)),
        b'-' => Frame::Error(header.slice(1..)),
        b':' => Frame::Integer(number(text).ok()?),
        b'$' => {
            let length = number(text).ok()?;
            if length < 0 {
                Frame::Bulk(None)
            } else {
                let data = bytes.split_to(length as usize);
                bytes.advance(2);
                Frame::Bulk(Some(data))
            }
        }
        b'*' => {
            let items = number(text).ok()?;
            if items < 0 {
                Frame::Array(None)
            } else {
                let mut frames = Vec::with_capacity(items as usize);
                for _ in 0..items {
                    frames.push(parse(bytes)?);
                }
                Frame::Array(Some(frames))
            }
        }
        _ => return None,
    })
}

/// An error reply, with the cluster redirections told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// Cluster spec: "-MOVED 3999 127.0.0.1:6381": the slot is served by another node.
    Moved {
        /// The hash slot.
        slot: u16,
        /// `host:port` of the node that serves it now.
        address: String,
    },
    /// Cluster spec: "-ASK 3999 127.0.0.1:6381": the slot is being migrated.
    Ask {
        /// The hash slot.
        slot: u16,
        /// `host:port` of the importing node.
        address: String,
    },
    /// `-CLUSTERDOWN ...`: the cluster cannot serve requests now.
    ClusterDown(String),
    /// Any other error reply.
    Other(String),
}

impl ReplyError {
    /// Reads an error line (without the `-`).
    pub fn parse(text: &[u8]) -> ReplyError {
        let text = String::from_utf8_lossy(text).into_owned();
        let mut words = text.split_whitespace();
        let redirect = |words: &mut std::str::SplitWhitespace<'_>| {
            let slot = words.next()?.parse().ok()?;
            Some((slot, words.next()?.to_string()))
        };
        match words.next() {
            Some("MOVED") => match redirect(&mut words) {
                Some((slot, address)) => ReplyError::Moved { slot, address },
                None => ReplyError::Other(text),
            },
            Some("ASK") => match redirect(&mut words) {
                Some((slot, address)) => ReplyError::Ask { slot, address },
                None => ReplyError::Other(text),
            },
            Some("CLUSTERDOWN") => ReplyError::ClusterDown(text),
            _ => ReplyError::Other(text),
        }
    }
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Moved { slot, address } => write!(formatter, "MOVED {slot} {address}"),
            ReplyError::Ask { slot, address } => write!(formatter, "ASK {slot} {address}"),
            ReplyError::ClusterDown(text) | ReplyError::Other(text) => formatter.write_str(text),
        }
    }
}

/// Which pub/sub a subscriber connection speaks: its commands and the kinds of its pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubKind {
    /// Redis Cluster sharded pub/sub (Redis 7+): SSUBSCRIBE / SUNSUBSCRIBE, `smessage` pushes.
    Sharded,
    /// Plain pub/sub on one Redis: SUBSCRIBE / UNSUBSCRIBE, `message` pushes.
    Plain,
}

impl PubSubKind {
    /// The command that subscribes channels.
    pub fn subscribe_command(self) -> &'static str {
        match self {
            PubSubKind::Sharded => "SSUBSCRIBE",
            PubSubKind::Plain => "SUBSCRIBE",
        }
    }

    /// The command that unsubscribes channels.
    pub fn unsubscribe_command(self) -> &'static str {
        match self {
            PubSubKind::Sharded => "SUNSUBSCRIBE",
            PubSubKind::Plain => "UNSUBSCRIBE",
        }
    }

    /// The push kinds of (message, subscribed, unsubscribed).
    fn push_kinds(self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        match self {
            PubSubKind::Sharded => (b"smessage", b"ssubscribe", b"sunsubscribe"),
            PubSubKind::Plain => (b"message", b"subscribe", b"unsubscribe"),
        }
    }
}

/// What a subscribed connection receives, by meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// `smessage channel payload`: a message published with SPUBLISH.
    Message {
        /// The Redis channel.
        channel: Bytes,
        /// The payload.
        payload: Bytes,
    },
    /// `ssubscribe channel count`: the channel is now subscribed on this connection.
    Subscribed(Bytes),
    /// `sunsubscribe channel count`: the channel is no longer subscribed on this connection,
    /// because we asked or because the server dropped it (its slot moved away).
    Unsubscribed(Bytes),
    /// `pong` (subscribed) or `+PONG` (not yet subscribed): the answer to PING.
    Pong,
    /// `+OK`: the answer to AUTH or SELECT (sent before anything is subscribed).
    Ok,
    /// An error reply: it answers the oldest command not answered yet.
    Error(ReplyError),
}

/// Gives a decoded frame its meaning on a subscriber connection of `kind` (a push of the other
/// kind is unexpected: a plain connection never receives `smessage`, and the other way round).
pub fn classify(frame: Frame, kind: PubSubKind) -> Result<Push, RespError> {
    let items = match frame {
        Frame::Error(text) => return Ok(Push::Error(ReplyError::parse(&text))),
        Frame::Simple(text) if text.eq_ignore_ascii_case(b"PONG") => return Ok(Push::Pong),
        Frame::Simple(text) if text.eq_ignore_ascii_case(b"OK") => return Ok(Push::Ok),
        Frame::Array(Some(items)) => items,
        other => return Err(RespError::Unexpected(format!("{other:?}"))),
    };
    let mut items = items.into_iter();
    let push_kind = match items.next() {
        Some(Frame::Bulk(Some(push_kind))) => push_kind,
        other => return Err(RespError::Unexpected(format!("array starting {other:?}"))),
    };
    let second = match items.next() {
        Some(Frame::Bulk(Some(second))) => second,
        other => return Err(RespError::Unexpected(format!("second item {other:?}"))),
    };
    let (message, subscribed, unsubscribed) = kind.push_kinds();
    match &push_kind[..] {
        name if name == message => match items.next() {
            Some(Frame::Bulk(Some(payload))) => Ok(Push::Message {
                channel: second,
                payload,
            }),
            other => Err(RespError::Unexpected(format!("message payload {other:?}"))),
        },
        name if name == subscribed => Ok(Push::Subscribed(second)),
        name if name == unsubscribed => Ok(Push::Unsubscribed(second)),
        b"pong" => Ok(Push::Pong),
        _ => Err(RespError::Unexpected(
            String::from_utf8_lossy(&push_kind).into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 1 << 20;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, RespError> {
        let mut buffer = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = decode(&mut buffer, LIMIT)? {
            frames.push(frame);
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        Ok(frames)
    }

    fn bulk(text: &str) -> Frame {
        Frame::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
    }

    #[test]
    fn spec_examples_decode() {
        // The examples of the RESP specification.
        assert_eq!(
            decode_all(b"+OK\r\n").unwrap(),
            vec![Frame::Simple("OK".into())]
        );
        assert_eq!(
            decode_all(b"-ERR unknown command 'asdf'\r\n").unwrap(),
            vec![Frame::Error("ERR unknown command 'asdf'".into())]
        );
        assert_eq!(
            decode_all(b":1000\r\n").unwrap(),
            vec![Frame::Integer(1000)]
        );
        assert_eq!(decode_all(b"$5\r\nhello\r\n").unwrap(), vec![bulk("hello")]);
        assert_eq!(decode_all(b"$0\r\n\r\n").unwrap(), vec![bulk("")]);
        assert_eq!(decode_all(b"$-1\r\n").unwrap(), vec![Frame::Bulk(None)]);
        assert_eq!(decode_all(b"*-1\r\n").unwrap(), vec![Frame::Array(None)]);
        assert_eq!(
            decode_all(b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n").unwrap(),
            vec![Frame::Array(Some(vec![bulk("hello"), bulk("world")]))]
        );
        assert_eq!(
            decode_all(b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n").unwrap(),
            vec![Frame::Array(Some(vec![
                Frame::Array(Some(vec![
                    Frame::Integer(1),
                    Frame::Integer(2),
                    Frame::Integer(3)
                ])),
                Frame::Array(Some(vec![
                    Frame::Simple("Hello".into()),
                    Frame::Error("World".into())
                ])),
            ]))]
        );
    }

    #[test]
    fn encode_matches_the_spec_example() {
        let mut out = BytesMut::new();
        encode_command(&["LLEN", "mylist"], &mut out);
        assert_eq!(&out[..], b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n");
    }

    #[test]
    fn partial_frames_consume_nothing() {
        let whole = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            let mut buffer = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut buffer, LIMIT), Ok(None), "cut at {cut}");
            assert_eq!(buffer.len(), cut);
        }
    }

    #[test]
    fn classify_subscriber_frames() {
        let frames = decode_all(
            b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n\
              *3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n\
              *3\r\n$12\r\nsunsubscribe\r\n$2\r\nch\r\n:0\r\n\
              *2\r\n$4\r\npong\r\n$0\r\n\r\n+PONG\r\n\
              -MOVED 13271 127.0.0.1:7103\r\n-ASK 1 127.0.0.1:7000\r\n\
              -CLUSTERDOWN The cluster is down\r\n-ERR x\r\n",
        )
        .unwrap();
        let pushes: Vec<Push> = frames
            .into_iter()
            .map(|f| classify(f, PubSubKind::Sharded).unwrap())
            .collect();
        assert_eq!(
            pushes,
            vec![
                Push::Subscribed("ch".into()),
                Push::Message {
                    channel: "ch".into(),
                    payload: "hi".into()
                },
                Push::Unsubscribed("ch".into()),
                Push::Pong,
                Push::Pong,
                Push::Error(ReplyError::Moved {
                    slot: 13271,
                    address: "127.0.0.1:7103".into()
                }),
                Push::Error(ReplyError::Ask {
                    slot: 1,
                    address: "127.0.0.1:7000".into()
                }),
                Push::Error(ReplyError::ClusterDown(
                    "CLUSTERDOWN The cluster is down".into()
                )),
                Push::Error(ReplyError::Other("ERR x".into())),
            ]
        );
    }

    #[test]
    fn unknown_type_is_refused() {
        assert_eq!(
            decode_all(b"!3\r\nabc\r\n"),
            Err(RespError::UnknownType(b'!'))
        );
    }

    #[test]
    fn line_without_crlf_is_refused() {
        let long = vec![b'+'; LINE_BYTES_MAX + 1];
        assert_eq!(decode_all(&long), Err(RespError::LineTooLong));
    }

    #[test]
    fn invalid_numbers_are_refused() {
        assert!(matches!(
            decode_all(b"$abc\r\n"),
            Err(RespError::InvalidNumber(_))
        ));
        assert!(matches!(
            decode_all(b":1x\r\n"),
            Err(RespError::InvalidNumber(_))
        ));
    }

    #[test]
    fn bulk_without_final_crlf_is_refused() {
        assert_eq!(decode_all(b"$2\r\nabXY"), Err(RespError::MissingCrlf));
    }

    #[test]
    fn bulk_over_the_limit_is_refused_before_it_arrives() {
        let mut buffer = BytesMut::from(&b"$2000000\r\n"[..]);
        assert_eq!(
            decode(&mut buffer, LIMIT),
            Err(RespError::BulkTooLarge {
                length: 2_000_000,
                max: LIMIT
            })
        );
    }

    #[test]
    fn long_and_deep_arrays_are_refused() {
        assert_eq!(decode_all(b"*17\r\n"), Err(RespError::ArrayTooLong(17)));
        assert_eq!(
            decode_all(b"*1\r\n*1\r\n*1\r\n:1\r\n"),
            Err(RespError::NestedTooDeep)
        );
    }

    #[test]
    fn unexpected_frames_are_refused() {
        assert!(matches!(
            classify(Frame::Integer(1), PubSubKind::Sharded),
            Err(RespError::Unexpected(_))
        ));
        // Each kind refuses the other's pushes: a plain connection never gets `smessage`.
        let message = Frame::Array(Some(vec![bulk("message"), bulk("ch"), bulk("x")]));
        assert!(matches!(
            classify(message, PubSubKind::Sharded),
            Err(RespError::Unexpected(_))
        ));
        let smessage = Frame::Array(Some(vec![bulk("smessage"), bulk("ch"), bulk("x")]));
        assert!(matches!(
            classify(smessage, PubSubKind::Plain),
            Err(RespError::Unexpected(_))
        ));
    }

    #[test]
    fn classify_plain_subscriber_frames() {
        // Redis pub/sub docs: "subscribe", "unsubscribe" and "message" pushes; `+OK` answers
        // AUTH and SELECT before anything is subscribed.
        let frames = decode_all(
            b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n\
              *3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n\
              *3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n\
              *2\r\n$4\r\npong\r\n$0\r\n\r\n-WRONGPASS invalid password\r\n",
        )
        .unwrap();
        let pushes: Vec<Push> = frames
            .into_iter()
            .map(|f| classify(f, PubSubKind::Plain).unwrap())
            .collect();
        assert_eq!(
            pushes,
            vec![
                Push::Ok,
                Push::Subscribed("ch".into()),
                Push::Message {
                    channel: "ch".into(),
                    payload: "hi".into()
                },
                Push::Unsubscribed("ch".into()),
                Push::Pong,
                Push::Error(ReplyError::Other("WRONGPASS invalid password".into())),
            ]
        );
        assert_eq!(PubSubKind::Plain.subscribe_command(), "SUBSCRIBE");
        assert_eq!(PubSubKind::Sharded.unsubscribe_command(), "SUNSUBSCRIBE");
    }

    /// The bytes Redis sends for a push `[kind, channel, third]` (third: bulk or integer).
    fn push_bytes(kind: &str, channel: &[u8], payload: Option<&[u8]>, count: i64) -> Vec<u8> {
        let mut out = BytesMut::new();
        match payload {
            Some(payload) => encode_command(&[kind.as_bytes(), channel, payload], &mut out),
            None => {
                encode_command(&[kind.as_bytes(), channel], &mut out);
                out[1] = b'3';
                out.extend_from_slice(format!(":{count}\r\n").as_bytes());
            }
        }
        out.to_vec()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_always_progress(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut buffer = BytesMut::from(&bytes[..]);
            // Bounded: every decoded frame consumes at least one byte.
            for _ in 0..bytes.len() + 1 {
                let before = buffer.len();
                match decode(&mut buffer, 64) {
                    Ok(Some(frame)) => {
                        prop_assert!(buffer.len() < before);
                        let _ = classify(frame, PubSubKind::Sharded);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn a_push_stream_split_anywhere_decodes_the_same(
            pushes in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..40), 0i64..1000),
                1..12,
            ),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut stream = Vec::new();
            for (kind, channel, payload, count) in &pushes {
                stream.extend(match kind {
                    0 => push_bytes("smessage", channel, Some(payload), 0),
                    1 => push_bytes("ssubscribe", channel, None, *count),
                    _ => push_bytes("sunsubscribe", channel, None, *count),
                });
            }
            let whole = decode_all(&stream).unwrap();
            prop_assert_eq!(whole.len(), pushes.len());
            // Two reads: frames decoded after the first read, then after the second.
            let cut = cut.index(stream.len() + 1);
            let mut buffer = BytesMut::from(&stream[..cut]);
            let mut split = Vec::new();
            while let Some(frame) = decode(&mut buffer, LIMIT).unwrap() {
                split.push(frame);
            }
            buffer.extend_from_slice(&stream[cut..]);
            while let Some(frame) = decode(&mut buffer, LIMIT).unwrap() {
                split.push(frame);
            }
            prop_assert_eq!(&split, &whole);
            for ((kind, channel, payload, _), frame) in pushes.iter().zip(whole) {
                let expected = match kind {
                    0 => Push::Message { channel: Bytes::copy_from_slice(channel), payload: Bytes::copy_from_slice(payload) },
                    1 => Push::Subscribed(Bytes::copy_from_slice(channel)),
                    _ => Push::Unsubscribed(Bytes::copy_from_slice(channel)),
                };
                prop_assert_eq!(classify(frame, PubSubKind::Sharded).unwrap(), expected);
            }
        }

        #[test]
        fn encoded_commands_decode_to_the_same_arguments(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            cut in 0usize..2048,
        ) {
            let mut out = BytesMut::new();
            encode_command(&args, &mut out);
            let whole = out.clone().freeze();
            // Split at an arbitrary boundary: the first half alone is incomplete or one frame.
            let cut = cut.min(whole.len());
            let mut buffer = BytesMut::from(&whole[..cut]);
            let early = decode(&mut buffer, LIMIT).unwrap();
            prop_assert!(early.is_none() || cut == whole.len());
            let mut buffer = BytesMut::from(&whole[..]);
            let frame = decode(&mut buffer, LIMIT).unwrap().unwrap();
            let expected = Frame::Array(Some(
                args.iter().map(|arg| Frame::Bulk(Some(Bytes::copy_from_slice(arg)))).collect(),
            ));
            prop_assert_eq!(frame, expected);
            prop_assert!(buffer.is_empty());
        }
    }
}
