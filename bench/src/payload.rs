//! The benchmark payload: who sent it, when, and its place in a sequence, padded to a size.
//!
//! Layout (all ASCII hex, fixed width, no separators, so encode and decode are branch-light):
//!
//! ```text
//! offset  0..2   "rc"          magic, so a foreign message is a decode error, not a bogus sample
//!         2..4   epoch         2 hex digits: which measurement step sent it
//!         4..12  channel index 8 hex digits
//!        12..16  publisher     4 hex digits: sequence numbers are per (channel, publisher)
//!        16..32  sequence      16 hex digits
//!        32..48  sent_ns       16 hex digits: CLOCK_MONOTONIC nanoseconds at send time
//!        48..    padding       '.' (text, valid UTF-8), 0xFF (binary: never valid UTF-8), or
//!                              JSON trade records (json: compresses about as real push
//!                              payloads do, 3-4x with permessage-deflate)
//! ```
//!
//! Text payloads are printable ASCII so the server delivers them as text frames; binary
//! payloads carry at least one 0xFF byte so they can never pass as UTF-8. This module does no
//! I/O and knows nothing about frames.

use thiserror::Error;

/// Bytes taken by the header; the smallest payload.
pub const HEADER_BYTES: usize = 48;
/// The largest payload the harness sends (bounds every receive buffer).
pub const PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// The padding byte of text payloads.
const PAD_TEXT: u8 = b'.';
/// The padding byte of binary payloads (0xFF never appears in UTF-8).
const PAD_BINARY: u8 = 0xFF;
/// Lower-case hex digits.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether payloads are delivered as text or binary frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum PayloadKind {
    /// Printable ASCII: the server must send a text frame.
    Text,
    /// Padded with 0xFF: the server must send a binary frame.
    Binary,
    /// Printable ASCII padded with JSON trade records whose numbers vary with the sequence
    /// (for permessage-deflate: all-'.' padding would compress unrealistically well).
    Json,
}

impl PayloadKind {
    /// Delivered as a text frame (everything but binary).
    pub fn is_text(self) -> bool {
        self != PayloadKind::Binary
    }
}

/// The identity and send time carried by one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Measurement step that sent it (late messages from an older step are detected).
    pub epoch: u8,
    /// Index of the channel it was published to.
    pub channel_index: u32,
    /// Index of the publisher connection (sequence numbers are per channel and publisher).
    pub publisher_index: u16,
    /// Sequence number within (channel, publisher), starting at 0 each epoch.
    pub sequence: u64,
    /// CLOCK_MONOTONIC nanoseconds when the publisher wrote it.
    pub sent_ns: u64,
}

/// Why a received payload is not one of ours.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than the fixed header.
    #[error("payload of {0} bytes is shorter than the {HEADER_BYTES}-byte header")]
    TooShort(usize),
    /// The magic `rc` is missing.
    #[error("payload does not start with the magic \"rc\"")]
    BadMagic,
    /// A header field holds something other than lower-case hex digits.
    #[error("payload header field at offset {0} is not hex")]
    BadHex(usize),
}

/// Checks that `payload_bytes` can hold the header (and, for binary, one 0xFF byte).
pub fn validate_size(payload_bytes: usize, kind: PayloadKind) -> Result<(), String> {
    let minimum = match kind {
        PayloadKind::Text | PayloadKind::Json => HEADER_BYTES,
        PayloadKind::Binary => HEADER_BYTES + 1,
    };
    if payload_bytes < minimum || payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(format!(
            "--payload-bytes must be in {minimum}..={PAYLOAD_BYTES_MAX} for {kind:?} payloads"
        ));
    }
    Ok(())
}

/// Writes `value` as `out.len()` lower-case hex digits, most significant first.
fn write_hex(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = HEX_DIGITS[(value & 0xF) as usize];
        value >>= 4;
    }
    assert_eq!(value, 0, "value does not fit its hex field");
}

/// Reads a fixed-width lower-case hex field starting at `offset`.
fn read_hex(payload: &[u8], offset: usize, width: usize) -> Result<u64, PayloadError> {
    let mut value = 0u64;
    for &byte in &payload[offset..offset + width] {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => return Err(PayloadError::BadHex(offset)),
        };
        value = (value << 4) | u64::from(digit);
    }
    Ok(value)
}

