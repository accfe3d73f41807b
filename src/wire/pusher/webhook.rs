//! Webhook bodies (webhooks.md): `{"time_ms": .., "events": [{"name": .., ...}, ...]}`.
//!
//! "The `time_ms` key provides the unix timestamp in milliseconds when the webhook was
//! created"; each event is one of `channel_occupied`, `channel_vacated` (`channel`),
//! `member_added`, `member_removed` (`channel`, `user_id`), `client_event` (`channel`,
//! `event`, `data`, `socket_id`, and `user_id` "Only for presence channels"), and `cache_miss`
//! (`channel`; cache-channels.md).
//!
//! Sign the exact body with `auth::pusher::webhook_headers` and send it with
//! `Content-Type: application/json`. Note for retries: pusher-http-python's
//! `validate_webhook` refuses a body whose `time_ms` is more than 300 s from its clock, so a
//! retried body keeps its `time_ms` and retries stop within 300 s (Pusher retries "for 5
//! minutes").
//!
//! Deliberately not here: batching, queueing, the 3 s delay of `channel_vacated` and
//! `member_removed`, HTTP (the broker's webhook sender).

use bytes::Bytes;
use serde::Serialize;

use super::socket_id::SocketId;
use crate::apps::WebhookEventKind;

/// Most events one webhook body carries (the sender batches up to this many).
pub const MAX_WEBHOOK_EVENTS_PER_BODY: usize = 100;

/// One webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// "whenever any channel becomes occupied (i.e. there is at least one subscriber)".
    ChannelOccupied {
        /// The channel.
        channel: String,
    },
    /// "whenever any channel becomes vacated (i.e. there are no subscribers)".
    ChannelVacated {
        /// The channel.
        channel: String,
    },
    /// "whenever a new user subscribes to a presence channel".
    MemberAdded {
        /// The presence channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// "whenever a user unsubscribes from a presence channel".
    MemberRemoved {
        /// The presence channel.
        channel: String,
        /// The user.
        user_id: String,
    },
    /// "whenever a client event is sent on any private or presence channel".
    ClientEvent {
        /// The channel.
        channel: String,
        /// The event name.
        event: String,
        /// The data, as relayed (a string).
        data: String,
        /// The sender's connection.
        #[serde(serialize_with = "display")]
        socket_id: SocketId,
        /// The sender's user id, on presence channels only.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A subscription to a cache channel found nothing cached.
    CacheMiss {
        /// The channel.
        channel: String,
    },
}

fn display<S: serde::Serializer>(socket_id: &SocketId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(socket_id)
}

impl WebhookEvent {
    /// The kind, for matching against a target's event filter.
    pub fn kind(&self) -> WebhookEventKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => WebhookEventKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => WebhookEventKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => WebhookEventKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => WebhookEventKind::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => WebhookEventKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => WebhookEventKind::CacheMiss,
        }
    }
}

/// The body of one webhook request. `events` must hold 1..=[`MAX_WEBHOOK_EVENTS_PER_BODY`]
/// events (the sender's batching guarantees it).
pub fn webhook_body(time_ms: u64, events: &[WebhookEvent]) -> Bytes {
    assert!(
        (1..=MAX_WEBHOOK_EVENTS_PER_BODY).contains(&events.len()),
        "a webhook body carries 1..=100 events, got {}",
        events.len()
    );
    #[derive(Serialize)]
    struct Body<'a> {
        time_ms: u64,
        events: &'a [WebhookEvent],
    }
    let body = serde_json::to_vec(&Body { time_ms, events })
        .expect("serialising strings and numbers cannot fail");
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn every_event_has_the_documented_shape() {
        let events = vec![
            WebhookEvent::ChannelOccupied {
                channel: "my-channel".into(),
            },
            WebhookEvent::ChannelVacated {
                channel: "my-channel".into(),
            },
            WebhookEvent::MemberAdded {
                channel: "presence-your_channel_name".into(),
                user_id: "a_user_id".into(),
            },
            WebhookEvent::MemberRemoved {
                channel: "presence-your_channel_name".into(),
                user_id: "a_user_id".into(),
            },
            WebhookEvent::ClientEvent {
                channel: "private-a".into(),
                event: "client-x".into(),
                data: "{}".into(),
                socket_id: SocketId::parse("1.2").unwrap(),
                user_id: None,
            },
            WebhookEvent::ClientEvent {
                channel: "presence-a".into(),
                event: "client-x".into(),
                data: "hi".into(),
                socket_id: SocketId::parse("1.2").unwrap(),
                user_id: Some("u".into()),
            },
            WebhookEvent::CacheMiss {
                channel: "cache-a".into(),
            },
        ];
        let body: Value =
            serde_json::from_slice(&webhook_body(1_327_078_148_132, &events)).unwrap();
        assert_eq!(
            body,
            json!({"time_ms": 1_327_078_148_132_u64, "events": [
                {"name": "channel_occupied", "channel": "my-channel"},
                {"name": "channel_vacated", "channel": "my-channel"},
                {"name": "member_added", "channel": "presence-your_channel_name", "user_id": "a_user_id"},
                {"name": "member_removed", "channel": "presence-your_channel_name", "user_id": "a_user_id"},
                {"name": "client_event", "channel": "private-a", "event": "client-x", "data": "{}", "socket_id": "1.2"},
                {"name": "client_event", "channel": "presence-a", "event": "client-x", "data": "hi", "socket_id": "1.2", "user_id": "u"},
                {"name": "cache_miss", "channel": "cache-a"},
            ]})
        );
        let kinds: Vec<_> = events.iter().map(WebhookEvent::kind).collect();
        assert_eq!(kinds[0], WebhookEventKind::ChannelOccupied);
        assert_eq!(kinds[4], WebhookEventKind::ClientEvent);
        assert_eq!(kinds[6], WebhookEventKind::CacheMiss);
    }

    #[test]
    #[should_panic(expected = "1..=100 events")]
    fn an_empty_body_is_a_programming_error() {
        webhook_body(0, &[]);
    }
}
