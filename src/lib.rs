//! ringcast: a thread-per-core io_uring WebSocket push server.
//!
//! A backend publishes a message to a channel (`POST /publish/{channel}`); ringcast delivers it
//! to every WebSocket client subscribed to that channel (`GET /ws/{channel}`).
//!
//! Layers, each owning one job; imports point down the list, never up:
//! - [`protocol`]: sans-IO RFC 6455 (handshake, frames, masking, messages, close codes).
//! - [`channel`]: channel names and the whitelist policy.
//! - [`socket_id`]: connection ids (`digits.digits`, Pusher's shape), for exclusion and signatures.
//! - [`publication`]: the one message type of the whole path.
//! - [`apps`]: Pusher applications (id, key, secret, limits, webhooks).
//! - [`auth`]: HMAC-SHA256 signatures (Pusher channel, sign-in, webhook, REST), constant time.
//! - [`history`]: channel history, stream positions and exact recovery (sans-IO).
//! - [`wire`]: client protocols as sans-IO codecs (raw ws4redis-style, Pusher Channels 7,
//!   Centrifugo v2 JSON).
//! - [`telemetry`]: the counter tables, snapshots, `/stat` and `/metrics` rendering.
//! - [`http`]: sans-IO HTTP request heads, routes and responses.
//! - [`api`]: HTTP API building blocks (the Pusher REST API: routes, bodies, answers).
//! - [`broker`]: the Redis subscriber core (one Redis, or a Redis Cluster) that joins nodes.
//! - [`config`]: command line, environment and limits.
//! - [`server`]: the runtime: shards, accept loops, the connection owner, reactor, fan-out and
//!   writes.
//! - [`faults`]: test-only fault injection (feature `test-hooks`).

pub mod api;
pub mod apps;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod config;
pub mod faults;
pub mod history;
pub mod http;
pub mod protocol;
pub mod publication;
pub mod server;
pub mod socket_id;
pub mod telemetry;
pub mod wire;
