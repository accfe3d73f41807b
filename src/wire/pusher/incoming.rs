//! Incoming (client -> server) messages: one WebSocket text message in, one typed
//! [`ClientMessage`] out.
//!
//! protocol: "Every JSON message contains a single **event** and has an `event` property".
//! The events a client sends are `pusher:ping`, `pusher:pong`, `pusher:subscribe` (data
//! `{channel, auth?, channel_data?}`), `pusher:unsubscribe` (data `{channel}`),
//! `pusher:signin` (data `{auth, user_data}`) and client events (`{event: "client-...",
//! channel, data}`, where "data (String/Object)" is any JSON).
//!
//! pusher-js sends `data` as an object (`JSON.stringify({event, data, channel})`); a `data`
//! that is a string holding an object is accepted too, as the server side of the protocol
//! double-encodes. A client event's `data` is kept as the raw JSON text it arrived as; the
//! relay sends it as a string ([`ClientEvent::data_as_str`]).
//!
//! Unknown fields are ignored. Every error is a [`ClientMessageError`] whose reply is decided
//! in `error.rs`.
//!
//! Deliberately not here: whether the sender may do what it asks (`authorize.rs`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::channel::PusherChannel;
use super::error::{ClientMessageError, MessageKind};

/// Longest event name accepted, in bytes (the limit the official SDKs enforce).
pub const MAX_EVENT_NAME_BYTES: usize = 200;
/// The prefix every client event must have.
pub const CLIENT_EVENT_PREFIX: &str = "client-";

/// One parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage<'a> {
    /// `pusher:ping`: answer `pusher:pong`.
    Ping,
    /// `pusher:pong`: the answer to the server's `pusher:ping`.
    Pong,
    /// `pusher:subscribe`.
    Subscribe(Subscribe),
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel to leave.
        channel: PusherChannel,
    },
    /// `pusher:signin`.
    Signin(Signin),
    /// A `client-` event.
    ClientEvent(ClientEvent<'a>),
}

/// `pusher:subscribe` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The channel to join.
    pub channel: PusherChannel,
    /// `key:signature`, for private, encrypted and presence channels.
    pub auth: Option<String>,
    /// The presence member's JSON, exactly as signed.
    pub channel_data: Option<String>,
}

/// `pusher:signin` data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signin {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// The user's JSON, exactly as signed.
    pub user_data: String,
}

/// A `client-` event.
#[derive(Debug, Clone)]
pub struct ClientEvent<'a> {
    /// The event name (starts with `client-`).
    pub event: String,
    /// The channel it is sent on.
    pub channel: PusherChannel,
    /// The data, as the JSON text it arrived as (`null` when absent).
    pub data: &'a RawValue,
}

impl PartialEq for ClientEvent<'_> {
    fn eq(&self, other: &ClientEvent<'_>) -> bool {
        self.event == other.event
            && self.channel == other.channel
            && self.data.get() == other.data.get()
    }
}

impl ClientEvent<'_> {
    /// The data as the string to relay: a JSON string is unescaped; any other JSON value is
    /// its text (protocol, channel events: "data (String)").
    pub fn data_as_str(&self) -> Cow<'_, str> {
        let raw = self.data.get();
        if raw.starts_with('"')
            && let Ok(text) = serde_json::from_str::<Cow<'_, str>>(raw)
        {
            return text;
        }
        Cow::Borrowed(raw)
    }
}

/// The outer object of every client message.
#[derive(Deserialize)]
struct Envelope<'a> {
    /// `event`.
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    /// `channel` (client events).
    #[serde(default, borrow)]
    channel: Option<Cow<'a, str>>,
    /// `data`, unparsed.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// `pusher:subscribe` data as sent.
#[derive(Deserialize)]
struct SubscribeData {
    /// `channel`.
    channel: String,
    /// `auth`.
    #[serde(default)]
    auth: Option<String>,
    /// `channel_data`.
    #[serde(default)]
    channel_data: Option<String>,
}

/// `pusher:unsubscribe` data as sent.
#[derive(Deserialize)]
struct UnsubscribeData {
    /// `channel`.
    channel: String,
}

/// `pusher:signin` data as sent.
#[derive(Deserialize)]
struct SigninData {
    /// `auth`.
    auth: String,
    /// `user_data`.
    user_data: String,
}

