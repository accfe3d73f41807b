//! The RFC 6455 §4 opening handshake, for both ends, over byte slices.
//!
//! Client side: `client_request` builds the upgrade request, `parse_server_response` checks the
//! `101` answer (status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`). Server side (floor):
//! `parse_client_request` extracts the key and `server_response` builds the `101`. An incomplete
//! head is `Ok(None)`; the head is bounded by `HEAD_BYTES_MAX`.

use base64::Engine;
use sha1::{Digest, Sha1};
use thiserror::Error;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest request or response head accepted (bounds partial-head buffering).
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Headers parsed at most in one head.
const HEADERS_MAX: usize = 32;

/// Why a handshake failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.1.
    #[error("malformed HTTP head")]
    Malformed,
    /// The head grew past `HEAD_BYTES_MAX` without ending.
    #[error("HTTP head larger than {HEAD_BYTES_MAX} bytes")]
    HeadTooLarge,
    /// RFC 6455 §4.1: "If the status code received from the server is not 101, the client handles
    /// the response per HTTP procedures" (for us: the connection failed).
    #[error("server answered {0} instead of 101")]
    Status(u16),
    /// RFC 6455 §4.1: the response lacks `Upgrade: websocket` or `Connection: Upgrade`.
    #[error("response lacks Upgrade: websocket / Connection: Upgrade")]
    MissingUpgrade,
    /// RFC 6455 §4.1: `Sec-WebSocket-Accept` is missing or not derived from our key.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The server accepted permessage-deflate keeping its compression context between messages:
    /// the harness inflates each message on its own (and reuses the stamp of identical compressed
    /// bytes), which RFC 7692 §7.1.1.1's `server_no_context_takeover` guarantees to be correct.
    #[error("permessage-deflate accepted without server_no_context_takeover (not supported)")]
    ServerContextTakeover,
    /// The request is not a GET, or lacks the headers RFC 6455 §4.2.1 requires.
    #[error("not a WebSocket upgrade request")]
    NotUpgradeRequest,
}

/// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
pub fn accept_key(client_key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(client_key.as_bytes());
    hasher.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// RFC 6455 §4.1: the key is 16 bytes, base64-encoded. Derived from a nonce so the client can
/// recompute it when the answer arrives instead of storing 24 bytes per connection.
pub fn client_key(nonce: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nonce.to_le_bytes());
    bytes[8..].copy_from_slice(
        &nonce
            .rotate_left(29)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .to_le_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Builds the upgrade request for `GET path` on `host` with the key derived from `nonce`,
/// offering permessage-deflate (as browsers do) when `deflate`.
pub fn client_request(host: &str, path: &str, nonce: u64, deflate: bool) -> Vec<u8> {
    let extensions = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        client_key(nonce)
    )
    .into_bytes()
}

/// Finds a header by case-insensitive name.
fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .map(|header| header.value)
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: Option<&[u8]>, token: &str) -> bool {
    value
        .and_then(|value| std::str::from_utf8(value).ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
}

/// Checks the server's answer to the request made with `nonce`.
///
/// Returns the length of the head once complete (bytes after it are already frames).
pub fn parse_server_response(bytes: &[u8], nonce: u64) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) if bytes.len() > HEAD_BYTES_MAX => {
            return Err(HandshakeError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let status = response.code.ok_or(HandshakeError::Malformed)?;
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let headers = response.headers;
    if !has_token(header(headers, "upgrade"), "websocket")
        || !has_token(header(headers, "connection"), "upgrade")
    {
        return Err(HandshakeError::MissingUpgrade);
    }
    if let Some(extensions) = header(headers, "sec-websocket-extensions")
        && deflate_keeps_server_context(extensions)
    {
        return Err(HandshakeError::ServerContextTakeover);
    }
    let expected = accept_key(&client_key(nonce));
    match header(headers, "sec-websocket-accept") {
        Some(value) if value == expected.as_bytes() => Ok(Some(head_bytes)),
        _ => Err(HandshakeError::BadAccept),
    }
}

/// Whether an accepted `permessage-deflate` lacks `server_no_context_takeover` (RFC 7692 §7:
/// the server may then compress a message against the previous ones).
fn deflate_keeps_server_context(extensions: &[u8]) -> bool {
    let Ok(extensions) = std::str::from_utf8(extensions) else {
        return true;
    };
    extensions.split(',').any(|extension| {
        let mut parameters = extension.split(';').map(str::trim);
        parameters
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
            && !parameters
                .any(|parameter| parameter.eq_ignore_ascii_case("server_no_context_takeover"))
    })
}

/// A parsed upgrade request (server side).
#[derive(Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request target, e.g. `/ws/bench-0`.
    pub path: String,
    /// `Sec-WebSocket-Key` as sent.
    pub key: String,
    /// Bytes taken by the head.
    pub head_bytes: usize,
}

