//! Pusher Channels protocol 7, sans-IO.
//!
//! The spec is Pusher's own documentation (the `pusher/docs` repository):
//! `docs/channels/library_auth_reference/pusher-websockets-protocol.md` (messages, close
//! codes), `auth-signatures.md` (signatures), `docs/channels/using_channels/channels.md`
//! (names), `events.md` (client events, subscription count), `presence-channels.md` (limits),
//! `cache-channels.md`, and `docs/channels/server_api/webhooks.md`; and what pusher-js does
//! with what it receives (`src/core/connection/protocol/protocol.ts` parses a string `data`;
//! `channels/presence_channel.ts` and `members.ts` read `presence.hash`/`count`; `user.ts`
//! reads `signin_success`).
//!
//! One connection's life, and which function answers each step:
//! 1. `GET /app/{key}?protocol=7..`: [`connect::parse_connect`], the app lookup, then either
//!    [`server::connection_established`] with a [`socket_id::SocketIdGenerator`] id, or the
//!    [`error::ConnectError`]'s reply (after the upgrade: `pusher:error`, then a close code).
//! 2. Each text message: [`client::parse_client_message`] ->
//!    - `Ping` -> [`server::pong`];
//!    - `Subscribe` -> [`authorize::authorize_subscribe`] (+ [`authorize::check_presence_capacity`])
//!      -> [`server::subscription_succeeded`] / [`server::subscription_succeeded_presence`]
//!      (+ [`server::member_added`] to the others, cached event or [`server::cache_miss`]),
//!      or [`error::SubscribeError::reply`];
//!    - `Signin` -> [`authorize::authorize_signin`] -> [`server::signin_success`];
//!    - `ClientEvent` -> [`authorize::authorize_client_event`] -> [`server::event`] with
//!      `user_id` on presence channels, to the other subscribers;
//!    - a parse error -> [`error::ClientMessageError::reply`].
//! 3. Published messages: [`server::event`] once per message, or
//!    [`server::raw_message_event`] for raw publishes; `socket_id` exclusion compares
//!    [`socket_id::SocketId`]s.
//!
//! Every refusal is mapped to its reply in [`error`] and nowhere else.

pub mod authorize;
pub mod channel;
pub mod client;
pub mod connect;
pub mod error;
pub mod presence;
pub mod server;
pub mod socket_id;
pub mod webhook;
