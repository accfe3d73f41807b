//! The Pusher Channels protocol on a shard: what a `/app/{key}` connection's messages do (through
//! the registry, the connection's one owner), and the signed HTTP API (`/apps/{id}/...`).
//!
//! Every decision is the sans-IO layer's (`wire::pusher`, `auth`, `api::pusher`); this module
//! only carries them out: subscribe or leave channels, queue the replies, close with the
//! documented code, publish triggers to every shard at once.
//!
//! What waits on a store (presence membership, cache channels) or on a publish (client
//! events, member changes) is queued for `super::pusher_state`, which runs it once the
//! registry is free.

use std::sync::Arc;

use bytes::Bytes;

use super::occupancy;
use super::pusher_state::PusherWork;
use super::registry::{
    ConnectionKey, PresenceSeat, Protocol, PusherConnection, Registry, SeatState,
};
use super::shard::Shard;
use super::state::{CloseRequest, LifeEvent};
use crate::api::pusher::{self as api, ApiError, ApiRoute, ChannelCounts, TriggerEvent};
use crate::apps::{App, AppStatus};
use crate::auth::rest::{RestRequest, verify_request};
use crate::channel::{AppSlot, ChannelName};
use crate::http::{ContentType, Response};
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::protocol::message::DataKind;
use crate::publication::Publication;
use crate::socket_id::SocketId;
use crate::telemetry::counters::Counter;
use crate::wire::pusher::authorize::{
    SenderSubscription, SubscriptionGrant, authorize_client_event, authorize_signin,
    authorize_subscribe,
};
use crate::wire::pusher::channel::PusherChannel;
use crate::wire::pusher::connect::parse_connect;
use crate::wire::pusher::error::{ConnectError, Reply, SubscribeError};
use crate::wire::pusher::incoming::{
    ClientEvent, ClientMessage, Signin, Subscribe, parse_client_message,
};
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
    Ok(PusherConnection::new(
        app,
        shard.next_socket_id(),
        Some(shard.shared.app_connection_ticket(app)),
        found.limits.client_event_rate_per_s,
        shard.now_ms(),
    ))
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
    shard: &Shard,
    key: ConnectionKey,
    kind: DataKind,
    payload: &[u8],
    now_ms: u64,
) {
    let Some(Protocol::Pusher(connection)) = registry.get(key).map(|c| c.protocol()) else {
        return;
    };
    let (slot, socket_id) = (connection.app, connection.socket_id);
    let Some(app) = shard.apps.get(slot).cloned() else {
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
    let sender = Sender {
        key,
        app: slot,
        socket_id,
    };
    match message {
        ClientMessage::Ping => registry.queue(key, text_frame(&outgoing::pong())),
        ClientMessage::Pong => {}
        ClientMessage::Subscribe(request) => {
            let channel = request.channel.clone();
            let reply = subscribe(registry, shard, &app, sender, &request);
            if let Err(error) = reply {
                apply_reply(registry, key, error.reply(channel.as_str()), now_ms);
            }
        }
        ClientMessage::Unsubscribe { channel } => {
            if let Some(name) = ChannelName::new(channel.as_str()) {
                if channel.kind().is_presence() {
                    registry.leave_presence(key, slot, &name);
                } else {
                    registry.unsubscribe(key, slot, &name);
                }
            }
        }
        ClientMessage::Signin(request) => signin(registry, &app, sender, &request, now_ms),
        ClientMessage::ClientEvent(event) => {
            client_event(registry, shard, &app, sender, &event, now_ms)
        }
    }
}

/// The connection a message came from.
#[derive(Debug, Clone, Copy)]
struct Sender {
    key: ConnectionKey,
    app: AppSlot,
    socket_id: SocketId,
}

/// `pusher:subscribe`: authorize, join, answer (a presence join and a cache channel's replay
/// finish in a task: they wait on the stores).
fn subscribe(
    registry: &mut Registry,
    shard: &Shard,
    app: &App,
    sender: Sender,
    request: &Subscribe,
) -> Result<(), SubscribeError> {
    let Sender {
        key,
        app: slot,
        socket_id,
    } = sender;
    let limit = registry.max_subscriptions();
    let name = ChannelName::new(request.channel.as_str())
        .expect("Pusher channel names are ringcast channel names");
    if !registry.is_subscribed(key, slot, &name) && registry.subscription_count(key) >= limit {
        return Err(SubscribeError::TooManyChannels { limit });
    }
    let signed_in = registry
        .pusher_mut(key)
        .and_then(|pusher| pusher.user.as_deref().cloned());
    let grant = authorize_subscribe(app, socket_id, request, signed_in.as_ref())?;
    let generation = registry.get(key).map_or(0, |c| c.generation());
    match grant {
        SubscriptionGrant::Channel | SubscriptionGrant::ServerToUser => {
            if registry.subscribe(key, slot, &name).is_err() {
                return Err(SubscribeError::TooManyChannels { limit });
            }
            let succeeded = outgoing::subscription_succeeded(&request.channel);
            registry.queue(key, text_frame(&succeeded));
            if request.channel.kind().is_cache() {
                let work = PusherWork::ReplayCache {
                    key,
                    generation,
                    app: slot,
                    channel: request.channel.clone(),
                };
                if shard.pusher_work.push(work).is_err() {
                    registry.stats.count(Counter::PusherWorkRefused);
                }
            }
            Ok(())
        }
        SubscriptionGrant::Presence(member) => {
            let Some(pusher) = registry.pusher_mut(key) else {
                return Ok(());
            };
            if pusher.seat(&name).is_some() {
                // Already a member (or joining): pusher-js never asks twice; nothing changes.
                return Ok(());
            }
            pusher.seats.push(PresenceSeat {
                channel: name.clone(),
                user_id: Arc::from(member.user_id.as_str()),
                state: SeatState::Joining,
                held: Vec::new(),
            });
            if registry.subscribe(key, slot, &name).is_err() {
                registry.leave_presence(key, slot, &name);
                return Err(SubscribeError::TooManyChannels { limit });
            }
            let work = PusherWork::Join {
                key,
                generation,
                socket_id,
                app: slot,
                channel: request.channel.clone(),
                member,
            };
            if shard.pusher_work.push(work).is_err() {
                registry.stats.count(Counter::PusherWorkRefused);
                registry.leave_presence(key, slot, &name);
                return Err(SubscribeError::TooManyChannels { limit });
            }
            Ok(())
        }
    }
}

/// `pusher:signin`: the connection becomes the user's; it joins `#server-to-user-{id}` (so
/// events sent to the user and `terminate_connections` reach it) and is told
/// `pusher:signin_success`.
fn signin(registry: &mut Registry, app: &App, sender: Sender, request: &Signin, now_ms: u64) {
    let Sender {
        key,
        app: slot,
        socket_id,
    } = sender;
    let Some(pusher) = registry.pusher_mut(key) else {
        return;
    };
    let user = match authorize_signin(app, socket_id, request, pusher.user.as_deref()) {
        Ok(user) => user,
        Err(error) => return apply_reply(registry, key, error.reply(), now_ms),
    };
    let success = outgoing::signin_success(&user.user_data);
    let user_channel = PusherChannel::server_to_user(&user.id)
        .ok()
        .and_then(|channel| ChannelName::new(channel.as_str()));
    pusher.user = Some(Box::new(user));
    if let Some(name) = user_channel
        && registry.subscribe(key, slot, &name).is_err()
    {
        log::debug!("signin: no room for the user's channel {name}");
    }
    registry.queue(key, text_frame(&success));
}

/// A `client-` event: checked by the sans-IO rules, then relayed to the channel's other
/// subscribers on every node (never back to the sender), with the sender's `user_id` on a
/// presence channel.
fn client_event(
    registry: &mut Registry,
    shard: &Shard,
    app: &App,
    sender: Sender,
    event: &ClientEvent<'_>,
    now_ms: u64,
) {
    let Sender {
        key,
        app: slot,
        socket_id,
    } = sender;
    let name = ChannelName::new(event.channel.as_str())
        .expect("Pusher channel names are ringcast channel names");
    let subscription = if registry.is_subscribed(key, slot, &name) {
        SenderSubscription::Subscribed
    } else {
        SenderSubscription::NotSubscribed
    };
    let Some(pusher) = registry.pusher_mut(key) else {
        return;
    };
    let decided = authorize_client_event(
        &app.limits,
        event,
        subscription,
        &mut pusher.client_events,
        now_ms,
    );
    if let Err(error) = decided {
        registry.stats.count(Counter::ClientEventsRefused);
        return apply_reply(registry, key, error.reply(), now_ms);
    }
    let user_id = if event.channel.kind().is_presence() {
        pusher.seat(&name).map(|seat| seat.user_id.to_string())
    } else {
        None
    };
    let data = event.data_as_str().into_owned();
    shard.webhook_client_event(
        slot,
        &event.channel,
        &event.event,
        &data,
        socket_id,
        user_id.as_deref(),
    );
    let mut publication = Publication::event(
        slot,
        name,
        Arc::from(event.event.as_str()),
        Bytes::from(data.into_bytes()),
        Some(socket_id),
    );
    publication.set_user_id(user_id);
    if shard
        .pusher_work
        .push(PusherWork::Publish(Box::new(publication)))
        .is_err()
    {
        registry.stats.count(Counter::PusherWorkRefused);
        registry.stats.count(Counter::ClientEventsDropped);
        return;
    }
    registry.stats.count(Counter::ClientEvents);
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
            let mut answered = Vec::with_capacity(channels.len());
            for (name, count) in channels {
                let user_count = if query.info.contains(api::InfoAttribute::UserCount) {
                    user_count(shard, slot, &name).await?
                } else {
                    None
                };
                answered.push((name, counts(count, user_count)));
            }
            Ok(api::channels_answer(
                &query,
                answered
                    .iter()
                    .map(|(name, counts)| (name.as_str(), *counts)),
            ))
        }
        ApiRoute::Channel(channel) => {
            let info = api::parse_channel_query(&channel, &signed)?;
            let name = ChannelName::new(channel.as_str())
                .expect("Pusher channel names are ringcast channel names");
            let count = occupancy::subscription_count(shard, slot, &name)
                .await
                .map_err(other_nodes_unavailable)?;
            let users = user_count(shard, slot, &name).await?;
            Ok(api::channel_answer(info, counts(count, users)))
        }
        ApiRoute::ChannelUsers(channel) => {
            let name = ChannelName::new(channel.as_str())
                .expect("Pusher channel names are ringcast channel names");
            let members = shard
                .presence_members(slot, &name)
                .await
                .map_err(presence_unavailable)?;
            Ok(api::users_answer(
                members.iter().map(|member| member.user_id.as_str()),
            ))
        }
        ApiRoute::TerminateUserConnections { user_id } => {
            // Every connection of the user joined `#server-to-user-{id}` at sign-in; the
            // termination travels like an event to that channel, on every node.
            let channel = PusherChannel::server_to_user(&user_id)
                .ok()
                .and_then(|channel| ChannelName::new(channel.as_str()))
                .ok_or_else(|| {
                    ApiError::Unavailable(format!("user id {user_id:?} cannot name a channel"))
                })?;
            let publication = Publication::event(
                slot,
                channel,
                Arc::from(outgoing::TERMINATE_EVENT),
                Bytes::new(),
                None,
            );
            shard
                .publish_event(publication)
                .await
                .map_err(ApiError::Unavailable)?;
            Ok(Bytes::from_static(api::EMPTY_ANSWER))
        }
    }
}

