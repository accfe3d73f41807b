//! Redis fan-out against a real `redis-server` started by each test on a free port.

mod common;

use std::time::Duration;

use common::{RedisServer, Server, assert_nothing_more, connections_per_shard, wait_until};
use tungstenite::Message;

fn with_redis(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_until("the node to be ready", || {
        server.http("GET", "/readyz", b"").0 == 200
    });
    server
}

fn read_text(client: &mut tungstenite::WebSocket<std::net::TcpStream>) -> String {
    match client.read().expect("a message") {
        Message::Text(text) => text.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn redis_publish_reaches_clients_on_both_shards_exactly_once_in_order() {
    let redis = RedisServer::start();
    let server = with_redis(&redis, &[]);
    let mut clients: Vec<_> = (0..100).map(|_| server.websocket("/ws/news")).collect();
    let per_shard = connections_per_shard(&server.stat());
    assert!(per_shard.iter().all(|&count| count > 0), "{per_shard:?}");
    for sequence in 0..20 {
        let receivers = redis.command(&["PUBLISH", "ws:broadcast:news", &format!("m{sequence}")]);
        assert_eq!(
            receivers, ":1",
            "one subscription per node, however many clients"
        );
    }
    for client in &mut clients {
        for sequence in 0..20 {
            assert_eq!(read_text(client), format!("m{sequence}"));
        }
    }
    for client in clients.iter_mut().take(10) {
        assert_nothing_more(client);
    }
}

#[test]
fn two_nodes_on_one_redis_deliver_one_publish_exactly_once() {
    let redis = RedisServer::start();
    let first = with_redis(&redis, &[]);
    let second = with_redis(&redis, &[]);
    let mut clients: Vec<_> = (0..20)
        .map(|index| {
            let node = if index % 2 == 0 { &first } else { &second };
            node.websocket("/ws/cluster")
        })
        .collect();
    for sequence in 0..10 {
        let answer = first.publish("cluster", format!("p{sequence}").as_bytes());
        assert!(
            answer.contains("\"redis_receivers\":2"),
            "both nodes subscribed: {answer}"
        );
    }
    for client in &mut clients {
        for sequence in 0..10 {
            assert_eq!(read_text(client), format!("p{sequence}"));
        }
        assert_nothing_more(client);
    }
}

#[test]
fn subscriptions_follow_demand() {
    let redis = RedisServer::start();
    let server = with_redis(&redis, &[]);
    assert!(redis.subscribed_channels().is_empty());
    let first = server.websocket("/ws/demand");
    let second = server.websocket("/ws/demand");
    assert_eq!(
        redis.subscribed_channels(),
        vec!["ws:broadcast:demand".to_string()]
    );
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        redis.subscribed_channels(),
        vec!["ws:broadcast:demand".to_string()]
    );
    drop(second);
    wait_until("the last client's leave to unsubscribe", || {
        redis.subscribed_channels().is_empty()
    });
}

#[test]
fn custom_prefix_and_binary_payloads() {
    let redis = RedisServer::start();
    let server = with_redis(&redis, &["--redis-prefix", "app"]);
    let mut client = server.websocket("/ws/facility");
    assert_eq!(
        redis.subscribed_channels(),
        vec!["app:broadcast:facility".to_string()]
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    let payload = [0xffu8, 0x00, 0x80];
    let mut command = b"*3\r\n$7\r\nPUBLISH\r\n$22\r\napp:broadcast:facility\r\n$3\r\n".to_vec();
    command.extend_from_slice(&payload);
    command.extend_from_slice(b"\r\n");
    std::io::Write::write_all(&mut stream, &command).unwrap();
    assert_eq!(
        client.read().unwrap(),
        Message::Binary(payload.to_vec().into())
    );
}

#[test]
fn redis_lost_mid_stream_comes_back_by_itself() {
    let mut redis = RedisServer::start();
    let mut server = with_redis(&redis, &[]);
    let mut clients: Vec<_> = (0..10).map(|_| server.websocket("/ws/resilient")).collect();
    redis.command(&["PUBLISH", "ws:broadcast:resilient", "before"]);
    for client in &mut clients {
        assert_eq!(read_text(client), "before");
    }

    redis.kill();
    wait_until("the node to report not ready", || {
        let (status, body) = server.http("GET", "/healthz", b"");
        status == 200 && body.contains("\"ready\":false")
    });
    assert_eq!(server.http("GET", "/readyz", b"").0, 503);
    let (status, body) = server.http("POST", "/publish/resilient", b"lost?");
    assert_eq!(
        status, 503,
        "publishing while Redis is down is refused: {body}"
    );

    redis.restart();
    wait_until("the node to be ready again", || {
        server
            .http("GET", "/healthz", b"")
            .1
            .contains("\"ready\":true")
    });
    assert_eq!(
        redis.subscribed_channels(),
        vec!["ws:broadcast:resilient".to_string()]
    );
    server.publish("resilient", b"after");
    for client in &mut clients {
        assert_eq!(read_text(client), "after");
    }
    let stat = server.stat();
    assert!(stat.contains("redis_reconnects 1"), "{stat}");
    assert!(server.is_running());
}

#[test]
fn redis_down_at_start_then_up() {
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let server = Server::start(&["--redis", &url, "--redis-subscribe-wait", "200ms"]);
    let (status, body) = server.http("GET", "/healthz", b"");
    assert_eq!(status, 200, "alive: {body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    assert_eq!(server.http("GET", "/readyz", b"").0, 503);
    // It serves connections meanwhile.
    let mut client = server.websocket("/ws/late");
    assert_eq!(server.http("POST", "/publish/late", b"x").0, 503);
    redis.restart();
    wait_until("the node to be ready", || {
        server.http("GET", "/readyz", b"").0 == 200
    });
    server.publish("late", b"finally");
    assert_eq!(read_text(&mut client), "finally");
}

#[test]
fn an_oversized_redis_message_is_dropped_and_counted_and_nobody_is_closed() {
    let redis = RedisServer::start();
    let server = with_redis(&redis, &["--max-message-bytes", "1KiB"]);
    let mut client = server.websocket("/ws/big");
    let oversized = "x".repeat(2000);
    redis.command(&["PUBLISH", "ws:broadcast:big", &oversized]);
    redis.command(&["PUBLISH", "ws:broadcast:big", "after"]);
    // The honest message after it arrives, on the same (still open) connection.
    assert_eq!(read_text(&mut client), "after");
    let (status, metrics) = server.http("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ringcast_redis_messages_oversized_total 1"),
        "{metrics}"
    );
    server.publish("big", b"still subscribed");
    assert_eq!(read_text(&mut client), "still subscribed");
}

#[test]
fn rediss_is_refused_at_start_without_echoing_the_password() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "rediss://user:hunter2@127.0.0.1:6380",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Reads text messages from `client` until `expected` arrived, nothing came for `quiet` or
/// 30 s passed;
/// returns how many of `expected` arrived in order before anything else.
fn read_in_order(
    mut client: tungstenite::WebSocket<std::net::TcpStream>,
    expected: usize,
    quiet: Duration,
) -> usize {
    client.get_ref().set_read_timeout(Some(quiet)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut received = 0;
    while received < expected && std::time::Instant::now() < deadline {
        match client.read() {
            Ok(Message::Text(text)) if text.as_str() == format!("m{received}") => received += 1,
            Ok(Message::Text(_)) => return received,
            Ok(_) => {}
            Err(_) => return received,
        }
    }
    received
}

/// `ringcast_redis_messages_dropped_total`, and the whole exposition (for the message).
fn messages_dropped(server: &Server) -> (u64, String) {
    let (_, metrics) = server.http("GET", "/metrics", b"");
    let dropped = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ringcast_redis_messages_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in {metrics}"));
    (dropped, metrics)
}

#[test]
fn a_stalled_shard_drops_only_its_own_messages_from_redis() {
    let redis = RedisServer::start();
    let server = with_redis(
        &redis,
        &[
            "--mesh-capacity",
            "16",
            "--redis-forward-timeout",
            "100ms",
            "--test-fault",
            "stall-fanout=1",
        ],
    );
    let clients: Vec<_> = (0..24).map(|_| server.websocket("/ws/stalled")).collect();
    let per_shard = connections_per_shard(&server.stat());
    assert!(per_shard.iter().all(|count| *count > 0), "{per_shard:?}");
    // One pipelined burst, more than a stalled shard's queue holds.
    let count = 6000;
    let mut burst = Vec::new();
    for index in 0..count {
        let text = format!("m{index}");
        burst.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n$20\r\nws:broadcast:stalled\r\n${}\r\n{text}\r\n",
                text.len()
            )
            .as_bytes(),
        );
    }
    let mut publisher = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    std::io::Write::write_all(&mut publisher, &burst).unwrap();
    // Every client of the healthy shard gets all of them, in order, without waiting on the
    // stalled one (which would take count x 100 ms if forwarding waited on it).
    let readers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            std::thread::spawn(move || read_in_order(client, count, Duration::from_secs(5)))
        })
        .collect();
    let received: Vec<usize> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    let complete = received.iter().filter(|got| **got == count).count();
    assert_eq!(complete, per_shard[0], "{received:?} {per_shard:?}");
    let (dropped, metrics) = messages_dropped(&server);
    assert!(
        dropped > 0,
        "the stalled shard's queue overflowed: {metrics}"
    );
}

