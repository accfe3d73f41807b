//! The Centrifugo bidirectional client protocol, version 2, JSON format (what centrifuge-js 5,
//! centrifuge-python and the other Centrifugo SDKs speak over WebSocket), as a sans-IO codec.
//!
//! - [`command`]: a client frame (newline-separated JSON commands) to typed commands;
//! - [`reply`]: replies and pushes to WebSocket text frames; the publication push is built once
//!   per message for every subscriber;
//! - [`session`]: one connection's protocol state (handshake, ping/pong, expiry,
//!   subscriptions and their stream cursors);
//! - [`data`]: how a payload is embedded in JSON (JSON as is, other text as a string, binary
//!   refused);
//! - [`codes`]: every error, unsubscribe and disconnect code, and the one map from ringcast's
//!   typed errors to them.
//!
//! Specification: `centrifugal/protocol` `client.proto` (Command, Reply, Push and the request
//! and result messages), `centrifugal/centrifuge` `client.go`, `errors.go`, `disconnect.go`,
//! `unsubscribe.go` (the rules and codes), `centrifugal/centrifugal.dev`
//! `docs/transports/client_protocol.md` and `docs/server/codes.md`, and
//! `centrifugal/centrifuge-js` `src/centrifuge.ts`, `src/subscription.ts`, `src/json.ts` (what
//! the client sends and expects).
//!
//! Deliberately not here: sockets, shards, tokens (JWT verification belongs to the auth
//! layer), channel policy, the history store (see [`crate::history`]). Protobuf framing and
//! protocol v1 are not supported.

pub mod codes;
pub mod command;
pub mod data;
pub mod reply;
pub mod session;

use command::DecodeLimits;
use session::SessionLimits;

/// The protocol's limits, decoding and per connection (from the validated configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// What one client frame may hold.
    pub decode: DecodeLimits,
    /// What one connection may hold.
    pub session: SessionLimits,
}

/// Why protocol limits were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// A frame, a frame's commands or a connection's channels limited to zero.
    #[error("Centrifugo frame, command and channel limits must be at least 1")]
    Zero,
    /// After a reconnect, centrifuge-js sends one subscribe per subscription in one frame.
    #[error("{commands} commands per frame cannot carry the subscribes of {channels} channels")]
    FrameBelowChannels {
        /// `commands_per_frame_max`.
        commands: usize,
        /// `channels_max`.
        channels: usize,
    },
    /// The client is told the ping interval in whole seconds.
    #[error("the Centrifugo ping interval must be 0 or a whole number of seconds")]
    PingNotSeconds,
}

impl Limits {
    /// Checks the relations between the limits.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let decode = &self.decode;
        let session = &self.session;
        if decode.frame_bytes_max == 0
            || decode.commands_per_frame_max == 0
            || session.channels_max == 0
        {
            return Err(LimitsError::Zero);
        }
        if decode.commands_per_frame_max < session.channels_max + 1 {
            return Err(LimitsError::FrameBelowChannels {
                commands: decode.commands_per_frame_max,
                channels: session.channels_max,
            });
        }
        if !session.ping_interval_ms.is_multiple_of(1000) {
            return Err(LimitsError::PingNotSeconds);
        }
        Ok(())
    }
}

