//! Every way a client can break RFC 6455 (and RFC 7692, permessage-deflate, where negotiated)
//! after the handshake, and the close code each one earns.
//!
//! One variant per rule, so a test can name exactly which rule it exercised and `/metrics` can
//! count them apart. The mapping to close codes lives here and nowhere else.

/// A violation of RFC 6455 by the peer. Ends that one connection with [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that is not
    /// masked."
    #[error("client frame is not masked")]
    UnmaskedFrameFromClient,
    /// RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated"; RSV2 and RSV3 are
    /// never negotiated, RSV1 only with permessage-deflate.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBitsSet,
    /// RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
    /// frames".
    #[error("control frame with the Per-Message Compressed bit (RSV1) set")]
    CompressedControlFrame,
    /// RFC 7692 §6.1: nor of "non-first fragments of a data message".
    #[error("continuation frame with the Per-Message Compressed bit (RSV1) set")]
    CompressedContinuation,
    /// RFC 7692 §7.2.2: the payload of a compressed message, with 0x00 0x00 0xff 0xff appended,
    /// is not valid DEFLATE data (RFC 1951).
    #[error("compressed message is not valid DEFLATE data")]
    InvalidCompressedData,
    /// RFC 6455 §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooBig(u64),
    /// RFC 6455 §5.5: "All control frames ... MUST NOT be fragmented."
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// RFC 6455 §5.2: "the most significant bit MUST be 0" in a 64-bit payload length.
    #[error("64-bit payload length has its most significant bit set")]
    PayloadLengthMsbSet,
    /// RFC 6455 §5.4: a continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// RFC 6455 §5.4: "fragments of one message MUST NOT be interleaved" with another data frame.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// The frame, the reassembled message or the inflated message is larger than the configured
    /// limit (an inflated message fails as soon as it passes the limit, not once inflated).
    #[error("message of {length_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    MessageTooBig {
        /// The length announced by the header or reached by reassembly or inflation.
        length_bytes: u64,
        /// `Limits::max_message_bytes`.
        limit_bytes: u64,
    },
    /// More frames in one fragmented message than `--max-fragments`: each frame costs a header
    /// and a turn of the decoder, and empty continuation frames would otherwise cost nothing
    /// against the size limit (RFC 6455 §10.4: "implementations SHOULD impose a limit on frame
    /// sizes and the total message size after reassembly from multiple frames").
    #[error("message in more than {limit} fragments")]
    TooManyFragments {
        /// `--max-fragments`.
        limit: u32,
    },
    /// RFC 6455 §8.1: a text message that is not valid UTF-8 fails the connection.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// RFC 6455 §5.5.1: a close payload, if present, starts with a two-byte code.
    #[error("close frame with a one-byte payload")]
    CloseFrameOneByte,
    /// RFC 6455 §7.4: the received close code is not one an endpoint may send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// RFC 6455 §5.5.1: the close reason "is not guaranteed to be human readable" but MUST be
    /// UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
}

impl ProtocolError {
    /// The close code RFC 6455 §7.4.1 assigns to this violation.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::MessageTooBig { .. } | ProtocolError::TooManyFragments { .. } => {
                close_code::MESSAGE_TOO_BIG
            }
            // 1007 for undecodable compressed data too, as Node's `ws` does: the bytes are not
            // consistent with the message's declared (compressed) form.
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData => close_code::INVALID_PAYLOAD,
            ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::ReservedBitsSet
            | ProtocolError::CompressedControlFrame
            | ProtocolError::CompressedContinuation
            | ProtocolError::ReservedOpcode(_)
            | ProtocolError::ControlFrameTooBig(_)
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::PayloadLengthMsbSet
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::CloseFrameOneByte
            | ProtocolError::InvalidCloseCode(_) => close_code::PROTOCOL_ERROR,
        }
    }
}

/// The close codes ringcast sends (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure: the purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// Going away: the server is shutting down or the connection idled out.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The payload of a message was inconsistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: used for slow consumers whose outbound queue overflowed.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Application range (RFC 6455 §7.4.2, 4000-4999): the subscription token expired
    /// (the code Pusher and Centrifugo use for "unauthorized").
    pub const TOKEN_EXPIRED: u16 = 4009;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_rfc_close_code() {
        let cases = [
            (ProtocolError::UnmaskedFrameFromClient, 1002),
            (ProtocolError::ReservedBitsSet, 1002),
            (ProtocolError::CompressedControlFrame, 1002),
            (ProtocolError::CompressedContinuation, 1002),
            (ProtocolError::InvalidCompressedData, 1007),
            (ProtocolError::ReservedOpcode(3), 1002),
            (ProtocolError::ControlFrameTooBig(126), 1002),
            (ProtocolError::FragmentedControlFrame, 1002),
            (ProtocolError::PayloadLengthMsbSet, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::CloseFrameOneByte, 1002),
            (ProtocolError::InvalidCloseCode(1005), 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::InvalidCloseReason, 1007),
            (
                ProtocolError::MessageTooBig {
                    length_bytes: 2,
                    limit_bytes: 1,
                },
                1009,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.close_code(), code, "{error}");
        }
    }
}
