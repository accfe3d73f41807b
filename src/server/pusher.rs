//! The Pusher Channels protocol on a shard: what a `/app/{key}` connection's messages do (through
//! the registry, the connection's one owner), and the signed HTTP API (`/apps/{id}/...`).
//!
//! Every decision is the sans-IO layer's (`wire::pusher`, `auth`, `api::pusher`); this module
//! only carries them out: subscribe or leave channels, queue the replies, close with the
//! documented code, publish triggers to every shard at once.
//!
//! Deliberately not here yet: presence channels, client events, user sign-in, cache channels and
//! webhooks (they answer as the docs say for a feature that is off).

use std::sync::Arc;

use bytes::Bytes;

use super::occupancy;
use super::registry::{ConnectionKey, Protocol, PusherConnection, Registry};
use super::shard::Shard;
use super::state::{CloseRequest, LifeEvent};
use crate::api::pusher::{self as api, ApiError, ApiRoute, ChannelCounts, TriggerEvent};
use crate::apps::{App, AppStatus, Apps};
use crate::auth::rest::{RestRequest, verify_request};
use crate::channel::{AppSlot, ChannelName};
use crate::http::{ContentType, Response};
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::protocol::message::DataKind;
use crate::publication::Publication;
use crate::socket_id::SocketId;
use crate::telemetry::counters::Counter;
use crate::wire::pusher::authorize::{SubscriptionGrant, authorize_subscribe};
use crate::wire::pusher::connect::parse_connect;
use crate::wire::pusher::error::{ConnectError, Reply, SubscribeError, SubscriptionErrorType};
use crate::wire::pusher::incoming::{ClientMessage, parse_client_message};
use crate::wire::pusher::outgoing;

/// Most channels a `GET /channels` answer lists (the answer grows with them).
const CHANNELS_ANSWER_MAX: usize = 10_000;

/// A Pusher client that may connect: its namespace and socket id.
pub fn admit(shard: &Shard, path: &str, query: &str) -> Result<PusherConnection, ConnectError> {
    let request = parse_connect(path, query)?;
    let (app, found) = shard
        .apps
        .slot_by_key(request.app_key)
        .ok_or(ConnectError::AppNotFound)?;
    if found.status == AppStatus::Disabled {
        return Err(ConnectError::AppDisabled);
    }
    let limit = found.limits.max_connections;
    if limit > 0 && shard.shared.app_connections(app) >= u64::from(limit) {
        return Err(ConnectError::OverConnectionQuota);
    }
    Ok(PusherConnection {
        app,
        socket_id: shard.next_socket_id(),
        ticket: Some(shard.shared.app_connection_ticket(app)),
    })
}

/// The first frame of an admitted connection.
pub fn connection_established(shard: &Shard, connection: &PusherConnection) -> Bytes {
    let timeout_s = shard.config.pusher_activity_timeout.as_secs() as u32;
    text_frame(&outgoing::connection_established(
        connection.socket_id,
        timeout_s,
    ))
}

/// A JSON message as a text frame.
fn text_frame(json: &[u8]) -> Bytes {
    encode_server_frame(OpCode::Text, json)
}

/// Carries out a refusal: the message, and the close when the reply is one.
pub fn apply_reply(registry: &mut Registry, key: ConnectionKey, reply: Reply, now_ms: u64) {
    match reply {
        Reply::Message(json) => registry.queue(key, text_frame(&json)),
        Reply::Close { code, message } => {
            registry.queue(key, text_frame(&message));
            let request = CloseRequest::Application {
                code: code.code(),
                reason: code.reason(),
            };
            registry.life(key, LifeEvent::Request(request), now_ms);
        }
    }
}