#[test]
fn a_stalled_shards_queue_is_bounded_in_bytes() {
    let redis = RedisServer::start();
    // 32 MiB: half for the client's receive buffer (16384 messages of 1 KiB), half for the two
    // shards' queues (8 MiB each, about 7400 of these messages). The forward timeout is long, so
    // only the byte bound can drop anything.
    let server = with_redis(
        &redis,
        &[
            "--mesh-capacity",
            "16",
            "--max-message-bytes",
            "1KiB",
            "--outbound-queue-bytes",
            "16MiB",
            "--redis-buffer-bytes",
            "32MiB",
            "--redis-forward-timeout",
            "60s",
            "--test-fault",
            "stall-fanout=1",
        ],
    );
    let clients: Vec<_> = (0..24).map(|_| server.websocket("/ws/bytes")).collect();
    let per_shard = connections_per_shard(&server.stat());
    assert!(per_shard.iter().all(|count| *count > 0), "{per_shard:?}");
    let count = 8000;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                client
                    .get_ref()
                    .set_read_timeout(Some(Duration::from_secs(8)))
                    .unwrap();
                // The stalled shard's clients get a message now and then: stop them in time.
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                let mut received = 0;
                while received < count && std::time::Instant::now() < deadline {
                    match client.read() {
                        Ok(Message::Text(text)) if text.starts_with(&format!("{received:05}")) => {
                            received += 1
                        }
                        Ok(Message::Text(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                received
            })
        })
        .collect();
    // Two bursts of 4000 (each fits a healthy shard's queue while it drains): the stalled
    // shard's queue fills up across both.
    let pad = "x".repeat(990);
    let mut publisher = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
    for half in [0..count / 2, count / 2..count] {
        let mut burst = Vec::new();
        for index in half {
            let text = format!("{index:05}{pad}");
            burst.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n$18\r\nws:broadcast:bytes\r\n${}\r\n{text}\r\n",
                    text.len()
                )
                .as_bytes(),
            );
        }
        std::io::Write::write_all(&mut publisher, &burst).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    }
    let received: Vec<usize> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    let complete = received.iter().filter(|got| **got == count).count();
    assert_eq!(complete, per_shard[0], "{received:?} {per_shard:?}");
    let (dropped, metrics) = messages_dropped(&server);
    // The stalled shard takes 16 into its channel, 1 in its forwarder's hands, about 16 more
    // every 2 s (its stalled fan-out), and what fits in 8 MiB (about 7400); the rest (about 550)
    // is dropped by the byte bound: with the 60 s forward timeout and a count bound alone
    // (65536 messages) none of the 8000 would have been. At most half of them: the stalled
    // shard's queue held at least half its byte budget before dropping.
    assert!(
        (1..=4000).contains(&dropped),
        "dropped {dropped}: {metrics}"
    );
}

