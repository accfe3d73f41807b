//! RFC 7692 §7.2.1: compressing a whole message once, for every subscriber.
//!
//! [`MessageCompressor`] wraps one `libdeflater` compressor (one per shard: it holds about
//! 200 KB at level 1, 670 KB at level 6, measured) and compresses each message with no context
//! kept, which is what `server_no_context_takeover` promises. libdeflate was chosen by
//! measurement over `flate2`/`zlib-rs` and `miniz_oxide` (`examples/deflate_choice.rs`,
//! `results/deflate-choice/README.md`): at 1 KiB of JSON its level 1 output is 22% smaller
//! than zlib-rs level 1 and as small as zlib-rs level 6, in less time than the latter.
//!
//! libdeflate writes one complete DEFLATE stream whose last block has BFINAL set. §7.2.1 asks
//! the sender to end the data with an empty stored block and to remove its last 4 octets
//! (0x00 0x00 0xff 0xff): after a final block, that leaves exactly one 0x00 octet to append,
//! the §7.2.3.4 example ("Using a DEFLATE Block with BFINAL Set to 1"); uWebSockets' libdeflate
//! path sends the same bytes to browsers.
//!
//! libdeflate stores inputs of at most 55 - 4 × level bytes uncompressed, so such messages are
//! never compressed here; `--compress-min-bytes` (256 by default) is above that anyway.
//!
//! Deliberately not here: which connections get the compressed frame (the caller asks
//! `Negotiated::may_send_compressed`) and whether a message is worth trying (the caller's
//! `--compress-min-bytes`; this file only refuses output that would not be smaller).

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::frame::{MAX_SERVER_HEADER_BYTES, OpCode, encode_compressed_server_header};
use crate::protocol::message::DataKind;

/// Output room given to libdeflate beyond the message's length.
const OUTPUT_SLACK_BYTES: usize = 16;

/// A libdeflate compression level, 1 (fastest) to 12 (smallest); libdeflate's scale, not
/// zlib's (its level 1 compresses JSON about as well as zlib's 6, measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CompressionLevel(u8);

/// A compression level outside libdeflate's 1..=12 (0, "no compression", is not offered: a
/// message that does not compress is sent uncompressed instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compression level {0} is outside 1..=12")]
pub struct InvalidCompressionLevel(pub u8);

impl CompressionLevel {
    /// Level 1: ringcast's default (the best bytes saved per CPU-microsecond measured at 1 KiB).
    pub const FASTEST: CompressionLevel = CompressionLevel(1);
    /// Level 12: the smallest output, several times slower.
    pub const SMALLEST: CompressionLevel = CompressionLevel(12);

    /// `level` if it is within 1..=12.
    pub fn new(level: u8) -> Result<CompressionLevel, InvalidCompressionLevel> {
        (CompressionLevel::FASTEST.0..=CompressionLevel::SMALLEST.0)
            .contains(&level)
            .then_some(CompressionLevel(level))
            .ok_or(InvalidCompressionLevel(level))
    }

    /// The level number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for CompressionLevel {
    fn default() -> CompressionLevel {
        CompressionLevel::FASTEST
    }
}

/// Compresses whole messages with no context kept; one per shard, reused for every message.
pub struct MessageCompressor {
    /// The libdeflate compressor (its match-finder tables, reset by libdeflate on every call).
    compressor: libdeflater::Compressor,
    /// The level it was built with.
    level: CompressionLevel,
}