/// The server's side of a reconnect with recovery, end to end through the codec: real
/// centrifuge-js frames in, replies parsed back the way centrifuge-js reads them.
#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::Value;

    use super::codes::Verdict;
    use super::command::{DecodeLimits, Decoded, Request, decode_frame};
    use super::reply::{ConnectResult, ReplyBatch, SubscribeResult, publication_frame};
    use super::session::{Delivery, Expiry, Session, SessionLimits};
    use crate::channel::ChannelName;
    use crate::history::StreamPosition;
    use crate::history::memory::{HistoryLimits, MemoryHistory};
    use crate::history::policy::ChannelHistory;
    use crate::history::recovery::HistoryRead;

    const HISTORY: ChannelHistory = ChannelHistory {
        size: 150,
        ttl_ms: 300_000,
    };

    /// The replies of a frame, as centrifuge-js `decodeReplies` sees them (WebSocket header
    /// skipped: these frames are short or 16-bit-length ones).
    fn replies(frame: &[u8]) -> Vec<Value> {
        let header = if frame[1] == 126 { 4 } else { 2 };
        std::str::from_utf8(&frame[header..])
            .unwrap()
            .split('\n')
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn commands(frame: &str) -> Vec<Request> {
        decode_frame(frame.as_bytes(), &DecodeLimits::default())
            .unwrap()
            .into_iter()
            .map(|decoded| match decoded {
                Decoded::Command(command) => command.request,
                refused => panic!("{refused:?}"),
            })
            .collect()
    }

    /// What the server does for a `connect` then a `subscribe` (with or without recovery),
    /// with `during` published while history is read. Returns the subscribe reply.
    fn connect_and_subscribe(
        history: &mut MemoryHistory,
        subscribe_frame: &str,
        during: u64,
    ) -> Value {
        let limits = SessionLimits::default();
        let channel = ChannelName::new("news").unwrap();
        let mut session = Session::new(0, &limits);
        let [connect] = &commands(r#"{"connect":{"token":"t","name":"js"},"id":1}"#)[..] else {
            panic!()
        };
        session.admit(connect, 0, &limits).unwrap();
        // (The server verifies the token here.)
        session.connected("client-1", Expiry::Never, 0, &limits);
        let mut batch = ReplyBatch::new();
        batch.connect(
            1,
            &ConnectResult {
                client: "client-1",
                version: "0.1.0",
                ttl_s: None,
                ping_s: 25,
                pong: true,
                data: None,
            },
        );
        let connect_reply = &replies(&batch.finish().unwrap())[0];
        assert_eq!(connect_reply["connect"]["client"], "client-1");

        let [Request::Subscribe(subscribe)] = &commands(subscribe_frame)[..] else {
            panic!()
        };
        session
            .admit(&Request::Subscribe(subscribe.clone()), 0, &limits)
            .unwrap();
        // Live first: the session buffers while history is read.
        session.begin_subscribe(&channel, true, &limits).unwrap();
        for _ in 0..during {
            let position = history.append(&channel, &HISTORY, Bytes::from_static(b"{}"), 0);
            let delivery = session.on_publication(
                &channel,
                Some(&position),
                &Bytes::from_static(b"{}"),
                &limits,
            );
            assert_eq!(delivery, Delivery::Buffered);
        }
        let read = match &subscribe.recover {
            Some(since) => match history.recover(&channel, since, 300, 0) {
                Ok(recovered) => HistoryRead::Recovered(recovered),
                Err(refused) => HistoryRead::Unrecoverable(refused),
            },
            None => HistoryRead::Top(history.position(&channel, 0)),
        };
        let synchronized = session.finish_subscribe(&channel, read).unwrap();
        let mut batch = ReplyBatch::new();
        batch
            .subscribe(2, SubscribeResult::Positioned(&synchronized))
            .unwrap();
        for publication in &synchronized.then_push {
            batch.publication_push(&channel, publication).unwrap();
        }
        replies(&batch.finish().unwrap()).remove(0)
    }

    fn publish(history: &mut MemoryHistory, count: u64) -> StreamPosition {
        let channel = ChannelName::new("news").unwrap();
        let mut last = history.position(&channel, 0);
        for n in 0..count {
            let payload = Bytes::from(format!(r#"{{"n":{n}}}"#));
            last = history.append(&channel, &HISTORY, payload.clone(), 0);
            // Every live subscriber gets this one frame.
            let frame = publication_frame(&channel, &payload, Some(last.offset)).unwrap();
            assert_eq!(replies(&frame)[0]["push"]["pub"]["offset"], last.offset);
        }
        last
    }

    #[test]
    fn a_reconnecting_client_gets_exactly_what_it_missed() {
        let mut history = MemoryHistory::new(HistoryLimits::default(), 1).unwrap();
        let first = connect_and_subscribe(
            &mut history,
            r#"{"subscribe":{"channel":"news","flag":1},"id":2}"#,
            0,
        );
        assert_eq!(first["subscribe"]["recoverable"], true);
        assert_eq!(first["subscribe"]["was_recovering"], Value::Null);
        let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_string();
        let seen = publish(&mut history, 3);
        // The client drops; 100 messages go by; it reconnects from offset 3.
        publish(&mut history, 100);
        let frame = format!(
            r#"{{"subscribe":{{"channel":"news","flag":1,"recover":true,"offset":{},"epoch":"{epoch}"}},"id":2}}"#,
            seen.offset
        );
        let again = connect_and_subscribe(&mut history, &frame, 2);
        let result = &again["subscribe"];
        assert_eq!(result["recovered"], true);
        assert_eq!(result["was_recovering"], true);
        assert_eq!(result["offset"], 3);
        let offsets: Vec<u64> = result["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|publication| publication["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets, (4..=105).collect::<Vec<_>>());
        assert_eq!(result["publications"][0]["data"]["n"], 0);
    }

    #[test]
    fn beyond_the_history_size_the_client_is_told() {
        let mut history = MemoryHistory::new(HistoryLimits::default(), 1).unwrap();
        let first = connect_and_subscribe(
            &mut history,
            r#"{"subscribe":{"channel":"news"},"id":2}"#,
            0,
        );
        let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_string();
        publish(&mut history, 200);
        let frame = format!(
            r#"{{"subscribe":{{"channel":"news","recover":true,"offset":10,"epoch":"{epoch}"}},"id":2}}"#
        );
        let again = connect_and_subscribe(&mut history, &frame, 0);
        let result = &again["subscribe"];
        assert_eq!(result["recovered"], Value::Null);
        assert_eq!(result["was_recovering"], true);
        assert_eq!(result["offset"], 200);
        assert_eq!(result["publications"], Value::Null);
    }

    #[test]
    fn limits_are_validated() {
        use super::{Limits, LimitsError};
        let defaults = Limits::default();
        assert_eq!(defaults.validate(), Ok(()));
        let mut zero = defaults;
        zero.session.channels_max = 0;
        assert_eq!(zero.validate(), Err(LimitsError::Zero));
        let mut small = defaults;
        small.decode.commands_per_frame_max = 128;
        assert_eq!(
            small.validate(),
            Err(LimitsError::FrameBelowChannels {
                commands: 128,
                channels: 128
            })
        );
        let mut ping = defaults;
        ping.session.ping_interval_ms = 1500;
        assert_eq!(ping.validate(), Err(LimitsError::PingNotSeconds));
    }

    #[test]
    fn a_command_before_connect_closes_with_bad_request() {
        let limits = SessionLimits::default();
        let mut session = Session::new(0, &limits);
        let [subscribe] = &commands(r#"{"subscribe":{"channel":"news"},"id":1}"#)[..] else {
            panic!()
        };
        let error = session.admit(subscribe, 0, &limits).unwrap_err();
        let Verdict::Disconnect(code) = error.verdict() else {
            panic!()
        };
        assert_eq!(&code.close_frame()[2..4], &3501u16.to_be_bytes());
    }

    /// Per-operation costs on this machine; run with
    /// `cargo test --release --lib wire::centrifugo::tests::timings -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing: run in release"]
    fn timings() {
        use std::hint::black_box;
        use std::time::Instant;

        fn per_op(label: &str, count: u64, mut op: impl FnMut(u64)) {
            let started = Instant::now();
            // Bounded: `count` iterations.
            for index in 0..count {
                op(index);
            }
            let ns = started.elapsed().as_nanos() as f64 / count as f64;
            println!("{label}: {ns:.0} ns/op ({count} ops)");
        }

        let channel = ChannelName::new("news").unwrap();
        let json = Bytes::from(format!(r#"{{"text":"{}","n":12345}}"#, "x".repeat(80)));
        per_op("publication_frame, 100-byte JSON", 1_000_000, |offset| {
            black_box(publication_frame(&channel, &json, Some(offset + 1)).unwrap());
        });
        let text = Bytes::from("y".repeat(100));
        per_op("publication_frame, 100-byte text", 1_000_000, |offset| {
            black_box(publication_frame(&channel, &text, Some(offset + 1)).unwrap());
        });
        let frame = r#"{"subscribe":{"channel":"news","flag":1,"recover":true,"offset":7,"epoch":"0000000000000001a"},"id":3}"#;
        per_op("decode_frame, one subscribe", 1_000_000, |_| {
            black_box(decode_frame(frame.as_bytes(), &DecodeLimits::default()).unwrap());
        });

        let mut history = MemoryHistory::new(HistoryLimits::default(), 1).unwrap();
        let channels: Vec<ChannelName> = (0..1000)
            .map(|n| ChannelName::new(&format!("c{n}")).unwrap())
            .collect();
        per_op(
            "MemoryHistory::append, 1000 channels, size 150",
            2_000_000,
            |n| {
                let channel = &channels[(n % 1000) as usize];
                black_box(history.append(channel, &HISTORY, json.clone(), n / 1000));
            },
        );
        println!("  {:?}", history.stats());
        let busy = ChannelName::new("busy").unwrap();
        let big = ChannelHistory {
            size: 1000,
            ..HISTORY
        };
        for _ in 0..1000 {
            history.append(&busy, &big, json.clone(), 2000);
        }
        let top = history.position(&busy, 2000);
        let since = StreamPosition {
            offset: top.offset - 1000,
            epoch: top.epoch.clone(),
        };
        per_op("MemoryHistory::recover, 1000 missed", 10_000, |_| {
            black_box(history.recover(&busy, &since, 1000, 2000).unwrap());
        });
        let recovered = history.recover(&busy, &since, 1000, 2000).unwrap();
        per_op(
            "synchronize + subscribe reply, 1000 recovered",
            2_000,
            |_| {
                let synchronized = crate::history::recovery::synchronize(
                    HistoryRead::Recovered(recovered.clone()),
                    &[],
                )
                .unwrap();
                let mut batch = ReplyBatch::new();
                batch
                    .subscribe(2, SubscribeResult::Positioned(&synchronized))
                    .unwrap();
                black_box(batch.finish());
            },
        );
    }
}
