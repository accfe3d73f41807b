//! RFC 7692 §7.2.2: inflating a client's compressed message, never past the message limit.
//!
//! [`Inflater`] is a streaming raw-DEFLATE inflater (`flate2` on `zlib-rs`, about 47 KB of
//! heap once it has inflated something, measured). Streaming because a client that keeps its
//! context refers back into earlier messages, and because output can then be produced into a
//! buffer that grows in steps capped at the limit: a zip bomb (a few KB that inflate to
//! gigabytes) fails with 1009 once its output passes `max_message_bytes`, having allocated at
//! most `max_message_bytes + 1` bytes of output. Its window is 32 KiB, so it inflates whatever
//! window (8..=15 bits) the client compresses with.
//!
//! Deliberately not here: when an inflater exists and when it is dropped (the frame decoder in
//! `message.rs` creates it on the first compressed frame and drops it after each message when
//! the client's context is reset), and UTF-8 (checked on the inflated bytes by the decoder).

use flate2::{Decompress, FlushDecompress, Status};

use super::EMPTY_BLOCK_TAIL;
use crate::protocol::error::ProtocolError;

/// First output step for a message, doubled after (bounded by the limit).
const FIRST_OUTPUT_STEP_BYTES: usize = 1024;

/// Whether the DEFLATE stream is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    /// Blocks are expected.
    Open,
    /// A block with BFINAL set ended the stream (RFC 7692 §7.2.3.4); the rest of the message
    /// is ignored and the stream restarts with the next message.
    Ended,
}

/// A raw inflater for one connection's compressed messages.
pub struct Inflater {
    /// The zlib-rs inflate stream (its window is the context a client may keep).
    stream: Decompress,
    /// Whether a final block ended the stream within the current message.
    stream_state: StreamState,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Inflater")
            .field("stream_state", &self.stream_state)
            .finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

impl Inflater {
    /// An inflater for raw DEFLATE data (no zlib header) with a 32 KiB window.
    pub fn new() -> Inflater {
        Inflater {
            stream: Decompress::new(false),
            stream_state: StreamState::Open,
        }
    }

