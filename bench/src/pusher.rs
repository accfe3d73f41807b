//! Pusher Channels protocol 7 for the harness, as pure functions over bytes: the subscriber's
//! path and messages, the cheap reading of the server's frames, and the signed trigger request.
//!
//! Sources are Pusher's own docs (the `pusher/docs` repository): `pusher-websockets-protocol`
//! for the WebSocket side, `rest-api` ("Authentication", "Worked authentication example") for
//! the signature. Deliberately not here: sockets, timing and accounting (`client`, `publisher`).
//!
//! Frames are not parsed as JSON. The harness's payloads are ASCII without quotes or
//! backslashes, so a field's string value is the bytes between `"key":"` and the next `"`;
//! a frame is classified by its `"event"` value alone. This costs a few `memchr` scans per frame
//! and allocates nothing, so the receiver stays as cheap as on the raw path.

use std::io::Write;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// rest-api.md: "auth_version ... currently 1.0".
const AUTH_VERSION: &str = "1.0";
/// Bytes a server's Pusher message may add around a payload (event name, channel, JSON), and
/// the largest protocol message (`pusher:connection_established` is about 120 bytes).
pub const ENVELOPE_BYTES_MAX: usize = 1024;
/// The event name every trigger of the harness uses (short: the envelope is overhead).
pub const EVENT_NAME: &str = "m";
/// protocol: "pusher:pong ... Sent in response to a pusher:ping"; both have empty data.
pub const PONG_MESSAGE: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

/// One Pusher application (`--app-id`, `--app-key`, `--app-secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherApp {
    /// Application id, in the API path `/apps/{id}/events`.
    pub id: String,
    /// Key, in the WebSocket path `/app/{key}` and the `auth_key` of API requests.
    pub key: String,
    /// Secret that signs API requests.
    pub secret: String,
}

/// protocol, "WebSocket connection": `ws://ws-{cluster}.pusher.com:[80|443]/app/[key]` with
/// `protocol`, `client` and `version` query parameters.
pub fn subscriber_path(app: &PusherApp) -> String {
    format!(
        "/app/{}?protocol=7&client=ringcast-bench&version={}",
        app.key,
        env!("CARGO_PKG_VERSION")
    )
}

/// protocol, "pusher:subscribe (client -> Pusher)": `{"event":"pusher:subscribe","data":
/// {"channel":String}}` (public channels need no `auth`).
pub fn subscribe_message(channel: &str) -> Vec<u8> {
    format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#).into_bytes()
}

/// What a text frame from the server says, as far as the harness cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// `pusher:connection_established`: the subscribe may be sent.
    ConnectionEstablished,
    /// `pusher_internal:subscription_succeeded` for `channel`.
    SubscriptionSucceeded {
        /// The channel's name as sent.
        channel: &'a [u8],
    },
    /// `pusher:ping`: answer with `pusher:pong`.
    Ping,
    /// `pusher:error` or `pusher:subscription_error`: the server refused something.
    Error,
    /// The harness's event ([`EVENT_NAME`]) with its `data` string.
    Event {
        /// The `data` string's bytes (no quotes; not unescaped).
        data: &'a [u8],
    },
    /// Anything else (another event, or a frame without a readable `event`).
    Other,
}

/// Classifies one text frame by its `event` value, and extracts what that event needs.
pub fn classify(frame: &[u8]) -> ServerMessage<'_> {
    let Some(event) = string_field(frame, b"event") else {
        return ServerMessage::Other;
    };
    match event {
        b"m" => match string_field(frame, b"data") {
            Some(data) => ServerMessage::Event { data },
            None => ServerMessage::Other,
        },
        b"pusher:ping" => ServerMessage::Ping,
        b"pusher:connection_established" => ServerMessage::ConnectionEstablished,
        b"pusher_internal:subscription_succeeded" => match string_field(frame, b"channel") {
            Some(channel) => ServerMessage::SubscriptionSucceeded { channel },
            None => ServerMessage::Other,
        },
        b"pusher:error" | b"pusher:subscription_error" => ServerMessage::Error,
        _ => ServerMessage::Other,
    }
}

