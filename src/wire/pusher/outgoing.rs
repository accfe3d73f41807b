//! Outgoing (server -> client) messages: JSON text built with `serde_json`, returned as `Bytes`
//! ready to be framed.
//!
//! protocol, "Double encoding": "Pusher Channels tries to send the `data` field as a string.
//! In case of `pusher:` events data may be JSON-serialized first". So channel events carry the
//! published string as-is, and `connection_established`, `subscription_succeeded`,
//! `member_added`/`member_removed`, `subscription_count`, `subscription_error` and
//! `cache_miss` carry a JSON-encoded string. `pusher:error`, `pusher:signin_success`,
//! `pusher:ping`/`pusher:pong` carry an object, as their sections of the protocol page show.
//! pusher-js accepts both: `decodeMessage` parses `data` when it is a string.
//!
//! The hot path is [`event`]: one envelope per published message, shared by every subscriber
//! (the caller clones the `Bytes`). Its buffer is allocated once at an estimate that holds
//! typical payloads (data + 25% for escapes), then written in one pass of `serde_json`'s
//! escaper.
//!
//! Deliberately not here: framing (`protocol::frame`), fan-out, and what data means.

use bytes::Bytes;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;

use super::channel::PusherChannel;
use super::error::SubscriptionErrorType;
use super::socket_id::SocketId;

/// The event name a raw (`POST /publish/{channel}`, ws4redis) message gets on Pusher
/// connections (issue 13: "reaches Pusher subscribers as event `message` with the body as
/// `data`").
pub const RAW_MESSAGE_EVENT: &str = "message";

/// The event a publication carries to end every connection of a user
/// (`terminate_connections`): never sent to a client, it closes the user's connections.
pub const TERMINATE_EVENT: &str = "pusher_internal:terminate_connections";

/// Is `event` one of the protocol's own (`pusher:` or `pusher_internal:`), which only Pusher
/// subscribers understand?
pub fn is_internal_event(event: &str) -> bool {
    event.starts_with("pusher_internal:") || event.starts_with("pusher:")
}

/// A raw message cannot become a Pusher event: `data` is a JSON string, so it must be UTF-8.
/// The server delivers the message to raw subscribers only and counts the skip; re-encoding
/// (base64, lossy UTF-8) would silently change what Pusher clients receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("raw message is not valid UTF-8; a Pusher event's data must be a string")]
pub struct DataNotUtf8;

/// An envelope: `{"event":..,"channel":..,"data":..,"user_id":..}`, absent fields left out.
#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    /// Event name.
    event: &'a str,
    /// Channel, for channel events.
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    /// Payload.
    data: D,
    /// The sender of a client event on a presence channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn encode<T: Serialize>(value: &T, capacity: usize) -> Bytes {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value)
        .expect("serialising strings, numbers and string-keyed maps into a Vec cannot fail");
    Bytes::from(out)
}

fn to_json_string<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .expect("serialising strings, numbers and string-keyed maps cannot fail")
}

fn envelope<D: Serialize>(event: &str, channel: Option<&str>, data: D) -> Bytes {
    let capacity = 48 + event.len() + channel.map_or(0, str::len);
    encode(
        &Envelope {
            event,
            channel,
            data,
            user_id: None,
        },
        capacity,
    )
}

/// The empty object, double-encoded (`"{}"`).
const EMPTY_OBJECT_STRING: &str = "{}";

/// `pusher:connection_established`, data `{"socket_id":..,"activity_timeout":..}` as a string.
/// pusher-js refuses a zero `activity_timeout` ("No activity timeout specified in
/// handshake"), so 0 is raised to 1.
pub fn connection_established(socket_id: SocketId, activity_timeout_s: u32) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        socket_id: String,
        activity_timeout: u32,
    }
    let data = to_json_string(&Data {
        socket_id: socket_id.to_string(),
        activity_timeout: activity_timeout_s.max(1),
    });
    envelope("pusher:connection_established", None, data.as_str())
}

/// `pusher:error`, data `{"code":..,"message":..}` (code `null` when there is none).
pub fn error(code: Option<u16>, message: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    let capacity = 64 + message.len();
    encode(
        &Envelope {
            event: "pusher:error",
            channel: None,
            data: Data { code, message },
            user_id: None,
        },
        capacity,
    )
}

/// An empty JSON object, for `pusher:ping`/`pusher:pong` ("both have empty data").
#[derive(Serialize)]
struct EmptyObject {}

