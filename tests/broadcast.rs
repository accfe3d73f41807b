//! End-to-end delivery: real clients on both shards, publishes over HTTP.

mod common;

use std::io::Write;

use common::{Server, assert_nothing_more, connections_per_shard, masked_frame, read_frame};
use tungstenite::Message;

#[test]
fn one_publish_reaches_every_client_on_every_shard_exactly_once_in_order() {
    let server = Server::start(&[]);
    let mut clients: Vec<_> = (0..300).map(|_| server.websocket("/ws/news")).collect();
    let per_shard = connections_per_shard(&server.stat());
    assert_eq!(per_shard.len(), 2, "{per_shard:?}");
    assert!(
        per_shard.iter().all(|&count| count > 0),
        "both shards serve clients: {per_shard:?}"
    );
    assert_eq!(per_shard.iter().sum::<usize>(), 300);

    for sequence in 0..20 {
        server.publish("news", format!("message {sequence}").as_bytes());
    }
    for client in &mut clients {
        for sequence in 0..20 {
            let message = client.read().expect("a message");
            assert_eq!(message, Message::Text(format!("message {sequence}").into()));
        }
    }
    clients.iter_mut().take(20).for_each(assert_nothing_more);
}

#[test]
fn publish_reports_local_subscribers_and_only_reaches_its_channel() {
    let server = Server::start(&["--shards", "1"]);
    let mut news = server.websocket("/ws/news");
    let mut sport = server.websocket("/ws/sport");
    let answer = server.publish("news", b"hello");
    assert!(answer.contains("\"local_subscribers\":1"), "{answer}");
    server.publish("sport", b"goal");
    assert_eq!(news.read().unwrap(), Message::Text("hello".into()));
    assert_eq!(sport.read().unwrap(), Message::Text("goal".into()));
    let answer = server.publish("empty", b"nobody");
    assert!(answer.contains("\"local_subscribers\":0"), "{answer}");
}

#[test]
fn utf8_payloads_arrive_as_text_and_others_as_binary() {
    let server = Server::start(&[]);
    let mut client = server.websocket("/ws/kinds");
    server.publish("kinds", "héllo".as_bytes());
    server.publish("kinds", &[0xff, 0x00, 0xfe]);
    assert_eq!(client.read().unwrap(), Message::Text("héllo".into()));
    assert_eq!(
        client.read().unwrap(),
        Message::Binary(vec![0xff, 0x00, 0xfe].into())
    );
}

#[test]
fn large_messages_arrive_unchanged() {
    let server = Server::start(&[
        "--max-message-bytes",
        "1MiB",
        "--outbound-queue-bytes",
        "4MiB",
    ]);
    let mut client = server.websocket("/ws/big");
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    server.publish("big", &payload);
    assert_eq!(client.read().unwrap(), Message::Binary(payload.into()));
}

#[test]
fn publish_over_the_limit_is_refused_with_413() {
    let server = Server::start(&["--max-message-bytes", "1KiB"]);
    let (status, _) = server.http("POST", "/publish/news", &[b'x'; 1025]);
    assert_eq!(status, 413);
    let (status, _) = server.http("POST", "/publish/news", &[b'x'; 1024]);
    assert_eq!(status, 200);
}

