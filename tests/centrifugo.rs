//! The Centrifugo bidirectional JSON protocol (v2) and channel history against the real server,
//! at the wire level (the real SDKs, centrifuge-js and centrifuge-python, run in
//! tests/clients/centrifugo_suite.py, from tests/run.sh): connect with a JWT, subscribe,
//! publications with offsets, exact recovery after a reconnect, the cases that are not
//! recovered (a gap beyond the history size, another epoch, a restarted server), the errors
//! and disconnect codes the SDKs act on, the `history` command, the server's 25 s ping, and the
//! server API (`/api/publish`, `/api/history`) with its key.
//!
//! Wire shapes follow `centrifugal/protocol` `client.proto` in its JSON form: commands are
//! `{"id":N,"connect":{..}}`, replies `{"id":N,"connect":{..}}` or
//! `{"id":N,"error":{"code":..,"message":..}}`, pushes `{"push":{"channel":..,"pub":{..}}}`,
//! a server ping is the empty object `{}` (answered with `{}`), and one frame may carry several
//! of them separated by newlines. Zero values (`false`, `0`, empty lists) may be left out, as
//! protobuf's JSON mapping does; the SDKs read a missing field as its zero value, and so do these
//! tests (and no further).
//!
//! Deliberately not here: Redis-backed history and two nodes (their own tests), the SDKs'
//! reconnect logic (the client suite).

mod common;

