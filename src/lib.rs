//! ringcast: a thread-per-core io_uring WebSocket push server.
//!
//! A backend publishes a message to a channel (`POST /publish/{channel}`); ringcast delivers it
//! to every WebSocket client subscribed to that channel (`GET /ws/{channel}`).
//!
//! Layers, each owning one job:
//! - [`protocol`]: sans-IO RFC 6455 (handshake, frames, masking, messages, close codes).
//! - [`http`]: sans-IO HTTP request heads, routes and responses.
//! - [`channel`]: channel names and the whitelist policy.
//! - [`apps`]: Pusher applications (id, key, secret, limits, webhooks).
//! - [`auth`]: HMAC-SHA256 signatures (Pusher channel, sign-in, webhook, REST), constant time.
//! - [`wire`]: client protocols as sans-IO codecs (Pusher Channels protocol 7).
//! - [`api`]: HTTP API building blocks (the Pusher REST API: routes, bodies, answers).
//! - [`config`]: command line, environment and limits.
//! - [`server`]: the runtime: shards, accept loops, connections, fan-out and writes.
//! - [`redis`]: the Redis subscriber core that joins several nodes into one.
//! - [`metrics`], [`stat`]: `/metrics` and `/stat`, rendered from per-shard snapshots.

pub mod api;
pub mod apps;
pub mod auth;
pub mod channel;
pub mod config;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod redis;
pub mod server;
pub mod stat;
pub mod wire;
