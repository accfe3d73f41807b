//! The broker: what joins ringcast nodes into one. One Redis (pub/sub through a subscriber core
//! on its own thread, [`redis`], receiving through [`single`]) or a Redis Cluster with sharded
//! pub/sub ([`cluster`]); both receive through our own RESP link (`cluster::link`); the
//! shards talk to it only by message ([`redis::RedisLink`]) and never wait on it on the data
//! path.
//!
//! [`webhook`] sends the applications' webhooks from a bounded queue on a thread of its own.
//!
//! Imports point down: the broker knows publications, channel names and the telemetry tables,
//! nothing of shards or the HTTP server (the webhook sender is an HTTP client).

pub mod cache;
pub mod cluster;
pub mod history;
pub mod occupancy;
pub mod presence;
pub mod redis;
pub mod scripts;
pub mod single;
pub mod webhook;
