//! Target `mask`: the fast word-at-a-time `apply_mask` against the byte-at-a-time RFC 6455 §5.3
//! transcription `apply_mask_reference`.
//!
//! Properties: fast == reference for any data, key, payload offset and start alignment (the
//! fast path splits the buffer at 8-byte alignment, so where the slice starts matters);
//! unmasking in two pieces, the second with its offset moved on, equals unmasking at once (a
//! payload arriving in several reads); masking twice gives the data back.
//! Input layout: key (4 bytes), payload offset (u32), split point (u16, clamped), start within
//! the buffer (u8, mod 8), then the data.

use ringcast::protocol::mask::{apply_mask, apply_mask_reference};

use super::input::Reader;

/// One decoded `mask` input.
#[derive(Debug)]
pub struct MaskInput<'a> {
    /// The masking key.
    pub key: [u8; 4],
    /// Position of the first masked byte within the frame payload.
    pub payload_offset: usize,
    /// Where the two-piece unmasking splits the masked bytes (clamped to their length).
    pub split: usize,
    /// Bytes skipped at the start of the buffer, to vary the alignment of the masked slice.
    pub start: usize,
    /// The data.
    pub data: &'a [u8],
}

impl<'a> MaskInput<'a> {
    /// Decodes the layout described in the module header.
    pub fn decode(data: &'a [u8]) -> MaskInput<'a> {
        let mut reader = Reader::new(data);
        let key = reader.bytes();
        // u32: on 64-bit targets an offset plus any index stays far from overflowing, as real
        // offsets (positions within a bounded message) do.
        let payload_offset = reader.u32() as usize;
        let split = usize::from(reader.u16());
        let start = usize::from(reader.u8() % 8);
        MaskInput {
            key,
            payload_offset,
            split,
            start,
            data: reader.rest(),
        }
    }

    /// The inverse of [`MaskInput::decode`], for seeds.
    pub fn encode(
        key: [u8; 4],
        payload_offset: u32,
        split: u16,
        start: u8,
        data: &[u8],
    ) -> Vec<u8> {
        let mut encoded = key.to_vec();
        encoded.extend_from_slice(&payload_offset.to_le_bytes());
        encoded.extend_from_slice(&split.to_le_bytes());
        encoded.push(start);
        encoded.extend_from_slice(data);
        encoded
    }
}

/// Checks every `mask` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let input = MaskInput::decode(data);
    let start = input.start.min(input.data.len());
    let split = input.split.min(input.data.len() - start);
    let (key, offset) = (input.key, input.payload_offset);

    let mut reference = input.data.to_vec();
    apply_mask_reference(&mut reference[start..], key, offset);

    let mut fast = input.data.to_vec();
    apply_mask(&mut fast[start..], key, offset);
    assert_eq!(
        fast, reference,
        "fast mask differs: key {key:?}, offset {offset}, start {start}"
    );

    let mut pieces = input.data.to_vec();
    let (first, second) = pieces[start..].split_at_mut(split);
    apply_mask(first, key, offset);
    apply_mask(second, key, offset + split);
    assert_eq!(
        pieces, reference,
        "mask in two pieces split at {split} differs"
    );

    apply_mask(&mut fast[start..], key, offset);
    assert_eq!(fast, input.data, "masking twice is not the identity");
}
