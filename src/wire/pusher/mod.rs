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
//!    [`outgoing::connection_established`] with a [`socket_id::SocketIdGenerator`] id, or the
//!    [`error::ConnectError`]'s reply (after the upgrade: `pusher:error`, then a close code).
//! 2. Each text message: [`incoming::parse_client_message`] ->
//!    - `Ping` -> [`outgoing::pong`];
//!    - `Subscribe` -> [`authorize::authorize_subscribe`] (+ [`authorize::check_presence_capacity`])
//!      -> [`outgoing::subscription_succeeded`] / [`outgoing::subscription_succeeded_presence`]
//!      (+ [`outgoing::member_added`] to the others, cached event or [`outgoing::cache_miss`]),
//!      or [`error::SubscribeError::reply`];
//!    - `Signin` -> [`authorize::authorize_signin`] -> [`outgoing::signin_success`];
//!    - `ClientEvent` -> [`authorize::authorize_client_event`] -> [`outgoing::event`] with
//!      `user_id` on presence channels, to the other subscribers;
//!    - a parse error -> [`error::ClientMessageError::reply`].
//! 3. Published messages: [`outgoing::event`] once per message, or
//!    [`outgoing::raw_message_event`] for raw publishes; `socket_id` exclusion compares
//!    [`socket_id::SocketId`]s.
//!
//! Every refusal is mapped to its reply in [`error`] and nowhere else.

pub mod authorize;
pub mod channel;
pub mod connect;
pub mod error;
pub mod incoming;
pub mod outgoing;
pub mod presence;
pub use crate::socket_id;
pub mod webhook;

/// The publication of `pusher_internal:subscription_count` for `channel` (`None` for a
/// presence channel, which counts members instead, or a name that is not a Pusher channel).
pub fn subscription_count_publication(
    app: crate::channel::AppSlot,
    channel: &crate::channel::ChannelName,
    count: u64,
) -> Option<crate::publication::Publication> {
    let kind = channel::PusherChannel::parse(channel.as_str()).ok()?.kind();
    if kind.is_presence() {
        return None;
    }
    Some(internal_publication(
        app,
        channel,
        outgoing::SUBSCRIPTION_COUNT_EVENT,
        outgoing::subscription_count_data(count),
        None,
    ))
}

/// The publication of `pusher_internal:member_added` for `member` on presence channel
/// `channel`, sent to every member but the joining connection `exclude`.
pub fn member_added_publication(
    app: crate::channel::AppSlot,
    channel: &crate::channel::ChannelName,
    member: outgoing::MemberRef<'_>,
    exclude: socket_id::SocketId,
) -> crate::publication::Publication {
    internal_publication(
        app,
        channel,
        outgoing::MEMBER_ADDED_EVENT,
        outgoing::member_added_data(member),
        Some(exclude),
    )
}

/// The publication of `pusher_internal:member_removed` for `user_id` on presence channel
/// `channel`.
pub fn member_removed_publication(
    app: crate::channel::AppSlot,
    channel: &crate::channel::ChannelName,
    user_id: &str,
) -> crate::publication::Publication {
    internal_publication(
        app,
        channel,
        outgoing::MEMBER_REMOVED_EVENT,
        outgoing::member_removed_data(user_id),
        None,
    )
}

fn internal_publication(
    app: crate::channel::AppSlot,
    channel: &crate::channel::ChannelName,
    event: &str,
    data: String,
    exclude: Option<socket_id::SocketId>,
) -> crate::publication::Publication {
    crate::publication::Publication::event(
        app,
        channel.clone(),
        std::sync::Arc::from(event),
        bytes::Bytes::from(data.into_bytes()),
        exclude,
    )
}
