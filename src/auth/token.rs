//! Signed subscriptions: HS256 JWTs minted by the application's backend with the secret it
//! shares with ringcast (`--token-secret`), passed by the client as `?token=` on the upgrade
//! URL (browsers cannot set headers on a WebSocket). Verified with the `jsonwebtoken` crate.
//!
//! Claims: `exp` (required, seconds since the epoch), `sub` (optional user id), `channels`
//! (optional list; an entry ending in `*` grants every channel starting with what precedes it).
//! A channel whose name starts with `private-` needs a token that lists it; `--require-token`
//! makes every channel need one. No leeway: a token is valid until its `exp`, and a connection
//! opened with it is closed (4009) when that moment comes.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Secret;

/// The prefix of channels that always need a token.
pub const PRIVATE_PREFIX: &str = "private-";

/// Prefixes of the channels that are someone's (Pusher's presence channels, a user's
/// `#server-to-user-` channel): outside the Pusher protocol, which checks its own signatures,
/// they need a token like `private-` channels.
const GUARDED_PREFIXES: [&str; 3] = [PRIVATE_PREFIX, "presence-", "#"];

/// Does a subscription to `channel` need a token even without `--require-token`?
pub fn needs_token(channel: &str) -> bool {
    GUARDED_PREFIXES
        .iter()
        .any(|prefix| channel.starts_with(prefix))
}

/// Why a subscription was refused (403 before the upgrade, with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The channel needs a token and none was sent.
    #[error("token required for this channel (pass ?token=)")]
    Missing,
    /// The channel needs a token but the server has no `--token-secret`.
    #[error("this server has no --token-secret: private channels are closed")]
    NotConfigured,
    /// Not a JWT, or a claim has the wrong type or is missing (`exp` is required).
    #[error("malformed token")]
    Malformed,
    /// The signature does not match (a forged token, or another secret), or not HS256.
    #[error("invalid token signature")]
    Forged,
    /// Its `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Valid, but it does not list this channel.
    #[error("token does not grant this channel")]
    ChannelNotGranted,
}

/// The claims ringcast reads.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    /// A subscription token's one channel (Centrifugo's subscription tokens).
    #[serde(default)]
    channel: Option<String>,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When the token expires (seconds since the epoch).
    pub expires_at_s: u64,
    /// The user id (`sub`), if any.
    pub subject: Option<String>,
    /// The channels listed (`*` suffix: a prefix).
    channels: Vec<String>,
    /// The channel of a subscription token (`channel` claim).
    channel: Option<String>,
}

impl Grant {
    /// Does the token list `channel` (exactly, or by a `prefix*` entry)?
    pub fn allows(&self, channel: &str) -> bool {
        self.channel.as_deref() == Some(channel)
            || self
                .channels
                .iter()
                .any(|entry| match entry.strip_suffix('*') {
                    Some(prefix) => channel.starts_with(prefix),
                    None => entry == channel,
                })
    }
}

/// Verifies tokens signed with one secret.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenVerifier(***)")
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`.
    pub fn new(secret: &Secret) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp"]);
        TokenVerifier {
            key: DecodingKey::from_secret(secret.expose()),
            validation,
        }
    }

    /// Checks the signature and the expiry of `token`.
    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::Forged,
                _ => TokenError::Malformed,
            },
        )?;
        Ok(Grant {
            expires_at_s: data.claims.exp,
            subject: data.claims.sub,
            channels: data.claims.channels,
            channel: data.claims.channel,
        })
    }
}

/// Decides a subscription to `channel`: `Ok(None)` when no token is needed or sent,
/// `Ok(Some(grant))` when a valid token grants it (the connection must end at the grant's
/// expiry), or why not. A token sent for a channel that needs none is still checked: a client
/// sending a bad one should learn it.
pub fn authorize(
    channel: &str,
    token: Option<&str>,
    verifier: Option<&TokenVerifier>,
    require_token: bool,
) -> Result<Option<Grant>, TokenError> {
    let needed = require_token || needs_token(channel);
    let Some(token) = token else {
        return if needed {
            Err(TokenError::Missing)
        } else {
            Ok(None)
        };
    };
    let Some(verifier) = verifier else {
        return if needed {
            Err(TokenError::NotConfigured)
        } else {
            Ok(None)
        };
    };
    let grant = verifier.verify(token)?;
    if needed && !grant.allows(channel) {
        return Err(TokenError::ChannelNotGranted);
    }
    Ok(Some(grant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "test-secret";

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn mint(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&Secret::new(SECRET))
    }

    #[test]
    fn a_valid_token_grants_its_channels_and_prefixes() {
        let token = mint(
            json!({"exp": now_s() + 60, "sub": "u1", "channels": ["private-a", "private-team-*"]}),
            SECRET,
        );
        let grant = authorize("private-a", Some(&token), Some(&verifier()), false)
            .unwrap()
            .unwrap();
        assert_eq!(grant.subject.as_deref(), Some("u1"));
        assert!(grant.allows("private-team-42"));
        assert!(!grant.allows("private-b"));
        assert_eq!(
            authorize("private-b", Some(&token), Some(&verifier()), false),
            Err(TokenError::ChannelNotGranted)
        );
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let verifier = verifier();
        let good = mint(json!({"exp": now_s() + 60, "channels": ["*"]}), SECRET);
        assert_eq!(
            authorize("private-a", None, Some(&verifier), false),
            Err(TokenError::Missing)
        );
        assert_eq!(
            authorize("private-a", Some(&good), None, false),
            Err(TokenError::NotConfigured)
        );
        let forged = mint(json!({"exp": now_s() + 60, "channels": ["*"]}), "other");
        assert_eq!(
            authorize("private-a", Some(&forged), Some(&verifier), false),
            Err(TokenError::Forged)
        );
        let expired = mint(json!({"exp": now_s() - 5, "channels": ["*"]}), SECRET);
        assert_eq!(
            authorize("private-a", Some(&expired), Some(&verifier), false),
            Err(TokenError::Expired)
        );
        let no_exp = mint(json!({"channels": ["*"]}), SECRET);
        assert_eq!(
            authorize("private-a", Some(&no_exp), Some(&verifier), false),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            authorize("private-a", Some("not.a.jwt"), Some(&verifier), false),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn public_channels_need_a_token_only_when_required() {
        let verifier = verifier();
        assert_eq!(authorize("news", None, Some(&verifier), false), Ok(None));
        assert_eq!(
            authorize("news", None, Some(&verifier), true),
            Err(TokenError::Missing)
        );
        let listed = mint(json!({"exp": now_s() + 60, "channels": ["news"]}), SECRET);
        assert!(authorize("news", Some(&listed), Some(&verifier), true).is_ok());
        // A bad token is refused even where none is needed.
        let expired = mint(json!({"exp": now_s() - 5}), SECRET);
        assert_eq!(
            authorize("news", Some(&expired), Some(&verifier), false),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_token_with_the_none_algorithm_is_forged() {
        // header {"alg":"none","typ":"JWT"}, payload {"exp": far future, "channels": ["*"]}
        let token =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDAsImNoYW5uZWxzIjpbIioiXX0.";
        assert!(matches!(
            authorize("private-a", Some(token), Some(&verifier()), false),
            Err(TokenError::Forged | TokenError::Malformed)
        ));
    }
}
