//! Frame headers (RFC 6455 §5.2): parse what the server sends, encode what we send.
//!
//! The client side only ever needs the header: the payload is checked in place by the caller
//! (`payload::decode`), never copied. An incomplete header is `Ok(None)`, an ordinary value; an
//! error is a server that broke the protocol, which ends that one connection.

use thiserror::Error;

use super::mask::apply_mask;

/// Frame opcodes (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Maps the 4-bit field to an opcode; reserved values are `None`.
    fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Control frames are close, ping and pong (opcodes with the high bit set).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed frame header; the payload follows it in the same buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last fragment of a message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// Bytes taken by the header (2, 4 or 10; server frames carry no mask key).
    pub header_bytes: usize,
    /// Bytes of payload after the header.
    pub payload_bytes: usize,
    /// RSV1 on a data frame of a connection that negotiated permessage-deflate (RFC 7692 §6):
    /// the payload is compressed.
    pub compressed: bool,
}

impl FrameHeader {
    /// Header plus payload.
    pub fn frame_bytes(&self) -> usize {
        self.header_bytes + self.payload_bytes
    }
}

/// One variant per protocol violation a server frame can commit.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// RFC 6455 §5.2: RSV1-3 MUST be 0 unless an extension is negotiated (we negotiate none).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBitsSet,
    /// RFC 6455 §5.2: reserved opcodes 0x3-0x7 and 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RFC 6455 §5.1: "A client MUST close a connection if it detects a masked frame."
    #[error("masked frame from the server")]
    MaskedFrameFromServer,
    /// RFC 6455 §5.5: control frames MUST have a payload of 125 bytes or less.
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooBig,
    /// RFC 6455 §5.5: control frames MUST NOT be fragmented.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
    #[error("64-bit payload length with the high bit set")]
    LengthHighBitSet,
    /// The frame is larger than this client accepts (bounds the per-connection partial buffer).
    #[error("frame payload of {0} bytes exceeds the client limit")]
    PayloadTooLarge(u64),
}

/// Parses a server frame header at the start of `bytes`.
///
/// Returns `Ok(None)` while the header is incomplete. `payload_bytes_max` bounds the payload so a
/// broken length can never make the client buffer unbounded data.
#[cfg(test)]
pub fn parse_server_frame(
    bytes: &[u8],
    payload_bytes_max: usize,
) -> Result<Option<FrameHeader>, FrameError> {
    parse_server_frame_with(bytes, payload_bytes_max, false)
}

/// [`parse_server_frame`] on a connection where RSV1 may mark a compressed data message
/// (`deflate`: permessage-deflate was offered; RFC 7692 §6.1 allows it on the first frame of a
/// data message only).
pub fn parse_server_frame_with(
    bytes: &[u8],
    payload_bytes_max: usize,
    deflate: bool,
) -> Result<Option<FrameHeader>, FrameError> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let first = bytes[0];
    let second = bytes[1];
    let opcode_bits = first & 0x0F;
    let opcode = Opcode::from_bits(opcode_bits).ok_or(FrameError::ReservedOpcode(opcode_bits))?;
    let compressed = first & 0x40 != 0;
    let rsv1_allowed = deflate && matches!(opcode, Opcode::Text | Opcode::Binary);
    if first & 0x30 != 0 || (compressed && !rsv1_allowed) {
        return Err(FrameError::ReservedBitsSet);
    }
    let fin = first & 0x80 != 0;
    if second & 0x80 != 0 {
        return Err(FrameError::MaskedFrameFromServer);
    }
    let (header_bytes, payload_bytes) = match second & 0x7F {
        126 => {
            if bytes.len() < 4 {
                return Ok(None);
            }
            (4, u64::from(u16::from_be_bytes([bytes[2], bytes[3]])))
        }
        127 => {
            if bytes.len() < 10 {
                return Ok(None);
            }
            let length = u64::from_be_bytes(bytes[2..10].try_into().expect("slice of 8 bytes"));
            if length >> 63 != 0 {
                return Err(FrameError::LengthHighBitSet);
            }
            (10, length)
        }
        short => (2, u64::from(short)),
    };
    if opcode.is_control() {
        if payload_bytes > 125 {
            return Err(FrameError::ControlFrameTooBig);
        }
        if !fin {
            return Err(FrameError::FragmentedControlFrame);
        }
    }
    if payload_bytes > payload_bytes_max as u64 {
        return Err(FrameError::PayloadTooLarge(payload_bytes));
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_bytes,
        payload_bytes: payload_bytes as usize,
        compressed,
    }))
}

