//! RFC 6455 §4.2: the server side of the opening handshake.
//!
//! Given a parsed HTTP request head, decides whether it is a valid WebSocket upgrade and, if
//! so, computes `Sec-WebSocket-Accept` and the `101` response, with the permessage-deflate
//! agreement when there is one (RFC 7692 §5; the negotiation itself is in `deflate`). Sans-IO;
//! the request head comes from `http.rs`, which knows nothing about WebSocket.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use super::deflate::{DeflatePolicy, Negotiated, negotiate};
use crate::http::{HttpError, RequestHead};

/// RFC 6455 §1.3: the GUID appended to the client's key before hashing.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The only protocol version this server speaks (RFC 6455 §4.1).
pub const SUPPORTED_VERSION: &str = "13";

/// RFC 6455 §1.3: `Sec-WebSocket-Accept` = base64(SHA-1(key + GUID)).
pub fn accept_key(client_key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(client_key);
    hasher.update(WEBSOCKET_GUID.as_bytes());
    BASE64.encode(hasher.finalize())
}

/// RFC 6455 §4.2.1: checks the client's opening handshake; returns the accept key to send back.
pub fn validate_upgrade(head: &RequestHead) -> Result<String, HttpError> {
    // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    if head.http_minor_version < 1 {
        return Err(HttpError::BadRequest("WebSocket needs HTTP/1.1"));
    }
    // §4.2.1 item 2: "A |Host| header field containing the server's authority."
    if !head.has_host {
        return Err(HttpError::BadRequest("missing Host header"));
    }
    // §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket"". Without it
    // this is a plain HTTP request to a WebSocket endpoint: 426 tells the client what to do.
    if !head.upgrade_websocket {
        return Err(HttpError::UpgradeRequired);
    }
    // §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade"".
    if !head.connection_upgrade {
        return Err(HttpError::BadRequest(
            "Connection header lacks the Upgrade token",
        ));
    }
    // §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13." §4.4: on a
    // mismatch the server answers with the versions it supports.
    if head.websocket_version.as_deref() != Some(SUPPORTED_VERSION.as_bytes()) {
        return Err(HttpError::UnsupportedWebSocketVersion);
    }
    // §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when
    // decoded, is 16 bytes in length."
    let key = head
        .websocket_key
        .as_deref()
        .ok_or(HttpError::BadRequest("missing Sec-WebSocket-Key"))?;
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => Ok(accept_key(key)),
        _ => Err(HttpError::BadRequest(
            "Sec-WebSocket-Key is not 16 base64-encoded bytes",
        )),
    }
}

/// RFC 6455 §4.2.2: the `101 Switching Protocols` response, without extensions.
pub fn switching_protocols_response(accept_key: &str) -> Vec<u8> {
    switching_protocols_response_with(accept_key, None)
}

/// RFC 6455 §4.2.2: the `101 Switching Protocols` response, with `Sec-WebSocket-Extensions`
/// when permessage-deflate was `negotiated` (RFC 7692 §5: the server "MUST include" the
/// accepted extension's response in this header, and nothing it did not accept).
pub fn switching_protocols_response_with(
    accept_key: &str,
    negotiated: Option<&Negotiated>,
) -> Vec<u8> {
    switching_protocols_response_with_headers(accept_key, negotiated, &[])
}

/// The `101` of [`switching_protocols_response_with`] with `extra` headers (names and values
/// chosen by the server, never from the request).
pub fn switching_protocols_response_with_headers(
    accept_key: &str,
    negotiated: Option<&Negotiated>,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let extensions = negotiated.map_or(String::new(), |negotiated| {
        format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            negotiated.response_value()
        )
    });
    let mut headers = String::new();
    for (name, value) in extra {
        headers.push_str(&format!("{name}: {value}\r\n"));
    }
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n{extensions}{headers}\r\n"
    )
    .into_bytes()
}

/// RFC 7692 §5: what the server agrees to among the client's permessage-deflate offers (`None`:
/// no header, or nothing acceptable; the connection is then uncompressed).
pub fn negotiate_deflate(head: &RequestHead, policy: &DeflatePolicy) -> Option<Negotiated> {
    negotiate(head.websocket_extensions.as_deref()?, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request_head;

    #[test]
    fn rfc_1_3_accept_key_example() {
        // RFC 6455 §1.3: key "dGhlIHNhbXBsZSBub25jZQ==" -> "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn head(request: &str) -> RequestHead {
        parse_request_head(request.as_bytes(), 8192, 32)
            .unwrap()
            .unwrap()
    }

    const VALID: &str = "GET /ws/news HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn valid_upgrade_is_accepted() {
        assert_eq!(
            validate_upgrade(&head(VALID)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let response = String::from_utf8(switching_protocols_response("abc")).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Accept: abc\r\n"));
    }

    #[test]
    fn deflate_offer_is_answered_in_the_101() {
        let request = VALID.replace(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let negotiated = negotiate_deflate(&head(&request), &DeflatePolicy::default()).unwrap();
        let response =
            String::from_utf8(switching_protocols_response_with("abc", Some(&negotiated))).unwrap();
        assert!(response.ends_with(
            "\r\nSec-WebSocket-Accept: abc\r\nSec-WebSocket-Extensions: permessage-deflate; \
             server_no_context_takeover; client_no_context_takeover\r\n\r\n"
        ));
        // No offer, no header; the old function's bytes are unchanged.
        assert_eq!(
            negotiate_deflate(&head(VALID), &DeflatePolicy::default()),
            None
        );
        assert_eq!(
            switching_protocols_response_with("abc", None),
            switching_protocols_response("abc")
        );
        assert!(switching_protocols_response("abc").ends_with(b"Accept: abc\r\n\r\n"));
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let request = VALID
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("keep-alive, Upgrade", "UPGRADE");
        assert!(validate_upgrade(&head(&request)).is_ok());
    }

    #[test]
    fn each_violation_gets_its_status() {
        let cases = [
            (VALID.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (VALID.replace("Host: example\r\n", ""), 400),
            (VALID.replace("Upgrade: websocket\r\n", ""), 426),
            (VALID.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (VALID.replace("Version: 13", "Version: 8"), 426),
            (VALID.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (
                VALID.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (VALID.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="), 400),
            (
                VALID.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!notbase64!!"),
                400,
            ),
        ];
        for (request, status) in cases {
            let error = validate_upgrade(&head(&request)).unwrap_err();
            assert_eq!(error.status(), status, "{request:?}: {error}");
        }
    }

    #[test]
    fn version_mismatch_names_the_supported_version() {
        let request = VALID.replace("Version: 13", "Version: 8");
        let error = validate_upgrade(&head(&request)).unwrap_err();
        let response = String::from_utf8(error.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 "));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }
}
