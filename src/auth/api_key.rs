//! The API listener's key (`--api-key`): every request there must carry it as
//! `Authorization: Bearer KEY` or `X-API-Key: KEY` (Centrifugo's server API works the same way).

use super::{Secret, constant_time_equal};

/// Why a request to the API listener was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// No `Authorization: Bearer` or `X-API-Key` header.
    #[error("missing API key (send Authorization: Bearer KEY or X-API-Key: KEY)")]
    Missing,
    /// A key was sent, but not the right one.
    #[error("invalid API key")]
    Invalid,
}

/// The credential a request carries, as sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Presented {
    /// The value of `Authorization: Bearer ...`.
    pub bearer: Option<Vec<u8>>,
    /// The value of `X-API-Key`.
    pub api_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Presented")
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Presented {
    /// Reads an `Authorization` header value: `Bearer KEY` or Centrifugo's `apikey KEY`
    /// (scheme case-insensitive).
    pub fn read_authorization(&mut self, value: &[u8]) {
        let value = value.trim_ascii();
        for scheme in [&b"bearer "[..], &b"apikey "[..]] {
            if value.len() > scheme.len() && value[..scheme.len()].eq_ignore_ascii_case(scheme) {
                self.bearer = Some(value[scheme.len()..].trim_ascii().to_vec());
            }
        }
    }
}

/// Checks `presented` against `key` in constant time.
pub fn check(presented: &Presented, key: &Secret) -> Result<(), ApiKeyError> {
    let candidates = [presented.bearer.as_deref(), presented.api_key.as_deref()];
    if candidates.iter().all(Option::is_none) {
        return Err(ApiKeyError::Missing);
    }
    // Both are compared (when both are sent) so the time taken does not say which matched.
    let mut matched = false;
    for candidate in candidates.into_iter().flatten() {
        matched |= constant_time_equal(candidate, key.expose());
    }
    if matched {
        Ok(())
    } else {
        Err(ApiKeyError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented(authorization: Option<&str>, api_key: Option<&str>) -> Presented {
        let mut presented = Presented::default();
        if let Some(value) = authorization {
            presented.read_authorization(value.as_bytes());
        }
        presented.api_key = api_key.map(|key| key.as_bytes().to_vec());
        presented
    }

    #[test]
    fn bearer_or_header_key_is_accepted() {
        let key = Secret::new("s3cret");
        assert_eq!(check(&presented(Some("Bearer s3cret"), None), &key), Ok(()));
        assert_eq!(
            check(&presented(Some("bearer  s3cret "), None), &key),
            Ok(())
        );
        assert_eq!(check(&presented(None, Some("s3cret")), &key), Ok(()));
    }

    #[test]
    fn missing_and_wrong_keys_are_refused() {
        let key = Secret::new("s3cret");
        assert_eq!(
            check(&presented(None, None), &key),
            Err(ApiKeyError::Missing)
        );
        assert_eq!(
            check(&presented(Some("Basic czNjcmV0"), None), &key),
            Err(ApiKeyError::Missing)
        );
        assert_eq!(
            check(&presented(Some("Bearer wrong"), None), &key),
            Err(ApiKeyError::Invalid)
        );
        assert_eq!(
            check(&presented(None, Some("s3cret!")), &key),
            Err(ApiKeyError::Invalid)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let text = format!("{:?}", presented(Some("Bearer s3cret"), Some("s3cret")));
        assert!(!text.contains("s3cret"), "{text}");
    }
}