    /// Inflates the next piece of a compressed message (a frame's payload, unmasked), appending
    /// to `out`. Fails with `MessageTooBig` as soon as `out` would pass `max_message_bytes`
    /// (its capacity never exceeds the limit + 1), with `InvalidCompressedData` on bad DEFLATE
    /// data.
    pub fn inflate(
        &mut self,
        mut compressed: &[u8],
        out: &mut Vec<u8>,
        max_message_bytes: u64,
    ) -> Result<(), ProtocolError> {
        let limit_bytes = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
        // Bounded: each pass consumes input or fills the output's spare room, and returns when
        // it did neither; the input is finite and the output stops at limit + 1 bytes.
        loop {
            // §7.2.3.4: after a block with BFINAL set, nothing more of the message is inflated.
            if self.stream_state == StreamState::Ended {
                return Ok(());
            }
            if out.len() == out.capacity() {
                let step = out.len().max(FIRST_OUTPUT_STEP_BYTES);
                let room = limit_bytes.saturating_add(1).saturating_sub(out.len());
                out.reserve_exact(step.min(room));
            }
            let (total_in_before, out_before) = (self.stream.total_in(), out.len());
            let result = self
                .stream
                .decompress_vec(compressed, out, FlushDecompress::Sync);
            // The limit before the data error: zlib keeps reading block headers once the output
            // is full, so a call can both pass the limit and then meet bad data. Whichever comes
            // first in the stream wins, however the message was split into frames.
            if out.len() > limit_bytes {
                return Err(ProtocolError::MessageTooBig {
                    length_bytes: out.len() as u64,
                    limit_bytes: max_message_bytes,
                });
            }
            let status = result.map_err(|_| ProtocolError::InvalidCompressedData)?;
            let consumed = usize::try_from(self.stream.total_in() - total_in_before)
                .expect("consumed at most the input's length");
            compressed = &compressed[consumed..];
            if status == Status::StreamEnd {
                self.stream_state = StreamState::Ended;
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            let stalled = consumed == 0 && out.len() == out_before;
            if room_left && (compressed.is_empty() || stalled) {
                return Ok(());
            }
        }
    }

    /// Ends a message: RFC 7692 §7.2.2, "Append 4 octets of 0x00 0x00 0xff 0xff to the tail end
    /// of the payload of the message" and inflate them, which flushes the last block's output.
    /// A stream ended by a final block restarts for the next message.
    pub fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        max_message_bytes: u64,
    ) -> Result<(), ProtocolError> {
        self.inflate(&EMPTY_BLOCK_TAIL, out, max_message_bytes)?;
        if self.stream_state == StreamState::Ended {
            self.stream.reset(false);
            self.stream_state = StreamState::Open;
        }
        Ok(())
    }
}

/// Inflates one whole compressed message payload with a fresh inflater (no context), bounded
/// by `max_message_bytes`.
pub fn inflate_message(
    compressed: &[u8],
    max_message_bytes: u64,
) -> Result<Vec<u8>, ProtocolError> {
    let mut inflater = Inflater::new();
    let mut out = Vec::new();
    inflater.inflate(compressed, &mut out, max_message_bytes)?;
    inflater.finish_message(&mut out, max_message_bytes)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7692 §7.2.3.1: "Hello" compressed, without the 4-octet tail.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    #[test]
    fn rfc_7692_7_2_3_1_hello() {
        assert_eq!(inflate_message(&HELLO, 5).unwrap(), b"Hello");
        // The same message split over two frames: "0xf2 0x48 0xcd" and "0xc9 0xc9 0x07 0x00".
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        inflater.inflate(&HELLO[..3], &mut out, 5).unwrap();
        inflater.inflate(&HELLO[3..], &mut out, 5).unwrap();
        inflater.finish_message(&mut out, 5).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_7692_7_2_3_2_sharing_the_window() {
        // The second "Hello", compressed against the first: "0xf2 0x00 0x11 0x00 0x00".
        let mut inflater = Inflater::new();
        for payload in [&HELLO[..], &[0xf2, 0x00, 0x11, 0x00, 0x00]] {
            let mut out = Vec::new();
            inflater.inflate(payload, &mut out, 5).unwrap();
            inflater.finish_message(&mut out, 5).unwrap();
            assert_eq!(out, b"Hello");
        }
        // Without the first message's window, the second refers to nothing.
        assert_eq!(
            inflate_message(&[0xf2, 0x00, 0x11, 0x00, 0x00], 5),
            Err(ProtocolError::InvalidCompressedData)
        );
    }

    #[test]
    fn rfc_7692_7_2_3_3_no_compression_block() {
        let payload = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_message(&payload, 5).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_7_2_3_4_bfinal_block() {
        let payload = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        // A kept context survives the final block: the stream restarts for the next message.
        let mut inflater = Inflater::new();
        for _ in 0..2 {
            let mut out = Vec::new();
            inflater.inflate(&payload, &mut out, 5).unwrap();
            inflater.finish_message(&mut out, 5).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    #[test]
    fn rfc_7692_7_2_3_5_two_blocks_in_one_message() {
        let payload = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_message(&payload, 5).unwrap(), b"Hello");
    }

    #[test]
    fn the_limit_is_exact() {
        assert_eq!(inflate_message(&HELLO, 5).unwrap(), b"Hello");
        assert_eq!(
            inflate_message(&HELLO, 4),
            Err(ProtocolError::MessageTooBig {
                length_bytes: 5,
                limit_bytes: 4
            })
        );
        assert_eq!(inflate_message(&[0x02, 0x00], 0).unwrap(), b"");
    }

    #[test]
    fn the_limit_wins_over_bad_data_that_follows_it() {
        // Found by the `inflate` fuzz target: a stored block of one byte, then a stored block
        // whose LEN and NLEN disagree. With a limit of 0, the byte passes the limit before the
        // bad block is reached, at once or byte by byte.
        let payload = [
            0x00, 0x01, 0x00, 0xfe, 0xff, 0x41, 0x00, 0x05, 0x00, 0x00, 0x00,
        ];
        let too_big = Err(ProtocolError::MessageTooBig {
            length_bytes: 1,
            limit_bytes: 0,
        });
        assert_eq!(inflate_message(&payload, 0), too_big);
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        let byte_by_byte = payload
            .chunks(1)
            .try_for_each(|byte| inflater.inflate(byte, &mut out, 0));
        assert_eq!(byte_by_byte, too_big.map(|_: Vec<u8>| ()));
        assert_eq!(
            inflate_message(&payload, 1),
            Err(ProtocolError::InvalidCompressedData)
        );
    }

    #[test]
    fn invalid_deflate_data_is_refused() {
        // BTYPE 11 is reserved (RFC 1951 §3.2.3).
        for payload in [
            &[0x07u8][..],
            &[0xff, 0xff, 0xff],
            &[0x00, 0x05, 0x00, 0x00, 0x00],
        ] {
            assert_eq!(
                inflate_message(payload, 1 << 20),
                Err(ProtocolError::InvalidCompressedData),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn zip_bomb_fails_before_its_output_exists() {
        // 10 MB of zeros compress to about 10 KB.
        let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::best());
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = vec![0u8; compressor.deflate_compress_bound(zeros.len())];
        let written = compressor.deflate_compress(&zeros, &mut bomb).unwrap();
        bomb.truncate(written);
        bomb.push(0x00);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let limit_bytes = 64 << 10;
        // Fed frame by frame as a fragmented message would be.
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        let error = bomb
            .chunks(1000)
            .try_for_each(|chunk| inflater.inflate(chunk, &mut out, limit_bytes))
            .unwrap_err();
        assert_eq!(error.close_code(), 1009);
        assert_eq!(
            error,
            ProtocolError::MessageTooBig {
                length_bytes: limit_bytes + 1,
                limit_bytes
            }
        );
        assert!(
            out.capacity() as u64 <= limit_bytes + 1,
            "{}",
            out.capacity()
        );
        assert_eq!(
            inflate_message(&bomb, limit_bytes)
                .unwrap_err()
                .close_code(),
            1009
        );
    }
}