/// `pusher:pong`, the answer to `pusher:ping`.
pub fn pong() -> Bytes {
    envelope("pusher:pong", None, EmptyObject {})
}

/// `pusher:ping`, for clients that only answer protocol-level pings with events.
pub fn ping() -> Bytes {
    envelope("pusher:ping", None, EmptyObject {})
}

/// `pusher_internal:subscription_succeeded` for a channel without presence (data `"{}"`).
pub fn subscription_succeeded(channel: &PusherChannel) -> Bytes {
    envelope(
        "pusher_internal:subscription_succeeded",
        Some(channel.as_str()),
        EMPTY_OBJECT_STRING,
    )
}

/// One presence member, as the server stores it. Equal when the ids and the `user_info`
/// texts are equal.
#[derive(Debug, Clone, Copy)]
pub struct MemberRef<'a> {
    /// The user id.
    pub user_id: &'a str,
    /// The `user_info` JSON, if the member has one.
    pub user_info: Option<&'a RawValue>,
}

impl PartialEq for MemberRef<'_> {
    fn eq(&self, other: &MemberRef<'_>) -> bool {
        self.user_id == other.user_id
            && self.user_info.map(RawValue::get) == other.user_info.map(RawValue::get)
    }
}

impl Eq for MemberRef<'_> {}

/// `{"presence":{"ids":[..],"hash":{id: info},"count":n}}`.
struct PresenceData<'a>(&'a [MemberRef<'a>]);

/// `user_info` or `{}`: the protocol types it as an Object, and pusher-js hands it to the
/// application as `member.info`.
fn info_or_empty<'a>(member: &MemberRef<'a>) -> &'a RawValue {
    const EMPTY: &str = "{}";
    member.user_info.unwrap_or_else(|| {
        let empty: &'static RawValue = serde_json::from_str(EMPTY).expect("`{}` is valid JSON");
        empty
    })
}

impl Serialize for PresenceData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Ids<'a>(&'a [MemberRef<'a>]);
        impl Serialize for Ids<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|member| member.user_id))
            }
        }
        struct Hash<'a>(&'a [MemberRef<'a>]);
        impl Serialize for Hash<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(
                    self.0
                        .iter()
                        .map(|member| (member.user_id, info_or_empty(member))),
                )
            }
        }
        let mut presence = serializer.serialize_map(Some(3))?;
        presence.serialize_entry("ids", &Ids(self.0))?;
        presence.serialize_entry("hash", &Hash(self.0))?;
        presence.serialize_entry("count", &self.0.len())?;
        presence.end()
    }
}

/// `pusher_internal:subscription_succeeded` for a presence channel: data (a string)
/// `{"presence":{"ids":[..],"hash":{..},"count":n}}`, `members` distinct by user id.
pub fn subscription_succeeded_presence(
    channel: &PusherChannel,
    members: &[MemberRef<'_>],
) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        presence: PresenceData<'a>,
    }
    let data = to_json_string(&Data {
        presence: PresenceData(members),
    });
    envelope(
        "pusher_internal:subscription_succeeded",
        Some(channel.as_str()),
        data.as_str(),
    )
}

/// `pusher:subscription_error` on `channel`, data (a string) `{"type","error","status"}`.
pub fn subscription_error(
    channel: &str,
    error_type: SubscriptionErrorType,
    message: &str,
    status: u16,
) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        error_type: &'a str,
        error: &'a str,
        status: u16,
    }
    let data = to_json_string(&Data {
        error_type: error_type.as_str(),
        error: message,
        status,
    });
    envelope("pusher:subscription_error", Some(channel), data.as_str())
}

/// The event name of a member's arrival.
pub const MEMBER_ADDED_EVENT: &str = "pusher_internal:member_added";
/// The event name of a member's departure.
pub const MEMBER_REMOVED_EVENT: &str = "pusher_internal:member_removed";

/// `pusher_internal:member_added`, data (a string) `{"user_id":..,"user_info":..}`.
pub fn member_added(channel: &PusherChannel, member: MemberRef<'_>) -> Bytes {
    let data = member_added_data(member);
    envelope(MEMBER_ADDED_EVENT, Some(channel.as_str()), data.as_str())
}

/// The `data` string of `pusher_internal:member_added`.
pub fn member_added_data(member: MemberRef<'_>) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
        user_info: &'a RawValue,
    }
    to_json_string(&Data {
        user_id: member.user_id,
        user_info: info_or_empty(&member),
    })
}

