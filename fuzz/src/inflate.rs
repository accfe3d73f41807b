//! Target `inflate`: arbitrary bytes as the payload of a client's compressed message
//! (permessage-deflate, RFC 7692 §7.2.2), inflated on its own and through a `MessageDecoder`
//! that negotiated the extension, split into the frames the input names.
//!
//! Properties: nothing panics; `inflate_message` either gives at most `limit` bytes or fails
//! with `MessageTooBig { length_bytes: limit + 1 }` (the output never grows past the limit
//! before failing) or `InvalidCompressedData`; inflating in the named pieces gives the same
//! result as at once; the decoder, fed the pieces as a fragmented message (RSV1 on the first
//! frame only) twice in a row, gives what a plain model of it predicts (frame length, then the
//! message's wire size, checked per frame, inflation, UTF-8 of text checked per fragment, the inflater kept or reset between
//! the two messages), error included; whatever inflates, compressed again by
//! `MessageCompressor`, inflates back to itself from a smaller payload.
//! Input layout: inflated size limit (u16), flags (u8: bit 0 the client keeps its context, bit
//! 1 text instead of binary, bits 2-5 the compression level for the round trip, mod 12, + 1),
//! piece count (u8, mod 8), that many piece lengths (u8 each), then the compressed payload.
//! Bytes past the last piece form one final piece.

use ringcast::protocol::deflate::{
    CompressionLevel, ContextTakeover, InboundCompression, Inflater, MessageCompressor,
    inflate_message,
};
use ringcast::protocol::error::ProtocolError;
use ringcast::protocol::message::{DataKind, Decoded, Event, MessageDecoder};

use super::client_frame;
use super::input::Reader;

/// Most pieces an input can name.
pub const MAX_PIECES: usize = 8;
/// The masking key of every frame (masking is `frames_stream`'s and `mask`'s business).
const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// One decoded `inflate` input.
#[derive(Debug)]
pub struct InflateInput<'a> {
    /// The message limit.
    pub limit_bytes: u64,
    /// Whether the client keeps its context (the decoder's inflater outlives a message).
    pub context: ContextTakeover,
    /// Text or binary.
    pub kind: DataKind,
    /// The level the round trip compresses at.
    pub level: CompressionLevel,
    /// The compressed payload, in the pieces (frames) it arrives in.
    pub pieces: Vec<&'a [u8]>,
}

