//! Target `frames_stream`: arbitrary bytes as what a client sends after the handshake, fed to a
//! `MessageDecoder` the way a connection does (keep the unconsumed bytes, append the next read,
//! decode until incomplete), in three splittings: all at once, in the chunks the input names,
//! and one byte at a time.
//!
//! Properties: nothing panics; the three splittings give the same events, fragments, first
//! error and leftover bytes; `decode` agrees with `peek_header` on the same bytes; every complete
//! frame decodes to what a plain model of §5.4 reassembly and §8.1 UTF-8 validation (whole
//! messages, reference unmasking) says, error included; text messages are valid UTF-8; no
//! message exceeds the limit and no control payload exceeds 125 bytes (§5.5); a received close
//! carries a legal code and a UTF-8 reason (§7.4, §5.5.1).
//! Input layout: message limit (u16; `u16::MAX` means unlimited, `u64::MAX`), chunk count (u8,
//! mod 16), that many chunk lengths (u8 each), then the stream. Bytes past the last chunk form
//! one final chunk.

use ringcast::protocol::close::{is_valid_received_code, parse_close_payload};
use ringcast::protocol::error::ProtocolError;
use ringcast::protocol::frame::{FrameHeader, MAX_CONTROL_PAYLOAD_BYTES, OpCode};
use ringcast::protocol::mask::apply_mask_reference;
use ringcast::protocol::message::{DataKind, Decoded, Event, MessageDecoder};

use super::input::Reader;

/// Most chunks an input can name.
pub const MAX_CHUNKS: usize = 16;

/// One decoded `frames_stream` input.
#[derive(Debug)]
pub struct FramesInput<'a> {
    /// `MessageDecoder::new`'s limit.
    pub max_message_bytes: u64,
    /// Lengths of the reads that deliver the stream (the rest arrives in one last read).
    pub chunk_lengths: Vec<usize>,
    /// The client's bytes.
    pub stream: &'a [u8],
}

impl<'a> FramesInput<'a> {
    /// Decodes the layout described in the module header.
    pub fn decode(data: &'a [u8]) -> FramesInput<'a> {
        let mut reader = Reader::new(data);
        let max_message_bytes = match reader.u16() {
            u16::MAX => u64::MAX,
            limit => u64::from(limit),
        };
        let chunk_count = usize::from(reader.u8()) % MAX_CHUNKS;
        let chunk_lengths = (0..chunk_count).map(|_| usize::from(reader.u8())).collect();
        FramesInput {
            max_message_bytes,
            chunk_lengths,
            stream: reader.rest(),
        }
    }

    /// The inverse of [`FramesInput::decode`], for seeds.
    pub fn encode(max_message_bytes: u16, chunk_lengths: &[u8], stream: &[u8]) -> Vec<u8> {
        assert!(
            chunk_lengths.len() < MAX_CHUNKS,
            "seed with too many chunks"
        );
        let mut data = max_message_bytes.to_le_bytes().to_vec();
        data.push(chunk_lengths.len() as u8);
        data.extend_from_slice(chunk_lengths);
        data.extend_from_slice(stream);
        data
    }
}

/// An owned copy of what one `decode` call produced, so splittings can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A non-final fragment of this many bytes (header included) was consumed.
    Fragment(usize),
    /// A complete data message.
    Message(DataKind, Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close: code and reason.
    Close(Option<u16>, String),
}

/// Everything a splitting of the stream produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every step, in order, up to the first error.
    pub steps: Vec<Step>,
    /// The first error, or the bytes left unconsumed at the end of the stream.
    pub end: Result<usize, ProtocolError>,
}