/// Handles one complete data message from a Pusher connection.
pub fn handle_message(
    registry: &mut Registry,
    apps: &Apps,
    key: ConnectionKey,
    kind: DataKind,
    payload: &[u8],
    now_ms: u64,
) {
    let Some(Protocol::Pusher(connection)) = registry.get(key).map(|c| c.protocol()) else {
        return;
    };
    let (slot, socket_id) = (connection.app, connection.socket_id);
    let Some(app) = apps.get(slot).cloned() else {
        return;
    };
    let text = match (kind, std::str::from_utf8(payload)) {
        (DataKind::Text, Ok(text)) => text,
        _ => {
            let error = outgoing::error(None, "Pusher messages are JSON text");
            return registry.queue(key, text_frame(&error));
        }
    };
    let message = match parse_client_message(text, app.limits.max_event_payload_bytes * 2) {
        Ok(message) => message,
        Err(error) => return apply_reply(registry, key, error.reply(), now_ms),
    };
    match message {
        ClientMessage::Ping => registry.queue(key, text_frame(&outgoing::pong())),
        ClientMessage::Pong => {}
        ClientMessage::Subscribe(request) => {
            let channel = request.channel.clone();
            let reply = subscribe(registry, &app, slot, socket_id, key, &request);
            if let Err(error) = reply {
                apply_reply(registry, key, error.reply(channel.as_str()), now_ms);
            }
        }
        ClientMessage::Unsubscribe { channel } => {
            if let Some(name) = ChannelName::new(channel.as_str()) {
                registry.unsubscribe(key, slot, &name);
            }
        }
        ClientMessage::Signin(_) => {
            let error = outgoing::error(None, "user sign-in is not available on this server");
            registry.queue(key, text_frame(&error));
        }
        ClientMessage::ClientEvent(_) => {
            let reply = crate::wire::pusher::error::ClientEventError::Disabled.reply();
            apply_reply(registry, key, reply, now_ms);
        }
    }
}

/// `pusher:subscribe`: authorize, join, answer.
fn subscribe(
    registry: &mut Registry,
    app: &App,
    slot: AppSlot,
    socket_id: SocketId,
    key: ConnectionKey,
    request: &crate::wire::pusher::incoming::Subscribe,
) -> Result<(), SubscribeError> {
    let limit = registry.max_subscriptions();
    let name = ChannelName::new(request.channel.as_str())
        .expect("Pusher channel names are ringcast channel names");
    if !registry.is_subscribed(key, slot, &name) && registry.subscription_count(key) >= limit {
        return Err(SubscribeError::TooManyChannels { limit });
    }
    match authorize_subscribe(app, socket_id, request, None)? {
        SubscriptionGrant::Channel => {
            if registry.subscribe(key, slot, &name).is_err() {
                return Err(SubscribeError::TooManyChannels { limit });
            }
            let succeeded = outgoing::subscription_succeeded(&request.channel);
            registry.queue(key, text_frame(&succeeded));
            Ok(())
        }
        SubscriptionGrant::Presence(_) | SubscriptionGrant::ServerToUser => {
            let error = outgoing::subscription_error(
                request.channel.as_str(),
                SubscriptionErrorType::InvalidChannel,
                "presence and user channels are not available on this server",
                400,
            );
            registry.queue(key, text_frame(&error));
            Ok(())
        }
    }
}

