//! RFC 6455 §5.3 masking: `transformed[i] = original[i] XOR key[i mod 4]`.
//!
//! The harness only masks small control frames (pongs, close), so a plain byte loop would do;
//! the word-at-a-time version is kept because the floor server unmasks nothing and the client
//! may one day send data frames. Both are tested against each other.

/// Reference implementation, byte by byte, exactly as the RFC states it.
pub fn apply_mask_reference(payload: &mut [u8], key: [u8; 4]) {
    for (index, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[index % 4];
    }
}

/// Masks (or unmasks: the operation is its own inverse) `payload` with `key`, 8 bytes at a time.
pub fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    let key_word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks_exact_mut yields 8 bytes"));
        chunk.copy_from_slice(&(word ^ key_word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, hence of 4, so the key phase restarts at key[0].
    apply_mask_reference(chunks.into_remainder(), key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_mask_matches_reference_for_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for length in 0..67 {
            let original: Vec<u8> = (0..length).map(|index| (index * 7 + 3) as u8).collect();
            let mut fast = original.clone();
            let mut reference = original.clone();
            apply_mask(&mut fast, key);
            apply_mask_reference(&mut reference, key);
            assert_eq!(fast, reference, "length {length}");
            apply_mask(&mut fast, key);
            assert_eq!(fast, original, "masking twice is the identity");
        }
    }

    #[test]
    fn rfc_6455_section_5_7_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello" with key 37 fa 21 3d.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