/// The string value of top-level-looking field `key`: the bytes between `"key":"` (whitespace
/// allowed around the colon) and the next `"`. `None` if absent or not a string.
///
/// Not a JSON parser: escapes are not decoded (a value with `\"` ends early), and a key that
/// occurs inside an earlier string value would be found there. Neither happens with the
/// envelopes servers send and the harness's payloads (ASCII, no quotes or backslashes).
pub fn string_field<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    // Bounded: each iteration moves `from` past one occurrence of the key's first quote.
    while from < frame.len() {
        let quote = from + memchr::memchr(b'"', &frame[from..])?;
        let after_key = quote + 1 + key.len();
        let is_key =
            frame.get(quote + 1..after_key) == Some(key) && frame.get(after_key) == Some(&b'"');
        if !is_key {
            from = quote + 1;
            continue;
        }
        let mut index = after_key + 1;
        index += skip_whitespace(&frame[index..]);
        if frame.get(index) != Some(&b':') {
            from = quote + 1;
            continue;
        }
        index += 1;
        index += skip_whitespace(&frame[index..]);
        if frame.get(index) != Some(&b'"') {
            return None;
        }
        let start = index + 1;
        let length = memchr::memchr(b'"', &frame[start..])?;
        return Some(&frame[start..start + length]);
    }
    None
}

/// JSON whitespace at the start of `bytes`.
fn skip_whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
        .count()
}

/// Lowercase hex of `bytes`.
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    text
}

/// rest-api.md: "body_md5 ... The hex MD5 of the body".
pub fn body_md5_hex(body: &[u8]) -> String {
    hex_lower(&Md5::digest(body))
}

/// rest-api.md: "auth_signature ... a HMAC SHA256 hex digest" with the app secret of
/// "the following components concatenated with newline characters": the method, the path and
/// the query parameters sorted by key (`query_sorted`, not URL-escaped).
pub fn signature_hex(secret: &str, method: &str, path: &str, query_sorted: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(query_sorted.as_bytes());
    hex_lower(&mac.finalize().into_bytes())
}

/// The signed query of a request with `body`: `auth_key`, `auth_timestamp`, `auth_version`,
/// `body_md5` (already in sorted order), then `auth_signature` over them.
pub fn signed_query(app: &PusherApp, method: &str, path: &str, body: &[u8], now_s: u64) -> String {
    let query = format!(
        "auth_key={}&auth_timestamp={now_s}&auth_version={AUTH_VERSION}&body_md5={}",
        app.key,
        body_md5_hex(body)
    );
    let signature = signature_hex(&app.secret, method, path, &query);
    format!("{query}&auth_signature={signature}")
}