/// Parses one client message of at most `max_message_bytes`.
pub fn parse_client_message<'a>(
    text: &'a str,
    max_message_bytes: usize,
) -> Result<ClientMessage<'a>, ClientMessageError> {
    if text.len() > max_message_bytes {
        return Err(ClientMessageError::MessageTooLarge {
            length_bytes: text.len(),
            limit_bytes: max_message_bytes,
        });
    }
    // serde reads a struct from a JSON array too (positionally); the protocol sends objects.
    if !starts_object(text) {
        return Err(ClientMessageError::MalformedJson(
            "expected a JSON object".to_string(),
        ));
    }
    let envelope: Envelope<'a> = serde_json::from_str(text)
        .map_err(|error| ClientMessageError::MalformedJson(error.to_string()))?;
    let event = envelope.event.ok_or(ClientMessageError::MissingEvent)?;
    if event.len() > MAX_EVENT_NAME_BYTES {
        return Err(ClientMessageError::EventNameTooLong {
            length_bytes: event.len(),
        });
    }
    match event.as_ref() {
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        "pusher:subscribe" => {
            let data: SubscribeData = parse_data(envelope.data, MessageKind::Subscribe)?;
            Ok(ClientMessage::Subscribe(Subscribe {
                channel: parse_channel(&data.channel, MessageKind::Subscribe)?,
                auth: data.auth,
                channel_data: data.channel_data,
            }))
        }
        "pusher:unsubscribe" => {
            let data: UnsubscribeData = parse_data(envelope.data, MessageKind::Unsubscribe)?;
            Ok(ClientMessage::Unsubscribe {
                channel: parse_channel(&data.channel, MessageKind::Unsubscribe)?,
            })
        }
        "pusher:signin" => {
            let data: SigninData = parse_data(envelope.data, MessageKind::Signin)?;
            Ok(ClientMessage::Signin(Signin {
                auth: data.auth,
                user_data: data.user_data,
            }))
        }
        name if name.starts_with(CLIENT_EVENT_PREFIX) => {
            let channel = envelope.channel.ok_or(ClientMessageError::MissingChannel)?;
            Ok(ClientMessage::ClientEvent(ClientEvent {
                event: event.into_owned(),
                channel: parse_channel(&channel, MessageKind::ClientEvent)?,
                data: match envelope.data {
                    Some(data) => data,
                    None => null(),
                },
            }))
        }
        _ => Err(ClientMessageError::UnknownEvent(event.into_owned())),
    }
}

fn null() -> &'static RawValue {
    serde_json::from_str("null").expect("`null` is valid JSON")
}

fn parse_channel(name: &str, kind: MessageKind) -> Result<PusherChannel, ClientMessageError> {
    PusherChannel::parse(name).map_err(|error| ClientMessageError::InvalidChannel {
        kind,
        channel: name.to_string(),
        error,
    })
}

/// Parses `data` as `T`, accepting an object or a string that holds one.
fn parse_data<T: for<'de> Deserialize<'de>>(
    data: Option<&RawValue>,
    kind: MessageKind,
) -> Result<T, ClientMessageError> {
    let raw = data.ok_or(ClientMessageError::MissingData(kind))?;
    let invalid = |error: serde_json::Error| ClientMessageError::InvalidData {
        kind,
        detail: error.to_string(),
    };
    let inner: Cow<'_, str> = if raw.get().starts_with('"') {
        Cow::Owned(serde_json::from_str::<String>(raw.get()).map_err(invalid)?)
    } else {
        Cow::Borrowed(raw.get())
    };
    if !starts_object(&inner) {
        return Err(ClientMessageError::InvalidData {
            kind,
            detail: "expected a JSON object".to_string(),
        });
    }
    serde_json::from_str(&inner).map_err(invalid)
}

