//! Hand-written seed inputs: the RFC 6455 examples and one input per rule the code enforces,
//! so the fuzzer starts from meaningful protocol traffic instead of rediscovering it.
//!
//! `examples/write_seeds.rs` writes them into `corpus/<target>/seed-<name>`; the replay test
//! runs them through the checks directly, so a seed that breaks a property fails on stable too.

use super::client_frame;
use super::frames_stream::FramesInput;
use super::handshake::HandshakeInput;
use super::inflate::InflateInput;
use super::mask::MaskInput;

/// A named seed.
pub type Seed = (&'static str, Vec<u8>);

/// The seeds of the target called `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Seed> {
    match target {
        "handshake" => handshake(),
        "frames_stream" => frames_stream(),
        "close_payload" => close_payload(),
        "mask" => mask(),
        "inflate" => inflate(),
        "centrifugo_frame" => centrifugo_frame(),
        _ => Vec::new(),
    }
}

/// RFC 6455 §1.3's opening handshake, on ringcast's subscribe path.
const UPGRADE: &str = "GET /ws/news HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn handshake() -> Vec<Seed> {
    let requests: [(&str, String); 18] = [
        ("upgrade", UPGRADE.to_string()),
        ("echo", UPGRADE.replace("/ws/news", "/echo")),
        (
            "other_channel",
            UPGRADE.replace("/ws/news", "/ws/other.channel:1"),
        ),
        ("query", UPGRADE.replace("/ws/news", "/ws/news?since=0")),
        ("http10", UPGRADE.replace("HTTP/1.1", "HTTP/1.0")),
        (
            "no_host",
            UPGRADE.replace("Host: server.example.com\r\n", ""),
        ),
        ("version_8", UPGRADE.replace("Version: 13", "Version: 8")),
        (
            "short_key",
            UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        ),
        (
            "duplicate_key",
            UPGRADE.replace(
                "Origin:",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin:",
            ),
        ),
        (
            "tokens",
            UPGRADE
                .replace("Upgrade: websocket", "upgrade:  h2c, WebSocket ")
                .replace("Connection: Upgrade", "connection: keep-alive,UPGRADE"),
        ),
        (
            "publish",
            "POST /publish/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
             Expect: 100-continue\r\n\r\nhello"
                .to_string(),
        ),
        (
            "conflicting_length",
            "POST /publish/news HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                .to_string(),
        ),
        (
            "chunked",
            "POST /publish/news HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        ),
        (
            "health_keep_alive",
            "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /stat HTTP/1.1\r\n\r\n"
                .to_string(),
        ),
        ("bare_lf", "GET /readyz HTTP/1.1\nHost: x\n\n".to_string()),
        ("partial", UPGRADE[..60].to_string()),
        ("method", "DELETE /ws/news HTTP/1.1\r\n\r\n".to_string()),
        (
            "bad_channel",
            "GET /ws/bad%20name HTTP/1.1\r\n\r\n".to_string(),
        ),
    ];
    let mut seeds: Vec<Seed> = requests
        .into_iter()
        .map(|(name, request)| {
            (
                name,
                HandshakeInput::encode(1024, 16, true, request.as_bytes()),
            )
        })
        .collect();
    let many_headers: String = (0..10).map(|index| format!("X-{index}: y\r\n")).collect();
    let many = format!("GET /ws/news HTTP/1.1\r\n{many_headers}\r\n");
    seeds.push((
        "too_many_headers",
        HandshakeInput::encode(1024, 8, false, many.as_bytes()),
    ));
    // Just over the limit, and with more header slots than the 64 on the stack.
    seeds.push((
        "too_large",
        HandshakeInput::encode(200, 100, false, UPGRADE.as_bytes()),
    ));
    seeds.push((
        "tls_hello",
        HandshakeInput::encode(
            512,
            16,
            false,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ),
    ));
    seeds
}

