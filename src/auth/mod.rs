//! Credentials: HMAC-SHA256 signatures as Pusher defines them, checked in constant time.
//!
//! - [`pusher`]: channel authorization (`socket_id:channel[:channel_data]`), user sign-in
//!   (`socket_id::user::user_data`) and webhook signing (`X-Pusher-Signature`).
//! - [`rest`]: signed HTTP API requests (`auth_key`, `auth_timestamp`, `auth_version`,
//!   `body_md5`, `auth_signature`).
//! - [`api_key`]: the API listener's key (`--api-key`).
//! - [`token`]: signed subscriptions (HS256 JWTs, `--token-secret`).
//!
//! Every signature is a lowercase hex HMAC-SHA256 digest keyed by the application secret
//! (auth-signatures.md: "The signature is a HMAC SHA256 hex digest"). Verification decodes the
//! presented hex and compares digests with `hmac`'s `verify_slice`, which is constant time; the
//! decoding itself only looks at attacker-supplied bytes, so its timing reveals nothing about
//! the expected digest.
//!
//! Deliberately not here: which reply a failure earns on the wire (`wire::pusher::error`) or
//! over HTTP (`api::pusher`); sockets; clocks (callers pass `now`).

pub mod api_key;
pub mod pusher;
pub mod rest;
pub mod token;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// HMAC-SHA256, the only MAC Pusher uses.
type HmacSha256 = Hmac<Sha256>;

/// Length of a hex-encoded SHA-256 digest.
pub const SIGNATURE_HEX_BYTES: usize = 64;

fn keyed(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    // Bounded: `parts` is a fixed, short list chosen by the caller (at most five pieces).
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Lowercase hex HMAC-SHA256 of the concatenation of `parts`, keyed by `secret`.
pub fn hmac_sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    hex_lower(&keyed(secret, parts).finalize().into_bytes())
}

/// Does `signature_hex` equal the HMAC-SHA256 of `parts`? Constant time in the digest
/// comparison; upper- or lowercase hex accepted.
pub fn verify_hmac_sha256_hex(secret: &[u8], parts: &[&[u8]], signature_hex: &str) -> bool {
    match decode_hex_32(signature_hex) {
        Some(signature) => keyed(secret, parts).verify_slice(&signature).is_ok(),
        None => false,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    // Bounded: one iteration per input byte.
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Decodes exactly 64 hex digits into 32 bytes.
fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != SIGNATURE_HEX_BYTES {
        return None;
    }
    let mut out = [0u8; 32];
    // Bounded: 32 iterations.
    for (index, pair) in digits.chunks_exact(2).enumerate() {
        out[index] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret's bytes (for keys and comparisons only).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

/// Compares two byte strings in constant time with respect to their contents (and without
/// revealing the length of the expected one): both are hashed to SHA-256 first, then the
/// digests are compared with `subtle`.
pub fn constant_time_equal(given: &[u8], expected: &[u8]) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_CASE2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn rfc4231_vector() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya ", b"want for nothing?"]),
            RFC4231_CASE2
        );
        assert!(verify_hmac_sha256_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            RFC4231_CASE2
        ));
        assert!(verify_hmac_sha256_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &RFC4231_CASE2.to_uppercase()
        ));
    }

    #[test]
    fn wrong_or_malformed_signatures_fail() {
        let message: &[&[u8]] = &[b"what do ya want for nothing?"];
        let mut flipped = RFC4231_CASE2.to_string();
        flipped.replace_range(63.., "4");
        assert!(!verify_hmac_sha256_hex(b"Jefe", message, &flipped));
        assert!(!verify_hmac_sha256_hex(b"jefe", message, RFC4231_CASE2));
        assert!(!verify_hmac_sha256_hex(
            b"Jefe",
            message,
            &RFC4231_CASE2[..62]
        ));
        assert!(!verify_hmac_sha256_hex(b"Jefe", message, ""));
        let non_hex = format!("{}zz", &RFC4231_CASE2[..62]);
        assert!(!verify_hmac_sha256_hex(b"Jefe", message, &non_hex));
    }

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..32).map(|value| value * 8 + 1).collect();
        let hex = hex_lower(&bytes);
        assert_eq!(hex.len(), 64);
        assert_eq!(decode_hex_32(&hex).unwrap().as_slice(), bytes.as_slice());
        assert_eq!(hex_lower(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), b"hunter2");
    }

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_equal(b"key", b"key"));
        assert!(!constant_time_equal(b"key", b"kex"));
        assert!(!constant_time_equal(b"key", b"key "));
        assert!(!constant_time_equal(b"", b"key"));
    }
}
