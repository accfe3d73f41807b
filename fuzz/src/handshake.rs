//! Target `handshake`: arbitrary bytes as an HTTP request head, through `parse_request_head`,
//! then `route` and `validate_upgrade` when the head is complete.
//!
//! Properties: nothing panics; a complete head lies within the input and within
//! `max_header_bytes`, and parses the same from exactly its own bytes; an incomplete head is
//! never accepted at the limit; every cut of the request before its end parses as incomplete or
//! as the same error (a client that sends its head in pieces gets the same answer as one that
//! sends it at once); routes match their path and method; `validate_upgrade` accepts exactly
//! the heads RFC 6455 §4.2.1 allows, checked against an independent transcription of that list.
//! Input layout: `max_header_bytes` (u16), flags (u8: bit 7 = strict channel policy, bits 0-6 =
//! `max_headers`), then the request bytes.

use ringcast::channel::ChannelPolicy;
use ringcast::http::{
    HttpError, Listener, Method, RequestHead, Route, RouteRules, parse_request_head, route,
};
use ringcast::protocol::handshake::{accept_key, switching_protocols_response, validate_upgrade};

use super::input::Reader;

/// Largest `max_header_bytes` tried. Small limits reach the limit paths often, and keep the
/// re-parse of every cut (quadratic in the head length) fast enough to fuzz.
pub const MAX_HEADER_BYTES_LIMIT: usize = 1024;

/// The one channel the strict policy allows.
pub const STRICT_CHANNEL: &str = "news";

/// One decoded `handshake` input.
#[derive(Debug)]
pub struct HandshakeInput<'a> {
    /// Passed to `parse_request_head`, 0..=`MAX_HEADER_BYTES_LIMIT`.
    pub max_header_bytes: usize,
    /// Passed to `parse_request_head`, 0..=127: both sides of the 64-slot stack array.
    pub max_headers: usize,
    /// Route with `ChannelPolicy::strict([STRICT_CHANNEL])` as well as the open policy.
    pub strict: bool,
    /// The bytes a client sent.
    pub request: &'a [u8],
}

impl<'a> HandshakeInput<'a> {
    /// Decodes the layout described in the module header.
    pub fn decode(data: &'a [u8]) -> HandshakeInput<'a> {
        let mut reader = Reader::new(data);
        let max_header_bytes = usize::from(reader.u16()) % (MAX_HEADER_BYTES_LIMIT + 1);
        let flags = reader.u8();
        HandshakeInput {
            max_header_bytes,
            max_headers: usize::from(flags & 0x7F),
            strict: flags & 0x80 != 0,
            request: reader.rest(),
        }
    }

    /// The inverse of [`HandshakeInput::decode`], for seeds.
    pub fn encode(max_header_bytes: u16, max_headers: u8, strict: bool, request: &[u8]) -> Vec<u8> {
        let mut data = max_header_bytes.to_le_bytes().to_vec();
        data.push((max_headers & 0x7F) | if strict { 0x80 } else { 0 });
        data.extend_from_slice(request);
        data
    }
}

/// Checks every `handshake` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let input = HandshakeInput::decode(data);
    let parsed = parse_request_head(input.request, input.max_header_bytes, input.max_headers);
    match &parsed {
        Ok(Some(head)) => check_complete_head(&input, head),
        Ok(None) => assert!(
            input.request.len() < input.max_header_bytes,
            "an incomplete head of {} bytes passed the limit of {}",
            input.request.len(),
            input.max_header_bytes
        ),
        Err(error) => check_error(error, &[400, 431]),
    }
    check_cuts(&input, &parsed);
}

fn check_complete_head(input: &HandshakeInput<'_>, head: &RequestHead) {
    assert!(
        head.head_len <= input.request.len(),
        "head_len {} beyond the {} input bytes",
        head.head_len,
        input.request.len()
    );
    assert!(
        head.head_len <= input.max_header_bytes,
        "head_len {} over max_header_bytes {}",
        head.head_len,
        input.max_header_bytes
    );
    assert!(
        !head.path.contains('?'),
        "query left in path {:?}",
        head.path
    );
    // The head parses the same from exactly its own bytes: what follows it (a body, a pipelined
    // request) plays no part in it.
    let alone = parse_request_head(
        &input.request[..head.head_len],
        input.max_header_bytes,
        input.max_headers,
    );
    assert_eq!(
        alone.as_ref().map(Option::as_ref),
        Ok(Some(head)),
        "head changed without what follows it"
    );
    check_route(head, &ChannelPolicy::open(), None);
    if input.strict {
        let policy = ChannelPolicy::strict([STRICT_CHANNEL.to_string()]);
        check_route(head, &policy, Some(STRICT_CHANNEL));
    }
    check_upgrade(head);
}

/// A route must agree with the path and method it came from, on either listener; a refusal
/// has a routing status.
fn check_route(head: &RequestHead, policy: &ChannelPolicy, only_channel: Option<&str>) {
    for listener in [Listener::Public, Listener::Api] {
        let rules = RouteRules {
            listener,
            policy,
            echo: true,
        };
        check_route_on(head, rules, only_channel);
    }
}

