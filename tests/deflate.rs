//! permessage-deflate (RFC 7692) end to end, in raw TCP bytes: what the 101 answers to each kind
//! of offer, compressed broadcasts (decoded here with `miniz_oxide`, not ringcast's own
//! inflater), the threshold and the window promise, compressed echoes, and the close codes of a
//! zip bomb (1009), a compressed control frame (1002) and RSV1 without the extension (1002).

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{Frame, Server, read_frame, read_http_head, read_until_close, wait_until};

/// An upgrade request for `path` with `extensions` as its `Sec-WebSocket-Extensions` lines.
fn upgrade_with(path: &str, extensions: &[&str]) -> String {
    let lines: String = extensions
        .iter()
        .map(|value| format!("Sec-WebSocket-Extensions: {value}\r\n"))
        .collect();
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{lines}\r\n"
    )
}

/// Upgrades with `extensions`; returns the socket and the `Sec-WebSocket-Extensions` value of
/// the 101 (`None`: no such header).
fn connect(server: &Server, path: &str, extensions: &[&str]) -> (TcpStream, Option<String>) {
    let mut stream = server.raw_connect();
    stream
        .write_all(upgrade_with(path, extensions).as_bytes())
        .unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let answer = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_string())
    });
    (stream, answer)
}

/// RFC 7692 §7.2.2: inflates a compressed message payload (with the 4-octet tail appended).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut data = payload.to_vec();
    data.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    miniz_oxide::inflate::decompress_to_vec(&data).expect("valid raw DEFLATE")
}

/// RFC 7692 §7.2.1: a message compressed the way a client would (tail removed).
fn deflate(message: &[u8]) -> Vec<u8> {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut out = vec![0u8; compressor.deflate_compress_bound(message.len()) + 1];
    let written = compressor.deflate_compress(message, &mut out).unwrap();
    out.truncate(written);
    // After a final block, the empty stored block minus its last 4 octets is one 0x00.
    out.push(0x00);
    out
}

/// About `bytes` of JSON that compresses like a push payload.
fn json(bytes: usize) -> Vec<u8> {
    let mut text = String::from("[");
    let mut index = 0;
    while text.len() + 80 < bytes {
        text.push_str(&format!(
            "{{\"event\":\"trade\",\"symbol\":\"BTC-USD\",\"price\":{}.25,\"qty\":{}}},",
            60000 + index * 7,
            index % 13
        ));
        index += 1;
    }
    text.push_str("{\"end\":true}]");
    while text.len() < bytes {
        text.insert(1, ' ');
    }
    text.into_bytes()
}

/// Reads the next data frame (skipping pings).
fn next_data(stream: &mut TcpStream) -> Frame {
    for _ in 0..100 {
        let frame = read_frame(stream).expect("a frame");
        if frame.opcode() != 0x9 {
            return frame;
        }
    }
    panic!("only pings");
}

const DEFAULT_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn offers_are_answered_or_declined_per_rfc_7692() {
    let server = Server::start(&[]);
    let answer = |extensions: &[&str]| connect(&server, "/ws/n", extensions).1;
    // Browsers' offer: the server keeps no context and asks the client to keep none either;
    // client_max_window_bits is never answered (nothing to limit).
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some(DEFAULT_ANSWER)
    );
    assert_eq!(
        answer(&["permessage-deflate"]).as_deref(),
        Some(DEFAULT_ANSWER)
    );
    assert_eq!(
        answer(&["permessage-deflate; server_no_context_takeover; client_no_context_takeover"])
            .as_deref(),
        Some(DEFAULT_ANSWER)
    );
    // §7.1.2.1: a server window limit is accepted with the same value.
    assert_eq!(
        answer(&["permessage-deflate; server_max_window_bits=10"]).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10"
        )
    );
    // §7.1: invalid values, unknown or duplicate parameters are declined; the next offer
    // (possibly on another header line) is tried.
    for declined in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(answer(&[declined]), None, "{declined}");
        assert_eq!(
            answer(&[declined, "permessage-deflate"]).as_deref(),
            Some(DEFAULT_ANSWER),
            "{declined}, then a valid offer"
        );
    }
    assert_eq!(
        answer(&["permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=\"12\""]).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        )
    );
    assert_eq!(answer(&[]), None);

    let off = Server::start(&["--compression", "off"]);
    let (_, answer) = connect(&off, "/ws/n", &["permessage-deflate"]);
    assert_eq!(answer, None, "--compression off never negotiates");
}

