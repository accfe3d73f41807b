//! Who a connection is: presence members (`channel_data`) and signed-in users (`user_data`).
//!
//! protocol, `pusher:subscribe`: "data.channel_data (String) ... The JSON for the
//! `channel_data` will be generated on the application server"; its `user_id` is "a unique
//! identifier of the user" and `user_info` "An object containing information about that
//! user". The official SDKs accept a numeric `user_id` (auth-signatures.md's own example uses
//! `:user_id => 10`), and the protocol sends it back as a String, so integers become their
//! decimal text.
//!
//! protocol, `pusher:signin`: `user_data` is "A JSON-encoded hash ... It must contain at least
//! an `id` field as a `String` containing the user ID", optionally `user_info`. pusher-js
//! requires `typeof id === 'string' && id !== ''`.
//!
//! Limits (presence-channels.md): "1KB limit for user object, and maximum 128 characters for
//! user id" (both per application in `AppLimits`). `user_info` is kept as its JSON text and
//! never re-serialised.
//!
//! Deliberately not here: verifying signatures (`auth::pusher`), storing members (the broker).

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::UserDataError;
use super::incoming::starts_object;
use super::outgoing::MemberRef;
use crate::apps::AppLimits;

/// A member of a presence channel.
#[derive(Debug, Clone)]
pub struct PresenceMember {
    /// The user id (integers given as decimal text).
    pub user_id: String,
    /// The `user_info` JSON text, if any (`null` counts as none).
    pub user_info: Option<Box<RawValue>>,
}

impl PresenceMember {
    /// Borrowed view for the encoders.
    pub fn as_ref(&self) -> MemberRef<'_> {
        MemberRef {
            user_id: &self.user_id,
            user_info: self.user_info.as_deref(),
        }
    }
}