fn check_route_on(head: &RequestHead, rules: RouteRules<'_>, only_channel: Option<&str>) {
    let routed = match route(head, rules) {
        Ok(routed) => routed,
        Err(error) => return check_error(&error, &[400, 403, 404, 405]),
    };
    let public_route = matches!(
        routed,
        Route::Subscribe(_)
            | Route::Echo
            | Route::Health
            | Route::Ready
            | Route::PusherConnect
            | Route::PusherApi
            | Route::CentrifugoConnect
    );
    let api_route = !matches!(
        routed,
        Route::Subscribe(_) | Route::Echo | Route::PusherConnect | Route::CentrifugoConnect
    );
    assert!(
        (rules.listener == Listener::Public && public_route)
            || (rules.listener == Listener::Api && api_route),
        "{routed:?} served on the {:?} listener",
        rules.listener
    );
    let (path, method) = match &routed {
        Route::Subscribe(name) | Route::Publish(name) => {
            if let Some(only) = only_channel {
                assert_eq!(
                    name.as_str(),
                    only,
                    "strict policy let another channel through"
                );
            }
            let prefix = if matches!(routed, Route::Subscribe(_)) {
                "/ws/"
            } else {
                "/publish/"
            };
            let method = if routed.is_websocket() {
                Method::Get
            } else {
                Method::Post
            };
            (format!("{prefix}{name}"), method)
        }
        Route::Echo => ("/echo".to_string(), Method::Get),
        Route::Health => ("/healthz".to_string(), Method::Get),
        Route::Ready => ("/readyz".to_string(), Method::Get),
        Route::Stat { json } => {
            let asked = head.query.split('&').any(|pair| pair == "format=json");
            assert_eq!(*json, asked, "?format=json decides the format");
            ("/stat".to_string(), Method::Get)
        }
        Route::Metrics => ("/metrics".to_string(), Method::Get),
        Route::CentrifugoConnect => ("/connection/websocket".to_string(), Method::Get),
        Route::CentrifugoApi(ringcast::http::CentrifugoApi::Publish) => {
            ("/api/publish".to_string(), Method::Post)
        }
        Route::CentrifugoApi(ringcast::http::CentrifugoApi::History) => {
            ("/api/history".to_string(), Method::Post)
        }
        Route::PusherConnect => {
            assert!(head.path.starts_with("/app/"), "{}", head.path);
            return assert_eq!(head.method, Method::Get);
        }
        // Methods are checked by the Pusher API's own router.
        Route::PusherApi => return assert!(head.path.starts_with("/apps/"), "{}", head.path),
    };
    assert_eq!(head.path, path, "route {routed:?} from another path");
    assert_eq!(head.method, method, "route {routed:?} for another method");
}

/// `validate_upgrade` must accept exactly what RFC 6455 §4.2.1 lists, and answer with the §1.3
/// accept key of the client's key.
fn check_upgrade(head: &RequestHead) {
    let allowed = head.http_minor_version >= 1
        && head.has_host
        && head.upgrade_websocket
        && head.connection_upgrade
        && head.websocket_version.as_deref() == Some(b"13".as_slice())
        && head
            .websocket_key
            .as_deref()
            .is_some_and(is_base64_of_16_bytes);
    match validate_upgrade(head) {
        Ok(accept) => {
            assert!(
                allowed,
                "upgrade accepted against RFC 6455 §4.2.1: {head:?}"
            );
            let key = head.websocket_key.as_deref().expect("checked by `allowed`");
            assert_eq!(accept, accept_key(key));
            let response = switching_protocols_response(&accept);
            let expected_line = format!("\r\nSec-WebSocket-Accept: {accept}\r\n");
            assert!(
                response
                    .windows(expected_line.len())
                    .any(|window| window == expected_line.as_bytes()),
                "101 response without the accept key"
            );
        }
        Err(error) => {
            assert!(!allowed, "valid upgrade refused with {error:?}: {head:?}");
            check_error(&error, &[400, 426]);
        }
    }
}

/// RFC 6455 §4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes in length",
/// in the canonical padded form: 22 alphabet characters, the last carrying only 2 data bits,
/// then `==`.
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |byte: u8| ALPHABET.iter().position(|&letter| letter == byte);
    key.len() == 24
        && key[22..] == *b"=="
        && key[..22].iter().all(|&byte| sextet(byte).is_some())
        && sextet(key[21]).is_some_and(|value| value & 0x0F == 0)
}

/// An error's status is one of `allowed` and its response starts with that status.
fn check_error(error: &HttpError, allowed: &[u16]) {
    let status = error.status();
    assert!(allowed.contains(&status), "{error:?} has status {status}");
    let response = error.response();
    let status_line = format!("HTTP/1.1 {status} ");
    assert!(response.starts_with(status_line.as_bytes()), "{error:?}");
}

/// Every cut of the request before its end parses as incomplete or as the same error: the
/// answer a client gets cannot depend on how its bytes were split into reads.
fn check_cuts(input: &HandshakeInput<'_>, parsed: &Result<Option<RequestHead>, HttpError>) {
    let end = match parsed {
        Ok(Some(head)) => head.head_len,
        Ok(None) | Err(_) => input.request.len(),
    };
    // A connection never holds more than `max_header_bytes + 1` bytes of head: past that, every
    // cut is refused for its length alone.
    let end = end.min(input.max_header_bytes + 1);
    for cut in 0..end {
        let prefix = parse_request_head(
            &input.request[..cut],
            input.max_header_bytes,
            input.max_headers,
        );
        let consistent = match (&prefix, parsed) {
            // The limit holds for incomplete heads too.
            (Ok(None), _) => cut < input.max_header_bytes,
            (Err(prefix_error), Err(error)) => {
                prefix_error == error
                    // A full request may be refused for what lies past the limit, which the cut
                    // at the limit never reaches.
                    || (cut >= input.max_header_bytes && *prefix_error == HttpError::HeaderTooLarge)
            }
            (Ok(Some(_)), _) | (Err(_), Ok(_)) => false,
        };
        assert!(
            consistent,
            "cut at {cut}: {prefix:?}, whole request ({} bytes): {parsed:?}",
            input.request.len()
        );
    }
}
