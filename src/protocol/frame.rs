//! RFC 6455 §5.2 frame headers: decoding what clients send, encoding what the server sends.
//!
//! Sans-IO: functions over byte slices. Decoding is split like mini-redis's `check`/`parse`: a
//! header is either complete (and validated) or `None` (need more bytes); a broken header is an
//! error as soon as the bytes that break it have arrived, so a hostile client is caught early
//! (a 1 GiB length is refused from the header, before a byte of payload is read).
//! Server frames are never masked (§5.1) and never fragmented (each broadcast is one frame).
//!
//! RSV1 means "Per-Message Compressed" only on a connection that negotiated permessage-deflate
//! (RFC 7692 §6); the caller says which with [`Rsv1`]. RSV2 and RSV3 are always refused: no
//! extension that uses them is ever negotiated. This file checks where RSV1 may appear; it knows
//! nothing about DEFLATE itself (`deflate` does).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::mask::apply_mask_reference;
use super::message::DataKind;

/// Longest header a server frame can have: 2 bytes + 8 bytes of extended length.
pub const MAX_SERVER_HEADER_BYTES: usize = 10;
/// Longest header a client frame can have: 2 + 8 extended length + 4 masking key.
pub const MAX_CLIENT_HEADER_BYTES: usize = 14;
/// RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
pub const MAX_CONTROL_PAYLOAD_BYTES: u64 = 125;

/// RFC 7692 §6: RSV1 of the first frame of a message marks it "Per-Message Compressed".
pub const RSV1_BIT: u8 = 0x40;
/// RFC 6455 §5.2: RSV2 and RSV3, which no extension ringcast negotiates uses.
const RSV2_RSV3_BITS: u8 = 0x30;

/// What RSV1 means on a connection, decided by the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rsv1 {
    /// No extension negotiated: RSV1 "MUST be 0" (RFC 6455 §5.2).
    Reserved,
    /// permessage-deflate negotiated: RSV1 on the first frame of a data message says the
    /// message is compressed (RFC 7692 §6).
    PerMessageCompressed,
}

/// Whether a data frame's message is compressed (RSV1 on its first frame, RFC 7692 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageCompression {
    /// RSV1 clear: the payload is the message itself (always so for control and continuation
    /// frames, whose own RSV1 must be clear; a continuation inherits its message's state).
    Uncompressed,
    /// RSV1 set on a text or binary frame: the payload is DEFLATE data (RFC 7692 §7.2).
    Compressed,
}

/// The frame types RFC 6455 §5.2 defines; every other opcode is reserved and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        match bits {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            // RFC 6455 §5.2: "%x3-7 are reserved for further non-control frames" and
            // "%xB-F are reserved for further control frames".
            reserved => Err(ProtocolError::ReservedOpcode(reserved)),
        }
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// RFC 6455 §5.5: control frames are those whose opcode has the high bit set.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded and validated client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// The frame type.
    pub opcode: OpCode,
    /// RSV1 on a text or binary frame where permessage-deflate was negotiated.
    pub compression: MessageCompression,
    /// The masking key (every accepted client frame has one).
    pub mask_key: [u8; 4],
    /// Payload length in bytes, already checked against the limits.
    pub payload_len: u64,
    /// Bytes the header occupies before the payload starts.
    pub header_len: usize,
}

impl FrameHeader {
    /// Header plus payload: how many bytes of input this frame consumes.
    pub fn frame_len(&self) -> u64 {
        self.header_len as u64 + self.payload_len
    }
}

/// Decodes a client frame header from the start of `buf`, on a connection without extensions
/// (any RSV bit is an error).
///
/// Returns `Ok(None)` when more bytes are needed, an error as soon as the available bytes prove
/// the frame invalid, and the header otherwise. `max_payload_bytes` is the largest data frame
/// payload accepted (the message limit); RFC 6455 §10.4 lets a server refuse what it cannot
/// buffer, with 1009.
pub fn decode_client_header(
    buf: &[u8],
    max_payload_bytes: u64,
) -> Result<Option<FrameHeader>, ProtocolError> {
    decode_client_header_with(buf, max_payload_bytes, Rsv1::Reserved)
}