use std::collections::VecDeque;
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{PATIENCE, Server, http_to};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// `--token-secret` (at least 32 characters).
const SECRET: &str = "centrifugo-token-secret-0123456789abcdef";
/// `--api-key` (at least 16 characters).
const KEY: &str = "centrifugo-api-key-0123456789";
/// The WebSocket path of the Centrifugo protocol.
const PATH: &str = "/connection/websocket";
/// History on every `chat:` channel, 50 publications each (the contract's example).
const HISTORY: &str = "chat:*@50";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mint(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid connection token for user `sub`, expiring in an hour.
fn token(sub: &str) -> String {
    mint(json!({"sub": sub, "exp": now_s() + 3600}), SECRET)
}

/// Starts a server with history on `chat:*` (50 each), a token secret and an API key, plus
/// `extra` arguments.
fn start(extra: &[&str]) -> Server {
    let mut args = vec![
        "--history",
        HISTORY,
        "--token-secret",
        SECRET,
        "--api-key",
        KEY,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A POST to the API listener with `headers` (lines ending in CRLF); the status, the body as
/// text, and the body as JSON (`Null` when it is not JSON).
fn api_with(server: &Server, path: &str, headers: &str, body: &str) -> (u16, String, Value) {
    let headers = format!("Content-Type: application/json\r\n{headers}");
    let (status, text) = http_to(server.api_address, "POST", path, &headers, body.as_bytes());
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, json)
}

/// A POST to the API listener with the key; the status and the JSON body.
fn api(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let (status, text, json) = api_with(
        server,
        path,
        &format!("X-API-Key: {KEY}\r\n"),
        &body.to_string(),
    );
    assert!(
        !json.is_null(),
        "{path} answered {status} with non-JSON {text:?}"
    );
    (status, json)
}

/// `POST /api/publish`; asserts 200 and returns `result`.
fn publish(server: &Server, channel: &str, data: Value) -> Value {
    let (status, answer) = api(
        server,
        "/api/publish",
        json!({"channel": channel, "data": data}),
    );
    assert_eq!(status, 200, "publish to {channel}: {answer}");
    assert!(
        answer.get("error").is_none(),
        "publish to {channel}: {answer}"
    );
    answer["result"].clone()
}

/// `POST /api/publish` on a history channel; asserts the offset and returns the epoch.
fn publish_at(server: &Server, channel: &str, data: Value, offset: u64) -> String {
    let result = publish(server, channel, data);
    assert_eq!(result["offset"], json!(offset), "{channel}: {result}");
    let epoch = result["epoch"].as_str().expect("an epoch string");
    assert!(!epoch.is_empty(), "{result}");
    epoch.to_string()
}

/// A field that protobuf's JSON mapping may leave out when it is zero.
fn number(value: &Value, field: &str) -> u64 {
    match value.get(field) {
        None => 0,
        Some(number) => number
            .as_u64()
            .unwrap_or_else(|| panic!("{field} is not a number: {value}")),
    }
}

/// A boolean that may be left out when false.
fn flag(value: &Value, field: &str) -> bool {
    match value.get(field) {
        None => false,
        Some(flag) => flag
            .as_bool()
            .unwrap_or_else(|| panic!("{field} is not a boolean: {value}")),
    }
}

/// A list that may be left out when empty.
fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    match value.get(field) {
        None => &[],
        Some(list) => list
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list: {value}")),
    }
}

/// The offsets of a list of publications.
fn offsets(publications: &[Value]) -> Vec<u64> {
    publications
        .iter()
        .map(|publication| number(publication, "offset"))
        .collect()
}

/// A Centrifugo client over a real WebSocket, speaking raw JSON commands.
struct Client {
    socket: WebSocket<TcpStream>,
    /// The id of the next command (the protocol's ids start at 1).
    next_id: u64,
    /// Messages decoded from frames already read but not consumed yet (a frame may carry
    /// several, newline-separated).
    pending: VecDeque<Value>,
    /// Pushes read while waiting for a reply.
    pushes: VecDeque<Value>,
}

impl Client {
    /// Opens `/connection/websocket` without sending anything.
    fn open(server: &Server) -> Client {
        Client {
            socket: server.websocket(PATH),
            next_id: 1,
            pending: VecDeque::new(),
            pushes: VecDeque::new(),
        }
    }

    /// Opens and sends `connect` with `token`; returns the client and the reply.
    fn connect_with(server: &Server, token: Option<&str>) -> (Client, Value) {
        let mut client = Client::open(server);
        let mut connect = json!({"name": "ringcast-tests"});
        if let Some(token) = token {
            connect["token"] = json!(token);
        }
        let reply = client.command(json!({ "connect": connect }));
        (client, reply)
    }

    /// Opens and connects with a valid token; asserts the connect reply.
    fn connected(server: &Server) -> Client {
        let (client, reply) = Client::connect_with(server, Some(&token("user-1")));
        assert!(reply.get("connect").is_some(), "connect refused: {reply}");
        client
    }

    /// Sends one command with the next id; returns the id.
    fn send(&mut self, mut command: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send_text(&command.to_string());
        id
    }

    fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_string().into()))
            .expect("send a command");
    }

    /// Sends one command and returns its reply (pushes read meanwhile are kept).
    fn command(&mut self, command: Value) -> Value {
        let id = self.send(command);
        self.reply(id)
    }

    /// Reads until the reply with `id`.
    fn reply(&mut self, id: u64) -> Value {
        // Bounded: by the socket's read timeout per frame, and 10 000 messages.
        for _ in 0..10_000 {
            let message = self.read_message();
            if message.get("push").is_some() {
                self.pushes.push_back(message);
            } else if message["id"] == json!(id) {
                return message;
            } else {
                panic!("waiting for the reply to {id}, got {message}");
            }
        }
        panic!("no reply to {id}");
    }

    /// Subscribes; returns the reply.
    fn subscribe(&mut self, subscribe: Value) -> Value {
        self.command(json!({ "subscribe": subscribe }))
    }

    /// Subscribes to `channel`; asserts success and returns the `subscribe` result.
    fn subscribed(&mut self, channel: &str) -> Value {
        let reply = self.subscribe(json!({ "channel": channel }));
        assert!(
            reply.get("subscribe").is_some(),
            "subscribe {channel}: {reply}"
        );
        reply["subscribe"].clone()
    }

    /// The next push's publication on `channel` (asserts the push is one).
    fn next_publication(&mut self, channel: &str) -> Value {
        let push = match self.pushes.pop_front() {
            Some(push) => push,
            None => self.read_message(),
        };
        assert_eq!(push["push"]["channel"], json!(channel), "{push}");
        assert!(
            push["push"].get("pub").is_some(),
            "not a publication: {push}"
        );
        push["push"]["pub"].clone()
    }

    /// The next message that is not a server ping (answering pings with `{}` as the protocol
    /// says for clients that announced nothing else).
    fn read_message(&mut self) -> Value {
        // Bounded: by the socket's read timeout per frame, and 10 000 frames.
        for _ in 0..10_000 {
            if let Some(message) = self.pending.pop_front() {
                if message == json!({}) {
                    self.send_text("{}");
                    continue;
                }
                return message;
            }
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    for line in text.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                        let message: Value = serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                        self.pending.push_back(message);
                    }
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                Ok(Message::Close(frame)) => panic!("closed by the server: {frame:?}"),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(error) => panic!("no message within {PATIENCE:?}: {error}"),
            }
        }
        panic!("only server pings");
    }

    /// Reads until the server's close frame; returns its code and reason. Messages before it
    /// are returned too, so a failure can show them.
    fn close_frame(&mut self) -> (Option<(u16, String)>, Vec<String>) {
        let mut before = Vec::new();
        // Bounded: by the read timeout per frame, and 100 frames.
        for _ in 0..100 {
            match self.socket.read() {
                Ok(Message::Close(Some(frame))) => {
                    return (
                        Some((u16::from(frame.code), frame.reason.to_string())),
                        before,
                    );
                }
                Ok(Message::Close(None)) => return (None, before),
                Ok(Message::Text(text)) => before.push(text.to_string()),
                Ok(_) => {}
                Err(error) => {
                    before.push(format!("read error: {error}"));
                    return (None, before);
                }
            }
        }
        (None, before)
    }

    /// Asserts the server closes with `code` and `reason`.
    fn assert_closed_with(&mut self, code: u16, reason: &str) {
        let (frame, before) = self.close_frame();
        assert_eq!(
            frame,
            Some((code, reason.to_string())),
            "expected close {code} {reason:?}; messages before: {before:?}"
        );
    }

    /// Nothing more arrives within 300 ms (no duplicate, no stray push).
    fn assert_nothing_more(&mut self) {
        assert!(self.pushes.is_empty(), "unexpected {:?}", self.pushes);
        self.socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let extra = loop {
            if let Some(message) = self.pending.pop_front() {
                if message == json!({}) {
                    continue;
                }
                break Some(message.to_string());
            }
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    self.pending.extend(
                        text.as_str()
                            .split('\n')
                            .filter_map(|line| serde_json::from_str(line).ok()),
                    );
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                Ok(other) => break Some(format!("{other:?}")),
                Err(_) => break None,
            }
        };
        assert_eq!(extra, None, "nothing more should arrive");
        self.socket
            .get_mut()
            .set_read_timeout(Some(PATIENCE))
            .unwrap();
    }
}