#[test]
fn publish_with_expect_continue_and_keep_alive() {
    let server = Server::start(&["--shards", "1"]);
    let mut client = server.websocket("/ws/ka");
    let mut stream = server.raw_api_connect();
    let body = vec![b'a'; 2000];
    stream
        .write_all(
            format!(
                "POST /publish/ka HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let interim = common::read_http_head(&mut stream);
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(&body).unwrap();
    let head = common::read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut response_body = vec![0u8; length];
    std::io::Read::read_exact(&mut stream, &mut response_body).unwrap();
    // Same connection, second request.
    stream
        .write_all(b"POST /publish/ka HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let head = common::read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        client.read().unwrap(),
        Message::Text(String::from_utf8(body).unwrap().into())
    );
    assert_eq!(client.read().unwrap(), Message::Text("hi".into()));
}

#[test]
fn ping_frames_get_pongs_and_text_ping_gets_text_pong() {
    let server = Server::start(&[]);
    let mut stream = server.raw_websocket("/ws/heartbeat");
    stream
        .write_all(&masked_frame(0x89, b"are you there"))
        .unwrap();
    let pong = read_frame(&mut stream).unwrap();
    assert_eq!(
        (pong.first_byte, pong.payload.as_slice()),
        (0x8A, &b"are you there"[..])
    );
    stream.write_all(&masked_frame(0x81, b"ping")).unwrap();
    let pong = read_frame(&mut stream).unwrap();
    assert_eq!(
        (pong.first_byte, pong.payload.as_slice()),
        (0x81, &b"pong"[..])
    );
}

#[test]
fn echo_returns_every_message_as_it_came() {
    let server = Server::start(&[]);
    let mut client = server.websocket("/echo");
    client.send(Message::Text("héllo".into())).unwrap();
    client.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
    assert_eq!(client.read().unwrap(), Message::Text("héllo".into()));
    assert_eq!(
        client.read().unwrap(),
        Message::Binary(vec![1, 2, 3].into())
    );
    // A fragmented message is echoed whole.
    let mut stream = server.raw_websocket("/echo");
    stream.write_all(&masked_frame(0x01, b"frag")).unwrap();
    stream.write_all(&masked_frame(0x89, b"mid")).unwrap();
    stream.write_all(&masked_frame(0x80, b"mented")).unwrap();
    assert_eq!(read_frame(&mut stream).unwrap().payload, b"mid");
    let echoed = read_frame(&mut stream).unwrap();
    assert_eq!(
        (echoed.first_byte, echoed.payload.as_slice()),
        (0x81, &b"fragmented"[..])
    );
}

#[test]
fn write_coalescing_window_delivers_everything_in_order() {
    let server = Server::start(&["--write-coalesce", "5ms"]);
    let mut clients: Vec<_> = (0..20).map(|_| server.websocket("/ws/c")).collect();
    for sequence in 0..50 {
        server.publish("c", sequence.to_string().as_bytes());
    }
    for client in &mut clients {
        for sequence in 0..50 {
            assert_eq!(
                client.read().unwrap(),
                Message::Text(sequence.to_string().into())
            );
        }
    }
}

#[test]
fn sendmsg_write_path_delivers_everything_in_order() {
    let server = Server::start(&["--write-path", "sendmsg"]);
    let mut clients: Vec<_> = (0..100).map(|_| server.websocket("/ws/u")).collect();
    for sequence in 0..30 {
        server.publish("u", sequence.to_string().as_bytes());
    }
    for client in &mut clients {
        for sequence in 0..30 {
            assert_eq!(
                client.read().unwrap(),
                Message::Text(sequence.to_string().into())
            );
        }
    }
}

#[test]
fn strict_mode_allows_only_listed_channels() {
    let server = Server::start(&["--strict", "--channels", "launcher,staff"]);
    server.websocket("/ws/launcher");
    let (status, _) = server.raw_request(common::upgrade_request("/ws/other").as_bytes());
    assert_eq!(status, 403);
    let (status, _) = server.http("POST", "/publish/other", b"x");
    assert_eq!(status, 403);
}

#[test]
fn healthz_and_stat_describe_the_server() {
    let server = Server::start(&[]);
    let _client = server.websocket("/ws/stat-test");
    let (status, body) = server.http("GET", "/healthz", b"");
    assert_eq!(status, 200, "{body}");
    let stat = server.stat();
    assert!(stat.starts_with("ringcast "), "{stat}");
    assert!(stat.contains("shards 2"), "{stat}");
    assert!(stat.contains("channel stat-test: 1 clients"), "{stat}");
    assert!(stat.contains("connections 1"), "{stat}");
}

#[test]
fn messages_arriving_during_a_long_write_pass_arrive_once_and_in_order() {
    // 2000 subscribers: a write pass spans several slices per shard, and publishes from two
    // threads land while it runs (the fan-out takes them between slices).
    let server = Server::start(&[]);
    let mut clients: Vec<_> = (0..2000).map(|_| server.websocket("/ws/long")).collect();
    const PER_PUBLISHER: usize = 100;
    std::thread::scope(|scope| {
        for publisher in ["a", "b"] {
            let server = &server;
            scope.spawn(move || {
                for sequence in 0..PER_PUBLISHER {
                    server.publish("long", format!("{publisher}{sequence}").as_bytes());
                }
            });
        }
    });
    for client in &mut clients {
        // Interleaving across publishers is free; each publisher's order is not.
        let mut next = [0usize; 2];
        for _ in 0..2 * PER_PUBLISHER {
            let Message::Text(text) = client.read().expect("a message") else {
                panic!("text expected");
            };
            let publisher = usize::from(text.as_bytes()[0] - b'a');
            assert_eq!(text[1..], next[publisher].to_string(), "in publish order");
            next[publisher] += 1;
        }
    }
    clients.iter_mut().take(20).for_each(assert_nothing_more);
}
