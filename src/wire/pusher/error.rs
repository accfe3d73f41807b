//! Every way a Pusher client can be refused, and the one reply each earns.
//!
//! The replies (pusher-websockets-protocol.md):
//! - `pusher:error` `{"code": Integer|null, "message": String}`, the connection stays open;
//! - `pusher:subscription_error` on the channel, data `{"type", "error", "status"}` (the shape
//!   pusher-js emits for a failed authorization, events.md "pusher:subscription_error"), so
//!   `channel.bind("pusher:subscription_error", ..)` and Laravel Echo's `.error()` see it;
//! - a close code: "4000-4099: The connection SHOULD NOT be re-established unchanged",
//!   "4100-4199: ... re-established after backing off", "4200-4299: ... re-established
//!   immediately". Before closing, a `pusher:error` with the same code is sent: "If the
//!   WebSocket connection does not support close codes then a `pusher:error` event will be
//!   sent with an appropriate code before the WebSocket connection is closed" (pusher-js reads
//!   it during the handshake as a close, so sending it always is harmless).
//!
//! Codes 4000-4299 accompany a close and nothing else; an error that leaves the connection open
//! carries a 4300-4399 code ("Any other type of error", 4301 client event rate limit) or none.
//!
//! Deliberately not here: detecting the errors (parsers and `authorize.rs` do) and sending
//! (the server does).

use bytes::Bytes;

use super::channel::ChannelNameError;
use super::outgoing;
use crate::auth::pusher::AuthError;

/// What the server must do about a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send this text message; the connection stays open.
    Message(Bytes),
    /// Send `message` (a `pusher:error` with the same code), then close with `code`.
    Close {
        /// The close code and its reason text.
        code: CloseCode,
        /// The `pusher:error` to send first.
        message: Bytes,
    },
}

/// The documented close codes (pusher-websockets-protocol.md, "Error Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 4001: "Application does not exist".
    AppNotFound,
    /// 4003: "Application disabled".
    AppDisabled,
    /// 4004: "Application is over connection quota".
    OverConnectionQuota,
    /// 4005: "Path not found".
    PathNotFound,
    /// 4006: "Invalid version string format".
    InvalidVersionFormat,
    /// 4007: "Unsupported protocol version".
    UnsupportedProtocolVersion,
    /// 4008: "No protocol version supplied".
    NoProtocolVersion,
    /// 4009: "Connection is unauthorized" (also `terminate_connections`: the client must not
    /// reconnect on its own).
    Unauthorized,
    /// 4100: "Over capacity" (back off, then reconnect).
    OverCapacity,
    /// 4200: "Generic reconnect immediately" (a draining server).
    ReconnectImmediately,
    /// 4201: "Pong reply not received".
    PongNotReceived,
    /// 4202: "Closed after inactivity".
    ClosedAfterInactivity,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::AppNotFound => 4001,
            CloseCode::AppDisabled => 4003,
            CloseCode::OverConnectionQuota => 4004,
            CloseCode::PathNotFound => 4005,
            CloseCode::InvalidVersionFormat => 4006,
            CloseCode::UnsupportedProtocolVersion => 4007,
            CloseCode::NoProtocolVersion => 4008,
            CloseCode::Unauthorized => 4009,
            CloseCode::OverCapacity => 4100,
            CloseCode::ReconnectImmediately => 4200,
            CloseCode::PongNotReceived => 4201,
            CloseCode::ClosedAfterInactivity => 4202,
        }
    }

    /// The documented description, used as the close reason and the error message.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::AppNotFound => "Application does not exist",
            CloseCode::AppDisabled => "Application disabled",
            CloseCode::OverConnectionQuota => "Application is over connection quota",
            CloseCode::PathNotFound => "Path not found",
            CloseCode::InvalidVersionFormat => "Invalid version string format",
            CloseCode::UnsupportedProtocolVersion => "Unsupported protocol version",
            CloseCode::NoProtocolVersion => "No protocol version supplied",
            CloseCode::Unauthorized => "Connection is unauthorized",
            CloseCode::OverCapacity => "Over capacity",
            CloseCode::ReconnectImmediately => "Generic reconnect immediately",
            CloseCode::PongNotReceived => "Pong reply not received",
            CloseCode::ClosedAfterInactivity => "Closed after inactivity",
        }
    }

    /// `pusher:error` with this code, then a close with it.
    pub fn reply(self) -> Reply {
        Reply::Close {
            code: self,
            message: outgoing::error(Some(self.code()), self.reason()),
        }
    }
}

