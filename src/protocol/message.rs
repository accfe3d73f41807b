//! From client bytes to WebSocket events: frames are decoded, unmasked in place, and fragmented
//! messages reassembled (RFC 6455 §5.4), with UTF-8 checked fragment by fragment so an invalid
//! text message fails as soon as the offending fragment arrives (§8.1).
//!
//! Where permessage-deflate was negotiated ([`MessageDecoder::with_compression`]), a message
//! whose first frame has RSV1 set is inflated frame by frame as it arrives (RFC 7692 §7.2.2),
//! its inflated size checked against the limit while inflating and its UTF-8 checked on the
//! inflated bytes; the event carries the inflated message, so callers never see compression.
//! The inflater is created on the first compressed frame, not before (an idle connection pays
//! nothing for the extension), and dropped after each message when the client's context is
//! reset.
//!
//! Sans-IO: [`MessageDecoder::decode`] takes the bytes received so far and says how many it
//! consumed. An unfragmented uncompressed message is handed out as a slice of the input (no
//! copy); fragmented and compressed messages are built in a buffer bounded by the message limit.

use super::close::{ClosePayload, parse_close_payload};
use super::deflate::{ContextTakeover, InboundCompression, Inflater};
use super::error::ProtocolError;
use super::frame::{FrameHeader, MessageCompression, OpCode, Rsv1, decode_client_header_with};
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
    /// A complete data message (reassembled if it was fragmented, inflated if compressed).
    Message {
        /// Text or binary.
        kind: DataKind,
        /// The unmasked (and inflated) payload; for text it is valid UTF-8.
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

/// Where a message built in a buffer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// More frames are expected.
    Receiving,
    /// The message is complete and lent to the last event; dropped on the next call.
    Complete,
}

/// A message built in a buffer: fragmented, compressed, or both.
#[derive(Debug)]
struct Reassembly {
    /// Text or binary (from the first frame).
    kind: DataKind,
    /// RSV1 of the first frame.
    compression: MessageCompression,
    /// Received or complete.
    phase: Phase,
    /// The message so far (inflated, if compressed).
    payload: Vec<u8>,
    /// For text: the prefix of `payload` already proven valid UTF-8.
    utf8_valid_bytes: usize,
    /// Payload bytes received on the wire so far (compressed, if compressed).
    wire_bytes: u64,
    /// Frames received so far, the first included.
    fragments: u32,
}

/// Per-connection decoding state. Small when idle: no buffer and no inflater is held between
/// messages (an inflater stays only for a client that keeps its compression context, once it
/// has sent a compressed message).
#[derive(Debug)]
pub struct MessageDecoder {
    /// Largest message accepted, reassembled, inflated or not (`Limits::max_message_bytes`).
    max_message_bytes: u64,
    /// The message being built, or the last one completed (kept only until the next call so
    /// the event can borrow it).
    message: Option<Box<Reassembly>>,
    /// The inflater, created by the first compressed frame.
    inflater: Option<Box<Inflater>>,
    /// Whether permessage-deflate was negotiated, and the client's context rule.
    compression: InboundCompression,
    /// Most frames in one fragmented message.
    max_fragments: u32,
}

/// Default for [`MessageDecoder::limit_fragments`] (`--max-fragments`).
pub const DEFAULT_MAX_FRAGMENTS: u32 = 1024;

impl MessageDecoder {
    /// A decoder refusing frames and messages over `max_message_bytes` with 1009, on a
    /// connection without extensions (any RSV bit is a protocol error).
    pub fn new(max_message_bytes: u64) -> MessageDecoder {
        MessageDecoder::with_compression(max_message_bytes, InboundCompression::Off)
    }

    /// A decoder for a connection that negotiated `compression` (`Negotiated::inbound`).
    pub fn with_compression(
        max_message_bytes: u64,
        compression: InboundCompression,
    ) -> MessageDecoder {
        MessageDecoder {
            max_message_bytes,
            message: None,
            inflater: None,
            compression,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
        }
    }

    /// Refuses (1009) a message sent in more than `max_fragments` frames.
    pub fn limit_fragments(mut self, max_fragments: u32) -> MessageDecoder {
        self.max_fragments = max_fragments.max(1);
        self
    }