/// `pusher_internal:member_removed`, data (a string) `{"user_id":..}`.
pub fn member_removed(channel: &PusherChannel, user_id: &str) -> Bytes {
    let data = member_removed_data(user_id);
    envelope(MEMBER_REMOVED_EVENT, Some(channel.as_str()), data.as_str())
}

/// The `data` string of `pusher_internal:member_removed`.
pub fn member_removed_data(user_id: &str) -> String {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
    }
    to_json_string(&Data { user_id })
}

/// `pusher:signin_success`, data `{"user_data":..}` with the exact `user_data` string the
/// client signed in with (pusher-js `JSON.parse`s it and requires a non-empty string `id`).
pub fn signin_success(user_data: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        user_data: &'a str,
    }
    encode(
        &Envelope {
            event: "pusher:signin_success",
            channel: None,
            data: Data { user_data },
            user_id: None,
        },
        64 + user_data.len() + user_data.len() / 4,
    )
}

/// `pusher:cache_miss` on a cache channel with nothing cached (data `"{}"`).
pub fn cache_miss(channel: &PusherChannel) -> Bytes {
    envelope(
        "pusher:cache_miss",
        Some(channel.as_str()),
        EMPTY_OBJECT_STRING,
    )
}

/// `pusher_internal:subscription_count`, data (a string) `{"subscription_count":n}`; pusher-js
/// re-emits it as `pusher:subscription_count`.
pub fn subscription_count(channel: &PusherChannel, count: u64) -> Bytes {
    let data = subscription_count_data(count);
    envelope(
        SUBSCRIPTION_COUNT_EVENT,
        Some(channel.as_str()),
        data.as_str(),
    )
}

/// The event name of a channel's subscription count.
pub const SUBSCRIPTION_COUNT_EVENT: &str = "pusher_internal:subscription_count";

/// The `data` string of `pusher_internal:subscription_count`.
pub fn subscription_count_data(count: u64) -> String {
    #[derive(Serialize)]
    struct Data {
        subscription_count: u64,
    }
    to_json_string(&Data {
        subscription_count: count,
    })
}

/// A channel event: `{"event":..,"channel":..,"data":..}` plus `"user_id"` for a client event
/// on a presence channel (protocol: "The `user_id` key is only present if this is a client
/// event on a presence channel"). `data` is the published string, as-is.
///
/// Built once per published message; every subscriber gets a clone of the same `Bytes`.
pub fn event(channel: &str, event_name: &str, data: &str, user_id: Option<&str>) -> Bytes {
    Bytes::from(event_buffer(channel, event_name, data, user_id))
}

/// The envelope's buffer, allocated once at [`event_capacity`].
fn event_buffer(channel: &str, event_name: &str, data: &str, user_id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_capacity(channel, event_name, data, user_id));
    let envelope = Envelope {
        event: event_name,
        channel: Some(channel),
        data,
        user_id,
    };
    serde_json::to_writer(&mut out, &envelope).expect("serialising strings into a Vec cannot fail");
    out
}

/// The envelope's size estimate: the fixed text, the names, and the data plus a quarter for
/// escapes (a JSON payload escapes its quotes: 10-25% of its bytes). No scan of the data:
/// counting its escapes exactly costs as much as writing it (measured), and a payload that
/// escapes more grows the buffer once.
pub fn event_capacity(channel: &str, event_name: &str, data: &str, user_id: Option<&str>) -> usize {
    // `{"event":""` `,"channel":""` `,"data":""` `}`, and `,"user_id":""`.
    const FIXED_BYTES: usize = 11 + 13 + 10 + 1;
    const USER_ID_BYTES: usize = 13;
    FIXED_BYTES
        + event_name.len()
        + channel.len()
        + data.len()
        + data.len() / 4
        + user_id.map_or(0, |id| USER_ID_BYTES + id.len())
        + 16
}

