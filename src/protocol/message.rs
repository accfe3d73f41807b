//! From client bytes to WebSocket events: frames are decoded, unmasked in place, and fragmented
//! messages reassembled (RFC 6455 §5.4), with UTF-8 checked fragment by fragment so an invalid
//! text message fails as soon as the offending fragment arrives (§8.1).
//!
//! Sans-IO: [`MessageDecoder::decode`] takes the bytes received so far and says how many it
//! consumed. An unfragmented message is handed out as a slice of the input (no copy); only
//! fragmented messages are copied, into a buffer bounded by the message limit.

use super::close::{ClosePayload, parse_close_payload};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode, decode_client_header};
use super::mask::apply_mask;

/// The two kinds of data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Opcode 0x1: UTF-8 text.
    Text,
    /// Opcode 0x2: arbitrary bytes.
    Binary,
}

/// Something a client did, decoded from its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete data message (reassembled if it was fragmented).
    Message {
        /// Text or binary.
        kind: DataKind,
        /// The unmasked payload; for text it is valid UTF-8.
        payload: &'a [u8],
    },
    /// A ping; RFC 6455 §5.5.2 asks for a pong with the same payload.
    Ping(&'a [u8]),
    /// A pong (an answer to our heartbeat, or unsolicited: both just prove liveness).
    Pong(&'a [u8]),
    /// The client starts or answers the closing handshake.
    Close(ClosePayload<'a>),
}

/// What one call to [`MessageDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The input does not hold a whole frame yet; nothing was consumed.
    Incomplete,
    /// A frame was consumed that completes no event (a non-final fragment).
    Fragment {
        /// Input bytes consumed.
        consumed: usize,
    },
    /// A frame was consumed and produced an event.
    Event {
        /// Input bytes consumed.
        consumed: usize,
        /// The event.
        event: Event<'a>,
    },
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Reassembly {
    kind: DataKind,
    /// Frames received so far, the first included.
    fragments: u32,
    payload: Vec<u8>,
    /// For text: the prefix of `payload` already proven valid UTF-8.
    utf8_valid_bytes: usize,
}

/// Per-connection decoding state. Small when idle: no buffer is held between messages.
#[derive(Debug)]
pub struct MessageDecoder {
    /// Largest message accepted, reassembled or not (`Limits::max_message_bytes`).
    max_message_bytes: u64,
    /// The fragmented message in progress, if any.
    reassembly: Option<Box<Reassembly>>,
    /// The last reassembled message, kept only until the next call so the event can borrow it.
    completed: Vec<u8>,
    /// Most frames in one fragmented message.
    max_fragments: u32,
}

/// Default for [`MessageDecoder::limit_fragments`] (`--max-fragments`).
pub const DEFAULT_MAX_FRAGMENTS: u32 = 1024;

impl MessageDecoder {
    /// A decoder refusing frames and messages over `max_message_bytes` with 1009.
    pub fn new(max_message_bytes: u64) -> MessageDecoder {
        MessageDecoder {
            max_message_bytes,
            reassembly: None,
            completed: Vec::new(),
            max_fragments: DEFAULT_MAX_FRAGMENTS,
        }
    }

    /// Refuses (1009) a message sent in more than `max_fragments` frames.
    pub fn limit_fragments(mut self, max_fragments: u32) -> MessageDecoder {
        self.max_fragments = max_fragments.max(1);
        self
    }

    /// No fragmented message is in progress: the decoder holds nothing and a fresh one would
    /// behave the same (so a connection may drop it between messages).
    pub fn is_idle(&self) -> bool {
        self.reassembly.is_none()
    }

    /// Bytes of reassembly buffer currently held (for memory accounting).
    pub fn buffered_bytes(&self) -> usize {
        self.reassembly.as_ref().map_or(0, |r| r.payload.capacity()) + self.completed.capacity()
    }

    /// Checks the header at the start of `input` without consuming anything: lets the caller
    /// refuse a frame (e.g. 1009) before its payload arrives, and size its buffer.
    pub fn peek_header(&self, input: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        let header = decode_client_header(input, self.max_message_bytes)?;
        if let (Some(header), Some(reassembly)) = (&header, &self.reassembly)
            && header.opcode == OpCode::Continuation
        {
            self.check_total(reassembly.payload.len() as u64 + header.payload_len)?;
        }
        Ok(header)
    }

    /// Decodes the frame at the start of `input`, unmasking its payload in place.
    pub fn decode<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Decoded<'a>, ProtocolError> {
        self.completed = Vec::new();
        let Some(header) = self.peek_header(input)? else {
            return Ok(Decoded::Incomplete);
        };
        let frame_len = header.frame_len();
        if (input.len() as u64) < frame_len {
            return Ok(Decoded::Incomplete);
        }
        let consumed = frame_len as usize;
        let payload = &mut input[header.header_len..consumed];
        apply_mask(payload, header.mask_key, 0);
        let payload: &'a [u8] = payload;

        let event = match header.opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            OpCode::Close => Event::Close(parse_close_payload(payload)?),
            OpCode::Text | OpCode::Binary => {
                if self.reassembly.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let kind = if header.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                if header.fin {
                    if kind == DataKind::Text && std::str::from_utf8(payload).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    Event::Message { kind, payload }
                } else {
                    let mut reassembly = Box::new(Reassembly {
                        kind,
                        fragments: 1,
                        payload: Vec::new(),
                        utf8_valid_bytes: 0,
                    });
                    append_fragment(&mut reassembly, payload, false)?;
                    self.reassembly = Some(reassembly);
                    return Ok(Decoded::Fragment { consumed });
                }
            }
            OpCode::Continuation => {
                let max_fragments = self.max_fragments;
                let Some(reassembly) = self.reassembly.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                reassembly.fragments += 1;
                if reassembly.fragments > max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        limit: max_fragments,
                    });
                }
                append_fragment(reassembly, payload, header.fin)?;
                if !header.fin {
                    return Ok(Decoded::Fragment { consumed });
                }
                let reassembly = self.reassembly.take().expect("checked above");
                self.completed = reassembly.payload;
                Event::Message {
                    kind: reassembly.kind,
                    payload: &self.completed,
                }
            }
        };
        Ok(Decoded::Event { consumed, event })
    }

    fn check_total(&self, total_bytes: u64) -> Result<(), ProtocolError> {
        if total_bytes > self.max_message_bytes {
            return Err(ProtocolError::MessageTooBig {
                length_bytes: total_bytes,
                limit_bytes: self.max_message_bytes,
            });
        }
        Ok(())
    }
}

