//! ringcast: a thread-per-core io_uring WebSocket push server.
//!
//! A backend publishes a message to a channel (`POST /publish/{channel}`); ringcast delivers it
//! to every WebSocket client subscribed to that channel (`GET /ws/{channel}`).
//!
//! Layers, each owning one job:
//! - [`protocol`]: sans-IO RFC 6455 (handshake, frames, masking, messages, close codes).
//! - [`http`]: sans-IO HTTP request heads, routes and responses.
//! - [`channel`]: channel names and the whitelist policy.
//! - [`config`]: command line, environment and limits.
//! - [`server`]: the runtime: shards, accept loops, connections, fan-out and writes.
//! - [`redis`]: the Redis subscriber core that joins several nodes into one.
//! - [`broker`]: Redis Cluster sharded pub/sub (SSUBSCRIBE / SPUBLISH per master).
//! - [`metrics`], [`stat`]: `/metrics` and `/stat`, rendered from per-shard snapshots.

pub mod broker;
pub mod channel;
pub mod config;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod redis;
pub mod server;
pub mod stat;