#[test]
fn a_broadcast_is_compressed_once_for_those_that_negotiated() {
    let server = Server::start(&[]);
    let (mut compressed, _) = connect(&server, "/ws/news", &["permessage-deflate"]);
    let (mut compressed_too, _) = connect(&server, "/ws/news", &["permessage-deflate"]);
    let (mut plain, answer) = connect(&server, "/ws/news", &[]);
    assert_eq!(answer, None);
    let message = json(1024);
    server.publish("news", &message);
    for client in [&mut compressed, &mut compressed_too] {
        let frame = next_data(client);
        assert_eq!(frame.first_byte, 0xC1, "FIN, RSV1, text");
        assert!(
            frame.payload.len() * 3 < message.len(),
            "{}",
            frame.payload.len()
        );
        assert_eq!(inflate(&frame.payload), message);
    }
    let frame = next_data(&mut plain);
    assert_eq!(
        frame.first_byte, 0x81,
        "no RSV1 for a client without the extension"
    );
    assert_eq!(frame.payload, message);

    // Under --compress-min-bytes (256): sent as it is, RSV1 clear, to everyone.
    let small = json(200);
    server.publish("news", &small);
    for client in [&mut compressed, &mut plain] {
        let frame = next_data(client);
        assert_eq!(frame.first_byte, 0x81);
        assert_eq!(frame.payload, small);
    }
    // Binary noise does not get smaller: sent uncompressed.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..2048)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    server.publish("news", &noise);
    let frame = next_data(&mut compressed);
    assert_eq!(frame.first_byte, 0x82, "incompressible: RSV1 clear");
    assert_eq!(frame.payload, noise);

    let stat = server.stat();
    let counter = |name: &str| -> u64 {
        stat.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /stat:\n{stat}"))
    };
    // Compressed once per shard the subscribers are on (two shards at most), delivered twice.
    assert!((1..=2).contains(&counter("deflate_messages_compressed")));
    assert_eq!(counter("deflate_frames"), 2);
    assert!(counter("deflate_saved_bytes") > 2 * 600);
    assert!(
        stat.lines().any(|line| line.starts_with("deflate_ratio ")),
        "{stat}"
    );
}

#[test]
fn a_server_window_limit_is_kept() {
    let server = Server::start(&["--compress-min-bytes", "64"]);
    let (mut client, answer) = connect(
        &server,
        "/ws/w",
        &["permessage-deflate; server_max_window_bits=9"],
    );
    assert!(answer.unwrap().ends_with("server_max_window_bits=9"));
    // At most 2^9 bytes: no back-reference can reach further, so it may be compressed.
    let fits = json(512);
    server.publish("w", &fits);
    let frame = next_data(&mut client);
    assert_eq!(frame.first_byte, 0xC1);
    assert_eq!(inflate(&frame.payload), fits);
    // Longer: sent uncompressed rather than break the promise.
    let long = json(4096);
    server.publish("w", &long);
    let frame = next_data(&mut client);
    assert_eq!(frame.first_byte, 0x81);
    assert_eq!(frame.payload, long);
}

#[test]
fn compressed_messages_are_inflated_and_echoes_compressed() {
    let server = Server::start(&[]);
    let (mut client, _) = connect(&server, "/echo", &["permessage-deflate"]);
    let message = json(2000);
    let compressed = deflate(&message);
    // One frame.
    client
        .write_all(&common::masked_frame(0xC1, &compressed))
        .unwrap();
    let echo = next_data(&mut client);
    assert_eq!(echo.first_byte, 0xC1, "the echo is compressed too");
    assert_eq!(inflate(&echo.payload), message);
    // Fragmented: RSV1 on the first frame only.
    let (first, rest) = compressed.split_at(compressed.len() / 2);
    client
        .write_all(&common::masked_frame(0x41, first))
        .unwrap();
    client.write_all(&common::masked_frame(0x80, rest)).unwrap();
    let echo = next_data(&mut client);
    assert_eq!(inflate(&echo.payload), message);
    // Uncompressed messages are still fine, and small echoes go out as they are.
    client
        .write_all(&common::masked_frame(0x81, b"hi"))
        .unwrap();
    let echo = next_data(&mut client);
    assert_eq!((echo.first_byte, &echo.payload[..]), (0x81, &b"hi"[..]));
    // Invalid UTF-8 inside a compressed text message: 1007, as uncompressed.
    client
        .write_all(&common::masked_frame(0xC1, &deflate(&[0xff; 300])))
        .unwrap();
    assert_eq!(read_until_close(&mut client), Some(1007));
}

