//! Credentials: who may publish or read state (the API key of the API listener), and who may
//! subscribe to which channel (signed subscription tokens). Pure functions over bytes; every
//! secret is compared in constant time and never printed (`Debug` redacts it).
//!
//! Knows nothing of HTTP or sockets: the HTTP layer hands it header values and query strings.

pub mod api_key;
pub mod token;

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
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let given = Sha256::digest(given);
    let expected = Sha256::digest(expected);
    given.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

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