/// The body of a trigger: rest-api.md "POST event": `name`, `channel`, `data` (a string).
/// `payload` must need no JSON escaping (the harness's text payloads).
pub fn write_trigger_body(body: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    body.clear();
    body.extend_from_slice(br#"{"name":""#);
    body.extend_from_slice(EVENT_NAME.as_bytes());
    body.extend_from_slice(br#"","channel":""#);
    body.extend_from_slice(channel.as_bytes());
    body.extend_from_slice(br#"","data":""#);
    body.extend_from_slice(payload);
    body.extend_from_slice(br#""}"#);
}

/// Writes the whole signed `POST /apps/{id}/events` request for `body` into `request`
/// (cleared first; its capacity is reused).
pub fn write_trigger_request(
    request: &mut Vec<u8>,
    app: &PusherApp,
    host_header: &str,
    body: &[u8],
    now_s: u64,
) {
    let path = format!("/apps/{}/events", app.id);
    let query = signed_query(app, "POST", &path, body, now_s);
    request.clear();
    write!(
        request,
        "POST {path}?{query} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("writing into a Vec cannot fail");
    request.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rest-api.md, "Worked authentication example": app_id 3, key 278d425bdf160c739803,
    /// secret 7ad3773142a6692b25b8, timestamp 1353088179.
    fn docs_app() -> PusherApp {
        PusherApp {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        }
    }
    const DOCS_BODY: &[u8] =
        br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    #[test]
    fn worked_authentication_example_from_the_docs() {
        assert_eq!(body_md5_hex(DOCS_BODY), "ec365a775a4cd0599faeb73354201b6f");
        assert_eq!(
            signature_hex(
                "7ad3773142a6692b25b8",
                "POST",
                "/apps/3/events",
                "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
            ),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        // "The api request then becomes POST /apps/3/events?auth_key=...&auth_signature=...".
        assert_eq!(
            signed_query(
                &docs_app(),
                "POST",
                "/apps/3/events",
                DOCS_BODY,
                1_353_088_179
            ),
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn trigger_request_carries_the_signed_body() {
        let mut body = Vec::new();
        write_trigger_body(&mut body, "bench-0", b"rc0123");
        assert_eq!(
            body,
            br#"{"name":"m","channel":"bench-0","data":"rc0123"}"#.to_vec()
        );
        let mut request = Vec::new();
        write_trigger_request(&mut request, &docs_app(), "h:1", &body, 1_353_088_179);
        let text = String::from_utf8(request).unwrap();
        let query = signed_query(&docs_app(), "POST", "/apps/3/events", &body, 1_353_088_179);
        assert!(text.starts_with(&format!("POST /apps/3/events?{query} HTTP/1.1\r\n")));
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(text.ends_with(r#""data":"rc0123"}"#));
    }

    #[test]
    fn events_are_classified_and_their_payload_found() {
        let payload = "rc00000000000000000000000000000000000000000000000.........";
        // Field order differs between servers (serde struct order, JSON.stringify order).
        for frame in [
            format!(r#"{{"event":"m","channel":"bench-0","data":"{payload}"}}"#),
            format!(r#"{{"channel":"bench-0","event":"m","data":"{payload}"}}"#),
            format!(r#"{{"data":"{payload}","event":"m","channel":"bench-0"}}"#),
            format!(r#"{{ "event" : "m", "data" : "{payload}" }}"#),
        ] {
            assert_eq!(
                classify(frame.as_bytes()),
                ServerMessage::Event {
                    data: payload.as_bytes()
                },
                "{frame}"
            );
        }
    }

    #[test]
    fn protocol_events_are_classified() {
        assert_eq!(
            classify(br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#),
            ServerMessage::ConnectionEstablished
        );
        assert_eq!(
            classify(br#"{"event":"pusher_internal:subscription_succeeded","channel":"bench-3","data":"{}"}"#),
            ServerMessage::SubscriptionSucceeded {
                channel: b"bench-3"
            }
        );
        assert_eq!(
            classify(br#"{"event":"pusher:ping","data":{}}"#),
            ServerMessage::Ping
        );
        assert_eq!(
            classify(br#"{"event":"pusher:error","data":{"code":4001,"message":"x"}}"#),
            ServerMessage::Error
        );
        assert_eq!(
            classify(br#"{"event":"other","data":"x"}"#),
            ServerMessage::Other
        );
        assert_eq!(classify(br#"{"data":"x"}"#), ServerMessage::Other);
        assert_eq!(classify(br#"{"event":1}"#), ServerMessage::Other);
        assert_eq!(classify(b"not json"), ServerMessage::Other);
        // An event without a string `data` is not a delivery.
        assert_eq!(
            classify(br#"{"event":"m","data":{}}"#),
            ServerMessage::Other
        );
    }

    #[test]
    fn string_field_skips_lookalikes_and_stops_at_the_end() {
        assert_eq!(
            string_field(br#"{"xevent":"a","event":"b"}"#, b"event"),
            Some(&b"b"[..])
        );
        assert_eq!(string_field(br#"{"event""#, b"event"), None);
        assert_eq!(string_field(br#"{"event":"unterminated"#, b"event"), None);
        assert_eq!(string_field(br#""event"x"#, b"event"), None);
        assert_eq!(string_field(b"", b"event"), None);
    }

    #[test]
    fn subscriber_messages_match_the_protocol() {
        assert_eq!(
            subscribe_message("bench-0"),
            br#"{"event":"pusher:subscribe","data":{"channel":"bench-0"}}"#.to_vec()
        );
        assert!(
            subscriber_path(&docs_app())
                .starts_with("/app/278d425bdf160c739803?protocol=7&client=ringcast-bench&version=")
        );
    }
}