/// [`decode_client_header`] on a connection where RSV1 means `rsv1`.
pub fn decode_client_header_with(
    buf: &[u8],
    max_payload_bytes: u64,
    rsv1: Rsv1,
) -> Result<Option<FrameHeader>, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    // RFC 6455 §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
    // for non-zero values". Without one, checked before the opcode, as it always was.
    if first & RSV2_RSV3_BITS != 0 || (rsv1 == Rsv1::Reserved && first & RSV1_BIT != 0) {
        return Err(ProtocolError::ReservedBitsSet);
    }
    let opcode = OpCode::from_bits(first & 0x0F)?;
    let compression = message_compression(first & RSV1_BIT != 0, opcode)?;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }
    let Some(&second) = buf.get(1) else {
        return Ok(None);
    };
    if second & 0x80 == 0 {
        return Err(ProtocolError::UnmaskedFrameFromClient);
    }
    let short_len = u64::from(second & 0x7F);
    if opcode.is_control() && short_len > MAX_CONTROL_PAYLOAD_BYTES {
        return Err(ProtocolError::ControlFrameTooBig(short_len));
    }
    let (payload_len, length_bytes) = match short_len {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let length = u64::from_be_bytes(bytes.try_into().expect("slice of 8 bytes"));
                if length >> 63 != 0 {
                    return Err(ProtocolError::PayloadLengthMsbSet);
                }
                (length, 8)
            }
            None => return Ok(None),
        },
        length => (length, 0),
    };
    if payload_len > max_payload_bytes {
        return Err(ProtocolError::MessageTooBig {
            length_bytes: payload_len,
            limit_bytes: max_payload_bytes,
        });
    }
    let mask_start = 2 + length_bytes;
    let Some(mask) = buf.get(mask_start..mask_start + 4) else {
        return Ok(None);
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        compression,
        mask_key: mask.try_into().expect("slice of 4 bytes"),
        payload_len,
        header_len: mask_start + 4,
    }))
}

/// Where RSV1 (already allowed by the negotiation) may be set: on the first frame of a data
/// message only.
fn message_compression(rsv1: bool, opcode: OpCode) -> Result<MessageCompression, ProtocolError> {
    match (rsv1, opcode) {
        (false, _) => Ok(MessageCompression::Uncompressed),
        (true, OpCode::Text | OpCode::Binary) => Ok(MessageCompression::Compressed),
        // RFC 7692 §6.1: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
        // frames and non-first fragments of a data message. An endpoint receiving such a frame
        // MUST _Fail the WebSocket Connection_."
        (true, OpCode::Continuation) => Err(ProtocolError::CompressedContinuation),
        (true, OpCode::Close | OpCode::Ping | OpCode::Pong) => {
            Err(ProtocolError::CompressedControlFrame)
        }
    }
}

/// Writes an unmasked, final server frame header into `out`; returns its length.
pub fn encode_server_header(
    opcode: OpCode,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER_BYTES],
) -> usize {
    encode_header(0x80 | opcode.bits(), 0, payload_len, out)
}

/// Writes the header of an unmasked, final server frame whose payload is a message compressed
/// by permessage-deflate (RSV1 set, RFC 7692 §6) into `out`; returns its length. Only data
/// opcodes can carry RSV1 (§6.1); any other is a programmer error.
pub fn encode_compressed_server_header(
    opcode: OpCode,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER_BYTES],
) -> usize {
    assert!(
        matches!(opcode, OpCode::Text | OpCode::Binary),
        "RFC 7692 §6.1: only the first frame of a data message may be compressed, not {opcode:?}"
    );
    encode_header(0x80 | RSV1_BIT | opcode.bits(), 0, payload_len, out)
}