/// The signed HTTP API: `/apps/{id}/...`. `body` is the whole request body.
pub async fn serve_api(
    shard: &Shard,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response {
    match api_answer(shard, method, path, query, body).await {
        Ok(answer) => Response {
            status: 200,
            content_type: ContentType::Json,
            body: answer.to_vec(),
        },
        Err(error) => {
            shard
                .registry
                .borrow_mut()
                .stats
                .count_http_rejection(error.status());
            Response {
                status: error.status(),
                content_type: ContentType::Json,
                body: error.body().to_vec(),
            }
        }
    }
}

async fn api_answer(
    shard: &Shard,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    let (app_id, route) = api::route(method, path)?;
    let (slot, app) = shard.apps.slot_by_id(app_id).ok_or(ApiError::UnknownApp)?;
    let app = app.clone();
    if app.status == AppStatus::Disabled {
        return Err(ApiError::AppDisabled);
    }
    let request = RestRequest {
        method,
        path,
        query,
        body,
    };
    let signed = verify_request(&app, &request, unix_now_s()).map_err(ApiError::Auth)?;
    match route {
        ApiRoute::TriggerEvent => {
            let event = api::parse_trigger(body, &app.limits)?;
            let counts = trigger(shard, slot, vec![event.clone()]).await?;
            Ok(api::trigger_answer(event.info, &counts))
        }
        ApiRoute::TriggerBatch => {
            let events = api::parse_batch(body, &app.limits)?;
            let infos: Vec<_> = events.iter().map(|event| event.info).collect();
            let counts = trigger(shard, slot, events).await?;
            let answers: Vec<_> = infos
                .into_iter()
                .zip(counts)
                .map(|(info, (_, counts))| (info, counts))
                .collect();
            Ok(api::batch_answer(&answers))
        }
        ApiRoute::Channels => {
            let query = api::parse_channels_query(&signed)?;
            let prefix = query.filter_by_prefix.clone().unwrap_or_default();
            let channels = occupancy::channel_counts(shard, slot, &prefix, CHANNELS_ANSWER_MAX)
                .await
                .map_err(other_nodes_unavailable)?;
            Ok(api::channels_answer(
                &query,
                channels
                    .iter()
                    .map(|(name, count)| (name.as_str(), counts_of(*count))),
            ))
        }
        ApiRoute::Channel(channel) => {
            let info = api::parse_channel_query(&channel, &signed)?;
            let name = ChannelName::new(channel.as_str())
                .expect("Pusher channel names are ringcast channel names");
            let count = occupancy::subscription_count(shard, slot, &name)
                .await
                .map_err(other_nodes_unavailable)?;
            Ok(api::channel_answer(info, counts_of(count)))
        }
        // No presence channel is ever occupied here yet; no user is ever signed in.
        ApiRoute::ChannelUsers(_) => Ok(api::users_answer(std::iter::empty())),
        ApiRoute::TerminateUserConnections { .. } => Ok(Bytes::from_static(api::EMPTY_ANSWER)),
    }
}

/// A channel query Redis could not complete: 503 rather than a count that leaves out the other
/// nodes.
fn other_nodes_unavailable(error: String) -> ApiError {
    ApiError::Unavailable(format!(
        "the other nodes' channel counts are unavailable: {error}"
    ))
}

fn counts_of(subscription_count: u64) -> ChannelCounts {
    ChannelCounts {
        subscription_count,
        user_count: None,
    }
}

/// Publishes `events` (each on its channels) to every shard at once, or nowhere; returns the
/// channels with their counts after the publish (for `info`).
async fn trigger(
    shard: &Shard,
    slot: AppSlot,
    events: Vec<TriggerEvent>,
) -> Result<Vec<(crate::wire::pusher::channel::PusherChannel, ChannelCounts)>, ApiError> {
    let mut publications = Vec::new();
    let mut channels = Vec::new();
    for event in events {
        let name: Arc<str> = Arc::from(event.name.as_str());
        let data = Bytes::from(event.data.into_bytes());
        for channel in event.channels {
            let channel_name = ChannelName::new(channel.as_str())
                .expect("Pusher channel names are ringcast channel names");
            publications.push(Publication::event(
                slot,
                channel_name,
                name.clone(),
                data.clone(),
                event.socket_id,
            ));
            channels.push(channel);
        }
    }
    shard
        .registry
        .borrow_mut()
        .stats
        .add(Counter::PublishedHttp, publications.len() as u64);
    let accepted = if let Some(link) = &shard.redis {
        let mut result = Ok(());
        for publication in publications {
            if let Err(error) = shard
                .publish_publication_through_redis(link, publication)
                .await
            {
                result = Err(error);
                break;
            }
        }
        result.map_err(ApiError::Unavailable)
    } else {
        shard.publish_many(publications).await.map_err(|refused| {
            ApiError::Unavailable(format!(
                "{} shards could not take the event in time; it was sent nowhere",
                refused.len()
            ))
        })
    };
    accepted?;
    let mut counts = Vec::with_capacity(channels.len());
    for channel in channels {
        let name = ChannelName::new(channel.as_str())
            .expect("Pusher channel names are ringcast channel names");
        // The event went out already: an answer without the other nodes' counts (counted as
        // `redis_occupancy_failures`) is better than an error the backend would retry.
        let count = match occupancy::subscription_count(shard, slot, &name).await {
            Ok(count) => count,
            Err(_) => shard.subscription_count(slot, &name).await,
        };
        counts.push((channel, counts_of(count)));
    }
    Ok(counts)
}

/// Seconds since the Unix epoch (REST `auth_timestamp`).
fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