impl std::fmt::Debug for MessageCompressor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MessageCompressor")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl MessageCompressor {
    /// A compressor at `level`.
    pub fn new(level: CompressionLevel) -> MessageCompressor {
        let libdeflate_level = libdeflater::CompressionLvl::new(i32::from(level.get()))
            .expect("CompressionLevel holds 1..=12, all libdeflate levels");
        MessageCompressor {
            compressor: libdeflater::Compressor::new(libdeflate_level),
            level,
        }
    }

    /// The level it compresses at.
    pub fn level(&self) -> CompressionLevel {
        self.level
    }

    /// The RFC 7692 §7.2.1 payload of `message` (what follows the header of a frame with RSV1
    /// set), or `None` when it would not be smaller than `message`.
    pub fn compress_message(&mut self, message: &[u8]) -> Option<Bytes> {
        self.compress_with_headroom(message, 0)
            .map(BytesMut::freeze)
    }

    /// One complete server frame, RSV1 set, carrying `message` compressed: one allocation,
    /// shared by reference with every subscriber that may receive it. `None` when compressing
    /// would not make the message smaller (send the uncompressed frame instead).
    pub fn compress_frame(&mut self, kind: DataKind, message: &[u8]) -> Option<Bytes> {
        let mut frame = self.compress_with_headroom(message, MAX_SERVER_HEADER_BYTES)?;
        let payload_len = frame.len() - MAX_SERVER_HEADER_BYTES;
        let opcode = match kind {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        };
        let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
        let header_len = encode_compressed_server_header(opcode, payload_len, &mut header);
        // The header goes right before the payload; the unused headroom is skipped in O(1).
        let header_start = MAX_SERVER_HEADER_BYTES - header_len;
        frame[header_start..MAX_SERVER_HEADER_BYTES].copy_from_slice(&header[..header_len]);
        frame.advance(header_start);
        Some(frame.freeze())
    }

    /// Compresses `message` into a buffer that starts with `headroom_bytes` of zeros; `None`
    /// unless the payload is smaller than `message`.
    fn compress_with_headroom(
        &mut self,
        message: &[u8],
        headroom_bytes: usize,
    ) -> Option<BytesMut> {
        // libdeflate's bit writer wants a few bytes of slack past the data it writes, so it gets
        // `OUTPUT_SLACK_BYTES` more than the message; a result that is not smaller is refused
        // after the fact (its work is wasted only on incompressible messages).
        let deflate_room_bytes = message.len() + OUTPUT_SLACK_BYTES;
        let mut buffer = BytesMut::zeroed(headroom_bytes + deflate_room_bytes + 1);
        let written = self
            .compressor
            .deflate_compress(
                message,
                &mut buffer[headroom_bytes..headroom_bytes + deflate_room_bytes],
            )
            .ok()?;
        // §7.2.1: "If the resulting data does not end with an empty DEFLATE block with no
        // compression (the "BTYPE" bits are set to 00), append an empty DEFLATE block with no
        // compression to the tail end." then "Remove 4 octets (that are 0x00 0x00 0xff 0xff)
        // from the tail end." After libdeflate's final, byte-aligned block that is one 0x00
        // (already zero in the buffer).
        let payload_bytes = written + 1;
        if payload_bytes >= message.len() {
            return None;
        }
        buffer.truncate(headroom_bytes + payload_bytes);
        Some(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::inflate_message;
    use proptest::prelude::*;

    #[test]
    fn rfc_7692_7_2_3_4_hello_ends_with_one_zero_octet() {
        // §7.2.3.4: "0xf3 0x48 0xcd 0xc9 0xc9 0x07 0x00 0x00" is "Hello" in one block with
        // BFINAL set, followed by the 0x00 that stands for the empty stored block. "Hello" is
        // too short to save bytes, so compress it twice over and check the shape.
        let mut compressor = MessageCompressor::new(CompressionLevel::FASTEST);
        assert_eq!(compressor.compress_message(b"Hello"), None);
        let message = "Hello".repeat(20);
        let message = message.as_bytes();
        let payload = compressor.compress_message(message).unwrap();
        assert_eq!(payload[0] & 0x01, 1, "BFINAL of the only block");
        assert_eq!(payload.last(), Some(&0x00));
        assert!(payload.len() < message.len());
        assert_eq!(inflate_message(&payload, 1 << 10).unwrap(), message);
    }

    #[test]
    fn incompressible_or_tiny_messages_are_not_compressed() {
        let mut compressor = MessageCompressor::new(CompressionLevel::default());
        // libdeflate stores inputs of up to 55 - 4 × level bytes as they are.
        for message in [&b""[..], b"a", b"ab", b"abc", &[b'a'; 51]] {
            assert_eq!(compressor.compress_message(message), None, "{message:?}");
        }
        // 4 KiB of xorshift bytes: libdeflate's stored blocks would be larger than the input.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert_eq!(compressor.compress_message(&noise), None);
        assert_eq!(compressor.compress_frame(DataKind::Binary, &noise), None);
    }

    #[test]
    fn frame_is_header_then_payload_with_rsv1() {
        let mut compressor = MessageCompressor::new(CompressionLevel::FASTEST);
        for size in [60usize, 125, 126, 300, 65535, 65536, 100_000] {
            let message: Vec<u8> = (0..size).map(|i| b"{\"price\":1}"[i % 11]).collect();
            let payload = compressor.compress_message(&message).unwrap();
            let frame = compressor.compress_frame(DataKind::Text, &message).unwrap();
            let expected =
                crate::protocol::frame::encode_compressed_server_frame(OpCode::Text, &payload);
            assert_eq!(frame, expected, "{size}");
            assert_eq!(frame[0], 0xC1, "FIN + RSV1 + text");
        }
        let binary = compressor
            .compress_frame(DataKind::Binary, &[7u8; 500])
            .unwrap();
        assert_eq!(binary[0], 0xC2);
    }

    #[test]
    fn levels_are_libdeflates() {
        assert_eq!(CompressionLevel::new(0), Err(InvalidCompressionLevel(0)));
        assert_eq!(CompressionLevel::new(13), Err(InvalidCompressionLevel(13)));
        for level in 1..=12 {
            let level = CompressionLevel::new(level).unwrap();
            let mut compressor = MessageCompressor::new(level);
            assert_eq!(compressor.level(), level);
            let message = "{\"event\":\"trade\"}".repeat(10);
            let payload = compressor.compress_message(message.as_bytes()).unwrap();
            assert_eq!(inflate_message(&payload, 1024).unwrap(), message.as_bytes());
        }
    }

    proptest! {
        #[test]
        fn compress_then_inflate_is_identity(
            message in proptest::collection::vec(any::<u8>(), 0..5000),
            alphabet in 1u8..=255,
            level in 1u8..=12,
        ) {
            // Narrow alphabets compress, wide ones often do not; both must round-trip.
            let message: Vec<u8> = message.iter().map(|byte| byte % alphabet).collect();
            let mut compressor = MessageCompressor::new(CompressionLevel::new(level).unwrap());
            match compressor.compress_message(&message) {
                Some(payload) => {
                    prop_assert!(payload.len() < message.len());
                    prop_assert_eq!(inflate_message(&payload, message.len() as u64).unwrap(), message);
                }
                None => prop_assert!(message.len() < 64 || alphabet > 1),
            }
        }
    }
}