/// A connection refused at `GET /app/{key}?protocol=..` (after the WebSocket upgrade, so the
/// client can read the code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No application has this key.
    #[error("Application does not exist")]
    AppNotFound,
    /// The application is disabled.
    #[error("Application disabled")]
    AppDisabled,
    /// The application is at `max_connections`.
    #[error("Application is over connection quota")]
    OverConnectionQuota,
    /// The path is not `/app/{key}`.
    #[error("Path not found")]
    PathNotFound,
    /// `protocol` is not a decimal integer.
    #[error("Invalid version string format")]
    InvalidVersionFormat,
    /// `protocol` is not 7.
    #[error("Unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u32),
    /// No `protocol` parameter (the docs: "will in future be replaced by a 4008 error code";
    /// inferring from `version` is not supported).
    #[error("No protocol version supplied")]
    NoProtocolVersion,
}

impl ConnectError {
    /// The close code this refusal earns.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ConnectError::AppNotFound => CloseCode::AppNotFound,
            ConnectError::AppDisabled => CloseCode::AppDisabled,
            ConnectError::OverConnectionQuota => CloseCode::OverConnectionQuota,
            ConnectError::PathNotFound => CloseCode::PathNotFound,
            ConnectError::InvalidVersionFormat => CloseCode::InvalidVersionFormat,
            ConnectError::UnsupportedProtocolVersion(_) => CloseCode::UnsupportedProtocolVersion,
            ConnectError::NoProtocolVersion => CloseCode::NoProtocolVersion,
        }
    }

    /// Always a close.
    pub fn reply(&self) -> Reply {
        self.close_code().reply()
    }
}

/// Which client message a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `pusher:subscribe`.
    Subscribe,
    /// `pusher:unsubscribe`.
    Unsubscribe,
    /// `pusher:signin`.
    Signin,
    /// A `client-` event.
    ClientEvent,
}

impl MessageKind {
    /// The event name (or `client event`).
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Subscribe => "pusher:subscribe",
            MessageKind::Unsubscribe => "pusher:unsubscribe",
            MessageKind::Signin => "pusher:signin",
            MessageKind::ClientEvent => "client event",
        }
    }
}

/// A client message that could not be understood. The connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientMessageError {
    /// Longer than the caller's limit.
    #[error("Message of {length_bytes} bytes exceeds {limit_bytes} bytes")]
    MessageTooLarge {
        /// The message's length.
        length_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// protocol: "Data is sent bidirectionally over a WebSocket as text data containing UTF8
    /// encoded JSON."
    #[error("Invalid JSON: {0}")]
    MalformedJson(String),
    /// protocol: "Every event must contain an `event` property".
    #[error("Message has no event")]
    MissingEvent,
    /// An event name longer than 200 bytes (the SDKs' limit).
    #[error("Event name of {length_bytes} bytes exceeds 200 bytes")]
    EventNameTooLong {
        /// The name's length.
        length_bytes: usize,
    },
    /// Not a `pusher:` event this server handles, and not a `client-` event (events.md: "Events
    /// with any other prefix will be rejected").
    #[error("Unsupported event received: {0}")]
    UnknownEvent(String),
    /// `data` is absent where the protocol requires it.
    #[error("{} requires data", .0.name())]
    MissingData(MessageKind),
    /// `data` does not have the documented shape.
    #[error("Invalid data for {}: {detail}", kind.name())]
    InvalidData {
        /// Which message.
        kind: MessageKind,
        /// What is wrong.
        detail: String,
    },
    /// A client event without `channel`.
    #[error("Client event has no channel")]
    MissingChannel,
    /// The channel name is invalid.
    #[error("Invalid channel name {channel:?}: {error}")]
    InvalidChannel {
        /// Which message.
        kind: MessageKind,
        /// The name as sent.
        channel: String,
        /// Which rule it breaks.
        error: ChannelNameError,
    },
}