/// A raw message (`POST /publish/{channel}`, ws4redis) as the Pusher event `message`.
pub fn raw_message_event(channel: &PusherChannel, body: &[u8]) -> Result<Bytes, DataNotUtf8> {
    let data = std::str::from_utf8(body).map_err(|_| DataNotUtf8)?;
    Ok(event(channel.as_str(), RAW_MESSAGE_EVENT, data, None))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn parse(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    /// pusher-js's `decodeMessage`: parse, then parse `data` again if it is a string that is
    /// JSON.
    fn decode_like_pusher_js(bytes: &Bytes) -> Value {
        let mut message = parse(bytes);
        if let Some(text) = message["data"].as_str()
            && let Ok(inner) = serde_json::from_str::<Value>(text)
        {
            message["data"] = inner;
        }
        message
    }

    fn channel(name: &str) -> PusherChannel {
        PusherChannel::parse(name).unwrap()
    }

    #[test]
    fn connection_established_double_encodes_as_the_docs_show() {
        let socket_id = SocketId::parse("123.456").unwrap();
        let bytes = connection_established(socket_id, 120);
        assert_eq!(
            &bytes[..],
            br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
        let zero = decode_like_pusher_js(&connection_established(socket_id, 0));
        assert_eq!(zero["data"]["activity_timeout"], 1);
    }

    #[test]
    fn error_pong_ping_have_object_data() {
        assert_eq!(
            &error(Some(4301), "Client event rejected due to rate limit")[..],
            br#"{"event":"pusher:error","data":{"code":4301,"message":"Client event rejected due to rate limit"}}"#
        );
        assert_eq!(
            &error(None, "x")[..],
            br#"{"event":"pusher:error","data":{"code":null,"message":"x"}}"#
        );
        assert_eq!(&pong()[..], br#"{"event":"pusher:pong","data":{}}"#);
        assert_eq!(&ping()[..], br#"{"event":"pusher:ping","data":{}}"#);
    }

    #[test]
    fn subscription_succeeded_plain_and_presence() {
        assert_eq!(
            &subscription_succeeded(&channel("private-a"))[..],
            br#"{"event":"pusher_internal:subscription_succeeded","channel":"private-a","data":"{}"}"#
        );
        let info: Box<RawValue> = serde_json::from_str(r#"{"name":"Phil Leggetter"}"#).unwrap();
        let members = [
            MemberRef {
                user_id: "11814b369700141b222a3f3791cec2d9",
                user_info: Some(&info),
            },
            MemberRef {
                user_id: "7",
                user_info: None,
            },
        ];
        let bytes = subscription_succeeded_presence(&channel("presence-example-channel"), &members);
        let message = decode_like_pusher_js(&bytes);
        assert_eq!(message["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(message["channel"], "presence-example-channel");
        assert_eq!(
            message["data"],
            json!({"presence": {
                "ids": ["11814b369700141b222a3f3791cec2d9", "7"],
                "hash": {"11814b369700141b222a3f3791cec2d9": {"name": "Phil Leggetter"}, "7": {}},
                "count": 2
            }})
        );
        let empty = decode_like_pusher_js(&subscription_succeeded_presence(
            &channel("presence-x"),
            &[],
        ));
        assert_eq!(
            empty["data"],
            json!({"presence": {"ids": [], "hash": {}, "count": 0}})
        );
    }

    #[test]
    fn members_added_and_removed() {
        let info: Box<RawValue> = serde_json::from_str(r#"{"twitter":"@leggetter"}"#).unwrap();
        let added = member_added(
            &channel("presence-x"),
            MemberRef {
                user_id: "u1",
                user_info: Some(&info),
            },
        );
        assert_eq!(
            &added[..],
            br#"{"event":"pusher_internal:member_added","channel":"presence-x","data":"{\"user_id\":\"u1\",\"user_info\":{\"twitter\":\"@leggetter\"}}"}"#
        );
        assert_eq!(
            &member_removed(&channel("presence-x"), "u1")[..],
            br#"{"event":"pusher_internal:member_removed","channel":"presence-x","data":"{\"user_id\":\"u1\"}"}"#
        );
    }

    #[test]
    fn signin_cache_count_and_subscription_error() {
        let user_data = r#"{"id":"12345"}"#;
        let message = parse(&signin_success(user_data));
        assert_eq!(message["event"], "pusher:signin_success");
        assert_eq!(message["data"]["user_data"], user_data);
        assert_eq!(
            &cache_miss(&channel("cache-a"))[..],
            br#"{"event":"pusher:cache_miss","channel":"cache-a","data":"{}"}"#
        );
        let count = decode_like_pusher_js(&subscription_count(&channel("a"), 3));
        assert_eq!(count["event"], "pusher_internal:subscription_count");
        assert_eq!(count["data"]["subscription_count"], 3);
        let failed = decode_like_pusher_js(&subscription_error(
            "private-a",
            SubscriptionErrorType::AuthError,
            "nope",
            401,
        ));
        assert_eq!(failed["channel"], "private-a");
        assert_eq!(
            failed["data"],
            json!({"type": "AuthError", "error": "nope", "status": 401})
        );
    }

    #[test]
    fn event_envelope_carries_data_as_a_string() {
        assert_eq!(
            &event("my-channel", "my-event", r#"{"hello":"world"}"#, None)[..],
            br#"{"event":"my-event","channel":"my-channel","data":"{\"hello\":\"world\"}"}"#
        );
        assert_eq!(
            &event("presence-a", "client-typing", "hi", Some("u1"))[..],
            br#"{"event":"client-typing","channel":"presence-a","data":"hi","user_id":"u1"}"#
        );
        let decoded = decode_like_pusher_js(&event("a", "e", r#"{"n":1}"#, None));
        assert_eq!(decoded["data"], json!({"n": 1}));
        let plain = decode_like_pusher_js(&event("a", "e", "just text", None));
        assert_eq!(plain["data"], "just text");
    }

    #[test]
    fn raw_messages_become_message_events_or_are_refused() {
        let bytes = raw_message_event(&channel("news"), b"hello").unwrap();
        assert_eq!(
            &bytes[..],
            br#"{"event":"message","channel":"news","data":"hello"}"#
        );
        assert_eq!(
            raw_message_event(&channel("news"), &[0xff, 0xfe]),
            Err(DataNotUtf8)
        );
    }

    #[test]
    fn typical_payloads_fit_the_estimate_without_growing() {
        let payloads = [
            r#"{"id":12345,"text":"hello world","tags":["a","b"],"ok":true}"#,
            r#"{"user":{"name":"Phil Leggetter","twitter":"@leggetter"},"message":"Hi!"}"#,
            "plain text of some length with no quotes at all",
            "",
        ];
        for data in payloads {
            let buffer = event_buffer("presence-room", "new-message", data, Some("u1"));
            assert_eq!(
                buffer.capacity(),
                event_capacity("presence-room", "new-message", data, Some("u1")),
                "{data}"
            );
        }
    }

    /// Timing, not a check: `cargo test --release --lib -- --ignored time_event_envelope
    /// --nocapture`. Compares the pre-sized envelope with `serde_json::to_vec` growing its
    /// buffer from empty.
    #[test]
    #[ignore = "timing; run in release with --ignored --nocapture"]
    fn time_event_envelope() {
        use std::hint::black_box;
        use std::time::Instant;
        const ITERATIONS: u32 = 1_000_000;
        let payloads = [
            (
                "64 B JSON",
                r#"{"id":12345,"text":"hello world","tags":["a","b"],"ok":true}"#.to_string(),
            ),
            ("1 KiB text", "x".repeat(1024)),
            (
                "10 KiB JSON",
                format!(r#"{{"blob":"{}"}}"#, "y".repeat(10 * 1024 - 11)),
            ),
        ];
        for (label, data) in &payloads {
            let start = Instant::now();
            // Bounded: ITERATIONS.
            for _ in 0..ITERATIONS {
                black_box(event(
                    black_box("my-channel"),
                    "my-event",
                    black_box(data),
                    None,
                ));
            }
            let presized_ns = start.elapsed().as_nanos() / u128::from(ITERATIONS);
            let start = Instant::now();
            // Bounded: ITERATIONS.
            for _ in 0..ITERATIONS {
                let envelope = Envelope {
                    event: "my-event",
                    channel: Some(black_box("my-channel")),
                    data: black_box(data.as_str()),
                    user_id: None,
                };
                black_box(Bytes::from(serde_json::to_vec(&envelope).unwrap()));
            }
            let growing_ns = start.elapsed().as_nanos() / u128::from(ITERATIONS);
            println!(
                "{label}: pre-sized {presized_ns} ns/envelope, growing buffer {growing_ns} ns/envelope"
            );
        }
    }

    proptest! {
        #[test]
        fn event_round_trips(
            name in "client-[a-z]{1,10}",
            data in any::<String>(),
            user_id in proptest::option::of(any::<String>()),
        ) {
            let bytes = event("presence-a", &name, &data, user_id.as_deref());
            let message = parse(&bytes);
            prop_assert_eq!(message["event"].as_str(), Some(name.as_str()));
            prop_assert_eq!(message["data"].as_str(), Some(data.as_str()));
            prop_assert_eq!(message["user_id"].as_str(), user_id.as_deref());
        }
    }
}