/// RFC 6455 §5.7's masking key.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn frames_stream() -> Vec<Seed> {
    let frame = |fin, opcode, payload: &[u8]| client_frame(fin, opcode, KEY, payload);
    let concat = |frames: &[Vec<u8>]| frames.concat();
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&(1u64 << 30).to_be_bytes());
    huge.extend_from_slice(&KEY);
    let euro = "€".as_bytes();
    let streams: [(&str, Vec<u8>); 16] = [
        // §5.7: "A single-frame masked text message".
        (
            "rfc_masked_hello",
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        ),
        // §5.7: "A fragmented unmasked text message", masked as a client must.
        (
            "rfc_fragmented_hello",
            concat(&[frame(false, 0x1, b"Hel"), frame(true, 0x0, b"lo")]),
        ),
        // §5.7: "Unmasked Ping request and masked Ping response", both from the client side.
        (
            "rfc_ping_pong",
            concat(&[frame(true, 0x9, b"Hello"), frame(true, 0xA, b"Hello")]),
        ),
        // §5.7: "256 bytes binary message in a single unmasked frame", masked.
        ("rfc_binary_256", frame(true, 0x2, &[0x5A; 256])),
        (
            "ping_inside_fragments",
            concat(&[
                frame(false, 0x2, b"ab"),
                frame(true, 0x9, b"p"),
                frame(false, 0x0, b""),
                frame(true, 0x0, b"cd"),
            ]),
        ),
        (
            "euro_split_across_fragments",
            concat(&[
                frame(false, 0x1, &euro[..1]),
                frame(false, 0x0, &euro[1..2]),
                frame(true, 0x0, &euro[2..]),
            ]),
        ),
        (
            "close_then_more",
            concat(&[frame(true, 0x8, b"\x03\xe8bye"), frame(true, 0x1, b"late")]),
        ),
        ("close_empty", frame(true, 0x8, b"")),
        ("close_1005", frame(true, 0x8, b"\x03\xed")),
        (
            "invalid_utf8_fragment",
            concat(&[
                frame(false, 0x1, "κόσμε".as_bytes()),
                frame(false, 0x0, b"\xed\xa0\x80"),
            ]),
        ),
        ("unmasked", vec![0x81, 0x05, b'H', b'e', b'l', b'l', b'o']),
        (
            "reserved_bits_and_opcode",
            concat(&[vec![0xC1, 0x80], vec![0x83, 0x80]]),
        ),
        ("fragmented_ping", concat(&[frame(false, 0x9, b"x")])),
        ("continuation_without_start", frame(true, 0x0, b"x")),
        (
            "message_inside_fragmented",
            concat(&[frame(false, 0x1, b"a"), frame(true, 0x1, b"b")]),
        ),
        ("announces_1_gib", huge),
    ];
    let mut seeds: Vec<Seed> = streams
        .into_iter()
        .map(|(name, stream)| (name, FramesInput::encode(1024, &[1, 5, 2], &stream)))
        .collect();
    // A reassembled message over a small limit, each fragment within it.
    let over_limit = concat(&[frame(false, 0x2, b"abc"), frame(true, 0x0, b"de")]);
    seeds.push((
        "reassembly_over_limit",
        FramesInput::encode(4, &[7], &over_limit),
    ));
    // An unlimited decoder and a 64-bit length header.
    let mut long_header = vec![0x82, 0xFF];
    long_header.extend_from_slice(&3u64.to_be_bytes());
    long_header.extend_from_slice(&[0; 4]);
    long_header.extend_from_slice(b"abc");
    seeds.push((
        "unlimited_64_bit_length",
        FramesInput::encode(u16::MAX, &[], &long_header),
    ));
    seeds
}