impl ClientMessageError {
    /// A subscribe to an invalid channel answers on that channel (so the client's channel
    /// object learns of it); everything else is a `pusher:error` without a code.
    pub fn reply(&self) -> Reply {
        match self {
            ClientMessageError::InvalidChannel {
                kind: MessageKind::Subscribe,
                channel,
                error,
            } => Reply::Message(outgoing::subscription_error(
                channel,
                SubscriptionErrorType::InvalidChannel,
                &error.to_string(),
                400,
            )),
            _ => Reply::Message(outgoing::error(None, &self.to_string())),
        }
    }
}

/// Why a member's `channel_data` or a user's `user_data` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    InvalidJson(String),
    /// auth-signatures.md: `user_data` has "at least an `id` property"; presence
    /// `channel_data` has `user_id`.
    #[error("no user id")]
    MissingUserId,
    /// The id is not a non-empty string (a presence `user_id` may also be an integer).
    #[error("user id must be a non-empty string")]
    InvalidUserId,
    /// presence-channels.md: "maximum 128 characters for user id".
    #[error("user id of {length_chars} characters exceeds {limit_chars}")]
    UserIdTooLong {
        /// The id's length.
        length_chars: usize,
        /// `max_user_id_chars`.
        limit_chars: usize,
    },
    /// presence-channels.md: "1KB limit for user object".
    #[error("user_info of {length_bytes} bytes exceeds {limit_bytes} bytes")]
    UserInfoTooLarge {
        /// The JSON text's length.
        length_bytes: usize,
        /// `max_presence_user_info_bytes`.
        limit_bytes: usize,
    },
}

/// The `type` of a `pusher:subscription_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionErrorType {
    /// Authorization failed (events.md's example type).
    AuthError,
    /// The channel name is invalid.
    InvalidChannel,
    /// `channel_data` is missing or malformed.
    InvalidChannelData,
    /// A limit was reached.
    LimitReached,
}

impl SubscriptionErrorType {
    /// The text in the `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionErrorType::AuthError => "AuthError",
            SubscriptionErrorType::InvalidChannel => "InvalidChannel",
            SubscriptionErrorType::InvalidChannelData => "InvalidChannelData",
            SubscriptionErrorType::LimitReached => "LimitReached",
        }
    }
}

/// A well-formed `pusher:subscribe` that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The `auth` is missing, malformed, for another key, or a wrong signature.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// A presence subscription without `channel_data` from a connection that is not signed in
    /// (pusher-js then expects the signed-in user to be the member).
    #[error("presence channels need channel_data or a signed-in user")]
    PresenceDataMissing,
    /// `channel_data` is refused.
    #[error("invalid channel_data: {0}")]
    InvalidChannelData(UserDataError),
    /// presence-channels.md: "100 members maximum".
    #[error("presence channel is full ({limit} members)")]
    PresenceFull {
        /// `max_presence_members`.
        limit: usize,
    },
    /// `#server-to-user-{id}` from a connection not signed in as `{id}`.
    #[error("only the signed-in user may subscribe to their #server-to-user channel")]
    ServerToUserForbidden,
    /// The connection already has the server's maximum of subscriptions.
    #[error("too many subscriptions on this connection (limit {limit})")]
    TooManyChannels {
        /// The server's limit.
        limit: usize,
    },
}

impl SubscribeError {
    /// `pusher:subscription_error` on `channel`.
    pub fn reply(&self, channel: &str) -> Reply {
        let (error_type, status) = match self {
            SubscribeError::Auth(_) => (SubscriptionErrorType::AuthError, 401),
            SubscribeError::ServerToUserForbidden => (SubscriptionErrorType::AuthError, 403),
            SubscribeError::PresenceDataMissing | SubscribeError::InvalidChannelData(_) => {
                (SubscriptionErrorType::InvalidChannelData, 400)
            }
            SubscribeError::PresenceFull { .. } | SubscribeError::TooManyChannels { .. } => {
                (SubscriptionErrorType::LimitReached, 403)
            }
        };
        Reply::Message(outgoing::subscription_error(
            channel,
            error_type,
            &self.to_string(),
            status,
        ))
    }
}

/// A `pusher:signin` that is refused (protocol: "A `pusher:signin` event will result in either
/// a `pusher:signin_success` or a `pusher:error` event").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninError {
    /// The `auth` is missing, malformed, for another key, or a wrong signature.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// `user_data` is refused.
    #[error("invalid user_data: {0}")]
    InvalidUserData(UserDataError),
    /// protocol: "It fails if the connection is already associated with a different user id."
    #[error("connection is already signed in as another user")]
    AlreadySignedIn,
}