impl<'a> InflateInput<'a> {
    /// Decodes the layout described in the module header.
    pub fn decode(data: &'a [u8]) -> InflateInput<'a> {
        let mut reader = Reader::new(data);
        let limit_bytes = u64::from(reader.u16());
        let flags = reader.u8();
        let context = if flags & 1 != 0 {
            ContextTakeover::Kept
        } else {
            ContextTakeover::Reset
        };
        let kind = if flags & 2 != 0 {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        let level = CompressionLevel::new((flags >> 2) % 12 + 1).expect("1..=12");
        let piece_count = usize::from(reader.u8()) % MAX_PIECES;
        let lengths: Vec<usize> = (0..piece_count).map(|_| usize::from(reader.u8())).collect();
        let mut payload = reader.rest();
        let mut pieces = Vec::with_capacity(piece_count + 1);
        for length in lengths {
            let (piece, rest) = payload.split_at(length.min(payload.len()));
            pieces.push(piece);
            payload = rest;
        }
        pieces.push(payload);
        InflateInput {
            limit_bytes,
            context,
            kind,
            level,
            pieces,
        }
    }

    /// The inverse of [`InflateInput::decode`], for seeds.
    pub fn encode(limit_bytes: u16, flags: u8, piece_lengths: &[u8], payload: &[u8]) -> Vec<u8> {
        assert!(
            piece_lengths.len() < MAX_PIECES,
            "seed with too many pieces"
        );
        let mut data = limit_bytes.to_le_bytes().to_vec();
        data.push(flags);
        data.push(piece_lengths.len() as u8);
        data.extend_from_slice(piece_lengths);
        data.extend_from_slice(payload);
        data
    }
}

/// Checks every `inflate` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let input = InflateInput::decode(data);
    let payload: Vec<u8> = input.pieces.concat();
    let at_once = inflate_message(&payload, input.limit_bytes);
    match &at_once {
        Ok(inflated) => assert!(inflated.len() as u64 <= input.limit_bytes),
        Err(ProtocolError::MessageTooBig {
            length_bytes,
            limit_bytes,
        }) => assert_eq!(
            (*length_bytes, *limit_bytes),
            (input.limit_bytes + 1, input.limit_bytes),
            "inflation went past the limit before failing"
        ),
        Err(ProtocolError::InvalidCompressedData) => {}
        Err(other) => panic!("inflate_message failed with {other:?}"),
    }
    let mut inflater = Inflater::new();
    let mut in_pieces = Vec::new();
    let pieced = input
        .pieces
        .iter()
        .try_for_each(|piece| inflater.inflate(piece, &mut in_pieces, input.limit_bytes))
        .and_then(|()| inflater.finish_message(&mut in_pieces, input.limit_bytes))
        .map(|()| in_pieces);
    assert_eq!(pieced, at_once, "inflating in pieces differs from at once");

    assert_eq!(
        decode_twice(&input),
        model_twice(&input),
        "the decoder differs from the model"
    );

    if let Ok(inflated) = at_once {
        round_trip(&inflated, input.level);
    }
}

/// What the decoder gave for each of the two messages, up to the first error.
type Outcome = (Vec<Vec<u8>>, Option<ProtocolError>);

/// The pieces as a fragmented compressed message, sent twice, through a decoder.
fn decode_twice(input: &InflateInput<'_>) -> Outcome {
    let compression = InboundCompression::Deflate(input.context);
    let mut decoder = MessageDecoder::with_compression(input.limit_bytes, compression);
    let opcode = match input.kind {
        DataKind::Text => 0x1,
        DataKind::Binary => 0x2,
    };
    let mut messages = Vec::new();
    // Bounded: two messages of at most MAX_PIECES + 1 frames.
    for _ in 0..2 {
        for (index, piece) in input.pieces.iter().enumerate() {
            let fin = index + 1 == input.pieces.len();
            let first_byte = if index == 0 { 0x40 | opcode } else { 0x0 };
            let mut frame = client_frame(fin, first_byte, KEY, piece);
            let frame_len = frame.len();
            match decoder.decode(&mut frame) {
                Err(error) => return (messages, Some(error)),
                Ok(Decoded::Fragment { consumed }) if !fin => assert_eq!(consumed, frame_len),
                Ok(Decoded::Event {
                    consumed,
                    event: Event::Message { kind, payload },
                }) if fin => {
                    assert_eq!((consumed, kind), (frame_len, input.kind));
                    messages.push(payload.to_vec());
                }
                Ok(other) => panic!("frame {index} of {}: {other:?}", input.pieces.len()),
            }
        }
        assert!(
            input.context == ContextTakeover::Kept || !decoder.holds_inflater(),
            "a reset context keeps its inflater after the message"
        );
    }
    (messages, None)
}

/// What the decoder should give: per frame, the wire size check, inflation, UTF-8 so far.
fn model_twice(input: &InflateInput<'_>) -> Outcome {
    let mut messages = Vec::new();
    let mut inflater = Inflater::new();
    // Bounded: two messages of at most MAX_PIECES + 1 pieces.
    for _ in 0..2 {
        if input.context == ContextTakeover::Reset {
            inflater = Inflater::new();
        }
        let mut inflated = Vec::new();
        let mut wire_bytes = 0u64;
        for (index, piece) in input.pieces.iter().enumerate() {
            let fin = index + 1 == input.pieces.len();
            wire_bytes += piece.len() as u64;
            let step = model_step(input, &mut inflater, piece, fin, wire_bytes, &mut inflated);
            if let Err(error) = step {
                return (messages, Some(error));
            }
        }
        messages.push(inflated);
    }
    (messages, None)
}

/// One frame of the model.
fn model_step(
    input: &InflateInput<'_>,
    inflater: &mut Inflater,
    piece: &[u8],
    fin: bool,
    wire_bytes: u64,
    inflated: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    // The frame header's length first (refused before its payload arrives), then the wire
    // total of the message so far (a continuation's check).
    let frame_bytes = piece.len() as u64;
    for length_bytes in [frame_bytes, wire_bytes] {
        if length_bytes > input.limit_bytes {
            return Err(ProtocolError::MessageTooBig {
                length_bytes,
                limit_bytes: input.limit_bytes,
            });
        }
    }
    inflater.inflate(piece, inflated, input.limit_bytes)?;
    if fin {
        inflater.finish_message(inflated, input.limit_bytes)?;
    }
    if input.kind == DataKind::Text {
        match std::str::from_utf8(inflated) {
            Ok(_) => {}
            Err(error) if error.error_len().is_none() && !fin => {}
            Err(_) => return Err(ProtocolError::InvalidUtf8),
        }
    }
    Ok(())
}

/// Compressing what inflated gives it back, from a smaller payload.
fn round_trip(message: &[u8], level: CompressionLevel) {
    let mut compressor = MessageCompressor::new(level);
    if let Some(payload) = compressor.compress_message(message) {
        assert!(payload.len() < message.len(), "compressed is not smaller");
        let limit = message.len() as u64;
        assert_eq!(
            inflate_message(&payload, limit).as_deref(),
            Ok(message),
            "compress then inflate is not the identity"
        );
    }
}