/// Fills `out` (its length is the payload size) with the header for `stamp` and the padding.
pub fn encode(out: &mut [u8], stamp: &Stamp, kind: PayloadKind) {
    assert!(
        out.len() >= HEADER_BYTES,
        "payload buffer shorter than the header"
    );
    out[0..2].copy_from_slice(b"rc");
    write_hex(&mut out[2..4], u64::from(stamp.epoch));
    write_hex(&mut out[4..12], u64::from(stamp.channel_index));
    write_hex(&mut out[12..16], u64::from(stamp.publisher_index));
    write_hex(&mut out[16..32], stamp.sequence);
    write_hex(&mut out[32..48], stamp.sent_ns);
    match kind {
        PayloadKind::Text => out[HEADER_BYTES..].fill(PAD_TEXT),
        PayloadKind::Binary => out[HEADER_BYTES..].fill(PAD_BINARY),
        PayloadKind::Json => fill_json(&mut out[HEADER_BYTES..], stamp.sequence),
    }
}

/// Fills `out` with `{"event":"trade",...}` records whose numbers come from an xorshift
/// generator seeded by `seed`, cut at the end (padding, not a document).
fn fill_json(out: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut record = Vec::with_capacity(96);
    let mut written = 0;
    // Bounded: every pass writes at least one byte until `out` is full.
    while written < out.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        record.clear();
        record.extend_from_slice(
            format!(
                "{{\"event\":\"trade\",\"symbol\":\"BTC-USD\",\"price\":{}.{:02},\"qty\":{},\"side\":\"{}\"}},",
                60_000 + state % 2_000,
                (state >> 11) % 100,
                1 + (state >> 17) % 40,
                if state & (1 << 40) == 0 { "buy" } else { "sell" }
            )
            .as_bytes(),
        );
        let take = record.len().min(out.len() - written);
        out[written..written + take].copy_from_slice(&record[..take]);
        written += take;
    }
}

/// Decodes the header of a received payload; the padding is not inspected (its length is checked
/// by the caller against the configured size).
pub fn decode(payload: &[u8]) -> Result<Stamp, PayloadError> {
    if payload.len() < HEADER_BYTES {
        return Err(PayloadError::TooShort(payload.len()));
    }
    if &payload[0..2] != b"rc" {
        return Err(PayloadError::BadMagic);
    }
    Ok(Stamp {
        epoch: read_hex(payload, 2, 2)? as u8,
        channel_index: read_hex(payload, 4, 8)? as u32,
        publisher_index: read_hex(payload, 12, 4)? as u16,
        sequence: read_hex(payload, 16, 16)?,
        sent_ns: read_hex(payload, 32, 16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            epoch: 7,
            channel_index: 0xdead_beef,
            publisher_index: 3,
            sequence: 123_456_789,
            sent_ns: u64::MAX - 5,
        }
    }

    #[test]
    fn encode_then_decode_is_identity() {
        for size in [HEADER_BYTES, 64, 1000] {
            let mut out = vec![0u8; size];
            encode(&mut out, &stamp(), PayloadKind::Text);
            assert_eq!(decode(&out).unwrap(), stamp());
        }
    }

    #[test]
    fn text_payload_is_printable_ascii_and_binary_is_not_utf8() {
        let mut text = vec![0u8; 100];
        encode(&mut text, &stamp(), PayloadKind::Text);
        assert!(text.iter().all(|byte| byte.is_ascii_graphic()));
        assert!(std::str::from_utf8(&text).is_ok());
        let mut binary = vec![0u8; 100];
        encode(&mut binary, &stamp(), PayloadKind::Binary);
        assert!(std::str::from_utf8(&binary).is_err());
        assert_eq!(decode(&binary).unwrap(), stamp());
    }

    #[test]
    fn json_payload_is_printable_and_decodes() {
        let mut json = vec![0u8; 1024];
        encode(&mut json, &stamp(), PayloadKind::Json);
        assert!(json.iter().all(|byte| byte.is_ascii_graphic()));
        assert_eq!(decode(&json).unwrap(), stamp());
        assert!(json[HEADER_BYTES..].starts_with(b"{\"event\":\"trade\""));
    }

    #[test]
    fn foreign_payloads_are_errors() {
        assert_eq!(decode(b"hello"), Err(PayloadError::TooShort(5)));
        let mut out = vec![0u8; 64];
        encode(&mut out, &stamp(), PayloadKind::Text);
        out[0] = b'x';
        assert_eq!(decode(&out), Err(PayloadError::BadMagic));
        out[0] = b'r';
        out[20] = b'G';
        assert_eq!(decode(&out), Err(PayloadError::BadHex(16)));
    }

    #[test]
    fn sizes_are_validated() {
        assert!(validate_size(HEADER_BYTES, PayloadKind::Text).is_ok());
        assert!(validate_size(HEADER_BYTES, PayloadKind::Binary).is_err());
        assert!(validate_size(HEADER_BYTES - 1, PayloadKind::Text).is_err());
        assert!(validate_size(PAYLOAD_BYTES_MAX + 1, PayloadKind::Text).is_err());
    }
}
