//! Who may publish, subscribe and read, and what attacks get: the API listener and its key,
//! signed subscriptions, origins, per-address caps, reply floods, fragment floods, slowloris,
//! smuggled requests, and publishes that are all or nothing. Every attack test also checks that
//! honest subscribers received every message published during it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    PATIENCE, Server, http_to, masked_frame, raw_request_to, read_http_head, read_until_close,
    upgrade_request, wait_until,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tungstenite::{Message, WebSocket};

const KEY: &str = "api-key-0123456789abcdef";
const SECRET: &str = "token-secret-0123456789abcdef-0123456789";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Subscribers that must receive every message published to their channel, in order.
struct Honest {
    clients: Vec<WebSocket<TcpStream>>,
    channel: String,
    next: usize,
}

impl Honest {
    fn subscribe(server: &Server, channel: &str, count: usize) -> Honest {
        Honest {
            clients: (0..count)
                .map(|_| server.websocket(&format!("/ws/{channel}")))
                .collect(),
            channel: channel.to_string(),
            next: 0,
        }
    }

    /// Publishes one message and checks every subscriber gets it.
    fn check(&mut self, server: &Server, moment: &str) {
        let text = format!("honest {} {moment}", self.next);
        self.next += 1;
        server.publish(&self.channel, text.as_bytes());
        for client in &mut self.clients {
            loop {
                match client.read().unwrap_or_else(|e| panic!("{moment}: {e}")) {
                    Message::Text(got) => {
                        assert_eq!(got.as_str(), text, "{moment}");
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    other => panic!("{moment}: unexpected {other:?}"),
                }
            }
        }
    }
}

/// An upgrade on `path` with extra header lines; returns the status line and head.
fn upgrade_with(server: &Server, path: &str, headers: &str) -> (String, TcpStream) {
    let mut stream = server.raw_connect();
    let request = upgrade_request(path).replacen("\r\n\r\n", &format!("\r\n{headers}\r\n"), 1);
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    (head, stream)
}

fn status_and_body(stream: &mut TcpStream, head: &str) -> (u16, String) {
    let status = common::status_of(head);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

#[test]
fn the_api_needs_its_key_and_the_public_listener_has_no_api() {
    let server = Server::start(&["--api-key", KEY]);
    let api = server.api_address;
    for (path, method) in [
        ("/stat", "GET"),
        ("/metrics", "GET"),
        ("/publish/news", "POST"),
    ] {
        let (status, body) = http_to(api, method, path, "", b"x");
        assert_eq!(status, 401, "{path} without a key: {body}");
        assert!(body.contains("missing API key"), "{body}");
        let (status, body) = http_to(
            api,
            method,
            path,
            "Authorization: Bearer wrong-key-0123456789\r\n",
            b"x",
        );
        assert_eq!(status, 401, "{path} with a wrong key: {body}");
        assert!(body.contains("invalid API key"), "{body}");
        let (status, _) = http_to(api, method, path, "X-API-Key: nope\r\n", b"x");
        assert_eq!(status, 401);
        // The public listener does not have these routes at all, key or not.
        let (status, _) = http_to(
            server.address,
            method,
            path,
            &format!("Authorization: Bearer {KEY}\r\n"),
            b"x",
        );
        assert_eq!(status, 404, "{path} on the public listener");
    }
    let (_, response) = raw_request_to(api, b"GET /stat HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(response.contains("WWW-Authenticate: Bearer"), "{response}");
    let (status, _) = http_to(
        api,
        "GET",
        "/stat",
        &format!("Authorization: Bearer {KEY}\r\n"),
        b"",
    );
    assert_eq!(status, 200);
    let (status, _) = http_to(
        api,
        "GET",
        "/metrics",
        &format!("X-API-Key: {KEY}\r\n"),
        b"",
    );
    assert_eq!(status, 200);
    let mut client = server.websocket("/ws/news");
    let (status, _) = http_to(
        api,
        "POST",
        "/publish/news",
        &format!("X-API-Key: {KEY}\r\n"),
        b"hello",
    );
    assert_eq!(status, 200);
    assert_eq!(client.read().unwrap(), Message::Text("hello".into()));
    // The probes stay open on the public listener; WebSocket routes are not on the API one.
    assert_eq!(common::get_body(&server, "/healthz").0, 200);
    let (status, _) = raw_request_to(api, upgrade_request("/ws/news").as_bytes());
    assert_eq!(status, 401, "the API asks for its key before anything else");
    let metrics = common::get_body(&server, "/metrics").1;
    assert!(!metrics.contains(KEY), "the key never shows");
}

#[test]
fn echo_exists_only_when_asked_for() {
    let server = Server::start(&["--no-echo"]);
    let (status, _) = server.raw_request(upgrade_request("/echo").as_bytes());
    assert_eq!(status, 404);
}

#[test]
fn a_public_api_without_a_key_is_refused_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--api-key"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn tokens_decide_who_subscribes_where() {
    let server = Server::start(&["--token-secret", SECRET]);
    let mut honest = Honest::subscribe(&server, "open", 3);
    let good = mint(
        json!({"exp": now_s() + 60, "sub": "u1", "channels": ["private-a", "private-team-*"]}),
        SECRET,
    );
    let cases = [
        ("/ws/private-a".to_string(), "token required"),
        (
            format!(
                "/ws/private-a?token={}",
                mint(
                    json!({"exp": now_s() + 60, "channels": ["private-a"]}),
                    "another-secret-0123456789abcdef01234"
                )
            ),
            "invalid token signature",
        ),
        (
            format!(
                "/ws/private-a?token={}",
                mint(
                    json!({"exp": now_s() - 10, "channels": ["private-a"]}),
                    SECRET
                )
            ),
            "token expired",
        ),
        (format!("/ws/private-b?token={good}"), "does not grant"),
        ("/ws/private-a?token=garbage".to_string(), "malformed token"),
    ];
    for (path, reason) in &cases {
        let (head, mut stream) = upgrade_with(&server, path, "");
        let (status, body) = status_and_body(&mut stream, &head);
        assert_eq!(status, 403, "{path}: {head}");
        assert!(body.contains(reason), "{path}: {body}");
        honest.check(&server, path);
    }
    for path in [
        format!("/ws/private-a?token={good}"),
        format!("/ws/private-team-42?token={good}"),
    ] {
        let (head, _stream) = upgrade_with(&server, &path, "");
        assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
    }
    // Public channels need none.
    let (head, _stream) = upgrade_with(&server, "/ws/open", "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn require_token_closes_every_channel_without_one() {
    let server = Server::start(&["--token-secret", SECRET, "--require-token"]);
    let (head, mut stream) = upgrade_with(&server, "/ws/news", "");
    let (status, body) = status_and_body(&mut stream, &head);
    assert_eq!(status, 403);
    assert!(body.contains("token required"), "{body}");
    let token = mint(json!({"exp": now_s() + 60, "channels": ["news"]}), SECRET);
    let (head, _stream) = upgrade_with(&server, &format!("/ws/news?token={token}"), "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[test]
fn a_token_that_expires_while_connected_closes_with_4009_at_expiry() {
    let server = Server::start(&["--token-secret", SECRET, "--shards", "1"]);
    let mut honest = Honest::subscribe(&server, "watch", 2);
    // Whole seconds: the token expires at the start of the second after next.
    let expiry = now_s() + 2;
    let token = mint(json!({"exp": expiry, "channels": ["private-a"]}), SECRET);
    let (head, mut stream) = upgrade_with(&server, &format!("/ws/private-a?token={token}"), "");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.publish("private-a", b"before expiry");
    let frame = common::read_frame(&mut stream).unwrap();
    assert_eq!(frame.payload, b"before expiry");
    assert_eq!(read_until_close(&mut stream), Some(4009));
    let closed_at = now_s();
    assert!(closed_at >= expiry, "not before the expiry");
    assert!(
        closed_at <= expiry + 2,
        "soon after the expiry ({closed_at} vs {expiry})"
    );
    honest.check(&server, "after the expiry");
}

#[test]
fn origins_outside_the_list_are_refused_and_absent_ones_allowed() {
    let server = Server::start(&[
        "--allowed-origins",
        "https://app.example,http://localhost:8080",
    ]);
    let (head, _s) = upgrade_with(&server, "/ws/a", "Origin: https://app.example\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (head, _s) = upgrade_with(&server, "/ws/a", "Origin: HTTP://LOCALHOST:8080\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (head, mut stream) = upgrade_with(&server, "/ws/a", "Origin: https://evil.example\r\n");
    let (status, body) = status_and_body(&mut stream, &head);
    assert_eq!(status, 403);
    assert!(body.contains("origin not allowed"), "{body}");
    let (head, _s) = upgrade_with(&server, "/ws/a", "");
    assert!(head.starts_with("HTTP/1.1 101"), "no Origin: not a browser");
}

/// An upgrade from `source` (a loopback address).
fn upgrade_from(server: &Server, source: &str, path: &str) -> (String, TcpStream) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.address.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(upgrade_request(path).as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    (head, stream)
}

#[test]
fn each_address_holds_at_most_its_share() {
    let server = Server::start(&["--max-connections-per-ip", "3"]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let (head, stream) = upgrade_from(&server, "127.0.0.21", "/ws/a");
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            stream
        })
        .collect();
    let (head, _) = upgrade_from(&server, "127.0.0.21", "/ws/a");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("Retry-After"), "{head}");
    let (head, _other) = upgrade_from(&server, "127.0.0.22", "/ws/a");
    assert!(head.starts_with("HTTP/1.1 101"), "another address: {head}");
    // A connection that goes gives its place back.
    drop(held.pop());
    wait_until("a place to be given back", || {
        let (head, stream) = upgrade_from(&server, "127.0.0.21", "/ws/a");
        let admitted = head.starts_with("HTTP/1.1 101");
        if admitted {
            held.push(stream);
        }
        admitted
    });
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_ping_flood_without_reading_is_bounded_by_the_outbound_limit() {
    const FLOODERS: usize = 20;
    let server = Server::start(&["--shards", "1", "--outbound-queue-bytes", "256KiB"]);
    let mut honest = Honest::subscribe(&server, "watch", 3);
    let rss_before = rss_bytes(server.pid());
    let pings = masked_frame(0x89, b"").repeat(10_000);
    let mut flooders: Vec<TcpStream> = (0..FLOODERS)
        .map(|_| {
            let stream = server.raw_websocket("/ws/victim");
            stream
                .set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            stream
        })
        .collect();
    for flooder in &mut flooders {
        // Bounded: until the server stops taking bytes or closes.
        for _ in 0..200 {
            if flooder.write_all(&pings).is_err() {
                break;
            }
        }
    }
    let rss_during = rss_bytes(server.pid());
    honest.check(&server, "during the ping flood");
    let growth = rss_during.saturating_sub(rss_before);
    // Each flooder may hold one outbound queue's worth (256 KiB) plus a read's worth of
    // input; the allocator rounds up.
    let bound = FLOODERS as u64 * (256 + 64) * 1024 * 2;
    assert!(growth < bound, "RSS grew by {growth} bytes (bound {bound})");
    wait_until("the flooders to be closed as slow consumers", || {
        server
            .stat()
            .contains(&format!("closed_slow_consumer {FLOODERS}\n"))
    });
    honest.check(&server, "after the ping flood");
}

#[test]
fn an_empty_continuation_flood_gets_1009_after_max_fragments() {
    let server = Server::start(&["--shards", "1", "--max-fragments", "100"]);
    let mut honest = Honest::subscribe(&server, "watch", 2);
    let mut attacker = server.raw_websocket("/ws/victim");
    let mut stream = masked_frame(0x01, b"x");
    for _ in 0..500 {
        stream.extend(masked_frame(0x00, b""));
    }
    let _ = attacker.write_all(&stream);
    assert_eq!(read_until_close(&mut attacker), Some(1009));
    honest.check(&server, "after the fragment flood");
}

#[test]
fn a_thousand_slowloris_connections_are_cut_at_the_handshake_timeout() {
    let server = Server::start(&["--shards", "1", "--handshake-timeout", "2s"]);
    let mut honest = Honest::subscribe(&server, "watch", 2);
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut stream = server.raw_connect();
            stream
                .write_all(b"GET /ws/victim HTTP/1.1\r\nHost: t\r\n")
                .unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    honest.check(&server, "during the slowloris");
    // Trickle a header line now and then: the head never completes.
    while started.elapsed() < Duration::from_millis(1500) {
        for stream in slow.iter_mut().step_by(10) {
            let _ = stream.write_all(b"X-Slow: 1\r\n");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    honest.check(&server, "while the slowloris trickles");
    wait_until("every slow connection to be cut", || {
        server.stat().contains("handshake_timeouts 1000\n")
    });
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        assert!(matches!(stream.read(&mut byte), Ok(0) | Err(_)));
    }
    honest.check(&server, "after the slowloris");
}

#[test]
fn a_request_hiding_another_in_its_body_is_refused_and_closed() {
    let server = Server::start(&["--shards", "1"]);
    let hidden = "GET /stat HTTP/1.1\r\nHost: t\r\n\r\n";
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    );
    let (status, response) = server.raw_api_request(request.as_bytes());
    assert_eq!(status, 400, "{response}");
    assert_eq!(
        response.matches("HTTP/1.1").count(),
        1,
        "nothing answered the hidden request: {response}"
    );
    assert!(response.contains("Connection: close"), "{response}");
    let smuggled = "POST /publish/a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nhello";
    let (status, response) = server.raw_api_request(smuggled.as_bytes());
    assert_eq!(status, 400, "{response}");
}

#[test]
fn a_publish_is_delivered_everywhere_or_nowhere() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--mesh-capacity",
        "4",
        "--publish-timeout",
        "100ms",
        "--test-fault",
        "stall-fanout=1",
    ]);
    // Clients on both shards (the kernel spreads connections over the two listeners).
    let mut clients: Vec<WebSocket<TcpStream>> =
        (0..24).map(|_| server.websocket("/ws/all")).collect();
    let per_shard = common::connections_per_shard(&server.stat());
    assert!(per_shard.iter().all(|count| *count > 0), "{per_shard:?}");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for index in 0..40 {
        let text = format!("m{index}");
        let (status, body) = server.http("POST", "/publish/all", text.as_bytes());
        match status {
            200 => accepted.push(text),
            503 => {
                assert!(body.contains("sent nowhere"), "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(refused > 0, "the stalled shard's inbox filled up");
    // Every client, on either shard, gets exactly the accepted messages, in order.
    for client in &mut clients {
        for expected in &accepted {
            match client.read().unwrap() {
                Message::Text(got) => assert_eq!(got.as_str(), expected),
                other => panic!("unexpected {other:?}"),
            }
        }
        common::assert_nothing_more(client);
    }
}
