//! Heartbeats, idle and close timeouts, slow consumers, and draining on SIGTERM.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, assert_closed, masked_frame, read_frame, read_http_head, upgrade_request};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn quiet_connections_are_pinged_and_idle_ones_closed_with_1001() {
    let server = Server::start(&["--ping-interval", "200ms", "--idle-timeout", "1s"]);
    let mut idle = server.raw_websocket("/ws/hb");
    let mut lively = server.raw_websocket("/ws/hb");
    // The lively client answers every ping for a while; the idle one never does.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut pings = 0;
    while Instant::now() < until {
        let frame = read_frame(&mut lively).expect("lively stays open");
        assert_eq!(frame.opcode(), 0x9, "only pings arrive");
        lively
            .write_all(&masked_frame(0x8A, &frame.payload))
            .unwrap();
        pings += 1;
    }
    assert!(pings >= 3, "pinged every ~200ms, got {pings}");
    let mut saw_ping = false;
    let code = loop {
        let frame = read_frame(&mut idle).expect("a frame");
        match frame.opcode() {
            0x9 => saw_ping = true,
            0x8 => break frame.close_code(),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert!(saw_ping);
    assert_eq!(code, Some(1001));
    // The lively one is still subscribed.
    server.publish("hb", b"alive");
    let frame = loop {
        let frame = read_frame(&mut lively).unwrap();
        if frame.opcode() != 0x9 {
            break frame;
        }
    };
    assert_eq!(frame.payload, b"alive");
}

#[test]
fn a_close_nobody_answers_ends_after_the_close_timeout() {
    let server = Server::start(&[
        "--ping-interval",
        "100ms",
        "--idle-timeout",
        "300ms",
        "--close-timeout",
        "500ms",
    ]);
    let mut silent = server.raw_websocket("/ws/silent");
    assert_eq!(common::read_until_close(&mut silent), Some(1001));
    let sent_at = Instant::now();
    assert_closed(&mut silent);
    assert!(
        sent_at.elapsed() >= Duration::from_millis(300),
        "waited for the answer first"
    );
    let stat = server.stat();
    assert!(stat.contains("connections 0"), "{stat}");
}

/// A subscriber that does not read, with a tiny receive buffer.
fn stalled_subscriber(server: &Server, path: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.address.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(common::PATIENCE)).unwrap();
    stream.write_all(upgrade_request(path).as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

#[test]
fn a_slow_consumer_is_closed_with_1008_and_the_others_get_everything() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--outbound-queue-bytes",
        "128KiB",
        "--max-message-bytes",
        "16KiB",
    ]);
    let mut readers: Vec<_> = (0..5).map(|_| server.websocket("/ws/firehose")).collect();
    let mut stalled = stalled_subscriber(&server, "/ws/firehose");
    let payload = "x".repeat(8000);
    let count = 600;
    let reader_threads: Vec<_> = readers
        .drain(..)
        .map(|mut reader| {
            std::thread::spawn(move || {
                for sequence in 0..count {
                    match reader.read().unwrap() {
                        Message::Text(text) => {
                            assert!(text.starts_with(&format!("{sequence}:")), "in order")
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            })
        })
        .collect();
    for sequence in 0..count {
        server.publish("firehose", format!("{sequence}:{payload}").as_bytes());
    }
    for thread in reader_threads {
        thread
            .join()
            .expect("every reader got every message in order");
    }
    // Now the stalled one reads: whole frames, then the 1008 close.
    let mut data_frames = 0;
    let code = loop {
        let frame = read_frame(&mut stalled).expect("frames then a close");
        match frame.opcode() {
            0x1 => data_frames += 1,
            0x8 => break frame.close_code(),
            0x9 => {}
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert!(data_frames < count, "it was cut off ({data_frames} frames)");
    assert_closed(&mut stalled);
    let stat = server.stat();
    assert!(stat.contains("closed_slow_consumer 1"), "{stat}");
}

#[test]
fn sigterm_drains_with_1001_and_exits_zero() {
    let mut server = Server::start(&["--close-timeout", "1s", "--drain-timeout", "5s"]);
    let clients: Vec<_> = (0..4).map(|_| server.websocket("/ws/drain")).collect();
    let mut silent = server.raw_websocket("/ws/drain");
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                loop {
                    match client.read() {
                        Ok(Message::Close(Some(frame))) => return Some(frame.code),
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained before the drain timeout"
    );
    for thread in threads {
        assert_eq!(thread.join().unwrap(), Some(CloseCode::Away));
    }
    assert_eq!(common::read_until_close(&mut silent), Some(1001));
}