/// The `error` of a reply, as (code, message); panics when the reply is not an error.
fn error_of(reply: &Value) -> (u64, String) {
    let error = reply
        .get("error")
        .unwrap_or_else(|| panic!("expected an error reply, got {reply}"));
    (
        number(error, "code"),
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn connect_subscribe_and_publications_carry_offsets() {
    let server = start(&[]);
    let (mut client, reply) = Client::connect_with(&server, Some(&token("user-1")));
    assert_eq!(reply["id"], json!(1), "{reply}");
    let connect = &reply["connect"];
    let client_id = connect["client"].as_str().unwrap_or_default();
    assert!(!client_id.is_empty(), "a client id: {reply}");
    assert!(
        connect["version"]
            .as_str()
            .is_some_and(|version| version.starts_with("ringcast")),
        "version: {reply}"
    );
    assert_eq!(connect["ping"], json!(25), "{reply}");
    assert_eq!(connect["pong"], json!(true), "{reply}");

    // A channel with history: recoverable and positioned, at the top of a fresh stream.
    let subscribed = client.subscribed("chat:room");
    assert!(flag(&subscribed, "recoverable"), "{subscribed}");
    assert!(flag(&subscribed, "positioned"), "{subscribed}");
    assert_eq!(number(&subscribed, "offset"), 0, "{subscribed}");
    let epoch = subscribed["epoch"].as_str().unwrap_or_default().to_string();
    assert!(!epoch.is_empty(), "an epoch: {subscribed}");
    assert!(
        !flag(&subscribed, "recovered") && list(&subscribed, "publications").is_empty(),
        "{subscribed}"
    );

    for n in 1..=3u64 {
        assert_eq!(publish_at(&server, "chat:room", json!({"n": n}), n), epoch);
    }
    for n in 1..=3u64 {
        let publication = client.next_publication("chat:room");
        assert_eq!(publication["data"], json!({"n": n}), "{publication}");
        assert_eq!(number(&publication, "offset"), n, "{publication}");
    }
    // The raw publish path appends to the same stream.
    server.publish("chat:room", b"{\"n\":4}");
    let publication = client.next_publication("chat:room");
    assert_eq!(
        (publication["data"].clone(), number(&publication, "offset")),
        (json!({"n": 4}), 4),
        "{publication}"
    );
    client.assert_nothing_more();
}

#[test]
fn a_channel_without_history_has_no_position_and_text_arrives_as_a_string() {
    let server = start(&[]);
    let mut client = Client::connected(&server);
    let reply = client.subscribe(json!({"channel": "news"}));
    assert_eq!(reply, json!({"id": 2, "subscribe": {}}));
    assert_eq!(publish(&server, "news", json!({"headline": 1})), json!({}));
    let publication = client.next_publication("news");
    assert_eq!(publication, json!({"data": {"headline": 1}}));
    server.publish("news", b"plain text, not JSON");
    let publication = client.next_publication("news");
    assert_eq!(publication, json!({"data": "plain text, not JSON"}));
    server.publish("news", b"[1,2,3]");
    assert_eq!(client.next_publication("news"), json!({"data": [1, 2, 3]}));
    client.assert_nothing_more();
}

#[test]
fn subscribing_twice_is_refused() {
    let server = start(&[]);
    let mut client = Client::connected(&server);
    client.subscribed("chat:twice");
    let reply = client.subscribe(json!({"channel": "chat:twice"}));
    assert_eq!(error_of(&reply), (105, "already subscribed".to_string()));
    // The first subscription still delivers, once.
    publish_at(&server, "chat:twice", json!("x"), 1);
    assert_eq!(client.next_publication("chat:twice")["data"], json!("x"));
    client.assert_nothing_more();
}

#[test]
fn recovery_returns_exactly_the_missed_publications_then_goes_live() {
    let server = start(&[]);
    let channel = "chat:recover";
    let mut first = Client::connected(&server);
    let subscribed = first.subscribed(channel);
    let epoch = subscribed["epoch"].as_str().unwrap().to_string();
    for n in 1..=2u64 {
        publish_at(&server, channel, json!({"n": n}), n);
        assert_eq!(number(&first.next_publication(channel), "offset"), n);
    }
    // The connection goes away (no close handshake); five more are published meanwhile.
    drop(first);
    for n in 3..=7u64 {
        assert_eq!(publish_at(&server, channel, json!({"n": n}), n), epoch);
    }
    let mut second = Client::connected(&server);
    let reply = second.subscribe(json!({
        "channel": channel, "recover": true, "offset": 2, "epoch": epoch
    }));
    let result = &reply["subscribe"];
    assert!(result.is_object(), "{reply}");
    assert!(flag(result, "recovered"), "recovered: {reply}");
    assert!(flag(result, "was_recovering"), "was_recovering: {reply}");
    assert!(
        flag(result, "recoverable") && flag(result, "positioned"),
        "{reply}"
    );
    assert_eq!(result["epoch"], json!(epoch), "{reply}");
    // Recovered: the reply carries the client's own position and the SDK advances through the
    // publications, as current Centrifugo does (`centrifugal/centrifuge` client.go: "In case of
    // successful recovery attach stream offset from request to subscribe response",
    // `res.Offset = req.Offset`; not recovered, it is the top).
    assert_eq!(number(result, "offset"), 2, "{reply}");
    let publications = list(result, "publications");
    assert_eq!(offsets(publications), vec![3, 4, 5, 6, 7], "{reply}");
    for (publication, n) in publications.iter().zip(3u64..) {
        assert_eq!(publication["data"], json!({"n": n}), "{reply}");
    }
    // Then live, with no gap and no duplicate.
    publish_at(&server, channel, json!({"n": 8}), 8);
    let live = second.next_publication(channel);
    assert_eq!(
        (number(&live, "offset"), live["data"].clone()),
        (8, json!({"n": 8}))
    );
    second.assert_nothing_more();

    // A client already at the top recovers nothing, successfully.
    let mut third = Client::connected(&server);
    let reply = third.subscribe(json!({
        "channel": channel, "recover": true, "offset": 8, "epoch": epoch
    }));
    let result = &reply["subscribe"];
    assert!(
        flag(result, "recovered") && flag(result, "was_recovering"),
        "{reply}"
    );
    assert!(list(result, "publications").is_empty(), "{reply}");
    assert_eq!(number(result, "offset"), 8, "{reply}");
}

#[test]
fn a_gap_beyond_the_history_size_or_from_another_epoch_is_not_recovered() {
    let server = start(&[]);
    let channel = "chat:big";
    let mut first = Client::connected(&server);
    let epoch = first.subscribed(channel)["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    publish_at(&server, channel, json!(1), 1);
    assert_eq!(number(&first.next_publication(channel), "offset"), 1);
    drop(first);
    // 80 missed on a channel that keeps 50.
    for n in 2..=81u64 {
        publish_at(&server, channel, json!(n), n);
    }
    let mut second = Client::connected(&server);
    let reply = second.subscribe(json!({
        "channel": channel, "recover": true, "offset": 1, "epoch": epoch
    }));
    let result = &reply["subscribe"];
    assert!(result.is_object(), "{reply}");
    assert!(
        !flag(result, "recovered"),
        "recovered must be false: {reply}"
    );
    assert!(flag(result, "was_recovering"), "{reply}");
    assert_eq!(number(result, "offset"), 81, "{reply}");
    assert_eq!(result["epoch"], json!(epoch), "{reply}");
    // Still subscribed and live afterwards.
    publish_at(&server, channel, json!(82), 82);
    let live = second.next_publication(channel);
    assert_eq!(number(&live, "offset"), 82, "{live}");

    // Another epoch (e.g. a position from before a restart): not recovered, told the new one.
    let mut third = Client::connected(&server);
    let reply = third.subscribe(json!({
        "channel": channel, "recover": true, "offset": 80, "epoch": "not-this-epoch"
    }));
    let result = &reply["subscribe"];
    assert!(result.is_object(), "{reply}");
    assert!(
        !flag(result, "recovered"),
        "recovered must be false: {reply}"
    );
    assert!(flag(result, "was_recovering"), "{reply}");
    assert_eq!(result["epoch"], json!(epoch), "{reply}");
    assert_eq!(number(result, "offset"), 82, "{reply}");
}

#[test]
fn a_restarted_server_has_a_new_epoch_and_does_not_recover_the_old_one() {
    let channel = "chat:restart";
    let old_epoch = {
        let server = start(&[]);
        publish_at(&server, channel, json!(1), 1);
        publish_at(&server, channel, json!(2), 2)
    };
    let server = start(&[]);
    let mut client = Client::connected(&server);
    let reply = client.subscribe(json!({
        "channel": channel, "recover": true, "offset": 2, "epoch": old_epoch
    }));
    let result = &reply["subscribe"];
    assert!(result.is_object(), "{reply}");
    assert!(!flag(result, "recovered"), "{reply}");
    assert!(flag(result, "was_recovering"), "{reply}");
    let new_epoch = result["epoch"].as_str().unwrap_or_default();
    assert!(
        !new_epoch.is_empty() && new_epoch != old_epoch,
        "a new epoch: {reply} (old {old_epoch})"
    );
    assert_eq!(publish_at(&server, channel, json!(1), 1), new_epoch);
}

#[test]
fn subscribe_before_connect_is_a_bad_request() {
    let server = start(&[]);
    let mut client = Client::open(&server);
    client.send(json!({"subscribe": {"channel": "chat:early"}}));
    client.assert_closed_with(3501, "bad request");
}

#[test]
fn connection_tokens_forged_malformed_missing_and_expired() {
    let server = start(&[]);
    let forged = mint(
        json!({"sub": "u", "exp": now_s() + 3600}),
        "another-secret-0123456789abcdef-0123456789",
    );
    let mut client = Client::open(&server);
    client.send(json!({"connect": {"token": forged}}));
    client.assert_closed_with(3500, "invalid token");

    let mut client = Client::open(&server);
    client.send(json!({"connect": {"token": "not.a.jwt"}}));
    client.assert_closed_with(3500, "invalid token");

    // No token on a server that does not allow anonymous connections.
    let mut client = Client::open(&server);
    client.send(json!({"connect": {}}));
    client.assert_closed_with(3500, "invalid token");

    // A token without `exp` is refused (exp is required).
    let mut client = Client::open(&server);
    client.send(json!({"connect": {"token": mint(json!({"sub": "u"}), SECRET)}}));
    client.assert_closed_with(3500, "invalid token");

    // Expired: an error reply the SDK acts on (it asks for a new token).
    let expired = mint(json!({"sub": "u", "exp": now_s() - 60}), SECRET);
    let (_client, reply) = Client::connect_with(&server, Some(&expired));
    assert_eq!(
        reply,
        json!({"id": 1, "error": {"code": 109, "message": "token expired"}})
    );
}

#[test]
fn anonymous_connections_only_when_allowed() {
    let server = start(&["--centrifugo-anonymous"]);
    let (mut client, reply) = Client::connect_with(&server, None);
    assert!(
        reply["connect"]["client"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{reply}"
    );
    client.subscribed("chat:anon");
    publish_at(&server, "chat:anon", json!("hi"), 1);
    assert_eq!(client.next_publication("chat:anon")["data"], json!("hi"));
}

#[test]
fn private_channels_need_a_subscription_token() {
    let server = start(&[]);
    let mut client = Client::connected(&server);
    let reply = client.subscribe(json!({"channel": "private-room"}));
    assert_eq!(error_of(&reply), (103, "permission denied".to_string()));
    // A token for another channel does not open this one.
    let other = mint(
        json!({"sub": "user-1", "channel": "private-other", "exp": now_s() + 3600}),
        SECRET,
    );
    let reply = client.subscribe(json!({"channel": "private-room", "token": other}));
    assert_eq!(error_of(&reply).0, 103, "{reply}");
    let granted = mint(
        json!({"sub": "user-1", "channel": "private-room", "exp": now_s() + 3600}),
        SECRET,
    );
    let reply = client.subscribe(json!({"channel": "private-room", "token": granted}));
    assert!(reply.get("subscribe").is_some(), "{reply}");
    publish(&server, "private-room", json!({"secret": true}));
    assert_eq!(
        client.next_publication("private-room")["data"],
        json!({"secret": true})
    );
}

#[test]
fn history_command_and_what_clients_may_not_do() {
    let server = start(&[]);
    let mut client = Client::connected(&server);
    let epoch = client.subscribed("chat:h")["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=3u64 {
        publish_at(&server, "chat:h", json!({"n": n}), n);
    }
    for _ in 1..=3 {
        client.next_publication("chat:h");
    }
    let reply = client.command(json!({"history": {"channel": "chat:h", "limit": 10}}));
    let history = &reply["history"];
    assert!(history.is_object(), "{reply}");
    assert_eq!(
        offsets(list(history, "publications")),
        vec![1, 2, 3],
        "{reply}"
    );
    assert_eq!(list(history, "publications")[0]["data"], json!({"n": 1}));
    assert_eq!(
        (number(history, "offset"), history["epoch"].clone()),
        (3, json!(epoch)),
        "{reply}"
    );
    let reply = client.command(json!({
        "history": {"channel": "chat:h", "limit": 10, "since": {"offset": 2, "epoch": epoch}}
    }));
    assert_eq!(
        offsets(list(&reply["history"], "publications")),
        vec![3],
        "{reply}"
    );

    // A channel without history.
    client.subscribed("plain");
    let reply = client.command(json!({"history": {"channel": "plain", "limit": 10}}));
    assert_eq!(error_of(&reply), (108, "not available".to_string()));
    // Clients do not publish; presence is not there.
    let reply =
        client.command(json!({"publish": {"channel": "chat:h", "data": {"from": "client"}}}));
    assert_eq!(error_of(&reply), (103, "permission denied".to_string()));
    let reply = client.command(json!({"presence": {"channel": "chat:h"}}));
    assert_eq!(error_of(&reply).0, 108, "{reply}");
    // The refused publish reached nobody, and the connection is still usable.
    client.assert_nothing_more();
    publish_at(&server, "chat:h", json!({"n": 4}), 4);
    assert_eq!(number(&client.next_publication("chat:h"), "offset"), 4);
}

#[test]
fn one_api_publish_reaches_raw_centrifugo_and_pusher_subscribers() {
    let server = start(&[
        "--app-id",
        "1",
        "--app-key",
        "app-key",
        "--app-secret",
        "app-secret",
    ]);
    // A history channel: the raw subscriber and the Centrifugo one each get it once.
    let mut raw = server.websocket("/ws/chat:x");
    let mut client = Client::connected(&server);
    client.subscribed("chat:x");
    publish_at(&server, "chat:x", json!({"m": 1}), 1);
    let publication = client.next_publication("chat:x");
    assert_eq!(
        (publication["data"].clone(), number(&publication, "offset")),
        (json!({"m": 1}), 1)
    );
    match raw.read().expect("the raw subscriber gets it") {
        Message::Text(text) => assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(json!({"m": 1})),
            "{text}"
        ),
        other => panic!("expected text, got {other:?}"),
    }
    client.assert_nothing_more();
    common::assert_nothing_more(&mut raw);

    // A channel without history, with a Pusher subscriber of the default app too (Pusher
    // channel names have no `:`).
    let mut pusher = server.websocket("/app/app-key?protocol=7&client=test&version=1");
    let established = read_pusher(&mut pusher);
    assert_eq!(established["event"], "pusher:connection_established");
    pusher
        .send(Message::Text(
            json!({"event": "pusher:subscribe", "data": {"channel": "news-x"}})
                .to_string()
                .into(),
        ))
        .unwrap();
    assert_eq!(
        read_pusher(&mut pusher)["event"],
        "pusher_internal:subscription_succeeded"
    );
    let mut raw = server.websocket("/ws/news-x");
    client.subscribed("news-x");
    assert_eq!(publish(&server, "news-x", json!({"m": 2})), json!({}));
    assert_eq!(client.next_publication("news-x"), json!({"data": {"m": 2}}));
    match raw.read().expect("the raw subscriber gets it") {
        Message::Text(text) => assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(json!({"m": 2}))
        ),
        other => panic!("expected text, got {other:?}"),
    }
    let event = read_pusher(&mut pusher);
    assert_eq!(event["channel"], "news-x", "{event}");
    let data = event["data"].as_str().expect("Pusher data is a string");
    assert_eq!(
        serde_json::from_str::<Value>(data).ok(),
        Some(json!({"m": 2})),
        "{event}"
    );
    client.assert_nothing_more();
}

/// The next Pusher message (skipping WebSocket pings).
fn read_pusher(socket: &mut WebSocket<TcpStream>) -> Value {
    loop {
        match socket.read().expect("a Pusher message") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn the_api_wants_its_key_and_json() {
    let server = start(&[]);
    let body = json!({"channel": "chat:k", "data": {"a": 1}}).to_string();
    let (status, text, _) = api_with(&server, "/api/publish", "", &body);
    assert_eq!(status, 401, "no key: {text}");
    let (status, text, _) = api_with(
        &server,
        "/api/publish",
        "X-API-Key: wrong-key-0123456789\r\n",
        &body,
    );
    assert_eq!(status, 401, "wrong key: {text}");
    let (status, text, _) = api_with(
        &server,
        "/api/history",
        "",
        &json!({"channel": "chat:k", "limit": 1}).to_string(),
    );
    assert_eq!(status, 401, "history without a key: {text}");
    // Every documented way to pass the key; each publish appends once.
    let headers = [
        format!("X-API-Key: {KEY}\r\n"),
        format!("Authorization: apikey {KEY}\r\n"),
        format!("Authorization: Bearer {KEY}\r\n"),
    ];
    for (headers, offset) in headers.iter().zip(1u64..) {
        let (status, text, answer) = api_with(&server, "/api/publish", headers, &body);
        assert_eq!(status, 200, "{headers:?}: {text}");
        assert_eq!(
            answer["result"]["offset"],
            json!(offset),
            "{headers:?}: {text}"
        );
    }
    let (status, text, _) = api_with(
        &server,
        "/api/publish",
        &format!("X-API-Key: {KEY}\r\n"),
        "{\"channel\": \"chat:k\", \"data\": ",
    );
    assert_eq!(status, 400, "malformed JSON: {text}");
    let (status, text, _) = api_with(
        &server,
        "/api/history",
        &format!("X-API-Key: {KEY}\r\n"),
        "not json",
    );
    assert_eq!(status, 400, "malformed JSON: {text}");
}

#[test]
fn api_history_pages_positions_and_epochs() {
    let server = start(&[]);
    let epoch = publish_at(&server, "chat:api", json!({"n": 1}), 1);
    publish_at(&server, "chat:api", json!({"n": 2}), 2);
    // The raw publish path appends to history too.
    server.publish("chat:api", b"{\"n\":3}");
    let (status, answer) = api(
        &server,
        "/api/history",
        json!({"channel": "chat:api", "limit": 10}),
    );
    assert_eq!(status, 200, "{answer}");
    let result = &answer["result"];
    assert_eq!(
        result["publications"],
        json!([
            {"data": {"n": 1}, "offset": 1},
            {"data": {"n": 2}, "offset": 2},
            {"data": {"n": 3}, "offset": 3},
        ]),
        "{answer}"
    );
    assert_eq!(
        (number(result, "offset"), result["epoch"].clone()),
        (3, json!(epoch))
    );

    let (status, answer) = api(
        &server,
        "/api/history",
        json!({"channel": "chat:api", "limit": 10,
               "since": {"offset": 1, "epoch": epoch}, "reverse": false}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        offsets(list(&answer["result"], "publications")),
        vec![2, 3],
        "{answer}"
    );

    let (status, answer) = api(
        &server,
        "/api/history",
        json!({"channel": "chat:api", "limit": 1}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        list(&answer["result"], "publications").len(),
        1,
        "limit 1: {answer}"
    );

    // A position from another epoch.
    let (_, answer) = api(
        &server,
        "/api/history",
        json!({"channel": "chat:api", "limit": 10, "since": {"offset": 1, "epoch": "other-epoch"}}),
    );
    assert_eq!(
        answer,
        json!({"error": {"code": 112, "message": "unrecoverable position"}})
    );
    // A channel without history.
    let (_, answer) = api(
        &server,
        "/api/history",
        json!({"channel": "news", "limit": 10}),
    );
    assert_eq!(
        answer,
        json!({"error": {"code": 108, "message": "not available"}})
    );
}

#[test]
fn the_server_pings_every_25_seconds_and_a_client_that_answers_stays() {
    let server = start(&[]);
    let mut client = Client::connected(&server);
    client.subscribed("chat:ping");
    let connected_at = std::time::Instant::now();
    client
        .socket
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(35)))
        .unwrap();
    // Bounded: by the 35 s read timeout, and 100 frames.
    let mut pinged_after = None;
    for _ in 0..100 {
        match client.socket.read() {
            Ok(Message::Text(text)) if text.as_str().split('\n').any(|line| line == "{}") => {
                pinged_after = Some(connected_at.elapsed());
                break;
            }
            Ok(Message::Text(text)) => panic!("unexpected {text}"),
            Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
            other => panic!("no ping: {other:?}"),
        }
    }
    let pinged_after = pinged_after.expect("a server ping");
    assert!(
        pinged_after >= Duration::from_secs(20) && pinged_after <= Duration::from_secs(30),
        "the ping came after {pinged_after:?}, not about 25 s"
    );
    client.send_text("{}");
    client
        .socket
        .get_mut()
        .set_read_timeout(Some(PATIENCE))
        .unwrap();
    // Still connected and subscribed after answering.
    std::thread::sleep(Duration::from_secs(1));
    publish_at(&server, "chat:ping", json!("after the ping"), 1);
    assert_eq!(
        client.next_publication("chat:ping")["data"],
        json!("after the ping")
    );
}

/// Publications to one history channel made on both shards at once (each publish is its own
/// connection, so `SO_REUSEPORT` spreads them) reach every subscriber, on either shard, in
/// offset order, each once: the owner positions them in one order, and every shard must
/// deliver them in that order, whatever their publish times.
#[test]
fn concurrent_publishes_from_both_shards_arrive_in_offset_order_everywhere() {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 60;
    const TOTAL: u64 = PUBLISHERS * EACH;
    let server = start(&[]);
    // Several of each, so both shards have subscribers of both kinds.
    let mut raws: Vec<_> = (0..6).map(|_| server.websocket("/ws/chat:order")).collect();
    let mut clients: Vec<Client> = (0..6)
        .map(|_| {
            let mut client = Client::connected(&server);
            client.subscribed("chat:order");
            client
        })
        .collect();
    std::thread::scope(|scope| {
        for publisher in 0..PUBLISHERS {
            let server = &server;
            scope.spawn(move || {
                for n in 0..EACH {
                    publish(server, "chat:order", json!({"p": publisher, "n": n}));
                }
            });
        }
    });
    for (index, client) in clients.iter_mut().enumerate() {
        let mut last_per_publisher = [None; PUBLISHERS as usize];
        for expected in 1..=TOTAL {
            let publication = client.next_publication("chat:order");
            assert_eq!(
                number(&publication, "offset"),
                expected,
                "client {index}: {publication}"
            );
            // Each publisher's own publishes keep their order too.
            let data = &publication["data"];
            let (p, n) = (data["p"].as_u64().unwrap(), data["n"].as_u64().unwrap());
            let last = &mut last_per_publisher[p as usize];
            assert!(
                last.is_none_or(|last| last < n),
                "client {index}: {data} after {last:?}"
            );
            *last = Some(n);
        }
        client.assert_nothing_more();
    }
    for (index, raw) in raws.iter_mut().enumerate() {
        for received in 0..TOTAL {
            match raw.read() {
                Ok(Message::Text(_)) => {}
                other => panic!("raw subscriber {index} after {received} messages: {other:?}"),
            }
        }
        common::assert_nothing_more(raw);
    }
}
