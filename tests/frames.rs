//! Every RFC 6455 §5 violation gets its exact close code before the TCP connection closes, and
//! ends only that connection.

mod common;

use std::io::Write;

use common::{Server, assert_closed, masked_frame, read_until_close, unmasked_frame};
use tungstenite::Message;

#[test]
fn each_violation_gets_its_close_code_and_others_keep_receiving() {
    let server = Server::start(&["--max-message-bytes", "1KiB"]);
    let mut watchers: Vec<_> = (0..10).map(|_| server.websocket("/ws/watch")).collect();
    let mut too_long_control = vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4];
    too_long_control.extend(vec![0u8; 126]);
    let mut over_limit_header = vec![0x82, 0x80 | 127];
    over_limit_header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    let mut split_utf8 = masked_frame(0x01, &"€".as_bytes()[..1]);
    split_utf8.extend(masked_frame(0x80, &[0x28]));
    let mut interleaved = masked_frame(0x01, b"a");
    interleaved.extend(masked_frame(0x81, b"b"));
    let mut fragmented_over_limit = masked_frame(0x02, &[0u8; 600]);
    fragmented_over_limit.extend(masked_frame(0x80, &[0u8; 600]));

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked_frame(0x81, b"hi"), 1002),
        ("rsv1", masked_frame(0xC1, b"hi"), 1002),
        ("rsv2", masked_frame(0xA1, b"hi"), 1002),
        ("rsv3", masked_frame(0x91, b"hi"), 1002),
        ("reserved data opcode", masked_frame(0x83, b""), 1002),
        ("reserved control opcode", masked_frame(0x8B, b""), 1002),
        ("fragmented ping", masked_frame(0x09, b"p"), 1002),
        ("control over 125 bytes", too_long_control, 1002),
        ("continuation without start", masked_frame(0x80, b"x"), 1002),
        ("data frame inside a fragmented message", interleaved, 1002),
        (
            "invalid utf-8",
            masked_frame(0x81, &[0xce, 0xba, 0xff]),
            1007,
        ),
        ("invalid utf-8 across fragments", split_utf8, 1007),
        ("over the limit, from the header", over_limit_header, 1009),
        ("over the limit, reassembled", fragmented_over_limit, 1009),
        (
            "close code 1005",
            masked_frame(0x88, &1005u16.to_be_bytes()),
            1002,
        ),
        (
            "close code 999",
            masked_frame(0x88, &999u16.to_be_bytes()),
            1002,
        ),
        ("one-byte close payload", masked_frame(0x88, &[3]), 1002),
        (
            "close reason not utf-8",
            masked_frame(0x88, &[0x03, 0xe8, 0xff]),
            1007,
        ),
    ];
    for (sequence, (name, bytes, code)) in cases.iter().enumerate() {
        for path in ["/ws/victim", "/echo"] {
            let mut stream = server.raw_websocket(path);
            stream.write_all(bytes).unwrap();
            assert_eq!(
                read_until_close(&mut stream),
                Some(*code),
                "{name} on {path}"
            );
            assert_closed(&mut stream);
        }
        let text = format!("after {sequence}");
        server.publish("watch", text.as_bytes());
        for watcher in &mut watchers {
            assert_eq!(
                watcher.read().unwrap(),
                Message::Text(text.clone().into()),
                "{name}"
            );
        }
    }
    let stat = server.stat();
    assert!(
        stat.contains("connections 10"),
        "only the offenders were closed: {stat}"
    );
}

#[test]
fn client_close_is_echoed_and_the_server_closes_first() {
    let server = Server::start(&[]);
    let mut stream = server.raw_websocket("/ws/bye");
    stream
        .write_all(&masked_frame(0x88, &[0x03, 0xe8, b'o', b'k']))
        .unwrap();
    let close = common::read_frame(&mut stream).unwrap();
    assert_eq!(close.close_code(), Some(1000));
    assert_eq!(close.payload.len(), 2, "the reply carries the code only");
    assert_closed(&mut stream);
    // An empty close is answered with an empty close.
    let mut stream = server.raw_websocket("/ws/bye");
    stream.write_all(&masked_frame(0x88, b"")).unwrap();
    let close = common::read_frame(&mut stream).unwrap();
    assert_eq!((close.first_byte, close.payload.len()), (0x88, 0));
    assert_closed(&mut stream);
}

#[test]
fn tungstenite_close_handshake_is_clean() {
    let server = Server::start(&[]);
    let mut client = server.websocket("/ws/clean");
    client.close(None).unwrap();
    // tungstenite reports a clean close as ConnectionClosed after the server's reply.
    loop {
        match client.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("unclean close: {error}"),
        }
    }
}