fn close_payload() -> Vec<Seed> {
    let with_code = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    vec![
        ("empty", Vec::new()),
        ("one_byte", vec![0x03]),
        ("normal", with_code(1000, b"")),
        ("normal_reason", with_code(1000, b"bye")),
        ("going_away", with_code(1001, b"restart")),
        ("reserved_1004", with_code(1004, b"")),
        ("no_status_1005", with_code(1005, b"")),
        ("tls_1015", with_code(1015, b"")),
        ("try_again_1013", with_code(1013, b"")),
        ("library_3000", with_code(3000, b"x")),
        ("private_4999", with_code(4999, b"x")),
        ("out_of_range_5000", with_code(5000, b"")),
        ("reason_kosme", with_code(1000, "κόσμε".as_bytes())),
        ("reason_surrogate", with_code(1000, b"\xed\xa0\x80")),
        // 123 bytes of reason ending inside a 3-byte character: the re-encoded frame must cut it.
        (
            "reason_at_limit",
            with_code(1008, "€".repeat(41).as_bytes()),
        ),
        ("reason_over_limit", with_code(1008, &[b'r'; 200])),
    ]
}

fn mask() -> Vec<Seed> {
    let masked_hello = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let ramp: Vec<u8> = (0..=255).collect();
    vec![
        // §5.7: "Hello" masked with 37 fa 21 3d.
        ("rfc_hello", MaskInput::encode(KEY, 0, 2, 0, &masked_hello)),
        ("empty", MaskInput::encode(KEY, 0, 0, 0, &[])),
        (
            "ramp_aligned",
            MaskInput::encode([1, 2, 3, 4], 0, 37, 0, &ramp),
        ),
        (
            "ramp_unaligned",
            MaskInput::encode([1, 2, 3, 4], 3, 13, 5, &ramp),
        ),
        (
            "ramp_offset",
            MaskInput::encode([0xFF, 0, 0xFF, 0], 70_001, 255, 7, &ramp),
        ),
    ]
}