impl PartialEq for PresenceMember {
    fn eq(&self, other: &PresenceMember) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for PresenceMember {}

/// A connection's signed-in user.
#[derive(Debug, Clone)]
pub struct SignedInUser {
    /// `id` from `user_data`.
    pub id: String,
    /// `user_info` from `user_data`, shared with presence channels joined without
    /// `channel_data` (presence-channels.md: "the user object provided during user
    /// authentication will be shared with other members in presence channels").
    pub user_info: Option<Box<RawValue>>,
    /// The exact `user_data` string, echoed in `pusher:signin_success`.
    pub user_data: String,
}

impl PartialEq for SignedInUser {
    fn eq(&self, other: &SignedInUser) -> bool {
        self.user_data == other.user_data && self.as_member().as_ref() == other.as_member().as_ref()
    }
}

impl Eq for SignedInUser {}

impl SignedInUser {
    /// This user as a presence member.
    pub fn as_member(&self) -> PresenceMember {
        PresenceMember {
            user_id: self.id.clone(),
            user_info: self.user_info.clone(),
        }
    }
}

/// `channel_data`: `user_id` any JSON (checked below), `user_info` kept raw.
#[derive(Deserialize)]
struct ChannelData {
    /// `user_id`.
    #[serde(default)]
    user_id: Option<Value>,
    /// `user_info`.
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

/// `user_data`: `id` any JSON (checked below), `user_info` kept raw.
#[derive(Deserialize)]
struct UserData {
    /// `id`.
    #[serde(default)]
    id: Option<Value>,
    /// `user_info`.
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

/// Parses and checks a presence `channel_data` string.
pub fn parse_channel_data(
    channel_data: &str,
    limits: &AppLimits,
) -> Result<PresenceMember, UserDataError> {
    let data: ChannelData = parse_object(channel_data)?;
    let user_id = match data.user_id {
        None | Some(Value::Null) => return Err(UserDataError::MissingUserId),
        Some(Value::String(text)) => text,
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(_) => return Err(UserDataError::InvalidUserId),
    };
    Ok(PresenceMember {
        user_id: check_user_id(user_id, limits)?,
        user_info: check_user_info(data.user_info, limits)?,
    })
}

/// Parses and checks a `pusher:signin` `user_data` string.
pub fn parse_user_data(user_data: &str, limits: &AppLimits) -> Result<SignedInUser, UserDataError> {
    let data: UserData = parse_object(user_data)?;
    let id = match data.id {
        None | Some(Value::Null) => return Err(UserDataError::MissingUserId),
        Some(Value::String(text)) => text,
        Some(_) => return Err(UserDataError::InvalidUserId),
    };
    Ok(SignedInUser {
        id: check_user_id(id, limits)?,
        user_info: check_user_info(data.user_info, limits)?,
        user_data: user_data.to_string(),
    })
}

fn parse_object<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, UserDataError> {
    // serde reads a struct from a JSON array too (positionally); these are objects.
    if !starts_object(text) {
        return Err(UserDataError::InvalidJson(
            "expected a JSON object".to_string(),
        ));
    }
    serde_json::from_str(text).map_err(|error| UserDataError::InvalidJson(error.to_string()))
}

fn check_user_id(user_id: String, limits: &AppLimits) -> Result<String, UserDataError> {
    if user_id.is_empty() {
        return Err(UserDataError::InvalidUserId);
    }
    let length_chars = user_id.chars().count();
    if length_chars > limits.max_user_id_chars {
        return Err(UserDataError::UserIdTooLong {
            length_chars,
            limit_chars: limits.max_user_id_chars,
        });
    }
    Ok(user_id)
}

fn check_user_info(
    user_info: Option<Box<RawValue>>,
    limits: &AppLimits,
) -> Result<Option<Box<RawValue>>, UserDataError> {
    match user_info {
        Some(info) if info.get().len() > limits.max_presence_user_info_bytes => {
            Err(UserDataError::UserInfoTooLarge {
                length_bytes: info.get().len(),
                limit_bytes: limits.max_presence_user_info_bytes,
            })
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AppLimits {
        AppLimits::default()
    }

    #[test]
    fn docs_channel_data_examples() {
        // auth-signatures.md: a numeric user_id.
        let member = parse_channel_data(
            r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(member.user_id, "10");
        assert_eq!(
            member.user_info.unwrap().get(),
            r#"{"name":"Mr. Channels"}"#
        );
        // protocol page: a string user_id, user_info with spaces kept byte for byte.
        let member = parse_channel_data(
            r#"{ "user_id": "<unique_user_id>", "user_info": { "name": "Phil Leggetter", "twitter": "@leggetter" } }"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(member.user_id, "<unique_user_id>");
        assert_eq!(
            member.user_info.as_deref().unwrap().get(),
            r#"{ "name": "Phil Leggetter", "twitter": "@leggetter" }"#
        );
        assert_eq!(member.as_ref().user_id, "<unique_user_id>");
    }

    #[test]
    fn user_info_is_optional_and_any_json() {
        let member = parse_channel_data(r#"{"user_id":"a"}"#, &limits()).unwrap();
        assert!(member.user_info.is_none());
        let member = parse_channel_data(r#"{"user_id":"a","user_info":null}"#, &limits()).unwrap();
        assert!(member.user_info.is_none());
        // Laravel answers `[]` for an empty PHP array.
        let member = parse_channel_data(r#"{"user_id":"a","user_info":[]}"#, &limits()).unwrap();
        assert_eq!(member.user_info.unwrap().get(), "[]");
    }

    #[test]
    fn user_id_rules() {
        for bad in [
            r#"{"user_id":""}"#,
            r#"{"user_id":1.5}"#,
            r#"{"user_id":true}"#,
            r#"{"user_id":{}}"#,
            r#"{"user_id":[]}"#,
        ] {
            assert_eq!(
                parse_channel_data(bad, &limits()),
                Err(UserDataError::InvalidUserId),
                "{bad}"
            );
        }
        for missing in [r#"{}"#, r#"{"user_id":null}"#, r#"{"user_info":{}}"#] {
            assert_eq!(
                parse_channel_data(missing, &limits()),
                Err(UserDataError::MissingUserId)
            );
        }
        let negative = parse_channel_data(r#"{"user_id":-3}"#, &limits()).unwrap();
        assert_eq!(negative.user_id, "-3");
        let big = parse_channel_data(r#"{"user_id":18446744073709551615}"#, &limits()).unwrap();
        assert_eq!(big.user_id, "18446744073709551615");
    }

    #[test]
    fn size_limits_128_chars_and_1_kb() {
        let at_limit = format!(r#"{{"user_id":"{}"}}"#, "é".repeat(128));
        assert!(parse_channel_data(&at_limit, &limits()).is_ok());
        let over = format!(r#"{{"user_id":"{}"}}"#, "x".repeat(129));
        assert_eq!(
            parse_channel_data(&over, &limits()),
            Err(UserDataError::UserIdTooLong {
                length_chars: 129,
                limit_chars: 128
            })
        );
        // `{"n":"…"}` is 8 bytes plus the string.
        let info_at_limit = format!(
            r#"{{"user_id":"a","user_info":{{"n":"{}"}}}}"#,
            "x".repeat(2040)
        );
        assert!(parse_channel_data(&info_at_limit, &limits()).is_ok());
        let info_over = format!(
            r#"{{"user_id":"a","user_info":{{"n":"{}"}}}}"#,
            "x".repeat(2041)
        );
        assert_eq!(
            parse_channel_data(&info_over, &limits()),
            Err(UserDataError::UserInfoTooLarge {
                length_bytes: 2049,
                limit_bytes: 2048
            })
        );
    }

    #[test]
    fn invalid_json_and_non_objects() {
        for bad in ["", "{", "[]", "\"text\"", "12", "null"] {
            assert!(
                matches!(
                    parse_channel_data(bad, &limits()),
                    Err(UserDataError::InvalidJson(_))
                ),
                "{bad:?}"
            );
            assert!(matches!(
                parse_user_data(bad, &limits()),
                Err(UserDataError::InvalidJson(_))
            ));
        }
    }

    #[test]
    fn user_data_from_the_docs() {
        let user = parse_user_data(r#"{"id":"12345"}"#, &limits()).unwrap();
        assert_eq!(user.id, "12345");
        assert_eq!(user.user_data, r#"{"id":"12345"}"#);
        assert_eq!(user.as_member().user_id, "12345");
        let with_info = parse_user_data(
            r#"{ "id": "<user_id>", "user_info": {"name": "Phil Leggetter"}, "watchlist": ["a"] }"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(
            with_info.user_info.unwrap().get(),
            r#"{"name": "Phil Leggetter"}"#
        );
        // The id must be a string here (pusher-js checks `typeof id === 'string'`).
        assert_eq!(
            parse_user_data(r#"{"id":12345}"#, &limits()),
            Err(UserDataError::InvalidUserId)
        );
        assert_eq!(
            parse_user_data(r#"{"id":""}"#, &limits()),
            Err(UserDataError::InvalidUserId)
        );
        assert_eq!(
            parse_user_data(r#"{}"#, &limits()),
            Err(UserDataError::MissingUserId)
        );
    }
}
