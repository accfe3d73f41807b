//! The Pusher protocol against the real server, at the wire level (the real client libraries
//! run in tests/clients/validate.py, from tests/run.sh): one namespace shared with the raw
//! protocol, applications isolated from each other, `socket_id` exclusion, two nodes joined by
//! a real Redis, protocol-level close codes, presence limits across nodes, and what a Pusher
//! connection costs.

mod common;

use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{PATIENCE, RedisServer, Server, http_to};
use ringcast::apps::App;
use ringcast::auth::pusher::channel_auth;
use ringcast::auth::rest::sign_query;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// An apps file with two applications.
fn apps_file() -> tempfile_path::TempFile {
    tempfile_path::TempFile::with(
        r#"
[[app]]
id = "1"
key = "key-one"
secret = "secret-one"

[[app]]
id = "2"
key = "key-two"
secret = "secret-two"
"#,
    )
}

mod tempfile_path {
    //! A file removed when dropped.
    pub struct TempFile(pub std::path::PathBuf);

    impl TempFile {
        pub fn with(text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "ringcast-pusher-{}-{}.toml",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        pub fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn app(id: &str) -> App {
    match id {
        "1" => App::new("1", "key-one", "secret-one").unwrap(),
        _ => App::new("2", "key-two", "secret-two").unwrap(),
    }
}

/// A Pusher client speaking protocol 7 over a real WebSocket.
struct PusherClient {
    socket: WebSocket<TcpStream>,
    socket_id: String,
}

impl PusherClient {
    fn connect(server: &Server, key: &str) -> PusherClient {
        let mut socket = server.websocket(&format!("/app/{key}?protocol=7&client=test&version=1"));
        let established = read_json(&mut socket);
        assert_eq!(
            established["event"], "pusher:connection_established",
            "{established}"
        );
        let data: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
        let socket_id = data["socket_id"].as_str().unwrap().to_string();
        assert!(
            socket_id.split('.').count() == 2
                && socket_id
                    .split('.')
                    .all(|part| part.bytes().all(|b| b.is_ascii_digit())),
            "{socket_id}"
        );
        assert!(data["activity_timeout"].as_u64().unwrap() > 0);
        PusherClient { socket, socket_id }
    }

    fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .unwrap();
    }

    fn subscribe(&mut self, channel: &str, auth: Option<String>) -> Value {
        let mut data = json!({ "channel": channel });
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        self.send(json!({ "event": "pusher:subscribe", "data": data }));
        self.next()
    }

    fn next(&mut self) -> Value {
        read_json(&mut self.socket)
    }

    /// The next channel event (skipping protocol messages).
    fn next_event(&mut self) -> Value {
        loop {
            let message = self.next();
            let event = message["event"].as_str().unwrap_or_default();
            if !event.starts_with("pusher") {
                return message;
            }
        }
    }

    fn assert_nothing_more(&mut self) {
        self.socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        if let Ok(Message::Text(text)) = self.socket.read() {
            panic!("unexpected {text}");
        }
        self.socket
            .get_mut()
            .set_read_timeout(Some(PATIENCE))
            .unwrap();
    }
}

fn read_json(socket: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match socket.read().expect("a message") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signed Pusher REST request on `server`'s public listener.
fn rest(server: &Server, app_id: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    rest_with(server, app_id, method, path, &[], body)
}

fn rest_with(
    server: &Server,
    app_id: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let body = if method == "GET" {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let full_path = format!("/apps/{app_id}{path}");
    let query = sign_query(&app(app_id), method, &full_path, params, &body, now_s());
    let (status, text) = http_to(
        server.address,
        method,
        &format!("{full_path}?{query}"),
        "Content-Type: application/json\r\n",
        &body,
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn trigger(server: &Server, app_id: &str, body: Value) -> (u16, Value) {
    rest(server, app_id, "POST", "/events", &body)
}

#[test]
fn one_namespace_two_wire_formats() {
    let apps = apps_file();
    let server = Server::start(&["--apps", apps.as_str()]);
    let mut pusher = PusherClient::connect(&server, "key-one");
    let subscribed = pusher.subscribe("news", None);
    assert_eq!(
        subscribed["event"],
        "pusher_internal:subscription_succeeded"
    );
    let mut raw = server.websocket("/ws/news");
    // A raw publish reaches Pusher subscribers as the event `message`.
    server.publish("news", b"{\"headline\":\"raw\"}");
    let event = pusher.next_event();
    assert_eq!(event["event"], "message");
    assert_eq!(event["channel"], "news");
    assert_eq!(event["data"], "{\"headline\":\"raw\"}");
    assert_eq!(
        raw.read().unwrap(),
        Message::Text("{\"headline\":\"raw\"}".into())
    );
    // A Pusher trigger reaches raw subscribers as the data.
    let (status, answer) = trigger(
        &server,
        "1",
        json!({"name": "update", "channel": "news", "data": "{\"n\":1}"}),
    );
    assert_eq!((status, answer), (200, json!({})));
    let event = pusher.next_event();
    assert_eq!(
        (event["event"].as_str(), event["data"].as_str()),
        (Some("update"), Some("{\"n\":1}"))
    );
    assert_eq!(raw.read().unwrap(), Message::Text("{\"n\":1}".into()));
    // A binary raw publish has no Pusher form: raw subscribers get it, Pusher ones do not.
    server.publish("news", &[0xff, 0xfe]);
    assert_eq!(
        raw.read().unwrap(),
        Message::Binary(vec![0xff, 0xfe].into())
    );
    pusher.assert_nothing_more();
}

#[test]
fn applications_are_isolated_and_exclusion_skips_one_socket() {
    let apps = apps_file();
    let server = Server::start(&["--apps", apps.as_str()]);
    let mut one_a = PusherClient::connect(&server, "key-one");
    let mut one_b = PusherClient::connect(&server, "key-one");
    let mut two = PusherClient::connect(&server, "key-two");
    for client in [&mut one_a, &mut one_b, &mut two] {
        assert_eq!(
            client.subscribe("room", None)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    let (status, _) = trigger(
        &server,
        "1",
        json!({"name": "hi", "channels": ["room"], "data": "x", "socket_id": one_a.socket_id}),
    );
    assert_eq!(status, 200);
    assert_eq!(one_b.next_event()["event"], "hi");
    one_a.assert_nothing_more();
    two.assert_nothing_more();
    let (status, _) = trigger(
        &server,
        "2",
        json!({"name": "two-only", "channel": "room", "data": "y"}),
    );
    assert_eq!(status, 200);
    assert_eq!(two.next_event()["event"], "two-only");
    one_b.assert_nothing_more();
    // Channel queries see their own application only.
    let (status, channels) = rest(&server, "2", "GET", "/channels", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(channels, json!({"channels": {"room": {}}}));
    let params = [("info", "subscription_count")];
    let (_, channel) = rest_with(&server, "1", "GET", "/channels/room", &params, &Value::Null);
    assert_eq!(channel, json!({"occupied": true, "subscription_count": 2}));
}

#[test]
fn private_channels_need_the_applications_signature() {
    let apps = apps_file();
    let server = Server::start(&["--apps", apps.as_str()]);
    let mut client = PusherClient::connect(&server, "key-one");
    let refused = client.subscribe("private-a", Some("key-one:00".to_string()));
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    let auth = channel_auth(&app("1"), &client.socket_id, "private-a", None);
    let accepted = client.subscribe("private-a", Some(auth));
    assert_eq!(
        accepted["event"], "pusher_internal:subscription_succeeded",
        "{accepted}"
    );
    // Another app's signature does not open this app's channel.
    let other = channel_auth(&app("2"), &client.socket_id, "private-b", None);
    let refused = client.subscribe("private-b", Some(other));
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
}

#[test]
fn protocol_errors_close_with_pushers_codes() {
    let apps = apps_file();
    let server = Server::start(&["--apps", apps.as_str()]);
    let mut socket = server.websocket("/app/no-such-key?protocol=7");
    let error = read_json(&mut socket);
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4001);
    match socket.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected close 4001, got {other:?}"),
    }
    let mut client = PusherClient::connect(&server, "key-one");
    client.send(json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(client.next()["event"], "pusher:pong");
    client
        .socket
        .send(Message::Text("not json".into()))
        .unwrap();
    assert_eq!(client.next()["event"], "pusher:error");
}

#[test]
fn a_trigger_on_one_node_reaches_the_other_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node_a = Server::start(&[
        "--app-id",
        "1",
        "--app-key",
        "key-one",
        "--app-secret",
        "secret-one",
        "--redis",
        &url,
    ]);
    let node_b = Server::start(&[
        "--app-id",
        "1",
        "--app-key",
        "key-one",
        "--app-secret",
        "secret-one",
        "--redis",
        &url,
    ]);
    let mut on_b = PusherClient::connect(&node_b, "key-one");
    let mut excluded_on_b = PusherClient::connect(&node_b, "key-one");
    let mut raw_on_a = node_a.websocket("/ws/orders");
    for client in [&mut on_b, &mut excluded_on_b] {
        assert_eq!(
            client.subscribe("orders", None)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    common::wait_until("both nodes subscribed in Redis", || {
        redis
            .subscribed_channels()
            .iter()
            .any(|name| name == "ws:broadcast:orders")
            && common::get_body(&node_a, "/readyz").0 == 200
            && common::get_body(&node_b, "/readyz").0 == 200
    });
    for index in 0..5 {
        let (status, _) = trigger(
            &node_a,
            "1",
            json!({"name": "shipped", "channel": "orders", "data": format!("#{index}"),
                   "socket_id": excluded_on_b.socket_id}),
        );
        assert_eq!(status, 200);
    }
    for index in 0..5 {
        let event = on_b.next_event();
        assert_eq!(
            (event["event"].as_str(), event["data"].as_str()),
            (Some("shipped"), Some(format!("#{index}").as_str()))
        );
        assert_eq!(
            raw_on_a.read().unwrap(),
            Message::Text(format!("#{index}").into())
        );
    }
    excluded_on_b.assert_nothing_more();
}

/// `GET /channels/{name}`'s `subscription_count` on `server`.
fn subscription_count(server: &Server, channel: &str) -> u64 {
    let params = [("info", "subscription_count")];
    let path = format!("/channels/{channel}");
    let (status, answer) = rest_with(server, "1", "GET", &path, &params, &Value::Null);
    assert_eq!(status, 200, "{answer}");
    answer["subscription_count"].as_u64().unwrap_or(0)
}

/// `GET /channels` on `server`: each occupied channel with its count.
fn occupied_channels(server: &Server, prefix: &str) -> Vec<(String, u64)> {
    let mut params = vec![("info", "subscription_count")];
    if !prefix.is_empty() {
        params.push(("filter_by_prefix", prefix));
    }
    let (status, answer) = rest_with(server, "1", "GET", "/channels", &params, &Value::Null);
    assert_eq!(status, 200, "{answer}");
    let mut channels: Vec<(String, u64)> = answer["channels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, info)| (name.clone(), info["subscription_count"].as_u64().unwrap()))
        .collect();
    channels.sort();
    channels
}

#[test]
fn channel_queries_count_every_node_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--app-id",
        "1",
        "--app-key",
        "key-one",
        "--app-secret",
        "secret-one",
        "--redis",
        &url,
    ];
    let node_a = Server::start(&args);
    let mut node_b = Server::start(&args);
    let mut on_a: Vec<PusherClient> = (0..2)
        .map(|_| PusherClient::connect(&node_a, "key-one"))
        .collect();
    let mut on_b: Vec<PusherClient> = (0..3)
        .map(|_| PusherClient::connect(&node_b, "key-one"))
        .collect();
    for client in on_a.iter_mut().chain(on_b.iter_mut()) {
        let answer = client.subscribe("room", None);
        assert_eq!(answer["event"], "pusher_internal:subscription_succeeded");
    }
    let mut lobby_on_b = PusherClient::connect(&node_b, "key-one");
    assert_eq!(
        lobby_on_b.subscribe("lobby", None)["event"],
        "pusher_internal:subscription_succeeded"
    );

    // Within the report period, both nodes count all five, whichever is asked.
    common::wait_until("both nodes count every subscriber", || {
        subscription_count(&node_a, "room") == 5
            && subscription_count(&node_b, "room") == 5
            && common::get_body(&node_a, "/readyz").0 == 200
    });
    let everything = vec![("lobby".to_string(), 1), ("room".to_string(), 5)];
    assert_eq!(occupied_channels(&node_a, ""), everything);
    assert_eq!(occupied_channels(&node_b, ""), everything);
    assert_eq!(
        occupied_channels(&node_a, "lob"),
        vec![("lobby".to_string(), 1)]
    );
    let (status, answer) = trigger(
        &node_a,
        "1",
        json!({"name": "e", "channel": "room", "data": "d", "info": "subscription_count"}),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["channels"]["room"]["subscription_count"], 5);
    let (_, one) = rest(&node_a, "1", "GET", "/channels/room", &Value::Null);
    assert_eq!(one["occupied"], true);

    // Leaving on one node shows on the other.
    on_b.truncate(1);
    common::wait_until("node A sees node B's clients leave", || {
        subscription_count(&node_a, "room") == 3
    });

    // A node killed without a word stops being counted once its lease ends (5 s after its
    // last refresh, which is at most 1 s old).
    let killed = std::time::Instant::now();
    node_b.kill();
    common::wait_until("node B's counts expire", || {
        occupied_channels(&node_a, "") == vec![("room".to_string(), 2)]
    });
    let gone_after = killed.elapsed();
    assert!(
        gone_after < Duration::from_secs(7),
        "node B still counted {gone_after:?} after it died (lease 5 s + refresh 1 s)"
    );
    drop((on_a, on_b, lobby_on_b));
}

#[test]
fn every_application_travels_through_redis_in_its_own_namespace() {
    let redis = RedisServer::start();
    let url = redis.url();
    let apps = apps_file();
    let node_a = Server::start(&["--apps", apps.as_str(), "--redis", &url]);
    let node_b = Server::start(&["--apps", apps.as_str(), "--redis", &url]);
    let mut second_on_b = PusherClient::connect(&node_b, "key-two");
    let mut first_on_b = PusherClient::connect(&node_b, "key-one");
    for client in [&mut second_on_b, &mut first_on_b] {
        assert_eq!(
            client.subscribe("room", None)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    common::wait_until("both namespaces subscribed in Redis", || {
        let channels = redis.subscribed_channels();
        ["ws:broadcast:room", "ws:app:2:broadcast:room"]
            .iter()
            .all(|wanted| channels.iter().any(|name| name == wanted))
            && common::get_body(&node_a, "/readyz").0 == 200
            && common::get_body(&node_b, "/readyz").0 == 200
    });
    // A trigger for the second application on node A reaches its client on node B only.
    let (status, answer) = trigger(
        &node_a,
        "2",
        json!({"name": "said", "channel": "room", "data": "to two"}),
    );
    assert_eq!(status, 200, "{answer}");
    let event = second_on_b.next_event();
    assert_eq!(
        (event["event"].as_str(), event["data"].as_str()),
        (Some("said"), Some("to two"))
    );
    first_on_b.assert_nothing_more();
    // And the first application's trigger reaches only the first application's client.
    let (status, _) = trigger(
        &node_a,
        "1",
        json!({"name": "said", "channel": "room", "data": "to one"}),
    );
    assert_eq!(status, 200);
    assert_eq!(first_on_b.next_event()["data"], "to one");
    second_on_b.assert_nothing_more();
    // A message another program publishes on the second application's Redis channel is
    // delivered there as the event `message`.
    redis.command(&["PUBLISH", "ws:app:2:broadcast:room", "from redis"]);
    let event = second_on_b.next_event();
    assert_eq!(
        (event["event"].as_str(), event["data"].as_str()),
        (Some("message"), Some("from redis"))
    );
    first_on_b.assert_nothing_more();
}

/// Subscribes `client` to presence channel `channel` as `user_id`, signed by app 1; the answer.
fn join_presence(client: &mut PusherClient, channel: &str, user_id: &str) -> Value {
    let channel_data = json!({ "user_id": user_id, "user_info": { "name": user_id } }).to_string();
    let auth = channel_auth(&app("1"), &client.socket_id, channel, Some(&channel_data));
    client.send(json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth, "channel_data": channel_data },
    }));
    client.next()
}

#[test]
fn presence_limits_hold_across_nodes_and_raw_clients_cannot_listen_in() {
    let redis = RedisServer::start();
    let apps = tempfile_path::TempFile::with(
        r#"
[[app]]
id = "1"
key = "key-one"
secret = "secret-one"
[app.limits]
max_presence_members = 2
"#,
    );
    let node_a = Server::start(&["--apps", apps.as_str(), "--redis", &redis.url()]);
    let node_b = Server::start(&["--apps", apps.as_str(), "--redis", &redis.url()]);
    let mut ann = PusherClient::connect(&node_a, "key-one");
    let joined = join_presence(&mut ann, "presence-room", "ann");
    assert_eq!(
        joined["event"], "pusher_internal:subscription_succeeded",
        "{joined}"
    );
    let mut ben = PusherClient::connect(&node_b, "key-one");
    let joined = join_presence(&mut ben, "presence-room", "ben");
    let data: Value = serde_json::from_str(joined["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2, "{joined}");
    assert_eq!(
        data["presence"]["hash"]["ann"],
        json!({ "name": "ann" }),
        "ann's user_info, kept on node A's join, read on node B: {joined}"
    );
    let added = ann.next();
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    // The channel is full: a third user is refused on either node with the documented error...
    let mut cid = PusherClient::connect(&node_a, "key-one");
    let refused = join_presence(&mut cid, "presence-room", "cid");
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    let error: Value = serde_json::from_str(refused["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (error["type"].as_str(), error["status"].as_u64()),
        (Some("LimitReached"), Some(403)),
        "{refused}"
    );
    // ...but a member's second connection is no new member.
    let mut ann_again = PusherClient::connect(&node_b, "key-one");
    let joined = join_presence(&mut ann_again, "presence-room", "ann");
    assert_eq!(
        joined["event"], "pusher_internal:subscription_succeeded",
        "{joined}"
    );
    // A user id over 128 characters is invalid channel data (400).
    let refused = join_presence(&mut cid, "presence-other", &"u".repeat(129));
    let error: Value = serde_json::from_str(refused["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        (error["type"].as_str(), error["status"].as_u64()),
        (Some("InvalidChannelData"), Some(400)),
        "{refused}"
    );
    // A presence channel is its members': without a token, the raw protocol is refused
    // (a `#server-to-user-` name cannot be written in a URL path at all).
    let (status, _) = node_a.raw_request(common::upgrade_request("/ws/presence-room").as_bytes());
    assert_eq!(status, 403);
    // Nobody else saw a member change: ann's second connection and the refusals changed
    // nothing, and ben saw no member_added for cid.
    ben.assert_nothing_more();
    ann.assert_nothing_more();
}

/// A member event that reaches a connection while its presence join is in flight waits for the
/// connection's `subscription_succeeded`, and follows it only when the member list it got does
/// not already cover it (Pusher: no member event before the member list, none twice).
#[cfg(feature = "test-hooks")]
#[test]
fn member_events_during_a_join_follow_its_member_list_once() {
    let apps = tempfile_path::TempFile::with(
        r#"
[[app]]
id = "1"
key = "key-one"
secret = "secret-one"
"#,
    );
    // Ben's join waits 2 s before the store takes it and 2 s after it answered.
    let server = Server::start(&[
        "--apps",
        apps.as_str(),
        "--test-fault",
        "delay-presence-join=ben",
    ]);
    let mut ann = PusherClient::connect(&server, "key-one");
    let joined = join_presence(&mut ann, "presence-room", "ann");
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
    let mut ben = PusherClient::connect(&server, "key-one");
    let channel_data = json!({ "user_id": "ben", "user_info": { "name": "ben" } }).to_string();
    let auth = channel_auth(
        &app("1"),
        &ben.socket_id,
        "presence-room",
        Some(&channel_data),
    );
    ben.send(json!({
        "event": "pusher:subscribe",
        "data": { "channel": "presence-room", "auth": auth, "channel_data": channel_data },
    }));
    let started = std::time::Instant::now();
    // Before the store takes Ben's join: Cid is in the member list Ben gets.
    std::thread::sleep(Duration::from_millis(500));
    let mut cid = PusherClient::connect(&server, "key-one");
    let joined = join_presence(&mut cid, "presence-room", "cid");
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
    // After it (2 s in, Ben's answer held 2 s more): Dan is not in Ben's list.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let mut dan = PusherClient::connect(&server, "key-one");
    let joined = join_presence(&mut dan, "presence-room", "dan");
    assert_eq!(joined["event"], "pusher_internal:subscription_succeeded");
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "the test's timeline slipped ({:?}): Ben's join may have completed already",
        started.elapsed()
    );

    let succeeded = ben.next();
    assert_eq!(
        succeeded["event"], "pusher_internal:subscription_succeeded",
        "the member list comes first: {succeeded}"
    );
    let data: Value = serde_json::from_str(succeeded["data"].as_str().unwrap()).unwrap();
    let mut ids: Vec<&str> = data["presence"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ann", "ben", "cid"], "{succeeded}");
    let added = ben.next();
    assert_eq!(
        (added["event"].as_str(), added["channel"].as_str()),
        (Some("pusher_internal:member_added"), Some("presence-room")),
        "{added}"
    );
    let member: Value = serde_json::from_str(added["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        member["user_id"], "dan",
        "Cid is in the list: only Dan follows: {added}"
    );
    ben.assert_nothing_more();
    let stat = server.stat();
    assert!(
        stat.lines()
            .any(|line| line == "pusher_member_events_held 2"),
        "{stat}"
    );
}