    /// No message is in progress and no inflater context is kept: a fresh decoder would
    /// behave the same (so a connection may drop it between messages).
    pub fn is_idle(&self) -> bool {
        let in_progress = self
            .message
            .as_ref()
            .is_some_and(|message| message.phase == Phase::Receiving);
        !in_progress && self.inflater.is_none()
    }

    /// Bytes of message buffer currently held (for memory accounting); an inflater, when held
    /// ([`MessageDecoder::holds_inflater`]), adds about 47 KB that this does not count.
    pub fn buffered_bytes(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.payload.capacity())
    }

    /// Is an inflater allocated (a compressed message is being received, or the client keeps
    /// its context and has sent one)?
    pub fn holds_inflater(&self) -> bool {
        self.inflater.is_some()
    }

    /// Checks the header at the start of `input` without consuming anything: lets the caller
    /// refuse a frame (e.g. 1009) before its payload arrives, and size its buffer.
    pub fn peek_header(&self, input: &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        let rsv1 = match self.compression {
            InboundCompression::Off => Rsv1::Reserved,
            InboundCompression::Deflate(_) => Rsv1::PerMessageCompressed,
        };
        let header = decode_client_header_with(input, self.max_message_bytes, rsv1)?;
        if let (Some(header), Some(message)) = (&header, &self.message)
            && message.phase == Phase::Receiving
            && header.opcode == OpCode::Continuation
        {
            // The wire size of a message is limited like its (inflated) size.
            self.check_total(message.wire_bytes + header.payload_len)?;
        }
        Ok(header)
    }

    /// Decodes the frame at the start of `input`, unmasking its payload in place.
    pub fn decode<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Decoded<'a>, ProtocolError> {
        if self
            .message
            .as_ref()
            .is_some_and(|message| message.phase == Phase::Complete)
        {
            self.message = None;
        }
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
                if self.message.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                let kind = if header.opcode == OpCode::Text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                if header.fin && header.compression == MessageCompression::Uncompressed {
                    if kind == DataKind::Text && std::str::from_utf8(payload).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    Event::Message { kind, payload }
                } else {
                    self.message = Some(Box::new(Reassembly {
                        kind,
                        compression: header.compression,
                        phase: Phase::Receiving,
                        payload: Vec::new(),
                        utf8_valid_bytes: 0,
                        wire_bytes: 0,
                        fragments: 0,
                    }));
                    return self.continue_message(payload, header.fin, consumed);
                }
            }
            OpCode::Continuation => {
                if self.message.is_none() {
                    return Err(ProtocolError::UnexpectedContinuation);
                }
                return self.continue_message(payload, header.fin, consumed);
            }
        };
        Ok(Decoded::Event { consumed, event })
    }

    /// Adds a frame's payload to the message being built (inflating it if compressed); on the
    /// final frame, completes the message and lends it to the event.
    fn continue_message(
        &mut self,
        fragment: &[u8],
        fin: bool,
        consumed: usize,
    ) -> Result<Decoded<'_>, ProtocolError> {
        let max_message_bytes = self.max_message_bytes;
        let max_fragments = self.max_fragments;
        let message = self.message.as_mut().expect("the caller checked or set it");
        // RFC 6455 §10.4: "implementations SHOULD impose a limit on frame sizes and the total
        // message size after reassembly from multiple frames": the number of frames too, or
        // empty continuation frames would cost nothing against the size limit.
        message.fragments += 1;
        if message.fragments > max_fragments {
            return Err(ProtocolError::TooManyFragments {
                limit: max_fragments,
            });
        }
        message.wire_bytes += fragment.len() as u64;
        match message.compression {
            MessageCompression::Uncompressed => message.payload.extend_from_slice(fragment),
            MessageCompression::Compressed => {
                let inflater = self.inflater.get_or_insert_with(Box::default);
                inflater.inflate(fragment, &mut message.payload, max_message_bytes)?;
                if fin {
                    inflater.finish_message(&mut message.payload, max_message_bytes)?;
                    if self.compression == InboundCompression::Deflate(ContextTakeover::Reset) {
                        self.inflater = None;
                    }
                }
            }
        }
        check_utf8(message, fin)?;
        if !fin {
            return Ok(Decoded::Fragment { consumed });
        }
        message.phase = Phase::Complete;
        Ok(Decoded::Event {
            consumed,
            event: Event::Message {
                kind: message.kind,
                payload: &message.payload,
            },
        })
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