/// Writes a frame header (first byte as given, the mask bit, the shortest length encoding of
/// §5.2) into `out`; returns its length.
fn encode_header(
    first_byte: u8,
    mask_bit: u8,
    payload_len: usize,
    out: &mut [u8; MAX_SERVER_HEADER_BYTES],
) -> usize {
    out[0] = first_byte;
    if payload_len < 126 {
        out[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(length) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&length.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Builds one complete server frame: one allocation, header and payload contiguous, ready to be
/// shared by reference with every subscriber.
pub fn encode_server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
    let header_len = encode_server_header(opcode, payload.len(), &mut header);
    let mut frame = BytesMut::with_capacity(header_len + payload.len());
    frame.put_slice(&header[..header_len]);
    frame.put_slice(payload);
    frame.freeze()
}

/// The kind and message of one complete, final, uncompressed server data frame as
/// [`encode_server_frame`] builds it (what permessage-deflate compresses for subscribers that
/// negotiated it); `None` for anything else (a control frame, RSV1 set, a fragment, a frame cut
/// short or followed by more bytes).
pub fn server_data_frame_message(frame: &[u8]) -> Option<(DataKind, &[u8])> {
    let (&first, &second) = (frame.first()?, frame.get(1)?);
    let kind = match first {
        0x81 => DataKind::Text,
        0x82 => DataKind::Binary,
        _ => return None,
    };
    if second & 0x80 != 0 {
        return None;
    }
    let (header_len, payload_len) = match second {
        126 => (
            4,
            u64::from(u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?)),
        short => (2, u64::from(short)),
    };
    let payload = frame.get(header_len..)?;
    (payload.len() as u64 == payload_len).then_some((kind, payload))
}

/// Builds one complete compressed server frame (RSV1 set) around a payload already compressed by
/// permessage-deflate (RFC 7692 §7.2.1). `deflate::MessageCompressor::compress_frame` builds the
/// same bytes without copying the payload; this one is for payloads compressed elsewhere.
pub fn encode_compressed_server_frame(opcode: OpCode, compressed_payload: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
    let header_len = encode_compressed_server_header(opcode, compressed_payload.len(), &mut header);
    let mut frame = BytesMut::with_capacity(header_len + compressed_payload.len());
    frame.put_slice(&header[..header_len]);
    frame.put_slice(compressed_payload);
    frame.freeze()
}

/// Builds a masked client frame the way a client library would: `first_byte` as given (FIN,
/// RSV and opcode bits, so tests can also build invalid frames), the shortest length encoding,
/// the payload masked with `key` by the reference mask (not the fast one it may be checking).
/// ringcast never sends one: tests, fuzz seeds and tools speak the client side with it.
pub fn encode_client_frame(first_byte: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
    let header_len = encode_header(first_byte, 0x80, payload.len(), &mut header);
    let mut frame = Vec::with_capacity(header_len + 4 + payload.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(&key);
    let payload_start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask_reference(&mut frame[payload_start..], key, 0);
    frame
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_server_data_frame_gives_back_its_message() {
        for size in [0usize, 125, 126, 65535, 65536] {
            let message = vec![b'x'; size];
            let frame = encode_server_frame(OpCode::Text, &message);
            assert_eq!(
                server_data_frame_message(&frame),
                Some((DataKind::Text, &message[..])),
                "{size}"
            );
            assert_eq!(server_data_frame_message(&frame[..frame.len() - 1]), None);
            let binary = encode_server_frame(OpCode::Binary, &message);
            assert_eq!(
                server_data_frame_message(&binary).unwrap().0,
                DataKind::Binary
            );
        }
        assert_eq!(server_data_frame_message(b"\x8a\x00"), None, "a pong");
        assert_eq!(
            server_data_frame_message(b"\xc1\x01x"),
            None,
            "RSV1 already"
        );
        assert_eq!(server_data_frame_message(b"\x01\x01x"), None, "a fragment");
        assert_eq!(
            server_data_frame_message(b"\x81\x01xy"),
            None,
            "bytes after it"
        );
        assert_eq!(server_data_frame_message(b"\x81"), None);
    }

    /// A client frame from FIN, opcode bits, key and payload.
    pub(crate) fn client_frame(
        fin: bool,
        opcode_bits: u8,
        key: [u8; 4],
        payload: &[u8],
    ) -> Vec<u8> {
        encode_client_frame((if fin { 0x80 } else { 0 }) | opcode_bits, key, payload)
    }

    #[test]
    fn rfc_5_7_unmasked_hello_is_what_the_server_sends() {
        // RFC 6455 §5.7: "A single-frame unmasked text message: 0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f".
        let frame = encode_server_frame(OpCode::Text, b"Hello");
        assert_eq!(&frame[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_5_7_unmasked_ping_and_lengths() {
        // RFC 6455 §5.7: "Unmasked Ping request and masked Ping response: 0x89 0x05 ... "Hello"".
        assert_eq!(
            &encode_server_frame(OpCode::Ping, b"Hello")[..2],
            &[0x89, 0x05]
        );
        // "256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100 [256 bytes]".
        let frame = encode_server_frame(OpCode::Binary, &[0u8; 256]);
        assert_eq!(&frame[..4], &[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(frame.len(), 260);
        // "64KiB binary message in a single unmasked frame: 0x82 0x7F 0x0000000000010000".
        let frame = encode_server_frame(OpCode::Binary, &[0u8; 65536]);
        assert_eq!(&frame[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn rfc_5_7_masked_hello_decodes() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = decode_client_header(&frame, 1 << 20).unwrap().unwrap();
        assert!(header.fin);
        assert_eq!(header.opcode, OpCode::Text);
        assert_eq!(header.mask_key, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.header_len, 6);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let frame = client_frame(true, 0x2, [1, 2, 3, 4], &[7u8; 70000]);
        for cut in 0..14 {
            assert_eq!(
                decode_client_header(&frame[..cut], u64::MAX >> 1),
                Ok(None),
                "{cut}"
            );
        }
        assert!(
            decode_client_header(&frame[..14], u64::MAX >> 1)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn each_header_violation_is_its_own_error() {
        let limit = 1024;
        let check = |bytes: &[u8]| decode_client_header(bytes, limit);
        assert_eq!(
            check(&[0x81, 0x05]),
            Err(ProtocolError::UnmaskedFrameFromClient)
        );
        assert_eq!(check(&[0xC1, 0x85]), Err(ProtocolError::ReservedBitsSet));
        assert_eq!(check(&[0xA1, 0x85]), Err(ProtocolError::ReservedBitsSet));
        assert_eq!(check(&[0x91, 0x85]), Err(ProtocolError::ReservedBitsSet));
        for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                check(&[0x80 | opcode, 0x80]),
                Err(ProtocolError::ReservedOpcode(opcode))
            );
        }
        assert_eq!(
            check(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            check(&[0x89, 0xFE, 0, 126]),
            Err(ProtocolError::ControlFrameTooBig(126))
        );
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(check(&huge), Err(ProtocolError::PayloadLengthMsbSet));
        assert_eq!(
            check(&[0x82, 0xFE, 0x04, 0x01]),
            Err(ProtocolError::MessageTooBig {
                length_bytes: 1025,
                limit_bytes: 1024
            })
        );
    }

    #[test]
    fn too_big_is_detected_from_the_header_alone() {
        // 1 GiB announced: refused with only the 10 header bytes in hand.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 30).to_be_bytes());
        let error = decode_client_header(&header, 65536).unwrap_err();
        assert_eq!(error.close_code(), 1009);
    }

    #[test]
    fn rsv1_is_allowed_only_on_the_first_frame_of_a_data_message() {
        let limit = 1024;
        let check =
            |bytes: &[u8]| decode_client_header_with(bytes, limit, Rsv1::PerMessageCompressed);
        let key = [0, 0, 0, 0];
        // RFC 7692 §7.2.3.1: "0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00", masked here.
        let hello = encode_client_frame(0xC1, key, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let header = check(&hello).unwrap().unwrap();
        assert_eq!(header.compression, MessageCompression::Compressed);
        assert_eq!(header.opcode, OpCode::Text);
        // A first fragment may carry it ("0x41 0x03 0xf2 0x48 0xcd"), binary too.
        let first = check(&[0x41, 0x83, 0, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(first.compression, MessageCompression::Compressed);
        assert!(!first.fin);
        let binary = check(&[0xC2, 0x80, 0, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(binary.compression, MessageCompression::Compressed);
        // Without RSV1 a frame is uncompressed, negotiated or not.
        let plain = check(&[0x81, 0x80, 0, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(plain.compression, MessageCompression::Uncompressed);
        // RFC 7692 §6.1: never on continuation or control frames.
        assert_eq!(
            check(&[0xC0, 0x80]),
            Err(ProtocolError::CompressedContinuation)
        );
        assert_eq!(
            check(&[0x40, 0x80]),
            Err(ProtocolError::CompressedContinuation)
        );
        for opcode in [0x8u8, 0x9, 0xA] {
            assert_eq!(
                check(&[0xC0 | opcode, 0x80]),
                Err(ProtocolError::CompressedControlFrame),
                "{opcode:#x}"
            );
        }
        // RSV2 and RSV3 stay reserved.
        assert_eq!(check(&[0xA1, 0x80]), Err(ProtocolError::ReservedBitsSet));
        assert_eq!(check(&[0xD1, 0x80]), Err(ProtocolError::ReservedBitsSet));
        // Without the extension RSV1 is what it always was.
        assert_eq!(
            decode_client_header(&hello, limit),
            Err(ProtocolError::ReservedBitsSet)
        );
        assert_eq!(
            decode_client_header_with(&hello, limit, Rsv1::Reserved),
            Err(ProtocolError::ReservedBitsSet)
        );
    }

    #[test]
    fn rfc_7692_7_2_3_1_compressed_hello_frame() {
        let payload = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let frame = encode_compressed_server_frame(OpCode::Text, &payload);
        assert_eq!(
            &frame[..],
            &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        let frame = encode_compressed_server_frame(OpCode::Binary, &[0u8; 300]);
        assert_eq!(&frame[..4], &[0xC2, 0x7E, 0x01, 0x2C]);
    }

    #[test]
    #[should_panic(expected = "RFC 7692")]
    fn a_compressed_control_frame_is_a_programmer_error() {
        encode_compressed_server_frame(OpCode::Ping, b"");
    }
}