/// An `inflate` seed: name, limit, flags, piece lengths, compressed payload.
type InflateSeed = (&'static str, u16, u8, Vec<u8>, Vec<u8>);

/// RFC 7692 §7.2.3's example payloads, a compressed JSON message, a zip bomb, broken data.
fn inflate() -> Vec<Seed> {
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    // Flags: bit 0 keep the context, bit 1 text, bits 2-5 the round trip's level.
    const KEPT_TEXT: u8 = 0b11;
    let json = "{\"channel\":\"trades\",\"price\":\"43125.17\"}".repeat(20);
    let mut compressor = ringcast::protocol::deflate::MessageCompressor::new(
        ringcast::protocol::deflate::CompressionLevel::FASTEST,
    );
    let json_payload = compressor
        .compress_message(json.as_bytes())
        .expect("repeated JSON compresses");
    let bomb = compressor
        .compress_message(&vec![0u8; 1 << 20])
        .expect("zeros compress");
    let payloads: [InflateSeed; 10] = [
        // §7.2.3.1, in one frame and in two ("0xf2 0x48 0xcd" + "0xc9 0xc9 0x07 0x00").
        ("rfc_hello", 1024, KEPT_TEXT, vec![], HELLO.to_vec()),
        ("rfc_hello_fragmented", 1024, 0b10, vec![3], HELLO.to_vec()),
        // §7.2.3.3: a stored block.
        (
            "rfc_stored_block",
            1024,
            KEPT_TEXT,
            vec![5],
            vec![
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
        ),
        // §7.2.3.4: a block with BFINAL set, then the empty block's header.
        (
            "rfc_bfinal",
            1024,
            KEPT_TEXT,
            vec![],
            vec![0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ),
        // §7.2.3.5: two blocks in one message.
        (
            "rfc_two_blocks",
            1024,
            0b0110,
            vec![8, 0],
            vec![
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
        ),
        ("json", 4096, KEPT_TEXT, vec![10, 20], json_payload.to_vec()),
        ("json_over_limit", 100, 0b10, vec![], json_payload.to_vec()),
        ("zip_bomb", 60_000, 0, vec![200, 200, 200], bomb.to_vec()),
        ("reserved_block_type", 1024, 0, vec![], vec![0x07, 0x00]),
        (
            "invalid_utf8_stored",
            1024,
            KEPT_TEXT,
            vec![],
            vec![0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x00],
        ),
    ];
    payloads
        .into_iter()
        .map(|(name, limit, flags, pieces, payload)| {
            (name, InflateInput::encode(limit, flags, &pieces, &payload))
        })
        .collect()
}

/// Frames as centrifuge-js 5 sends them (`JSON.stringify` of `{<method>: request}`, the id
/// last, commands joined by `\n`), then one per rule the decoder enforces. Default limits
/// (four zero bytes) except where a seed is about a limit.
fn centrifugo_frame() -> Vec<Seed> {
    let frames: [(&str, [u8; 4], &str); 22] = [
        (
            "connect",
            [0; 4],
            r#"{"connect":{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x","name":"js"},"id":1}"#,
        ),
        (
            "connect_subs",
            [0; 4],
            r#"{"connect":{"name":"js","subs":{"news":{"recover":true,"offset":5,"epoch":"abcd"}}},"id":1}"#,
        ),
        (
            "subscribe_batch",
            [0; 4],
            "{\"subscribe\":{\"channel\":\"news\",\"flag\":1},\"id\":2}\n{\"subscribe\":{\"channel\":\"chat:1\",\"recoverable\":true,\"flag\":1,\"recover\":true,\"offset\":7,\"epoch\":\"xyz\"},\"id\":3}",
        ),
        ("pong", [0; 4], "{}"),
        (
            "unsubscribe",
            [0; 4],
            r#"{"unsubscribe":{"channel":"news"},"id":4}"#,
        ),
        (
            "publish",
            [0; 4],
            r#"{"publish":{"channel":"news","data":{"input":"hello","n":1.50}},"id":5}"#,
        ),
        (
            "history",
            [0; 4],
            r#"{"history":{"channel":"news","since":{"offset":3,"epoch":"e"},"limit":10,"reverse":true},"id":6}"#,
        ),
        (
            "presence",
            [0; 4],
            r#"{"presence":{"channel":"news"},"id":7}"#,
        ),
        (
            "rpc_send",
            [0; 4],
            "{\"rpc\":{\"method\":\"m\",\"data\":[1]},\"id\":8}\n{\"send\":{\"data\":{\"x\":1}}}",
        ),
        (
            "refresh",
            [0; 4],
            "{\"refresh\":{\"token\":\"t\"},\"id\":9}\n{\"sub_refresh\":{\"channel\":\"news\",\"token\":\"t\"},\"id\":10}",
        ),
        (
            "invalid_channel",
            [0; 4],
            r#"{"subscribe":{"channel":"$private"},"id":2}"#,
        ),
        (
            "subscription_type",
            [0; 4],
            r#"{"subscribe":{"channel":"a","type":4,"tf":{}},"id":2}"#,
        ),
        ("too_large", [8, 0, 0, 0], r#"{"id":1,"ping":{}}"#),
        ("too_many", [0, 0, 1, 0], "{}\n{}"),
        ("malformed", [0; 4], "{}\nnot json"),
        ("no_request", [0; 4], r#"{"id":1,"foo":{}}"#),
        (
            "two_requests",
            [0; 4],
            r#"{"id":1,"ping":{},"presence":{"channel":"a"}}"#,
        ),
        ("missing_id", [0; 4], r#"{"subscribe":{"channel":"a"}}"#),
        ("empty_channel", [0; 4], r#"{"history":{},"id":1}"#),
        ("empty_token", [0; 4], r#"{"refresh":{},"id":1}"#),
        (
            "unknown_delta",
            [0; 4],
            r#"{"subscribe":{"channel":"a","delta":"x"},"id":1}"#,
        ),
        (
            "connect_subs_limit",
            [0, 0, 0, 1],
            r#"{"connect":{"subs":{"a":{},"b":{}}},"id":1}"#,
        ),
    ];
    frames
        .into_iter()
        .map(|(name, limits, frame)| {
            let mut seed = limits.to_vec();
            seed.extend_from_slice(frame.as_bytes());
            (name, seed)
        })
        .collect()
}