/// Checks every `frames_stream` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let input = FramesInput::decode(data);
    let stream = input.stream;
    let whole = decode_in_reads(stream, input.max_message_bytes, std::iter::empty());
    let chunk_ends = input.chunk_lengths.iter().scan(0, |end, length| {
        *end += length;
        Some(*end)
    });
    let chunked = decode_in_reads(stream, input.max_message_bytes, chunk_ends);
    assert_eq!(
        chunked, whole,
        "reads of {:?} bytes decode differently from one read",
        input.chunk_lengths
    );
    let byte_by_byte = decode_in_reads(stream, input.max_message_bytes, 1..stream.len());
    assert_eq!(
        byte_by_byte, whole,
        "one byte per read decodes differently from one read"
    );
}

/// Feeds `stream` to a fresh decoder in reads ending at `read_ends` (clamped, then the rest).
pub fn decode_in_reads(
    stream: &[u8],
    max_message_bytes: u64,
    read_ends: impl Iterator<Item = usize>,
) -> Outcome {
    let mut connection = Connection::new(max_message_bytes);
    let mut start = 0;
    for end in read_ends.chain(std::iter::once(stream.len())) {
        let end = end.clamp(start, stream.len());
        connection.buffer.extend_from_slice(&stream[start..end]);
        start = end;
        if let Err(error) = connection.decode_buffered() {
            return Outcome {
                steps: connection.steps,
                end: Err(error),
            };
        }
    }
    Outcome {
        steps: connection.steps,
        end: Ok(connection.buffer.len()),
    }
}

/// One connection's read side: the decoder under test, its input buffer, and a model of the
/// message layer (RFC 6455 §5.4 reassembly, §8.1 UTF-8) written the plain way, whole messages
/// at a time, that every decoded frame is held against.
struct Connection {
    /// The decoder under test.
    decoder: MessageDecoder,
    /// Its limit.
    max_message_bytes: u64,
    /// Bytes received and not consumed yet.
    buffer: Vec<u8>,
    /// What the decoder produced so far.
    steps: Vec<Step>,
    /// The model's fragmented message in progress: its kind and every payload byte so far.
    message_in_progress: Option<(DataKind, Vec<u8>)>,
}

impl Connection {
    fn new(max_message_bytes: u64) -> Connection {
        Connection {
            decoder: MessageDecoder::new(max_message_bytes),
            max_message_bytes,
            buffer: Vec::new(),
            steps: Vec::new(),
            message_in_progress: None,
        }
    }

    /// Decodes every complete frame at the start of the buffer, removing what was consumed, the
    /// way a connection's read loop does.
    fn decode_buffered(&mut self) -> Result<(), ProtocolError> {
        // Bounded: every round consumes a frame of at least 6 bytes or returns.
        loop {
            let buffered = self.buffer.len();
            let peeked = self.decoder.peek_header(&self.buffer);
            // The model's answer, computed before `decode` unmasks the payload in place.
            let expected = match &peeked {
                Ok(Some(header)) if header.frame_len() <= buffered as u64 => {
                    Some(self.expected_step(header))
                }
                _ => None,
            };
            let decoded = match self.decoder.decode(&mut self.buffer) {
                Ok(Decoded::Incomplete) => None,
                Ok(Decoded::Fragment { consumed }) => {
                    Some(Ok((consumed, Step::Fragment(consumed))))
                }
                Ok(Decoded::Event { consumed, event }) => {
                    Some(Ok((consumed, owned_step(event, self.max_message_bytes))))
                }
                Err(error) => Some(Err(error)),
            };
            let Some(decoded) = decoded else {
                match &peeked {
                    Ok(None) => {}
                    Ok(Some(header)) => assert!(
                        header.frame_len() > buffered as u64,
                        "incomplete with the whole {header:?} in {buffered} bytes"
                    ),
                    Err(error) => panic!("peek_header failed with {error:?}, decode did not"),
                }
                return Ok(());
            };
            if let Err(peek_error) = &peeked {
                assert_eq!(
                    decoded.as_ref().err(),
                    Some(peek_error),
                    "decode and peek_header disagree"
                );
            }
            if let Some(expected) = expected {
                let got = decoded.as_ref().map(|(_, step)| step);
                assert_eq!(got, expected.as_ref(), "decoder and message model disagree");
            }
            let (consumed, step) = decoded?;
            match &peeked {
                Ok(Some(header)) => assert_eq!(
                    header.frame_len(),
                    consumed as u64,
                    "decode consumed another length than peek_header announced"
                ),
                other => panic!("decode consumed {consumed} bytes, peek_header said {other:?}"),
            }
            self.steps.push(step);
            self.buffer.drain(..consumed);
        }
    }

