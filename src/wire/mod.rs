//! Client protocols as sans-IO codecs: bytes and typed values in, typed values and bytes out.
//!
//! - [`pusher`]: Pusher Channels protocol 7 (pusher-js, Laravel Echo, the Pusher SDKs).
//!
//! Deliberately not here: sockets, shards, runtimes. Imports point down: `wire` uses `apps`,
//! `auth` and `bytes`/`serde_json`, never `server`.

pub mod pusher;