/// Checks the UTF-8 of the text added so far: an invalid sequence fails at once, an incomplete
/// one at the end is allowed until the final fragment.
fn check_utf8(message: &mut Reassembly, fin: bool) -> Result<(), ProtocolError> {
    if message.kind == DataKind::Binary {
        return Ok(());
    }
    let unchecked = &message.payload[message.utf8_valid_bytes..];
    match std::str::from_utf8(unchecked) {
        Ok(_) => message.utf8_valid_bytes = message.payload.len(),
        Err(error) => {
            // `error_len() == None` means the input ended inside a code point: more may follow.
            if error.error_len().is_some() || fin {
                return Err(ProtocolError::InvalidUtf8);
            }
            message.utf8_valid_bytes += error.valid_up_to();
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
        let mut decoder = MessageDecoder::new(1 << 20).limit_fragments(3);
        let mut frames = vec![client_frame(false, 0x1, KEY, b"a")];
        for _ in 0..2 {
            frames.push(client_frame(false, 0x0, KEY, b""));
        }
        for frame in &mut frames {
            assert!(matches!(
                decoder.decode(frame).unwrap(),
                Decoded::Fragment { .. }
            ));
        }
        let mut more = client_frame(false, 0x0, KEY, b"");
        let error = decoder.decode(&mut more).unwrap_err();
        assert_eq!(error, ProtocolError::TooManyFragments { limit: 3 });
        assert_eq!(error.close_code(), 1009);
        // Exactly at the limit, a final fragment completes the message.
        let mut decoder = MessageDecoder::new(1 << 20).limit_fragments(2);
        let mut first = client_frame(false, 0x1, KEY, b"a");
        assert!(!matches!(
            decoder.decode(&mut first).unwrap(),
            Decoded::Event { .. }
        ));
        assert!(!decoder.is_idle());
        let mut last = client_frame(true, 0x0, KEY, b"b");
        assert!(matches!(
            decoder.decode(&mut last).unwrap(),
            Decoded::Event { .. }
        ));
        assert!(decoder.is_idle(), "a completed message is not in progress");
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

    mod compressed {
        use super::*;
        use crate::protocol::deflate::{CompressionLevel, MessageCompressor};
        use crate::protocol::frame::encode_client_frame;

        /// RFC 7692 §7.2.3.1: "Hello" compressed.
        const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        const RESET: InboundCompression = InboundCompression::Deflate(ContextTakeover::Reset);
        const KEPT: InboundCompression = InboundCompression::Deflate(ContextTakeover::Kept);

        /// Decodes `stream` to the end with a decoder for `compression`.
        fn decode_with(
            decoder: &mut MessageDecoder,
            stream: &[u8],
        ) -> Result<Vec<Owned>, ProtocolError> {
            let mut buffer = stream.to_vec();
            let mut events = Vec::new();
            // Bounded: each pass consumes a frame or stops.
            loop {
                match decoder.decode(&mut buffer)? {
                    Decoded::Incomplete => return Ok(events),
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

        fn hello() -> Vec<Owned> {
            vec![Owned::Message(DataKind::Text, b"Hello".to_vec())]
        }

        #[test]
        fn rfc_7692_7_2_3_1_hello_single_and_fragmented() {
            let mut decoder = MessageDecoder::with_compression(1024, RESET);
            let single = encode_client_frame(0xC1, KEY, &HELLO);
            assert_eq!(decode_with(&mut decoder, &single).unwrap(), hello());
            assert!(!decoder.holds_inflater(), "dropped after the message");
            // "0x41 0x03 0xf2 0x48 0xcd" then "0x80 0x04 0xc9 0xc9 0x07 0x00".
            let mut fragmented = encode_client_frame(0x41, KEY, &HELLO[..3]);
            fragmented.extend(encode_client_frame(0x89, KEY, b"between"));
            fragmented.extend(encode_client_frame(0x80, KEY, &HELLO[3..]));
            assert_eq!(
                decode_with(&mut decoder, &fragmented).unwrap(),
                vec![
                    Owned::Ping(b"between".to_vec()),
                    Owned::Message(DataKind::Text, b"Hello".to_vec())
                ]
            );
            // Uncompressed messages still pass as they are.
            let plain = client_frame(true, 0x1, KEY, b"Hello");
            assert_eq!(decode_with(&mut decoder, &plain).unwrap(), hello());
        }

        #[test]
        fn rfc_7692_7_2_3_2_context_is_kept_only_when_negotiated() {
            let mut stream = encode_client_frame(0xC1, KEY, &HELLO);
            stream.extend(encode_client_frame(
                0xC1,
                KEY,
                &[0xf2, 0x00, 0x11, 0x00, 0x00],
            ));
            let mut kept = MessageDecoder::with_compression(1024, KEPT);
            assert!(
                !kept.holds_inflater(),
                "nothing before the first compressed frame"
            );
            let mut twice = hello();
            twice.extend(hello());
            assert_eq!(decode_with(&mut kept, &stream).unwrap(), twice);
            assert!(kept.holds_inflater(), "the window is the client's context");
            let mut reset = MessageDecoder::with_compression(1024, RESET);
            assert_eq!(
                decode_with(&mut reset, &stream),
                Err(ProtocolError::InvalidCompressedData)
            );
        }

        #[test]
        fn rfc_7692_7_2_3_3_and_4_stored_and_final_blocks() {
            let mut decoder = MessageDecoder::with_compression(1024, KEPT);
            let stored = [
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ];
            let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
            for payload in [&stored[..], &bfinal, &bfinal, &stored] {
                let frame = encode_client_frame(0xC2, KEY, payload);
                assert_eq!(
                    decode_with(&mut decoder, &frame).unwrap(),
                    vec![Owned::Message(DataKind::Binary, b"Hello".to_vec())]
                );
            }
        }

        #[test]
        fn compressed_control_frames_and_continuations_are_protocol_errors() {
            let mut decoder = MessageDecoder::with_compression(1024, RESET);
            let ping = encode_client_frame(0xC9, KEY, b"");
            assert_eq!(
                decode_with(&mut decoder, &ping),
                Err(ProtocolError::CompressedControlFrame)
            );
            let close = encode_client_frame(0xC8, KEY, &[0x03, 0xe8]);
            let error = decode_with(&mut decoder, &close).unwrap_err();
            assert_eq!(
                (error.clone(), error.close_code()),
                (ProtocolError::CompressedControlFrame, 1002)
            );
            let mut stream = encode_client_frame(0x41, KEY, &HELLO[..3]);
            stream.extend(encode_client_frame(0xC0, KEY, &HELLO[3..]));
            let mut decoder = MessageDecoder::with_compression(1024, RESET);
            assert_eq!(
                decode_with(&mut decoder, &stream),
                Err(ProtocolError::CompressedContinuation)
            );
        }

        #[test]
        fn rsv1_without_negotiation_is_refused_as_before() {
            let frame = encode_client_frame(0xC1, KEY, &HELLO);
            assert_eq!(
                decode_with(&mut MessageDecoder::new(1024), &frame),
                Err(ProtocolError::ReservedBitsSet)
            );
        }

        #[test]
        fn utf8_is_checked_on_the_inflated_text() {
            // A stored block holding the single byte 0xff, then the empty block's header.
            let payload = [0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x00];
            let mut decoder = MessageDecoder::with_compression(1024, RESET);
            assert_eq!(
                decode_with(&mut decoder, &encode_client_frame(0xC1, KEY, &payload)),
                Err(ProtocolError::InvalidUtf8)
            );
            let mut decoder = MessageDecoder::with_compression(1024, RESET);
            let binary = decode_with(&mut decoder, &encode_client_frame(0xC2, KEY, &payload));
            assert_eq!(
                binary.unwrap(),
                vec![Owned::Message(DataKind::Binary, vec![0xff])]
            );
        }

        #[test]
        fn zip_bomb_gets_1009_with_bounded_buffers() {
            let mut compressor = MessageCompressor::new(CompressionLevel::SMALLEST);
            let bomb = compressor.compress_message(&vec![0u8; 10 << 20]).unwrap();
            let limit_bytes = 64 << 10;
            let mut decoder = MessageDecoder::with_compression(limit_bytes, RESET);
            let mut buffer = encode_client_frame(0x42, KEY, &bomb[..bomb.len() / 2]);
            // The first half alone inflates to more than the limit.
            let error = decoder.decode(&mut buffer).unwrap_err();
            assert_eq!(error.close_code(), 1009);
            // Fed in small fragments, the buffer never passes the limit before the error.
            let mut decoder = MessageDecoder::with_compression(limit_bytes, RESET);
            let mut chunks = bomb.chunks(64);
            let mut first = encode_client_frame(0x42, KEY, chunks.next().unwrap());
            assert!(matches!(
                decoder.decode(&mut first),
                Ok(Decoded::Fragment { .. })
            ));
            let error = chunks
                .try_for_each(|chunk| {
                    let mut frame = encode_client_frame(0x00, KEY, chunk);
                    decoder.decode(&mut frame).map(|_| ())?;
                    assert!(decoder.buffered_bytes() as u64 <= limit_bytes + 1);
                    Ok::<(), ProtocolError>(())
                })
                .unwrap_err();
            assert_eq!(
                error,
                ProtocolError::MessageTooBig {
                    length_bytes: limit_bytes + 1,
                    limit_bytes
                }
            );
        }

        #[test]
        fn the_wire_size_of_a_compressed_message_is_limited_too() {
            let mut decoder = MessageDecoder::with_compression(10, RESET);
            let mut first = encode_client_frame(0x42, KEY, &[0x00, 0x05, 0x00, 0xfa, 0xff, 1]);
            assert!(matches!(
                decoder.decode(&mut first),
                Ok(Decoded::Fragment { .. })
            ));
            let next = encode_client_frame(0x00, KEY, &[2, 3, 4, 5, 0x00]);
            assert_eq!(
                decoder.peek_header(&next),
                Err(ProtocolError::MessageTooBig {
                    length_bytes: 11,
                    limit_bytes: 10
                })
            );
        }

        #[test]
        fn idle_decoder_costs_the_same_with_the_extension() {
            // The extension adds no field an idle connection pays for beyond the enum and the
            // empty `Option<Box<Inflater>>`, which every decoder has: 32 bytes, was 40.
            assert!(std::mem::size_of::<MessageDecoder>() <= 32);
            let decoder = MessageDecoder::with_compression(1 << 20, KEPT);
            assert_eq!(decoder.buffered_bytes(), 0);
            assert!(!decoder.holds_inflater());
        }

        proptest! {
            #[test]
            fn compressed_messages_decode_to_what_was_sent(
                message in proptest::collection::vec(any::<u8>(), 0..3000),
                alphabet in 1u8..=255,
                pieces in 1usize..5,
                key in any::<[u8; 4]>(),
                kept in any::<bool>(),
            ) {
                let message: Vec<u8> = message.iter().map(|byte| byte % alphabet).collect();
                let mut compressor = MessageCompressor::new(CompressionLevel::FASTEST);
                let Some(payload) = compressor.compress_message(&message) else {
                    return Ok(());
                };
                let piece_bytes = payload.len().div_ceil(pieces).max(1);
                let mut stream = Vec::new();
                let chunks: Vec<&[u8]> = payload.chunks(piece_bytes).collect();
                for (index, chunk) in chunks.iter().enumerate() {
                    let fin = if index + 1 == chunks.len() { 0x80 } else { 0 };
                    let first_bits = if index == 0 { 0x42 } else { 0x00 };
                    stream.extend(encode_client_frame(fin | first_bits, key, chunk));
                }
                let compression = if kept { KEPT } else { RESET };
                let mut decoder = MessageDecoder::with_compression(1 << 20, compression);
                // Twice: a kept context must not disturb the next message.
                stream.extend_from_slice(&stream.clone());
                let events = decode_with(&mut decoder, &stream).unwrap();
                let expected = Owned::Message(DataKind::Binary, message);
                prop_assert_eq!(events, vec![expected.clone(), expected]);
            }
        }
    }
}
