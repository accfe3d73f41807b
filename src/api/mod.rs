//! HTTP APIs as sans-IO handlers' building blocks: routes, bodies, answers, status mapping.
//!
//! - [`pusher`]: the Pusher HTTP API (`/apps/{id}/...`).
//!
//! Deliberately not here: the HTTP head parser (`http.rs`), sockets, shards.

pub mod pusher;
