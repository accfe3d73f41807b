//! Channel history kept in Redis Streams (`--history` with `--redis`), across two nodes and a
//! real `redis-server` started by the test: positions are the same on every node, a client
//! recovers exactly on the node it did not use before, and a Redis that loses its data (a
//! restart without persistence) makes a new epoch, so a client holding the old one is told
//! it cannot recover. Raw `/ws/{channel}?since=` and the Centrifugo protocol both. On a real
//! 3-master Redis Cluster (`--redis-cluster`): exact history and recovery on every master, and
//! the Pusher channel counts, presence members and cache channels shared between nodes.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::redis_cluster::RedisCluster;
use common::{RedisServer, Server, wait_until};
use ringcast::apps::App;
use ringcast::auth::pusher::channel_auth;
use ringcast::auth::rest::sign_query;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

const TOKEN_SECRET: &str = "history-redis-test-secret-0123456789abcdef";

fn node(redis: &RedisServer) -> Server {
    Server::start(&[
        "--redis",
        &redis.url(),
        "--history",
        "chat:*@50",
        "--token-secret",
        TOKEN_SECRET,
        "--centrifugo-anonymous",
    ])
}

/// `/api/publish` on `server`: the position it answers.
fn publish(server: &Server, channel: &str, n: u64) -> (u64, String) {
    let body = json!({"channel": channel, "data": {"n": n}}).to_string();
    let (status, answer) = server.http("POST", "/api/publish", body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let result = &answer["result"];
    (
        result["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer}")),
        result["epoch"].as_str().unwrap().to_string(),
    )
}

/// A raw subscriber with the stream position headers of its 101.
fn raw(server: &Server, path: &str) -> (WebSocket<TcpStream>, u64, String) {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{}{}", server.address, path);
    let (socket, response) = tungstenite::client(url.as_str(), stream).expect("handshake");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let offset = header("Ringcast-Stream-Offset").parse().unwrap();
    (socket, offset, header("Ringcast-Stream-Epoch"))
}

/// The `n` of the next message.
fn next_n(socket: &mut WebSocket<TcpStream>) -> u64 {
    loop {
        match socket.read().expect("a message") {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                return value["n"].as_u64().unwrap();
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn both_ready(a: &Server, b: &Server) {
    wait_until("both nodes ready", || {
        common::get_body(a, "/readyz").0 == 200 && common::get_body(b, "/readyz").0 == 200
    });
}

#[test]
fn positions_are_the_same_on_every_node_and_recovery_works_on_the_other_node() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    both_ready(&a, &b);
    let (mut on_a, top, epoch) = raw(&a, "/ws/chat:x");
    assert_eq!(top, 0, "a new stream starts at 0");
    both_ready(&a, &b);
    for n in 1..=3 {
        let (offset, published_epoch) = publish(&b, "chat:x", n);
        assert_eq!((offset, published_epoch.as_str()), (n, epoch.as_str()));
    }
    for n in 1..=3 {
        assert_eq!(next_n(&mut on_a), n, "live, in order, from the other node");
    }
    drop(on_a);
    // Missed while away, published on either node.
    for n in 4..=8 {
        let node = if n % 2 == 0 { &a } else { &b };
        publish(node, "chat:x", n);
    }
    let (mut on_b, since, same_epoch) = raw(&b, &format!("/ws/chat:x?since=3&epoch={epoch}"));
    assert_eq!((since, same_epoch.as_str()), (3, epoch.as_str()));
    for n in 4..=8 {
        assert_eq!(next_n(&mut on_b), n, "recovered exactly, on the other node");
    }
    both_ready(&a, &b);
    publish(&a, "chat:x", 9);
    assert_eq!(next_n(&mut on_b), 9, "then live");

    // The Centrifugo protocol reads the same stream.
    let mut client = b.websocket("/connection/websocket");
    client
        .send(Message::text(json!({"connect": {}, "id": 1}).to_string()))
        .unwrap();
    let connected = read_json(&mut client);
    assert!(connected["connect"]["client"].is_string(), "{connected}");
    let subscribe = json!({"subscribe": {"channel": "chat:x", "recover": true, "offset": 6, "epoch": epoch}, "id": 2});
    client.send(Message::text(subscribe.to_string())).unwrap();
    let reply = read_json(&mut client);
    let result = &reply["subscribe"];
    assert_eq!(result["recovered"], true, "{reply}");
    let offsets: Vec<u64> = result["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|publication| publication["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![7, 8, 9], "{reply}");

    // History answers the same from either node.
    let history = |server: &Server| {
        let body = json!({"channel": "chat:x", "limit": 3, "reverse": true}).to_string();
        let (status, answer) = server.http("POST", "/api/history", body.as_bytes());
        assert_eq!(status, 200);
        serde_json::from_str::<Value>(&answer).unwrap()["result"]["publications"].clone()
    };
    assert_eq!(history(&a), history(&b));
    assert_eq!(history(&a)[0]["offset"], 9);
}

#[test]
fn a_redis_that_lost_its_data_makes_a_new_epoch_and_old_positions_are_refused() {
    let mut redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    both_ready(&a, &b);
    let (_, epoch) = publish(&a, "chat:y", 1);
    publish(&a, "chat:y", 2);
    // No persistence: everything is gone.
    redis.restart();
    both_ready(&a, &b);
    let (offset, new_epoch) = publish(&b, "chat:y", 3);
    assert_eq!(offset, 1, "a new life of the stream");
    assert_ne!(new_epoch, epoch);
    // The old position: closed with 4010 before any message.
    assert_unrecoverable(&a, &format!("/ws/chat:y?since=2&epoch={epoch}"));
}

/// A raw subscribe at `path` is closed with 4010 before any message.
fn assert_unrecoverable(server: &Server, path: &str) {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{}{path}", server.address);
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).unwrap();
    match socket.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4010),
        other => panic!("expected close 4010 first, got {other:?}"),
    }
}