impl SigninError {
    /// `pusher:error` without a code; the connection stays open and unsigned.
    pub fn reply(&self) -> Reply {
        Reply::Message(outgoing::error(None, &self.to_string()))
    }
}

/// A `client-` event that is refused (events.md, "Triggering client events").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientEventError {
    /// "Client events must be enabled for the application".
    #[error(
        "To send client events, you must enable this feature in the Settings page of your dashboard."
    )]
    Disabled,
    /// "Client events can only be triggered on private and presence channels" (and not on
    /// encrypted ones: the server cannot encrypt).
    #[error("Client events are not allowed on {0}")]
    ChannelNotAllowed(String),
    /// "The user must be subscribed to the channel that the event is being triggered on".
    #[error("Client event rejected - not subscribed to {0}")]
    NotSubscribed(String),
    /// The data is over `max_event_payload_bytes`.
    #[error("Client event data of {length_bytes} bytes exceeds {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The data's length.
        length_bytes: usize,
        /// `max_event_payload_bytes`.
        limit_bytes: usize,
    },
    /// The name is over `max_event_name_bytes`.
    #[error("Client event name of {length_bytes} bytes exceeds {limit_bytes} bytes")]
    NameTooLong {
        /// The name's length.
        length_bytes: usize,
        /// `max_event_name_bytes`.
        limit_bytes: usize,
    },
    /// "Publish no more than 10 messages per second per client"; protocol: "4301: Client event
    /// rejected due to rate limit".
    #[error("Client event rejected due to rate limit")]
    RateLimited,
}

