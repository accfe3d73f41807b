//! RFC 6455 §5.3 payload masking.
//!
//! Every frame a client sends is masked with a 32-bit key; the server unmasks it in place.
//! [`apply_mask`] is the fast version (eight bytes per step); [`apply_mask_reference`] is the
//! one-byte-at-a-time transcription of the RFC that the tests and the fuzzer hold it against.
//! Both take the offset of `buf` within the frame's payload so a payload that arrives in several
//! reads can be unmasked piece by piece.

/// Unmasks (or masks: the operation is its own inverse) `buf` in place.
///
/// `payload_offset` is the position of `buf[0]` within the frame payload: RFC 6455 §5.3 says
/// "octet i of the transformed data is the XOR of octet i of the original data with octet at
/// index i modulo 4 of the masking key".
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], payload_offset: usize) {
    let rotation = payload_offset % 4;
    let mut key = key;
    key.rotate_left(rotation);

    let (head, body, tail) = {
        // SAFETY: every bit pattern is a valid `u64`, so viewing aligned bytes as words is sound.
        unsafe { buf.align_to_mut::<u64>() }
    };
    for (index, byte) in head.iter_mut().enumerate() {
        *byte ^= key[index % 4];
    }
    // The words start at offset `head.len()`, so the key is rotated by that much for them.
    let mut word_key = key;
    word_key.rotate_left(head.len() % 4);
    let key_word = u64::from_ne_bytes([
        word_key[0],
        word_key[1],
        word_key[2],
        word_key[3],
        word_key[0],
        word_key[1],
        word_key[2],
        word_key[3],
    ]);
    for word in body.iter_mut() {
        *word ^= key_word;
    }
    // Words are multiples of 4 bytes long, so the tail starts where `word_key` starts.
    for (index, byte) in tail.iter_mut().enumerate() {
        *byte ^= word_key[index % 4];
    }
}

/// The RFC's own formulation, one byte at a time: the oracle for [`apply_mask`].
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], payload_offset: usize) {
    for (index, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(payload_offset + index) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_example_hello_masked() {
        // RFC 6455 §5.7: "A single-frame masked text message": key 37 fa 21 3d, "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn split_unmasking_equals_whole() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..100u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = original.clone();
        let (first, second) = pieces.split_at_mut(37);
        apply_mask(first, key, 0);
        apply_mask(second, key, 37);
        assert_eq!(whole, pieces);
    }

    proptest! {
        #[test]
        fn fast_mask_equals_reference(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            offset in 0usize..16,
            start in 0usize..8,
        ) {
            let start = start.min(data.len());
            let mut fast = data.clone();
            let mut reference = data.clone();
            apply_mask(&mut fast[start..], key, offset);
            apply_mask_reference(&mut reference[start..], key, offset);
            prop_assert_eq!(fast, reference);
        }
    }
}