#[test]
fn a_zip_bomb_gets_1009_before_it_is_inflated() {
    let server = Server::start(&["--max-message-bytes", "64KiB"]);
    let (mut client, _) = connect(&server, "/echo", &["permessage-deflate"]);
    // 16 MiB of zeros in about 16 KB.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    client
        .write_all(&common::masked_frame(0xC2, &bomb))
        .unwrap();
    assert_eq!(read_until_close(&mut client), Some(1009));
    // The shard is fine.
    let (mut other, _) = connect(&server, "/echo", &["permessage-deflate"]);
    other.write_all(&common::masked_frame(0x81, b"ok")).unwrap();
    assert_eq!(next_data(&mut other).payload, b"ok");
    wait_until("the close counted", || {
        server.stat().contains("closed_message_too_big 1")
    });
}

#[test]
fn a_compressed_control_frame_gets_1002() {
    let server = Server::start(&[]);
    for first_byte in [0xC9u8, 0xCA, 0xC8] {
        let (mut client, _) = connect(&server, "/echo", &["permessage-deflate"]);
        client
            .write_all(&common::masked_frame(first_byte, &deflate(b"ping")))
            .unwrap();
        assert_eq!(read_until_close(&mut client), Some(1002), "{first_byte:#x}");
    }
    // RSV1 on a continuation frame.
    let (mut client, _) = connect(&server, "/echo", &["permessage-deflate"]);
    let compressed = deflate(&json(1000));
    let (first, rest) = compressed.split_at(10);
    client
        .write_all(&common::masked_frame(0x41, first))
        .unwrap();
    client.write_all(&common::masked_frame(0xC0, rest)).unwrap();
    assert_eq!(read_until_close(&mut client), Some(1002));
}

#[test]
fn rsv1_without_the_extension_gets_1002() {
    let server = Server::start(&[]);
    let (mut client, answer) = connect(&server, "/echo", &[]);
    assert_eq!(answer, None);
    client
        .write_all(&common::masked_frame(0xC1, &deflate(&json(500))))
        .unwrap();
    assert_eq!(read_until_close(&mut client), Some(1002));
    // The same with the extension declined by --compression off.
    let off = Server::start(&["--compression", "off"]);
    let (mut client, _) = connect(&off, "/echo", &["permessage-deflate"]);
    client
        .write_all(&common::masked_frame(0xC1, &deflate(&json(500))))
        .unwrap();
    assert_eq!(read_until_close(&mut client), Some(1002));
}

#[test]
fn each_wire_format_gets_its_own_compressed_frame() {
    let server = Server::start(&[
        "--app-id",
        "1",
        "--app-key",
        "key-one",
        "--app-secret",
        "secret-one",
        "--shards",
        "1",
    ]);
    let (mut pusher, answer) = connect(
        &server,
        "/app/key-one?protocol=7&client=test&version=1",
        &["permessage-deflate; client_max_window_bits"],
    );
    assert_eq!(answer.as_deref(), Some(DEFAULT_ANSWER));
    let established = next_data(&mut pusher);
    assert_eq!(established.first_byte, 0x81, "small: uncompressed");
    assert!(String::from_utf8_lossy(&established.payload).contains("connection_established"));
    pusher
        .write_all(&common::masked_frame(
            0x81,
            br#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
        ))
        .unwrap();
    let subscribed = next_data(&mut pusher);
    assert!(String::from_utf8_lossy(&subscribed.payload).contains("subscription_succeeded"));
    let (mut raw, _) = connect(&server, "/ws/news", &["permessage-deflate"]);
    let message = json(2048);
    server.publish("news", &message);
    let frame = next_data(&mut raw);
    assert_eq!(frame.first_byte, 0xC1);
    assert_eq!(inflate(&frame.payload), message);
    let frame = next_data(&mut pusher);
    assert_eq!(
        frame.first_byte, 0xC1,
        "the Pusher envelope is compressed too"
    );
    let event: serde_json::Value = serde_json::from_slice(&inflate(&frame.payload)).unwrap();
    assert_eq!(event["event"], "message");
    assert_eq!(event["channel"], "news");
    assert_eq!(event["data"].as_str().unwrap().as_bytes(), &message[..]);
    // One shard, two formats: two compressions for two deliveries.
    let stat = server.stat();
    assert!(stat.contains("deflate_messages_compressed 2\n"), "{stat}");
    assert!(stat.contains("deflate_frames 2\n"), "{stat}");
}