impl ClientEventError {
    /// `pusher:error`: code 4301 for the rate limit, no code otherwise.
    pub fn reply(&self) -> Reply {
        let code = match self {
            ClientEventError::RateLimited => Some(4301),
            _ => None,
        };
        Reply::Message(outgoing::error(code, &self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(reply: &Reply) -> &str {
        match reply {
            Reply::Message(bytes) | Reply::Close { message: bytes, .. } => {
                std::str::from_utf8(bytes).unwrap()
            }
        }
    }

    fn close_code(reply: &Reply) -> Option<u16> {
        match reply {
            Reply::Close { code, .. } => Some(code.code()),
            Reply::Message(_) => None,
        }
    }

    #[test]
    fn every_close_code_is_the_documented_number_and_in_its_range() {
        let cases = [
            (CloseCode::AppNotFound, 4001),
            (CloseCode::AppDisabled, 4003),
            (CloseCode::OverConnectionQuota, 4004),
            (CloseCode::PathNotFound, 4005),
            (CloseCode::InvalidVersionFormat, 4006),
            (CloseCode::UnsupportedProtocolVersion, 4007),
            (CloseCode::NoProtocolVersion, 4008),
            (CloseCode::Unauthorized, 4009),
            (CloseCode::OverCapacity, 4100),
            (CloseCode::ReconnectImmediately, 4200),
            (CloseCode::PongNotReceived, 4201),
            (CloseCode::ClosedAfterInactivity, 4202),
        ];
        for (close, number) in cases {
            assert_eq!(close.code(), number);
            let reply = close.reply();
            assert_eq!(close_code(&reply), Some(number));
            let json: serde_json::Value = serde_json::from_str(text(&reply)).unwrap();
            assert_eq!(json["event"], "pusher:error");
            assert_eq!(json["data"]["code"], number);
            assert_eq!(json["data"]["message"], close.reason());
            assert!(close.reason().len() <= 123, "fits a close frame");
        }
    }

    #[test]
    fn connect_errors_close_with_their_codes() {
        let cases = [
            (ConnectError::AppNotFound, 4001),
            (ConnectError::AppDisabled, 4003),
            (ConnectError::OverConnectionQuota, 4004),
            (ConnectError::PathNotFound, 4005),
            (ConnectError::InvalidVersionFormat, 4006),
            (ConnectError::UnsupportedProtocolVersion(5), 4007),
            (ConnectError::NoProtocolVersion, 4008),
        ];
        for (error, number) in cases {
            assert_eq!(close_code(&error.reply()), Some(number), "{error:?}");
        }
    }

    #[test]
    fn client_message_errors_are_uncoded_errors_except_subscribe_channel() {
        let plain = [
            ClientMessageError::MessageTooLarge {
                length_bytes: 2,
                limit_bytes: 1,
            },
            ClientMessageError::MalformedJson("eof".into()),
            ClientMessageError::MissingEvent,
            ClientMessageError::EventNameTooLong { length_bytes: 201 },
            ClientMessageError::UnknownEvent("pusher:nope".into()),
            ClientMessageError::MissingData(MessageKind::Subscribe),
            ClientMessageError::InvalidData {
                kind: MessageKind::Signin,
                detail: "x".into(),
            },
            ClientMessageError::MissingChannel,
            ClientMessageError::InvalidChannel {
                kind: MessageKind::ClientEvent,
                channel: "a b".into(),
                error: ChannelNameError::Empty,
            },
        ];
        for error in plain {
            let reply = error.reply();
            assert_eq!(close_code(&reply), None);
            let json: serde_json::Value = serde_json::from_str(text(&reply)).unwrap();
            assert_eq!(json["event"], "pusher:error", "{error:?}");
            assert!(json["data"]["code"].is_null());
            assert_eq!(json["data"]["message"], error.to_string());
        }
        let subscribe = ClientMessageError::InvalidChannel {
            kind: MessageKind::Subscribe,
            channel: "a b".into(),
            error: ChannelNameError::Empty,
        };
        let json: serde_json::Value = serde_json::from_str(text(&subscribe.reply())).unwrap();
        assert_eq!(json["event"], "pusher:subscription_error");
        assert_eq!(json["channel"], "a b");
        let data: serde_json::Value = serde_json::from_str(json["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["type"], "InvalidChannel");
        assert_eq!(data["status"], 400);
    }

    #[test]
    fn subscribe_errors_are_subscription_errors_on_the_channel() {
        let cases = [
            (SubscribeError::Auth(AuthError::Missing), "AuthError", 401),
            (SubscribeError::ServerToUserForbidden, "AuthError", 403),
            (
                SubscribeError::PresenceDataMissing,
                "InvalidChannelData",
                400,
            ),
            (
                SubscribeError::InvalidChannelData(UserDataError::MissingUserId),
                "InvalidChannelData",
                400,
            ),
            (
                SubscribeError::PresenceFull { limit: 100 },
                "LimitReached",
                403,
            ),
            (
                SubscribeError::TooManyChannels { limit: 10 },
                "LimitReached",
                403,
            ),
        ];
        for (error, error_type, status) in cases {
            let reply = error.reply("presence-room");
            assert_eq!(close_code(&reply), None);
            let json: serde_json::Value = serde_json::from_str(text(&reply)).unwrap();
            assert_eq!(json["event"], "pusher:subscription_error");
            assert_eq!(json["channel"], "presence-room");
            let data: serde_json::Value =
                serde_json::from_str(json["data"].as_str().unwrap()).unwrap();
            assert_eq!(data["type"], error_type, "{error:?}");
            assert_eq!(data["status"], status);
            assert_eq!(data["error"], error.to_string());
        }
    }

    #[test]
    fn signin_and_client_event_errors_are_pusher_errors() {
        let signin = [
            SigninError::Auth(AuthError::Malformed),
            SigninError::InvalidUserData(UserDataError::InvalidUserId),
            SigninError::AlreadySignedIn,
        ];
        for error in signin {
            let json: serde_json::Value = serde_json::from_str(text(&error.reply())).unwrap();
            assert_eq!(json["event"], "pusher:error");
            assert!(json["data"]["code"].is_null());
        }
        let client = [
            (ClientEventError::Disabled, None),
            (ClientEventError::ChannelNotAllowed("news".into()), None),
            (ClientEventError::NotSubscribed("private-a".into()), None),
            (
                ClientEventError::PayloadTooLarge {
                    length_bytes: 2,
                    limit_bytes: 1,
                },
                None,
            ),
            (
                ClientEventError::NameTooLong {
                    length_bytes: 2,
                    limit_bytes: 1,
                },
                None,
            ),
            (ClientEventError::RateLimited, Some(4301_u64)),
        ];
        for (error, code) in client {
            let reply = error.reply();
            assert_eq!(close_code(&reply), None);
            let json: serde_json::Value = serde_json::from_str(text(&reply)).unwrap();
            assert_eq!(json["data"]["code"].as_u64(), code, "{error:?}");
        }
    }
}