/// Does `text` start, after JSON whitespace, with `{`?
pub(crate) fn starts_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// Encodes a client message as pusher-js would send it (tests, the benchmark's Pusher mode).
pub fn encode_client_message(message: &ClientMessage<'_>) -> String {
    #[derive(Serialize)]
    struct Outgoing<'a, D: Serialize> {
        event: &'a str,
        data: D,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Empty {}
    #[derive(Serialize)]
    struct ChannelOnly<'a> {
        channel: &'a str,
    }
    #[derive(Serialize)]
    struct SubscribeOut<'a> {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        auth: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel_data: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct SigninOut<'a> {
        auth: &'a str,
        user_data: &'a str,
    }
    match message {
        ClientMessage::Ping => to_json(&Outgoing {
            event: "pusher:ping",
            data: Empty {},
            channel: None,
        }),
        ClientMessage::Pong => to_json(&Outgoing {
            event: "pusher:pong",
            data: Empty {},
            channel: None,
        }),
        ClientMessage::Subscribe(subscribe) => to_json(&Outgoing {
            event: "pusher:subscribe",
            data: SubscribeOut {
                channel: subscribe.channel.as_str(),
                auth: subscribe.auth.as_deref(),
                channel_data: subscribe.channel_data.as_deref(),
            },
            channel: None,
        }),
        ClientMessage::Unsubscribe { channel } => to_json(&Outgoing {
            event: "pusher:unsubscribe",
            data: ChannelOnly {
                channel: channel.as_str(),
            },
            channel: None,
        }),
        ClientMessage::Signin(signin) => to_json(&Outgoing {
            event: "pusher:signin",
            data: SigninOut {
                auth: &signin.auth,
                user_data: &signin.user_data,
            },
            channel: None,
        }),
        ClientMessage::ClientEvent(client) => to_json(&Outgoing {
            event: &client.event,
            data: client.data,
            channel: Some(client.channel.as_str()),
        }),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serialising strings and raw JSON cannot fail")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::pusher::channel::ChannelNameError;

    const LIMIT: usize = 10 * 1024;

    fn parse(text: &str) -> Result<ClientMessage<'_>, ClientMessageError> {
        parse_client_message(text, LIMIT)
    }

    #[test]
    fn pusher_js_messages() {
        // pusher-js `connection.ping()` without transport pings: send_event('pusher:ping', {}).
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:pong","data":{}}"#),
            Ok(ClientMessage::Pong)
        );
        assert_eq!(parse(r#"{"event":"pusher:ping"}"#), Ok(ClientMessage::Ping));
        // Public channel: pusher-js sends `auth` and `channel_data` undefined (left out).
        let public = parse(r#"{"event":"pusher:subscribe","data":{"channel":"my-channel"}}"#);
        assert_eq!(
            public,
            Ok(ClientMessage::Subscribe(Subscribe {
                channel: PusherChannel::parse("my-channel").unwrap(),
                auth: None,
                channel_data: None,
            }))
        );
        let unsubscribe =
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"my-channel"}}"#);
        assert!(matches!(unsubscribe, Ok(ClientMessage::Unsubscribe { .. })));
    }

    #[test]
    fn protocol_page_presence_example() {
        let text = r#"{
  "event": "pusher:subscribe",
  "data": {
    "channel": "presence-example-channel",
    "auth": "<APP_KEY>:<server_generated_signature>",
    "channel_data": "{ \"user_id\": \"<unique_user_id>\", \"user_info\": { \"name\": \"Phil Leggetter\", \"twitter\": \"@leggetter\", \"blogUrl\":\"http://blog.pusher.com\" } }"
  }
}"#;
        let Ok(ClientMessage::Subscribe(subscribe)) = parse(text) else {
            panic!("not a subscribe");
        };
        assert_eq!(subscribe.channel.as_str(), "presence-example-channel");
        assert_eq!(
            subscribe.auth.as_deref(),
            Some("<APP_KEY>:<server_generated_signature>")
        );
        assert!(subscribe.channel_data.unwrap().starts_with("{ \"user_id\""));
    }

    #[test]
    fn signin_example_and_double_encoded_data() {
        let text =
            r#"{"event":"pusher:signin","data":{"auth":"k:sig","user_data":"{\"id\":\"1\"}"}}"#;
        assert_eq!(
            parse(text),
            Ok(ClientMessage::Signin(Signin {
                auth: "k:sig".into(),
                user_data: r#"{"id":"1"}"#.into()
            }))
        );
        let double = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}"#;
        assert!(matches!(parse(double), Ok(ClientMessage::Subscribe(_))));
    }

    #[test]
    fn client_events_keep_their_data() {
        let text = r#"{"event":"client-typing","data":{"some":"data"},"channel":"private-chat"}"#;
        let Ok(ClientMessage::ClientEvent(event)) = parse(text) else {
            panic!("not a client event");
        };
        assert_eq!(event.event, "client-typing");
        assert_eq!(event.channel.as_str(), "private-chat");
        assert_eq!(event.data_as_str(), r#"{"some":"data"}"#);
        let string_data = r#"{"event":"client-x","data":"he said \"hi\"","channel":"private-a"}"#;
        let Ok(ClientMessage::ClientEvent(event)) = parse(string_data) else {
            panic!("not a client event");
        };
        assert_eq!(event.data_as_str(), r#"he said "hi""#);
        let no_data = r#"{"event":"client-x","channel":"private-a"}"#;
        let Ok(ClientMessage::ClientEvent(event)) = parse(no_data) else {
            panic!("not a client event");
        };
        assert_eq!(event.data_as_str(), "null");
    }

    #[test]
    fn one_test_per_error_variant() {
        assert_eq!(
            parse_client_message(r#"{"event":"pusher:ping"}"#, 5),
            Err(ClientMessageError::MessageTooLarge {
                length_bytes: 23,
                limit_bytes: 5
            })
        );
        for malformed in [
            "",
            "{",
            "[]",
            "[\"pusher:ping\"]",
            "\"x\"",
            "{\"event\":1}",
            "nul",
        ] {
            assert!(
                matches!(parse(malformed), Err(ClientMessageError::MalformedJson(_))),
                "{malformed:?}"
            );
        }
        assert_eq!(
            parse(r#"{"data":{}}"#),
            Err(ClientMessageError::MissingEvent)
        );
        let long_name = format!(
            r#"{{"event":"client-{}","channel":"private-a"}}"#,
            "x".repeat(194)
        );
        assert_eq!(
            parse(&long_name),
            Err(ClientMessageError::EventNameTooLong { length_bytes: 201 })
        );
        assert_eq!(
            parse(r#"{"event":"my-event","channel":"private-a"}"#),
            Err(ClientMessageError::UnknownEvent("my-event".into()))
        );
        assert_eq!(
            parse(r#"{"event":"pusher_internal:subscription_succeeded"}"#),
            Err(ClientMessageError::UnknownEvent(
                "pusher_internal:subscription_succeeded".into()
            ))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe"}"#),
            Err(ClientMessageError::MissingData(MessageKind::Subscribe))
        );
        for bad_data in [
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":7}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":1}}"#,
            r#"{"event":"pusher:subscribe","data":"not json"}"#,
            r#"{"event":"pusher:subscribe","data":[]}"#,
        ] {
            assert!(
                matches!(
                    parse(bad_data),
                    Err(ClientMessageError::InvalidData {
                        kind: MessageKind::Subscribe,
                        ..
                    })
                ),
                "{bad_data}"
            );
        }
        assert!(matches!(
            parse(r#"{"event":"pusher:signin","data":{"auth":"a"}}"#),
            Err(ClientMessageError::InvalidData {
                kind: MessageKind::Signin,
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"event":"client-x","data":{}}"#),
            Err(ClientMessageError::MissingChannel)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#),
            Err(ClientMessageError::InvalidChannel {
                kind: MessageKind::Subscribe,
                channel: "a b".into(),
                error: ChannelNameError::InvalidCharacter {
                    character: ' ',
                    position: 1
                }
            })
        );
        assert!(matches!(
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":""}}"#),
            Err(ClientMessageError::InvalidChannel {
                kind: MessageKind::Unsubscribe,
                ..
            })
        ));
        assert!(matches!(
            parse(r##"{"event":"client-x","channel":"#x"}"##),
            Err(ClientMessageError::InvalidChannel {
                kind: MessageKind::ClientEvent,
                ..
            })
        ));
    }

    fn channel_name() -> impl Strategy<Value = String> {
        let prefix = prop_oneof![
            Just(""),
            Just("private-"),
            Just("private-encrypted-"),
            Just("presence-"),
            Just("cache-"),
            Just("presence-cache-"),
        ];
        (prefix, "[A-Za-z0-9_\\-=@,.;]{1,140}").prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
    }

    proptest! {
        #[test]
        fn any_valid_subscribe_encodes_and_parses_back(
            name in channel_name(),
            auth in proptest::option::of(any::<String>()),
            channel_data in proptest::option::of(any::<String>()),
        ) {
            let message = ClientMessage::Subscribe(Subscribe {
                channel: PusherChannel::parse(&name).unwrap(),
                auth,
                channel_data,
            });
            let text = encode_client_message(&message);
            prop_assert_eq!(parse_client_message(&text, usize::MAX), Ok(message));
        }

        #[test]
        fn any_client_event_encodes_and_parses_back(
            name in channel_name(),
            event in "client-[a-z0-9-]{1,50}",
            data in any::<String>(),
        ) {
            let raw = serde_json::value::to_raw_value(&data).unwrap();
            let message = ClientMessage::ClientEvent(ClientEvent {
                event,
                channel: PusherChannel::parse(&name).unwrap(),
                data: &raw,
            });
            let text = encode_client_message(&message);
            let parsed = parse_client_message(&text, usize::MAX).unwrap();
            let ClientMessage::ClientEvent(parsed_event) = &parsed else {
                panic!("not a client event");
            };
            prop_assert_eq!(parsed_event.data_as_str(), data.as_str());
            prop_assert_eq!(&parsed, &message);
        }

        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = parse_client_message(&text, LIMIT);
        }
    }

    #[test]
    fn other_messages_round_trip() {
        let messages = [
            ClientMessage::Ping,
            ClientMessage::Pong,
            ClientMessage::Unsubscribe {
                channel: PusherChannel::parse("news").unwrap(),
            },
            ClientMessage::Signin(Signin {
                auth: "k:s".into(),
                user_data: r#"{"id":"1"}"#.into(),
            }),
        ];
        for message in messages {
            assert_eq!(parse(&encode_client_message(&message)), Ok(message));
        }
    }
}