/// A presence channel's distinct users on every node (`None` for other channels).
async fn user_count(
    shard: &Shard,
    slot: AppSlot,
    name: &ChannelName,
) -> Result<Option<u64>, ApiError> {
    let presence =
        PusherChannel::parse(name.as_str()).is_ok_and(|channel| channel.kind().is_presence());
    if !presence {
        return Ok(None);
    }
    let members = shard
        .presence_members(slot, name)
        .await
        .map_err(presence_unavailable)?;
    Ok(Some(members.len() as u64))
}

/// The membership store could not answer: 503 rather than a wrong list.
fn presence_unavailable(error: String) -> ApiError {
    ApiError::Unavailable(format!("presence membership is unavailable: {error}"))
}

/// A channel query Redis could not complete: 503 rather than a count that leaves out the other
/// nodes.
fn other_nodes_unavailable(error: String) -> ApiError {
    ApiError::Unavailable(format!(
        "the other nodes' channel counts are unavailable: {error}"
    ))
}

fn counts(subscription_count: u64, user_count: Option<u64>) -> ChannelCounts {
    ChannelCounts {
        subscription_count,
        user_count,
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
    for publication in &publications {
        shard.keep_if_cached(publication).await;
    }
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
    let mut answers = Vec::with_capacity(channels.len());
    for channel in channels {
        let name = ChannelName::new(channel.as_str())
            .expect("Pusher channel names are ringcast channel names");
        // The event went out already: an answer without the other nodes' counts (counted as
        // `redis_occupancy_failures`) is better than an error the backend would retry.
        let count = match occupancy::subscription_count(shard, slot, &name).await {
            Ok(count) => count,
            Err(_) => shard.subscription_count(slot, &name).await,
        };
        let users = user_count(shard, slot, &name).await.unwrap_or(None);
        answers.push((channel, counts(count, users)));
    }
    Ok(answers)
}

/// Seconds since the Unix epoch (REST `auth_timestamp`).
fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