/// A node on `cluster` with history on `chat:*` and one Pusher application.
fn cluster_node(cluster: &RedisCluster) -> Server {
    Server::start(&[
        "--redis-cluster",
        &cluster.seeds().join(","),
        "--history",
        "chat:*@50",
        "--token-secret",
        TOKEN_SECRET,
        "--app-id",
        "1",
        "--app-key",
        "key-one",
        "--app-secret",
        "secret-one",
    ])
}

#[test]
fn on_a_redis_cluster_every_master_keeps_exact_history_and_counts_are_shared() {
    let cluster = RedisCluster::start();
    let (a, b) = (cluster_node(&cluster), cluster_node(&cluster));
    both_ready(&a, &b);
    // One channel whose pub/sub channel (and so its history keys) lives on each master.
    let channels: Vec<String> = cluster
        .masters()
        .into_iter()
        .map(|master| cluster.channel_on(master, "ws:broadcast:chat:m"))
        .map(|channel| channel["ws:broadcast:".len()..].to_string())
        .collect();
    assert_eq!(channels.len(), 3);
    for channel in &channels {
        let (mut on_a, top, epoch) = raw(&a, &format!("/ws/{channel}"));
        assert_eq!(top, 0, "a new stream starts at 0");
        both_ready(&a, &b);
        for n in 1..=5 {
            let node = if n % 2 == 0 { &a } else { &b };
            let (offset, published_epoch) = publish(node, channel, n);
            assert_eq!((offset, published_epoch.as_str()), (n, epoch.as_str()));
        }
        for n in 1..=5 {
            assert_eq!(next_n(&mut on_a), n, "{channel}: live, in order");
        }
        let path = format!("/ws/{channel}?since=2&epoch={epoch}");
        let (mut on_b, since, same_epoch) = raw(&b, &path);
        assert_eq!((since, same_epoch.as_str()), (2, epoch.as_str()));
        for n in 3..=5 {
            assert_eq!(
                next_n(&mut on_b),
                n,
                "{channel}: recovered on the other node"
            );
        }
        both_ready(&a, &b);
        publish(&a, channel, 6);
        assert_eq!(next_n(&mut on_a), 6);
        assert_eq!(next_n(&mut on_b), 6, "{channel}: then live");
        assert_unrecoverable(&b, &format!("/ws/{channel}?since=2&epoch=0123456789abcdef"));
    }

    // Pusher channel counts are shared through the cluster too: a subscriber on node A is
    // counted by node B.
    let mut pusher = a.websocket("/app/key-one?protocol=7&client=test&version=1");
    read_json(&mut pusher);
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "room"}});
    pusher.send(Message::text(subscribe.to_string())).unwrap();
    let succeeded = read_json(&mut pusher);
    assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
    let app = App::new("1", "key-one", "secret-one").unwrap();
    let count_on_b = || {
        let path = "/apps/1/channels/room";
        let params = [("info", "subscription_count")];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let query = sign_query(&app, "GET", path, &params, b"", now);
        let (status, body) = common::http_to(b.address, "GET", &format!("{path}?{query}"), "", b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["subscription_count"].as_u64()
    };
    wait_until("node B counts node A's subscriber", || {
        count_on_b() == Some(1)
    });

    // Presence members are kept on the cluster (one hash tag per channel): a member on node A
    // is in the list node B gives its own member, and sees that member arrive.
    let mut ann = a.websocket("/app/key-one?protocol=7&client=test&version=1");
    let mut ben = b.websocket("/app/key-one?protocol=7&client=test&version=1");
    let joined_ann = join_presence(&app, &mut ann, "ann");
    assert_eq!(
        joined_ann["event"], "pusher_internal:subscription_succeeded",
        "{joined_ann}"
    );
    let joined_ben = join_presence(&app, &mut ben, "ben");
    let data: Value = serde_json::from_str(joined_ben["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2, "{joined_ben}");
    let added = read_json(&mut ann);
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");

    // A cache channel's last event is kept on the cluster: triggered through node A, replayed
    // to a subscriber of node B.
    let body =
        json!({"name": "headline", "channel": "cache-news", "data": "{\"v\":2}"}).to_string();
    let path = "/apps/1/events";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = sign_query(&app, "POST", path, &[], body.as_bytes(), now);
    let (status, answer) = common::http_to(
        a.address,
        "POST",
        &format!("{path}?{query}"),
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "cache-news"}});
    ben.send(Message::text(subscribe.to_string())).unwrap();
    let succeeded = read_json(&mut ben);
    assert_eq!(succeeded["event"], "pusher_internal:subscription_succeeded");
    let replayed = read_json(&mut ben);
    assert_eq!(
        (replayed["event"].as_str(), replayed["data"].as_str()),
        (Some("headline"), Some("{\"v\":2}")),
        "{replayed}"
    );
}

/// Joins `presence-room` as `user_id` (signed by `app`); the answer.
fn join_presence(app: &App, socket: &mut WebSocket<TcpStream>, user_id: &str) -> Value {
    let established = read_json(socket);
    let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap();
    let channel_data = json!({ "user_id": user_id }).to_string();
    let auth = channel_auth(app, socket_id, "presence-room", Some(&channel_data));
    let subscribe = json!({"event": "pusher:subscribe", "data": {
        "channel": "presence-room", "auth": auth, "channel_data": channel_data,
    }});
    socket.send(Message::text(subscribe.to_string())).unwrap();
    read_json(socket)
}

fn read_json(socket: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match socket.read().expect("a reply") {
            Message::Text(text) => {
                return serde_json::from_str(text.lines().next().unwrap()).unwrap();
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