/// Parses a client's upgrade request (used by the floor server and the test servers).
pub fn parse_client_request(bytes: &[u8]) -> Result<Option<UpgradeRequest>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head_bytes = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) if bytes.len() > HEAD_BYTES_MAX => {
            return Err(HandshakeError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    let headers = request.headers;
    // RFC 6455 §4.2.1: "An HTTP/1.1 or higher GET request", with Upgrade, Connection, a key and
    // version 13.
    let is_upgrade = request.method == Some("GET")
        && has_token(header(headers, "upgrade"), "websocket")
        && has_token(header(headers, "connection"), "upgrade")
        && header(headers, "sec-websocket-version") == Some(b"13".as_slice());
    let key = header(headers, "sec-websocket-key").and_then(|key| std::str::from_utf8(key).ok());
    match (is_upgrade, key, request.path) {
        (true, Some(key), Some(path)) => Ok(Some(UpgradeRequest {
            path: path.to_owned(),
            key: key.trim().to_owned(),
            head_bytes,
        })),
        _ => Err(HandshakeError::NotUpgradeRequest),
    }
}

/// Builds the `101 Switching Protocols` answer to a request carrying `client_key`.
pub fn server_response(client_key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(client_key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_section_1_3_accept_vector() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn client_key_is_16_bytes_base64() {
        let key = client_key(42);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap();
        assert_eq!(decoded.len(), 16);
        assert_ne!(client_key(42), client_key(43));
    }

    #[test]
    fn deflate_is_accepted_only_without_server_context_takeover() {
        assert!(!deflate_keeps_server_context(
            b"permessage-deflate; server_no_context_takeover; client_max_window_bits=15"
        ));
        assert!(!deflate_keeps_server_context(b"x-other"));
        assert!(deflate_keeps_server_context(b"permessage-deflate"));
        assert!(deflate_keeps_server_context(
            b"permessage-deflate; client_no_context_takeover"
        ));
    }

    #[test]
    fn both_ends_agree() {
        let request = client_request("127.0.0.1:9050", "/ws/bench-0", 7, false);
        let parsed = parse_client_request(&request).unwrap().unwrap();
        assert_eq!(parsed.path, "/ws/bench-0");
        assert_eq!(parsed.head_bytes, request.len());
        let mut response = server_response(&parsed.key);
        let head_bytes = response.len();
        response.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(parse_server_response(&response, 7), Ok(Some(head_bytes)));
        assert_eq!(
            parse_server_response(&response, 8),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn incomplete_heads_are_not_errors() {
        let response = server_response(&client_key(1));
        for cut in 0..response.len() {
            assert_eq!(
                parse_server_response(&response[..cut], 1),
                Ok(None),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn one_error_per_failure() {
        assert_eq!(
            parse_server_response(b"garbage\r\n\r\n", 1),
            Err(HandshakeError::Malformed)
        );
        assert_eq!(
            parse_server_response(b"HTTP/1.1 404 Not Found\r\n\r\n", 1),
            Err(HandshakeError::Status(404))
        );
        assert_eq!(
            parse_server_response(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 1),
            Err(HandshakeError::MissingUpgrade)
        );
        let endless = vec![b'a'; HEAD_BYTES_MAX + 1];
        let mut head = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        head.extend_from_slice(&endless);
        assert_eq!(
            parse_server_response(&head, 1),
            Err(HandshakeError::HeadTooLarge)
        );
        assert_eq!(
            parse_client_request(b"POST / HTTP/1.1\r\n\r\n"),
            Err(HandshakeError::NotUpgradeRequest)
        );
    }
}