    /// What the complete frame at the start of the buffer must decode to, by the RFC.
    fn expected_step(&mut self, header: &FrameHeader) -> Result<Step, ProtocolError> {
        let frame_len = header.frame_len() as usize;
        let mut payload = self.buffer[header.header_len..frame_len].to_vec();
        // The reference mask: the fast one is held against it by the `mask` target.
        apply_mask_reference(&mut payload, header.mask_key, 0);
        let kind = match header.opcode {
            OpCode::Ping => return Ok(Step::Ping(payload)),
            OpCode::Pong => return Ok(Step::Pong(payload)),
            OpCode::Close => {
                // Close payload rules are the `close_payload` target's business.
                return parse_close_payload(&payload)
                    .map(|close| Step::Close(close.code, close.reason.to_string()));
            }
            OpCode::Text => DataKind::Text,
            OpCode::Binary => DataKind::Binary,
            OpCode::Continuation => {
                // §5.4: a continuation continues the message in progress, if there is one.
                let Some((kind, mut message)) = self.message_in_progress.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                message.extend_from_slice(&payload);
                return self.continue_message(kind, message, header.fin, frame_len);
            }
        };
        // §5.4: "fragments of one message MUST NOT be interleaved" with another message.
        if self.message_in_progress.is_some() {
            return Err(ProtocolError::ExpectedContinuation);
        }
        self.continue_message(kind, payload, header.fin, frame_len)
    }

    /// A data message with `message` received so far: complete on `fin`, otherwise kept.
    fn continue_message(
        &mut self,
        kind: DataKind,
        message: Vec<u8>,
        fin: bool,
        frame_len: usize,
    ) -> Result<Step, ProtocolError> {
        if kind == DataKind::Text {
            // §8.1 with fail-fast: a complete message must be UTF-8; a partial one must be the
            // start of some UTF-8 text (`error_len() == None`: cut inside a character).
            if let Err(error) = std::str::from_utf8(&message)
                && (fin || error.error_len().is_some())
            {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        if fin {
            return Ok(Step::Message(kind, message));
        }
        self.message_in_progress = Some((kind, message));
        Ok(Step::Fragment(frame_len))
    }
}

/// Checks the per-event properties and copies the event out of the decoder's borrow.
fn owned_step(event: Event<'_>, max_message_bytes: u64) -> Step {
    match event {
        Event::Message { kind, payload } => {
            assert!(
                payload.len() as u64 <= max_message_bytes,
                "message of {} bytes over the limit of {max_message_bytes}",
                payload.len()
            );
            if kind == DataKind::Text {
                assert!(
                    std::str::from_utf8(payload).is_ok(),
                    "text message is not UTF-8: {payload:?}"
                );
            }
            Step::Message(kind, payload.to_vec())
        }
        Event::Ping(payload) => {
            assert!(
                payload.len() as u64 <= MAX_CONTROL_PAYLOAD_BYTES,
                "ping too big"
            );
            Step::Ping(payload.to_vec())
        }
        Event::Pong(payload) => {
            assert!(
                payload.len() as u64 <= MAX_CONTROL_PAYLOAD_BYTES,
                "pong too big"
            );
            Step::Pong(payload.to_vec())
        }
        Event::Close(close) => {
            match close.code {
                Some(code) => assert!(is_valid_received_code(code), "close code {code}"),
                None => assert!(close.reason.is_empty(), "a reason without a code"),
            }
            assert!(
                close.reason.len() as u64 <= MAX_CONTROL_PAYLOAD_BYTES - 2,
                "close reason too long"
            );
            Step::Close(close.code, close.reason.to_string())
        }
    }
}