/// Appends a fragment and checks the UTF-8 of text so far: an invalid sequence fails at once,
/// an incomplete one at the end is allowed until the final fragment.
fn append_fragment(
    reassembly: &mut Reassembly,
    fragment: &[u8],
    fin: bool,
) -> Result<(), ProtocolError> {
    reassembly.payload.extend_from_slice(fragment);
    if reassembly.kind == DataKind::Binary {
        return Ok(());
    }
    let unchecked = &reassembly.payload[reassembly.utf8_valid_bytes..];
    match std::str::from_utf8(unchecked) {
        Ok(_) => reassembly.utf8_valid_bytes = reassembly.payload.len(),
        Err(error) => {
            // `error_len() == None` means the input ended inside a code point: more may follow.
            if error.error_len().is_some() || fin {
                return Err(ProtocolError::InvalidUtf8);
            }
            reassembly.utf8_valid_bytes += error.valid_up_to();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::tests::client_frame;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

    /// An owned copy of an event, so tests can collect events across calls.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Message(DataKind, Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn own(event: Event<'_>) -> Owned {
        match event {
            Event::Message { kind, payload } => Owned::Message(kind, payload.to_vec()),
            Event::Ping(payload) => Owned::Ping(payload.to_vec()),
            Event::Pong(payload) => Owned::Pong(payload.to_vec()),
            Event::Close(close) => Owned::Close(close.code, close.reason.to_string()),
        }
    }

    /// Feeds `stream` to a decoder in chunks ending at `cuts`, as reads would deliver it.
    fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Vec<Owned>, ProtocolError> {
        let mut decoder = MessageDecoder::new(1 << 20);
        let mut buffer = Vec::new();
        let mut events = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&stream.len())) {
            let end = end.clamp(start, stream.len());
            buffer.extend_from_slice(&stream[start..end]);
            start = end;
            loop {
                match decoder.decode(&mut buffer)? {
                    Decoded::Incomplete => break,
                    Decoded::Fragment { consumed } => {
                        buffer.drain(..consumed);
                    }
                    Decoded::Event { consumed, event } => {
                        events.push(own(event));
                        buffer.drain(..consumed);
                    }
                }
            }
        }
        Ok(events)
    }

    fn decode_all(stream: &[u8]) -> Result<Vec<Owned>, ProtocolError> {
        decode_in_chunks(stream, &[])
    }

    #[test]
    fn rfc_5_7_fragmented_hello() {
        // RFC 6455 §5.7: "A fragmented unmasked text message" "Hel" + "lo" (masked here).
        let mut stream = client_frame(false, 0x1, KEY, b"Hel");
        stream.extend(client_frame(true, 0x0, KEY, b"lo"));
        assert_eq!(
            decode_all(&stream).unwrap(),
            vec![Owned::Message(DataKind::Text, b"Hello".to_vec())]
        );
    }

    #[test]
    fn control_frames_may_interleave_fragments() {
        let mut stream = client_frame(false, 0x2, KEY, b"ab");
        stream.extend(client_frame(true, 0x9, KEY, b"p"));
        stream.extend(client_frame(true, 0x0, KEY, b"cd"));
        assert_eq!(
            decode_all(&stream).unwrap(),
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::Message(DataKind::Binary, b"abcd".to_vec())
            ]
        );
    }

    #[test]
    fn more_fragments_than_the_limit_fail_with_1009() {
        let mut stream = client_frame(false, 0x1, KEY, b"a");
        for _ in 0..2 {
            stream.extend(client_frame(false, 0x0, KEY, b""));
        }
        let mut decoder = MessageDecoder::new(1 << 20).limit_fragments(3);
        let mut buffer = stream.clone();
        let mut offset = 0;
        for _ in 0..3 {
            match decoder.decode(&mut buffer[offset..]).unwrap() {
                Decoded::Fragment { consumed } => offset += consumed,
                other => panic!("{other:?}"),
            }
        }
        let mut more = client_frame(false, 0x0, KEY, b"");
        let error = decoder.decode(&mut more).unwrap_err();
        assert_eq!(error, ProtocolError::TooManyFragments { limit: 3 });
        assert_eq!(error.close_code(), 1009);
        // Exactly at the limit, a final fragment completes the message.
        let mut decoder = MessageDecoder::new(1 << 20).limit_fragments(2);
        let mut stream = client_frame(false, 0x1, KEY, b"a");
        stream.extend(client_frame(true, 0x0, KEY, b"b"));
        assert!(matches!(
            decoder.decode(&mut stream).unwrap(),
            Decoded::Fragment { .. }
        ));
    }

    #[test]
    fn continuation_without_start_is_refused() {
        let stream = client_frame(true, 0x0, KEY, b"x");
        assert_eq!(
            decode_all(&stream),
            Err(ProtocolError::UnexpectedContinuation)
        );
    }

    #[test]
    fn new_message_inside_fragmented_one_is_refused() {
        let mut stream = client_frame(false, 0x1, KEY, b"a");
        stream.extend(client_frame(true, 0x1, KEY, b"b"));
        assert_eq!(
            decode_all(&stream),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn invalid_utf8_fails_in_the_first_bad_fragment() {
        // "κόσμε" then an invalid sequence (0xed 0xa0 0x80 is a UTF-16 surrogate) then more.
        let mut stream = client_frame(
            false,
            0x1,
            KEY,
            "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes(),
        );
        stream.extend(client_frame(false, 0x0, KEY, &[0xed, 0xa0, 0x80]));
        let cut = stream.len();
        stream.extend(client_frame(true, 0x0, KEY, b"tail"));
        // Fails with only the first two fragments in hand.
        assert_eq!(decode_all(&stream[..cut]), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn code_point_split_across_fragments_is_valid() {
        let bytes = "€".as_bytes();
        let mut stream = client_frame(false, 0x1, KEY, &bytes[..1]);
        stream.extend(client_frame(false, 0x0, KEY, &bytes[1..2]));
        stream.extend(client_frame(true, 0x0, KEY, &bytes[2..]));
        assert_eq!(
            decode_all(&stream).unwrap(),
            vec![Owned::Message(DataKind::Text, bytes.to_vec())]
        );
    }

    #[test]
    fn truncated_code_point_at_the_end_is_invalid() {
        let bytes = "€".as_bytes();
        let mut stream = client_frame(false, 0x1, KEY, &bytes[..1]);
        stream.extend(client_frame(true, 0x0, KEY, &bytes[1..2]));
        assert_eq!(decode_all(&stream), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn unfragmented_invalid_text_is_refused() {
        let stream = client_frame(true, 0x1, KEY, &[0xff]);
        assert_eq!(decode_all(&stream), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn reassembled_size_is_limited() {
        let mut decoder = MessageDecoder::new(4);
        let mut first = client_frame(false, 0x2, KEY, b"abc");
        assert!(matches!(
            decoder.decode(&mut first),
            Ok(Decoded::Fragment { .. })
        ));
        let mut second = client_frame(true, 0x0, KEY, b"de");
        assert_eq!(
            decoder.decode(&mut second),
            Err(ProtocolError::MessageTooBig {
                length_bytes: 5,
                limit_bytes: 4
            })
        );
    }

    #[test]
    fn close_payload_is_validated() {
        let stream = client_frame(true, 0x8, KEY, &[0x03, 0xed]);
        assert_eq!(
            decode_all(&stream),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        let stream = client_frame(true, 0x8, KEY, &[0x03, 0xe8, b'o', b'k']);
        assert_eq!(
            decode_all(&stream).unwrap(),
            vec![Owned::Close(Some(1000), "ok".into())]
        );
    }

    /// A stream of arbitrary valid client frames, as (fin, opcode, payload) triples that form
    /// well-nested messages.
    fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
        let message = (
            any::<bool>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..4),
            0u8..3,
        );
        proptest::collection::vec(message, 0..6).prop_map(|messages| {
            let mut stream = Vec::new();
            for (binary, fragments, control) in messages {
                let count = fragments.len();
                for (index, fragment) in fragments.iter().enumerate() {
                    let opcode = match (index, binary) {
                        (0, true) => 0x2,
                        (0, false) => 0x1,
                        _ => 0x0,
                    };
                    let payload: Vec<u8> = if binary {
                        fragment.clone()
                    } else {
                        fragment.iter().map(|b| b'a' + b % 26).collect()
                    };
                    stream.extend(client_frame(index + 1 == count, opcode, KEY, &payload));
                    if control == 1 {
                        stream.extend(client_frame(true, 0x9, KEY, b"hb"));
                    }
                }
                if control == 2 {
                    stream.extend(client_frame(true, 0xA, KEY, &[]));
                }
            }
            stream
        })
    }

    proptest! {
        #[test]
        fn split_at_every_boundary_decodes_the_same(stream in valid_stream()) {
            let whole = decode_all(&stream).unwrap();
            for cut in 0..=stream.len() {
                prop_assert_eq!(&decode_in_chunks(&stream, &[cut]).unwrap(), &whole);
            }
        }

        #[test]
        fn random_chunking_decodes_the_same(
            stream in valid_stream(),
            cuts in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(decode_in_chunks(&stream, &cuts).unwrap(), decode_all(&stream).unwrap());
        }

        #[test]
        fn encode_then_decode_is_identity(
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            key in any::<[u8; 4]>(),
        ) {
            let mut frame = client_frame(true, 0x2, key, &payload);
            let consumed_expected = frame.len();
            let mut decoder = MessageDecoder::new(1 << 20);
            let decoded = decoder.decode(&mut frame).unwrap();
            match decoded {
                Decoded::Event { consumed, event: Event::Message { kind, payload: got } } => {
                    prop_assert_eq!(consumed, consumed_expected);
                    prop_assert_eq!(kind, DataKind::Binary);
                    prop_assert_eq!(got, &payload[..]);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&bytes);
        }
    }
}
