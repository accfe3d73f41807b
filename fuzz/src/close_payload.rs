//! Target `close_payload`: arbitrary bytes as the payload of a client's close frame.
//!
//! Properties: `parse_close_payload` returns exactly what RFC 6455 §5.5.1 and §7.4 prescribe,
//! checked against an independent transcription (empty: no code; one byte: error; then a code
//! that must be legal and a reason that must be UTF-8); `is_valid_received_code` agrees with
//! that transcription; a valid close re-encoded with `encode_close_frame` (and answered with
//! `encode_close_reply`) parses back to the same code, its reason cut only to fit 125 bytes on a
//! character boundary; the same payload inside a masked close frame gives the same result
//! through `MessageDecoder`.
//! Input layout: the whole input is the payload.

use ringcast::protocol::close::{
    ClosePayload, encode_close_frame, encode_close_reply, is_valid_received_code,
    parse_close_payload,
};
use ringcast::protocol::error::ProtocolError;
use ringcast::protocol::frame::MAX_CONTROL_PAYLOAD_BYTES;
use ringcast::protocol::message::{Decoded, Event, MessageDecoder};

use super::client_frame;

/// Masking key for the close frames built here: the RFC 6455 §5.7 example key.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Longest reason that fits a close frame after the two-byte code.
const MAX_REASON_BYTES: usize = MAX_CONTROL_PAYLOAD_BYTES as usize - 2;

/// RFC 6455 §7.4.1 and §7.4.2 plus the IANA registry, written as the RFC lists them rather than
/// as the code does: may a peer send `code` in a close frame?
pub fn code_allowed_by_rfc(code: u16) -> bool {
    match code {
        // §7.4.2: "0-999: Status codes in the range 0-999 are not used."
        0..=999 => false,
        // §7.4.1: 1004 "Reserved"; 1005, 1006 and 1015 "MUST NOT be set as a status code in a
        // Close control frame by an endpoint".
        1004 | 1005 | 1006 | 1015 => false,
        // §7.4.1 defines 1000-1011; IANA registered 1012-1014.
        1000..=1014 => true,
        // §7.4.2: "1000-2999 ... reserved for definition by this protocol, its future
        // revisions, and extensions": not assigned, so not sendable today.
        1016..=2999 => false,
        // §7.4.2: 3000-3999 for libraries and frameworks, 4000-4999 for private use.
        3000..=4999 => true,
        // Outside every range §7.4.2 defines.
        5000.. => false,
    }
}

/// Checks every `close_payload` property for one input; panics on a violation.
pub fn check(data: &[u8]) {
    let parsed = parse_close_payload(data);
    assert_eq!(parsed, expected_parse(data), "payload {data:?}");
    if let [high, low, reason @ ..] = data {
        let code = u16::from_be_bytes([*high, *low]);
        assert_eq!(
            is_valid_received_code(code),
            code_allowed_by_rfc(code),
            "code {code}"
        );
        check_encoding_any_code(code, &String::from_utf8_lossy(reason));
    }
    if let Ok(close) = parsed {
        check_round_trip(&close);
    }
    check_through_decoder(data, &parsed);
}

/// The RFC's answer for `payload`, built without `parse_close_payload`.
fn expected_parse(payload: &[u8]) -> Result<ClosePayload<'_>, ProtocolError> {
    if payload.is_empty() {
        return Ok(ClosePayload {
            code: None,
            reason: "",
        });
    }
    if payload.len() == 1 {
        return Err(ProtocolError::CloseFrameOneByte);
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    if !code_allowed_by_rfc(code) {
        return Err(ProtocolError::InvalidCloseCode(code));
    }
    match std::str::from_utf8(&payload[2..]) {
        Ok(reason) => Ok(ClosePayload {
            code: Some(code),
            reason,
        }),
        Err(_) => Err(ProtocolError::InvalidCloseReason),
    }
}

/// The payload of a server close frame, after checking its header.
fn server_close_payload(frame: &[u8]) -> &[u8] {
    assert_eq!(frame[0], 0x88, "not a final close frame");
    let length = usize::from(frame[1]);
    assert!(
        length as u64 <= MAX_CONTROL_PAYLOAD_BYTES,
        "close frame too big"
    );
    assert_eq!(frame.len(), 2 + length, "close frame length");
    &frame[2..]
}

/// A valid close survives `encode_close_frame` and `encode_close_reply`.
fn check_round_trip(close: &ClosePayload<'_>) {
    let reply = encode_close_reply(close);
    let echoed = parse_close_payload(server_close_payload(&reply)).expect("reply parses");
    assert_eq!(echoed.code, close.code, "the reply echoes another code");
    assert_eq!(echoed.reason, "", "the reply carries a reason");
    let Some(code) = close.code else { return };
    let frame = encode_close_frame(code, close.reason);
    let decoded = parse_close_payload(server_close_payload(&frame)).expect("re-encoded parses");
    assert_eq!(decoded.code, Some(code));
    check_truncated_reason(close.reason, decoded.reason);
}

/// `encode_close_frame` keeps as much of `original` as fits, cut on a character boundary.
fn check_truncated_reason(original: &str, encoded: &str) {
    assert!(original.starts_with(encoded), "reason changed: {encoded:?}");
    if original.len() <= MAX_REASON_BYTES {
        assert_eq!(encoded, original, "a reason that fits was cut");
    } else {
        // A UTF-8 character is at most 4 bytes: at most 3 bytes are lost to the boundary.
        assert!(
            encoded.len() <= MAX_REASON_BYTES && encoded.len() + 3 >= MAX_REASON_BYTES,
            "reason of {} bytes cut to {}",
            original.len(),
            encoded.len()
        );
    }
}

/// Any code, legal or not, encodes into a frame that parses back iff the code is legal.
fn check_encoding_any_code(code: u16, reason: &str) {
    let frame = encode_close_frame(code, reason);
    match parse_close_payload(server_close_payload(&frame)) {
        Ok(decoded) => {
            assert!(code_allowed_by_rfc(code), "illegal code {code} parsed");
            assert_eq!(decoded.code, Some(code));
            check_truncated_reason(reason, decoded.reason);
        }
        Err(error) => {
            assert!(!code_allowed_by_rfc(code), "legal code {code}: {error:?}");
            assert_eq!(error, ProtocolError::InvalidCloseCode(code));
        }
    }
}

/// The same payload inside a masked close frame: the decoder must agree with the parser, or
/// refuse the frame for its size (§5.5) when the payload cannot fit a control frame.
fn check_through_decoder(payload: &[u8], parsed: &Result<ClosePayload<'_>, ProtocolError>) {
    let mut frame = client_frame(true, 0x8, KEY, payload);
    let mut decoder = MessageDecoder::new(u64::from(u16::MAX));
    let decoded = decoder.decode(&mut frame);
    if payload.len() as u64 > MAX_CONTROL_PAYLOAD_BYTES {
        // The header's 7-bit length field says 126 or 127 (extended lengths follow).
        let short_length = if payload.len() <= 0xFFFF { 126 } else { 127 };
        assert_eq!(
            decoded,
            Err(ProtocolError::ControlFrameTooBig(short_length)),
            "oversized close frame"
        );
        return;
    }
    match (decoded, parsed) {
        (Ok(Decoded::Event { consumed, event }), Ok(close)) => {
            assert_eq!(consumed, 6 + payload.len());
            assert_eq!(event, Event::Close(*close));
        }
        (Err(error), Err(parse_error)) => assert_eq!(error, *parse_error),
        (decoded, parsed) => panic!("decoder gave {decoded:?}, parser {parsed:?}"),
    }
}