#[test]
fn a_password_and_database_in_the_url_work_and_survive_a_restart_and_never_reach_the_log() {
    let mut redis = RedisServer::start_with_password("s3cret-pw");
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/3", redis.port);
    let server = Server::start(&["--redis", &url]);
    wait_until("the node to be ready", || {
        server.http("GET", "/readyz", b"").0 == 200
    });
    let mut clients: Vec<_> = (0..4).map(|_| server.websocket("/ws/guarded")).collect();
    wait_until("the channel to be subscribed", || {
        redis.subscribed_channels() == vec!["ws:broadcast:guarded".to_string()]
    });
    server.publish("guarded", b"through fred");
    redis.command(&["PUBLISH", "ws:broadcast:guarded", "from redis"]);
    for client in &mut clients {
        assert_eq!(read_text(client), "through fred");
        assert_eq!(read_text(client), "from redis");
    }

    // The subscriber link authenticates again on every connection, and subscribes again.
    redis.restart();
    wait_until("the node to be ready again", || {
        server.http("GET", "/readyz", b"").0 == 200
            && redis.subscribed_channels() == vec!["ws:broadcast:guarded".to_string()]
    });
    redis.command(&["PUBLISH", "ws:broadcast:guarded", "after the restart"]);
    for client in &mut clients {
        assert_eq!(read_text(client), "after the restart");
    }
    let stat = server.stat();
    assert!(stat.contains("redis_reconnects 1"), "{stat}");
    assert!(stat.contains("redis_resubscriptions 1"), "{stat}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("s3cret-pw"), "{log}");
}

/// A node whose Redis URL carries `credential` (`:PASSWORD@`, or nothing) against a Redis that
/// requires "right-pw": it stays unready, subscribes nothing, keeps running, never logs the
/// server's password, and says once what `refusal` says (not at every retry; its subscriber
/// link never counts as connected, so never as lost or reconnected either). Returns its log.
fn log_of_a_refused_credential(credential: &str, refusal: &str) -> String {
    let redis = RedisServer::start_with_password("right-pw");
    let url = format!("redis://{credential}127.0.0.1:{}", redis.port);
    let mut server = Server::start(&["--redis", &url, "--redis-subscribe-wait", "200ms"]);
    let mut client = server.websocket("/ws/closed");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.http("GET", "/readyz", b"").0, 503);
    assert!(redis.subscribed_channels().is_empty());
    drop(client.close(None));
    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains("right-pw"), "{log}");
    assert_eq!(log.matches(refusal).count(), 1, "{log}");
    assert!(!log.contains("reconnected"), "{log}");
    assert!(!log.contains("connection lost"), "{log}");
    assert!(server.is_running());
    log
}

#[test]
fn a_wrong_password_keeps_the_node_unready_and_out_of_the_log() {
    let log = log_of_a_refused_credential(":wrong-pw@", "AUTH / SELECT / PING) refused");
    assert!(!log.contains("wrong-pw"), "{log}");
}

/// The missing credential: a URL without a password, against a Redis that requires one. The
/// subscriber link's setup PING is refused (NOAUTH), so it backs off and says so once (it used
/// to connect, lose the connection at its first PING and reconnect every 50 ms, logging two
/// lines each time).
#[test]
fn a_missing_password_keeps_the_node_unready() {
    log_of_a_refused_credential("", "AUTH / SELECT / PING) refused: NOAUTH");
}