/// Appends the header of an unmasked, final frame (what a server sends) to `out`.
fn push_header(out: &mut Vec<u8>, opcode: Opcode, payload_bytes: usize, masked: bool) {
    let mask_bit = if masked { 0x80 } else { 0x00 };
    out.push(0x80 | opcode.bits());
    if payload_bytes < 126 {
        out.push(mask_bit | payload_bytes as u8);
    } else if payload_bytes <= usize::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload_bytes as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload_bytes as u64).to_be_bytes());
    }
}

/// Appends a complete unmasked final frame (server to client) to `out`.
pub fn encode_server_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    push_header(out, opcode, payload.len(), false);
    out.extend_from_slice(payload);
}

/// Appends a complete masked final frame (client to server) to `out`.
///
/// RFC 6455 §5.3: "The masking key is a 32-bit value chosen at random by the client"; the caller
/// supplies it from its own generator.
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask_key: [u8; 4]) {
    push_header(out, opcode, payload.len(), true);
    out.extend_from_slice(&mask_key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask_key);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    #[test]
    fn rfc_6455_section_5_7_unmasked_hello() {
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let header = parse_server_frame(&frame, LIMIT).unwrap().unwrap();
        assert_eq!(
            header,
            FrameHeader {
                fin: true,
                opcode: Opcode::Text,
                header_bytes: 2,
                payload_bytes: 5,
                compressed: false,
            }
        );
        let mut encoded = Vec::new();
        encode_server_frame(&mut encoded, Opcode::Text, b"Hello");
        assert_eq!(encoded, frame);
    }

    #[test]
    fn rfc_6455_section_5_7_masked_hello() {
        let mut encoded = Vec::new();
        encode_client_frame(
            &mut encoded,
            Opcode::Text,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(
            encoded,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn lengths_round_trip_at_every_encoding_boundary() {
        for length in [0, 125, 126, 65_535, 65_536, 200_000] {
            let payload = vec![b'a'; length];
            let mut encoded = Vec::new();
            encode_server_frame(&mut encoded, Opcode::Binary, &payload);
            let header = parse_server_frame(&encoded, LIMIT).unwrap().unwrap();
            assert_eq!(header.payload_bytes, length);
            assert_eq!(header.frame_bytes(), encoded.len());
        }
    }

    #[test]
    fn every_strict_prefix_of_a_header_is_incomplete() {
        let mut encoded = Vec::new();
        encode_server_frame(&mut encoded, Opcode::Binary, &vec![0u8; 70_000]);
        for cut in 0..10 {
            assert_eq!(
                parse_server_frame(&encoded[..cut], LIMIT),
                Ok(None),
                "cut {cut}"
            );
        }
        assert!(parse_server_frame(&encoded[..10], LIMIT).unwrap().is_some());
    }

    #[test]
    fn one_error_per_violation() {
        assert_eq!(
            parse_server_frame(&[0xC1, 0x00], LIMIT),
            Err(FrameError::ReservedBitsSet)
        );
        assert_eq!(
            parse_server_frame(&[0x83, 0x00], LIMIT),
            Err(FrameError::ReservedOpcode(3))
        );
        assert_eq!(
            parse_server_frame(&[0x81, 0x80], LIMIT),
            Err(FrameError::MaskedFrameFromServer)
        );
        assert_eq!(
            parse_server_frame(&[0x89, 126, 0, 126], LIMIT),
            Err(FrameError::ControlFrameTooBig)
        );
        assert_eq!(
            parse_server_frame(&[0x09, 0x00], LIMIT),
            Err(FrameError::FragmentedControlFrame)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(
            parse_server_frame(&huge, LIMIT),
            Err(FrameError::LengthHighBitSet)
        );
        assert_eq!(
            parse_server_frame(&[0x82, 126, 0xFF, 0xFF], 100),
            Err(FrameError::PayloadTooLarge(65_535))
        );
    }
}
