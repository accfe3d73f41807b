//! RFC 6455 §5.5.1 and §7.4: close frame payloads.
//!
//! Parses and validates what a client puts in its close frame (code, then a UTF-8 reason), and
//! builds the close frames the server sends. Which code to send for which fault is decided in
//! `error.rs`; this file only knows the wire format and which codes are legal on the wire.

use bytes::Bytes;

use super::error::ProtocolError;
use super::frame::{MAX_CONTROL_PAYLOAD_BYTES, OpCode, encode_server_frame};

/// A validated close payload received from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePayload<'a> {
    /// The status code, or `None` for an empty close payload (RFC 6455 §7.1.5: "no status code
    /// was actually present", reported as 1005).
    pub code: Option<u16>,
    /// The reason text after the code.
    pub reason: &'a str,
}

/// RFC 6455 §7.4: may an endpoint put `code` in a close frame it sends?
///
/// 1000-1003 and 1007-1011 are defined by the RFC; 1012-1014 were registered with IANA later
/// (service restart, try again later, bad gateway). 1004 is reserved, 1005, 1006 and 1015 "MUST
/// NOT be set as a status code in a Close control frame", 0-999 are unused, 1016-2999 are
/// reserved for future revisions, 3000-4999 belong to libraries and applications.
pub fn is_valid_received_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses and validates the payload of a close frame a client sent.
pub fn parse_close_payload(payload: &[u8]) -> Result<ClosePayload<'_>, ProtocolError> {
    match payload {
        [] => Ok(ClosePayload {
            code: None,
            reason: "",
        }),
        [_] => Err(ProtocolError::CloseFrameOneByte),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_received_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(ClosePayload {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Builds a server close frame with `code` and `reason` (truncated to fit the 125-byte control
/// frame limit on a character boundary).
pub fn encode_close_frame(code: u16, reason: &str) -> Bytes {
    let max_reason_bytes = MAX_CONTROL_PAYLOAD_BYTES as usize - 2;
    let mut end = reason.len().min(max_reason_bytes);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_server_frame(OpCode::Close, &payload)
}

/// The close frame that answers a client's close: RFC 6455 §5.5.1 says the endpoint "typically
/// echos the status code it received"; an empty close is answered with an empty close.
pub fn encode_close_reply(received: &ClosePayload<'_>) -> Bytes {
    match received.code {
        Some(code) => encode_close_frame(code, ""),
        None => encode_server_frame(OpCode::Close, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_means_no_code() {
        let parsed = parse_close_payload(&[]).unwrap();
        assert_eq!(parsed.code, None);
    }

    #[test]
    fn one_byte_payload_is_a_protocol_error() {
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::CloseFrameOneByte)
        );
    }

    #[test]
    fn valid_codes_are_accepted() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let payload = code.to_be_bytes();
            assert_eq!(
                parse_close_payload(&payload).unwrap().code,
                Some(code),
                "{code}"
            );
        }
    }

    #[test]
    fn invalid_codes_are_refused() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let payload = code.to_be_bytes();
            assert_eq!(
                parse_close_payload(&payload),
                Err(ProtocolError::InvalidCloseCode(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn reason_must_be_utf8() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5,
        ]);
        assert_eq!(
            parse_close_payload(&payload).unwrap().reason,
            "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}"
        );
        payload.extend_from_slice(&[0xed, 0xa0, 0x80]);
        assert_eq!(
            parse_close_payload(&payload),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn close_frames_fit_the_control_frame_limit() {
        let frame = encode_close_frame(1008, &"é".repeat(100));
        assert_eq!(frame[0], 0x88);
        assert!(frame[1] as u64 <= MAX_CONTROL_PAYLOAD_BYTES);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(&frame[2..4], &1008u16.to_be_bytes());
    }

    #[test]
    fn close_reply_echoes_the_code() {
        let received = parse_close_payload(&[0x03, 0xe8, b'b', b'y', b'e']).unwrap();
        assert_eq!(
            &encode_close_reply(&received)[..],
            &[0x88, 0x02, 0x03, 0xe8]
        );
        let empty = parse_close_payload(&[]).unwrap();
        assert_eq!(&encode_close_reply(&empty)[..], &[0x88, 0x00]);
    }
}
