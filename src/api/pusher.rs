//! The Pusher HTTP API (rest-api.md), sans-IO: routes, request bodies, answers, and one map
//! from every refusal to its status and JSON body.
//!
//! Routes (all under `/apps/{app_id}`):
//! - `POST /events`: "Triggers an event on one or more channels" (`name`, `data`, `channel` or
//!   `channels` "limited to 100 channels", `socket_id`, `info`);
//! - `POST /batch_events`: "Triggers multiple events in a single call (up to 10 per call)";
//! - `GET /channels`: occupied channels, `filter_by_prefix`, `info`;
//! - `GET /channels/{channel}`: `occupied`, `user_count`, `subscription_count`;
//! - `GET /channels/{channel}/users`: the user ids of a presence channel;
//! - `POST /users/{user_id}/terminate_connections`.
//!
//! A request is handled in this order, each step answering with its [`ApiError`]:
//! 1. [`route`] (404, 405; 400 for an invalid channel name);
//! 2. the application by id (`Apps::by_id`: [`ApiError::UnknownApp`] 404), its status
//!    ([`ApiError::AppDisabled`] 403);
//! 3. the signature (`auth::rest::verify_request`: [`ApiError::Auth`] 401 or 400);
//! 4. the body or query ([`parse_trigger`], [`parse_batch`], [`parse_channels_query`],
//!    [`parse_channel_query`]: 400, 413 for an event over `max_event_payload_bytes`: "If you
//!    attempt to POST an event with a larger data parameter, you will receive a 413 error");
//! 5. the answer ([`trigger_answer`], [`batch_answer`], [`channels_answer`],
//!    [`channel_answer`], [`users_answer`], [`EMPTY_ANSWER`]), status 200, `application/json`.
//!
//! Errors are answered `{"error": "<message>"}` (rest-api.md: "400: Error: details in
//! response body", "401: Authentication error: response body will contain an explanation",
//! "403: Forbidden: app disabled or over message quota").
//!
//! Deliberately not here: counting subscribers and members (the server/broker supplies
//! [`ChannelCounts`]), delivering events, the HTTP head (`http.rs`).

use std::collections::BTreeMap;

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::apps::AppLimits;
use crate::auth::rest::{RestAuthError, SignedQuery};
use crate::wire::pusher::channel::{ChannelNameError, PusherChannel};
use crate::wire::pusher::incoming::starts_object;
use crate::wire::pusher::socket_id::SocketId;

/// The path prefix of every API route.
pub const API_PATH_PREFIX: &str = "/apps/";
/// The answer of a trigger without `info` and of `terminate_connections`: "Response is an
/// empty JSON hash."
pub const EMPTY_ANSWER: &[u8] = b"{}";
/// Most attributes an `info` list may name.
pub const MAX_INFO_ATTRIBUTES: usize = 8;
/// Longest user id in a `terminate_connections` path, in bytes.
pub const MAX_PATH_USER_ID_BYTES: usize = 1024;

/// What an API request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// `POST /apps/{id}/events`.
    TriggerEvent,
    /// `POST /apps/{id}/batch_events`.
    TriggerBatch,
    /// `GET /apps/{id}/channels`.
    Channels,
    /// `GET /apps/{id}/channels/{channel}`.
    Channel(PusherChannel),
    /// `GET /apps/{id}/channels/{channel}/users` (a presence channel).
    ChannelUsers(PusherChannel),
    /// `POST /apps/{id}/users/{user_id}/terminate_connections`.
    TerminateUserConnections {
        /// The user whose connections close (4009 on every node).
        user_id: String,
    },
}

/// Why an API request was refused. One variant per rule; [`ApiError::status`] is the only
/// status mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Every shard (or Redis) could not take the event in time: it was sent nowhere (503).
    #[error("Service unavailable: {0}")]
    Unavailable(String),
    /// No such route.
    #[error("Not found")]
    NotFound,
    /// The route exists for another method.
    #[error("Method not allowed (allowed: {allow})")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// No application has this id (also: no application configured).
    #[error("Unknown app")]
    UnknownApp,
    /// rest-api.md, 403: "Forbidden: app disabled".
    #[error("App disabled")]
    AppDisabled,
    /// The signature check failed.
    #[error("{0}")]
    Auth(#[from] RestAuthError),
    /// The body is not the documented JSON object.
    #[error("Invalid JSON body: {0}")]
    InvalidJson(String),
    /// A required field is missing.
    #[error("Missing required field: {0}")]
    MissingField(&'static str),
    /// An event name is empty or longer than `max_event_name_bytes`.
    #[error("Invalid event name: must be 1 to {limit_bytes} bytes")]
    InvalidEventName {
        /// `max_event_name_bytes`.
        limit_bytes: usize,
    },
    /// `pusher:` and `pusher_internal:` events are the protocol's own.
    #[error("Event name {0:?} is reserved")]
    ReservedEventName(String),
    /// Both `channel` and `channels`.
    #[error("Give either channel or channels, not both")]
    ChannelAndChannels,
    /// rest-api.md: `channels` is "limited to 100 channels".
    #[error("Too many channels: {count}, at most {limit}")]
    TooManyChannels {
        /// How many were given.
        count: usize,
        /// `max_channels_per_event`.
        limit: usize,
    },
    /// A channel name is invalid.
    #[error("Invalid channel {channel:?}: {error}")]
    InvalidChannel {
        /// The name as given.
        channel: String,
        /// Which rule it breaks.
        error: ChannelNameError,
    },
    /// `socket_id` does not match `^\d+\.\d+$`.
    #[error("Invalid socket_id: {0:?}")]
    InvalidSocketId(String),
    /// rest-api.md: "The event data should not be larger than 10KB ... you will receive a 413".
    #[error("Payload too large: event data of {length_bytes} bytes exceeds {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The data's length.
        length_bytes: usize,
        /// `max_event_payload_bytes`.
        limit_bytes: usize,
    },
    /// An empty `batch`.
    #[error("batch is empty")]
    EmptyBatch,
    /// rest-api.md: "up to 10 per call".
    #[error("Batch too large: {count} events, at most {limit}")]
    TooManyBatchEvents {
        /// How many were given.
        count: usize,
        /// `max_batch_events`.
        limit: usize,
    },
    /// `info` names something other than `user_count` and `subscription_count`.
    #[error("Unknown info attribute: {0:?}")]
    UnknownInfoAttribute(String),
    /// rest-api.md: "If an attribute such as `user_count` is requested, and the request is not
    /// limited to presence channels, the API will return an error (400 code)".
    #[error("user_count is only available for presence channels")]
    UserCountNotAvailable,
    /// rest-api.md, GET users: "Only presence channels allow this functionality. If you send
    /// this request to any other type of channel, you will get a 400 HTTP code."
    #[error("Users are only available for presence channels")]
    NotPresenceChannel,
    /// An empty or over-long user id in `terminate_connections`.
    #[error("Invalid user id")]
    InvalidUserId,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::NotFound | ApiError::UnknownApp => 404,
            ApiError::Unavailable(_) => 503,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::AppDisabled => 403,
            ApiError::Auth(error) => error.status(),
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::InvalidJson(_)
            | ApiError::MissingField(_)
            | ApiError::InvalidEventName { .. }
            | ApiError::ReservedEventName(_)
            | ApiError::ChannelAndChannels
            | ApiError::TooManyChannels { .. }
            | ApiError::InvalidChannel { .. }
            | ApiError::InvalidSocketId(_)
            | ApiError::EmptyBatch
            | ApiError::TooManyBatchEvents { .. }
            | ApiError::UnknownInfoAttribute(_)
            | ApiError::UserCountNotAvailable
            | ApiError::NotPresenceChannel
            | ApiError::InvalidUserId => 400,
        }
    }

    /// The JSON body: `{"error":"<message>"}`.
    pub fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        to_bytes(&Body {
            error: self.to_string(),
        })
    }
}

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(
        serde_json::to_vec(value).expect("serialising strings, numbers and maps cannot fail"),
    )
}

/// Maps a method and path (without query) to `(app_id, route)`.
pub fn route<'a>(method: &str, path: &'a str) -> Result<(&'a str, ApiRoute), ApiError> {
    let rest = path
        .strip_prefix(API_PATH_PREFIX)
        .ok_or(ApiError::NotFound)?;
    let mut segments = rest.split('/');
    let app_id = segments
        .next()
        .filter(|id| !id.is_empty())
        .ok_or(ApiError::NotFound)?;
    let parts: Vec<&str> = segments.by_ref().take(4).collect();
    if segments.next().is_some() {
        return Err(ApiError::NotFound);
    }
    let (route, allow) = match parts.as_slice() {
        ["events"] => (ApiRoute::TriggerEvent, "POST"),
        ["batch_events"] => (ApiRoute::TriggerBatch, "POST"),
        ["channels"] => (ApiRoute::Channels, "GET"),
        ["channels", name] => (ApiRoute::Channel(path_channel(name)?), "GET"),
        ["channels", name, "users"] => {
            let channel = path_channel(name)?;
            if !channel.kind().is_presence() {
                return Err(ApiError::NotPresenceChannel);
            }
            (ApiRoute::ChannelUsers(channel), "GET")
        }
        ["users", user_id, "terminate_connections"] => {
            let user_id = percent_decode_str(user_id).decode_utf8_lossy().into_owned();
            if user_id.is_empty() || user_id.len() > MAX_PATH_USER_ID_BYTES {
                return Err(ApiError::InvalidUserId);
            }
            (ApiRoute::TerminateUserConnections { user_id }, "POST")
        }
        _ => return Err(ApiError::NotFound),
    };
    if !method.eq_ignore_ascii_case(allow) {
        return Err(ApiError::MethodNotAllowed { allow });
    }
    Ok((app_id, route))
}

fn path_channel(segment: &str) -> Result<PusherChannel, ApiError> {
    let name = percent_decode_str(segment).decode_utf8_lossy();
    PusherChannel::parse(&name).map_err(|error| ApiError::InvalidChannel {
        channel: name.into_owned(),
        error,
    })
}

/// An `info` attribute (rest-api.md, "Available info attributes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoAttribute {
    /// "Number of distinct users currently subscribed" (presence channels).
    UserCount,
    /// "Number of connections currently subscribed".
    SubscriptionCount,
}

impl InfoAttribute {
    fn bit(self) -> u8 {
        match self {
            InfoAttribute::UserCount => 1,
            InfoAttribute::SubscriptionCount => 2,
        }
    }
}

/// The attributes an `info` parameter asks for (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoAttributes(u8);

impl InfoAttributes {
    /// Parses "A comma-separated list of attributes".
    pub fn parse(text: &str) -> Result<InfoAttributes, ApiError> {
        let mut bits = 0;
        // Bounded: at most MAX_INFO_ATTRIBUTES + 1 pieces are looked at.
        for (index, piece) in text.split(',').enumerate() {
            let piece = piece.trim();
            if index == MAX_INFO_ATTRIBUTES {
                return Err(ApiError::UnknownInfoAttribute(piece.to_string()));
            }
            bits |= match piece {
                "" => 0,
                "user_count" => InfoAttribute::UserCount.bit(),
                "subscription_count" => InfoAttribute::SubscriptionCount.bit(),
                other => return Err(ApiError::UnknownInfoAttribute(other.to_string())),
            };
        }
        Ok(InfoAttributes(bits))
    }

    /// Exactly `attributes`.
    pub fn of(attributes: &[InfoAttribute]) -> InfoAttributes {
        InfoAttributes(attributes.iter().fold(0, |bits, a| bits | a.bit()))
    }

    /// Is `attribute` asked for?
    pub fn contains(self, attribute: InfoAttribute) -> bool {
        self.0 & attribute.bit() != 0
    }

    /// Nothing asked for?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The counts of one channel, as the server knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelCounts {
    /// Connections subscribed.
    pub subscription_count: u64,
    /// Distinct users, for presence channels (`None` for the others).
    pub user_count: Option<u64>,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerEvent {
    /// Event name.
    pub name: String,
    /// The data string, delivered as-is.
    pub data: String,
    /// Distinct channels, in request order.
    pub channels: Vec<PusherChannel>,
    /// The connection not to deliver to.
    pub socket_id: Option<SocketId>,
    /// The counts the answer must carry.
    pub info: InfoAttributes,
}

/// One event in a `POST /events` body or a `batch` entry.
#[derive(Deserialize)]
struct EventBody<'a> {
    /// `name`.
    #[serde(default)]
    name: Option<String>,
    /// `data`: a string per the docs; other JSON is taken as its text.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    /// `channel`.
    #[serde(default)]
    channel: Option<String>,
    /// `channels`.
    #[serde(default)]
    channels: Option<Vec<String>>,
    /// `socket_id`.
    #[serde(default)]
    socket_id: Option<String>,
    /// `info`.
    #[serde(default)]
    info: Option<String>,
}

/// `{"batch": [...]}`.
#[derive(Deserialize)]
struct BatchBody<'a> {
    /// `batch`.
    #[serde(default, borrow)]
    batch: Option<Vec<EventBody<'a>>>,
}

fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::InvalidJson("not UTF-8".into()))?;
    if !starts_object(text) {
        return Err(ApiError::InvalidJson("expected a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|error| ApiError::InvalidJson(error.to_string()))
}

/// Parses and checks a `POST /events` body against the application's limits.
pub fn parse_trigger(body: &[u8], limits: &AppLimits) -> Result<TriggerEvent, ApiError> {
    let event: EventBody<'_> = parse_object(body)?;
    let names = match (event.channel.as_ref(), event.channels.as_ref()) {
        (Some(_), Some(_)) => return Err(ApiError::ChannelAndChannels),
        (Some(channel), None) => std::slice::from_ref(channel),
        (None, Some(channels)) => channels.as_slice(),
        (None, None) => return Err(ApiError::MissingField("channels")),
    };
    if names.is_empty() {
        return Err(ApiError::MissingField("channels"));
    }
    if names.len() > limits.max_channels_per_event {
        return Err(ApiError::TooManyChannels {
            count: names.len(),
            limit: limits.max_channels_per_event,
        });
    }
    let channels = distinct_channels(names)?;
    check_event(event, channels, limits)
}

/// Parses and checks a `POST /batch_events` body: each entry has one `channel`.
pub fn parse_batch(body: &[u8], limits: &AppLimits) -> Result<Vec<TriggerEvent>, ApiError> {
    let batch: BatchBody<'_> = parse_object(body)?;
    let events = batch.batch.ok_or(ApiError::MissingField("batch"))?;
    if events.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if events.len() > limits.max_batch_events {
        return Err(ApiError::TooManyBatchEvents {
            count: events.len(),
            limit: limits.max_batch_events,
        });
    }
    events
        .into_iter()
        .map(|event| {
            let name = event
                .channel
                .as_deref()
                .ok_or(ApiError::MissingField("channel"))?;
            let channel = parse_channel(name)?;
            check_event(event, vec![channel], limits)
        })
        .collect()
}

fn parse_channel(name: &str) -> Result<PusherChannel, ApiError> {
    PusherChannel::parse(name).map_err(|error| ApiError::InvalidChannel {
        channel: name.to_string(),
        error,
    })
}

fn distinct_channels(names: &[String]) -> Result<Vec<PusherChannel>, ApiError> {
    let mut channels: Vec<PusherChannel> = Vec::with_capacity(names.len());
    // Bounded: at most max_channels_per_event (<= 1000) names, checked by the caller.
    for name in names {
        let channel = parse_channel(name)?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    Ok(channels)
}

fn check_event(
    event: EventBody<'_>,
    channels: Vec<PusherChannel>,
    limits: &AppLimits,
) -> Result<TriggerEvent, ApiError> {
    let name = event.name.ok_or(ApiError::MissingField("name"))?;
    if name.is_empty() || name.len() > limits.max_event_name_bytes {
        return Err(ApiError::InvalidEventName {
            limit_bytes: limits.max_event_name_bytes,
        });
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(ApiError::ReservedEventName(name));
    }
    let raw = event.data.ok_or(ApiError::MissingField("data"))?;
    let data = if raw.get().starts_with('"') {
        serde_json::from_str::<String>(raw.get())
            .map_err(|error| ApiError::InvalidJson(error.to_string()))?
    } else {
        raw.get().to_string()
    };
    if data.len() > limits.max_event_payload_bytes {
        return Err(ApiError::PayloadTooLarge {
            length_bytes: data.len(),
            limit_bytes: limits.max_event_payload_bytes,
        });
    }
    let socket_id = event
        .socket_id
        .map(|text| SocketId::parse(&text).map_err(|_| ApiError::InvalidSocketId(text)))
        .transpose()?;
    let info = match event.info {
        Some(text) => InfoAttributes::parse(&text)?,
        None => InfoAttributes::default(),
    };
    Ok(TriggerEvent {
        name,
        data,
        channels,
        socket_id,
        info,
    })
}

/// The largest request body a handler needs to read for `limits`: a full batch or a trigger
/// to every allowed channel, with data that escapes to twice its size (quotes), plus room for
/// names and fields. The HTTP layer answers 413 above it.
pub fn max_request_body_bytes(limits: &AppLimits) -> usize {
    let event_bytes = 2 * limits.max_event_payload_bytes + 2 * limits.max_event_name_bytes + 512;
    let batch_bytes = limits.max_batch_events * (event_bytes + 200);
    let trigger_bytes = event_bytes + limits.max_channels_per_event * 200;
    batch_bytes.max(trigger_bytes)
}

/// Attributes of one channel in an answer.
#[derive(Serialize)]
struct Attributes {
    /// `user_count`, presence channels only.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_count: Option<u64>,
    /// `subscription_count`.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<u64>,
}

fn attributes(info: InfoAttributes, counts: ChannelCounts) -> Attributes {
    Attributes {
        user_count: counts
            .user_count
            .filter(|_| info.contains(InfoAttribute::UserCount)),
        subscription_count: info
            .contains(InfoAttribute::SubscriptionCount)
            .then_some(counts.subscription_count),
    }
}

/// The answer to `POST /events`: `{}` without `info`, else "a hash of unique channels that
/// were triggered to": `{"channels":{"presence-foobar":{"user_count":42,
/// "subscription_count":51},"another":{"subscription_count":13}}}`.
pub fn trigger_answer(info: InfoAttributes, channels: &[(PusherChannel, ChannelCounts)]) -> Bytes {
    if info.is_empty() {
        return Bytes::from_static(EMPTY_ANSWER);
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        channels: BTreeMap<&'a str, Attributes>,
    }
    to_bytes(&Answer {
        channels: channels
            .iter()
            .map(|(channel, counts)| (channel.as_str(), attributes(info, *counts)))
            .collect(),
    })
}

/// The answer to `POST /batch_events`: `{}` when no event asked for `info`, else "The
/// attributes at index `i` will correspond to the channel that event at index `i` in the
/// request body was published to": `{"batch":[{..},{},..]}`.
pub fn batch_answer(events: &[(InfoAttributes, ChannelCounts)]) -> Bytes {
    if events.iter().all(|(info, _)| info.is_empty()) {
        return Bytes::from_static(EMPTY_ANSWER);
    }
    #[derive(Serialize)]
    struct Answer {
        batch: Vec<Attributes>,
    }
    to_bytes(&Answer {
        batch: events
            .iter()
            .map(|(info, counts)| attributes(*info, *counts))
            .collect(),
    })
}

/// `GET /channels` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelsQuery {
    /// "Filter the returned channels by a specific prefix".
    pub filter_by_prefix: Option<String>,
    /// The attributes to return for each channel.
    pub info: InfoAttributes,
}

impl ChannelsQuery {
    /// Does `channel` pass the prefix filter?
    pub fn matches(&self, channel: &str) -> bool {
        self.filter_by_prefix
            .as_deref()
            .is_none_or(|prefix| channel.starts_with(prefix))
    }
}

/// Reads `filter_by_prefix` and `info` from a verified query.
pub fn parse_channels_query(query: &SignedQuery) -> Result<ChannelsQuery, ApiError> {
    let info = match query.get("info") {
        Some(text) => InfoAttributes::parse(text)?,
        None => InfoAttributes::default(),
    };
    let filter_by_prefix = query.get("filter_by_prefix").map(str::to_string);
    let presence_only = filter_by_prefix
        .as_deref()
        .is_some_and(|prefix| prefix.starts_with("presence-"));
    if info.contains(InfoAttribute::UserCount) && !presence_only {
        return Err(ApiError::UserCountNotAvailable);
    }
    Ok(ChannelsQuery {
        filter_by_prefix,
        info,
    })
}

/// The answer to `GET /channels`: "a hash of channels mapping from channel name to a hash of
/// attributes for that channel (may be empty)", for the occupied channels that pass the
/// filter. Its size is proportional to the number of channels given.
pub fn channels_answer<'a>(
    query: &ChannelsQuery,
    channels: impl IntoIterator<Item = (&'a str, ChannelCounts)>,
) -> Bytes {
    #[derive(Serialize)]
    struct Answer<'a> {
        channels: BTreeMap<&'a str, Attributes>,
    }
    to_bytes(&Answer {
        channels: channels
            .into_iter()
            .filter(|(name, counts)| counts.subscription_count > 0 && query.matches(name))
            .map(|(name, counts)| (name, attributes(query.info, counts)))
            .collect(),
    })
}

/// Reads `info` for `GET /channels/{channel}`: "Requesting an attribute which is not
/// available for the requested channel will return an error (for example requesting a the
/// `user_count` for a public channel)".
pub fn parse_channel_query(
    channel: &PusherChannel,
    query: &SignedQuery,
) -> Result<InfoAttributes, ApiError> {
    let info = match query.get("info") {
        Some(text) => InfoAttributes::parse(text)?,
        None => InfoAttributes::default(),
    };
    if info.contains(InfoAttribute::UserCount) && !channel.kind().is_presence() {
        return Err(ApiError::UserCountNotAvailable);
    }
    Ok(info)
}

/// The answer to `GET /channels/{channel}`: "The occupied status is always reported, as well
/// as any requested attributes": `{"occupied":true,"user_count":42,"subscription_count":42}`.
pub fn channel_answer(info: InfoAttributes, counts: ChannelCounts) -> Bytes {
    #[derive(Serialize)]
    struct Answer {
        occupied: bool,
        #[serde(flatten)]
        attributes: Attributes,
    }
    to_bytes(&Answer {
        occupied: counts.subscription_count > 0,
        attributes: attributes(info, counts),
    })
}

/// The answer to `GET /channels/{channel}/users`: `{"users":[{"id":"1"},{"id":"2"}]}`.
pub fn users_answer<'a>(user_ids: impl IntoIterator<Item = &'a str>) -> Bytes {
    #[derive(Serialize)]
    struct User<'a> {
        id: &'a str,
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        users: Vec<User<'a>>,
    }
    to_bytes(&Answer {
        users: user_ids.into_iter().map(|id| User { id }).collect(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::apps::App;
    use crate::auth::rest::{RestRequest, sign_query, verify_request};

    fn limits() -> AppLimits {
        AppLimits::default()
    }

    fn json_of(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn channel(name: &str) -> PusherChannel {
        PusherChannel::parse(name).unwrap()
    }

    #[test]
    fn routes() {
        let cases = [
            ("POST", "/apps/3/events", ApiRoute::TriggerEvent),
            ("POST", "/apps/3/batch_events", ApiRoute::TriggerBatch),
            ("GET", "/apps/3/channels", ApiRoute::Channels),
            (
                "GET",
                "/apps/3/channels/presence-foobar",
                ApiRoute::Channel(channel("presence-foobar")),
            ),
            (
                "GET",
                "/apps/3/channels/presence-foobar/users",
                ApiRoute::ChannelUsers(channel("presence-foobar")),
            ),
            (
                "POST",
                "/apps/3/users/user%40example.com/terminate_connections",
                ApiRoute::TerminateUserConnections {
                    user_id: "user@example.com".into(),
                },
            ),
            (
                "GET",
                "/apps/3/channels/%23server-to-user-1",
                ApiRoute::Channel(channel("#server-to-user-1")),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), Ok(("3", expected)), "{method} {path}");
        }
    }

    #[test]
    fn route_errors() {
        for path in [
            "/apps/",
            "/apps/3",
            "/apps/3/nope",
            "/apps/3/channels/a/b",
            "/app/3/events",
            "/apps/3/events/x/y/z/w",
        ] {
            assert_eq!(route("POST", path), Err(ApiError::NotFound), "{path}");
        }
        assert_eq!(
            route("GET", "/apps/3/events"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route("POST", "/apps/3/channels"),
            Err(ApiError::MethodNotAllowed { allow: "GET" })
        );
        assert!(matches!(
            route("GET", "/apps/3/channels/a%20b"),
            Err(ApiError::InvalidChannel { .. })
        ));
        assert_eq!(
            route("GET", "/apps/3/channels/private-a/users"),
            Err(ApiError::NotPresenceChannel)
        );
        assert_eq!(
            route("POST", "/apps/3/users//terminate_connections"),
            Err(ApiError::InvalidUserId)
        );
    }

    #[test]
    fn the_docs_worked_example_end_to_end() {
        let app = App::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8").unwrap();
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
        let (app_id, target) = route("POST", "/apps/3/events").unwrap();
        assert_eq!((app_id, &target), ("3", &ApiRoute::TriggerEvent));
        let request = RestRequest {
            method: "POST",
            path: "/apps/3/events",
            query,
            body,
        };
        verify_request(&app, &request, 1_353_088_179).unwrap();
        let event = parse_trigger(body, &app.limits).unwrap();
        assert_eq!(event.name, "foo");
        assert_eq!(event.data, r#"{"some":"data"}"#);
        assert_eq!(event.channels, vec![channel("project-3")]);
        assert_eq!(event.socket_id, None);
        assert_eq!(&trigger_answer(event.info, &[])[..], b"{}");
    }

    #[test]
    fn trigger_bodies() {
        let single = parse_trigger(
            br#"{"name":"e","data":"d","channel":"a","socket_id":"1.2","info":"subscription_count"}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(single.channels, vec![channel("a")]);
        assert_eq!(single.socket_id, Some(SocketId::parse("1.2").unwrap()));
        assert!(single.info.contains(InfoAttribute::SubscriptionCount));
        let duplicates = parse_trigger(
            br#"{"name":"e","data":"d","channels":["a","b","a"]}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(duplicates.channels, vec![channel("a"), channel("b")]);
        // `data` should be a string; an object is taken as its JSON text.
        let object =
            parse_trigger(br#"{"name":"e","data":{"x":1},"channel":"a"}"#, &limits()).unwrap();
        assert_eq!(object.data, r#"{"x":1}"#);
        let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let body = json!({"name": "e", "data": "d", "channels": hundred}).to_string();
        assert_eq!(
            parse_trigger(body.as_bytes(), &limits())
                .unwrap()
                .channels
                .len(),
            100
        );
        let at_limit = json!({"name": "e", "data": "x".repeat(10240), "channel": "a"}).to_string();
        assert!(parse_trigger(at_limit.as_bytes(), &limits()).is_ok());
        assert!(at_limit.len() < max_request_body_bytes(&limits()));
    }

    #[test]
    fn trigger_errors_one_per_variant() {
        let check = |body: &str| parse_trigger(body.as_bytes(), &limits());
        for bad in ["", "[]", "{", "\"x\"", r#"{"name":1}"#] {
            assert!(
                matches!(check(bad), Err(ApiError::InvalidJson(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_trigger(&[0xff, b'{'], &limits()),
            Err(ApiError::InvalidJson(_))
        ));
        assert_eq!(
            check(r#"{"data":"d","channel":"a"}"#),
            Err(ApiError::MissingField("name"))
        );
        assert_eq!(
            check(r#"{"name":"e","channel":"a"}"#),
            Err(ApiError::MissingField("data"))
        );
        assert_eq!(
            check(r#"{"name":"e","data":"d"}"#),
            Err(ApiError::MissingField("channels"))
        );
        assert_eq!(
            check(r#"{"name":"e","data":"d","channels":[]}"#),
            Err(ApiError::MissingField("channels"))
        );
        assert_eq!(
            check(r#"{"name":"","data":"d","channel":"a"}"#),
            Err(ApiError::InvalidEventName { limit_bytes: 200 })
        );
        let long_name = json!({"name": "x".repeat(201), "data": "d", "channel": "a"}).to_string();
        assert!(matches!(
            check(&long_name),
            Err(ApiError::InvalidEventName { .. })
        ));
        assert_eq!(
            check(r#"{"name":"pusher:error","data":"d","channel":"a"}"#),
            Err(ApiError::ReservedEventName("pusher:error".into()))
        );
        assert_eq!(
            check(r#"{"name":"e","data":"d","channel":"a","channels":["b"]}"#),
            Err(ApiError::ChannelAndChannels)
        );
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        let body = json!({"name": "e", "data": "d", "channels": many}).to_string();
        assert_eq!(
            check(&body),
            Err(ApiError::TooManyChannels {
                count: 101,
                limit: 100
            })
        );
        assert!(matches!(
            check(r#"{"name":"e","data":"d","channel":"a b"}"#),
            Err(ApiError::InvalidChannel { .. })
        ));
        assert_eq!(
            check(r#"{"name":"e","data":"d","channel":"a","socket_id":"x"}"#),
            Err(ApiError::InvalidSocketId("x".into()))
        );
        let over = json!({"name": "e", "data": "x".repeat(10241), "channel": "a"}).to_string();
        let error = check(&over).unwrap_err();
        assert_eq!(
            error,
            ApiError::PayloadTooLarge {
                length_bytes: 10241,
                limit_bytes: 10240
            }
        );
        assert_eq!(error.status(), 413);
        assert_eq!(
            check(r#"{"name":"e","data":"d","channel":"a","info":"colour"}"#),
            Err(ApiError::UnknownInfoAttribute("colour".into()))
        );
    }

    #[test]
    fn batches() {
        let body = br#"{"batch":[{"channel":"a","name":"e","data":"1"},{"channel":"presence-b","name":"e","data":"2","info":"user_count"}]}"#;
        let events = parse_batch(body, &limits()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].channels, vec![channel("presence-b")]);
        let counts = ChannelCounts {
            subscription_count: 3,
            user_count: Some(2),
        };
        let answer = batch_answer(&[(events[0].info, counts), (events[1].info, counts)]);
        assert_eq!(json_of(&answer), json!({"batch": [{}, {"user_count": 2}]}));
        assert_eq!(&batch_answer(&[(events[0].info, counts)])[..], b"{}");
        assert_eq!(
            parse_batch(br#"{}"#, &limits()),
            Err(ApiError::MissingField("batch"))
        );
        assert_eq!(
            parse_batch(br#"{"batch":[]}"#, &limits()),
            Err(ApiError::EmptyBatch)
        );
        let eleven: Vec<Value> = (0..11)
            .map(|_| json!({"channel": "a", "name": "e", "data": "d"}))
            .collect();
        let body = json!({ "batch": eleven }).to_string();
        assert_eq!(
            parse_batch(body.as_bytes(), &limits()),
            Err(ApiError::TooManyBatchEvents {
                count: 11,
                limit: 10
            })
        );
        assert_eq!(
            parse_batch(
                br#"{"batch":[{"channels":["a"],"name":"e","data":"d"}]}"#,
                &limits()
            ),
            Err(ApiError::MissingField("channel"))
        );
        let big = json!({"batch": [{"channel": "a", "name": "e", "data": "x".repeat(10241)}]})
            .to_string();
        assert!(matches!(
            parse_batch(big.as_bytes(), &limits()),
            Err(ApiError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn trigger_answer_with_info_matches_the_docs_shape() {
        let info = InfoAttributes::parse("user_count,subscription_count").unwrap();
        let answer = trigger_answer(
            info,
            &[
                (
                    channel("presence-foobar"),
                    ChannelCounts {
                        subscription_count: 51,
                        user_count: Some(42),
                    },
                ),
                (
                    channel("another"),
                    ChannelCounts {
                        subscription_count: 13,
                        user_count: None,
                    },
                ),
            ],
        );
        assert_eq!(
            json_of(&answer),
            json!({"channels": {
                "presence-foobar": {"user_count": 42, "subscription_count": 51},
                "another": {"subscription_count": 13}
            }})
        );
    }

    fn signed(params: &[(&str, &str)]) -> SignedQuery {
        let app = App::new("3", "k", "s").unwrap();
        let query = sign_query(&app, "GET", "/apps/3/channels", params, b"", 100);
        let request = RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &query,
            body: b"",
        };
        verify_request(&app, &request, 100).unwrap()
    }

    #[test]
    fn channels_query_and_answer() {
        let query = parse_channels_query(&signed(&[
            ("filter_by_prefix", "presence-"),
            ("info", "user_count"),
        ]))
        .unwrap();
        let channels = [
            (
                "presence-foobar",
                ChannelCounts {
                    subscription_count: 50,
                    user_count: Some(42),
                },
            ),
            (
                "presence-another",
                ChannelCounts {
                    subscription_count: 130,
                    user_count: Some(123),
                },
            ),
            (
                "public",
                ChannelCounts {
                    subscription_count: 5,
                    user_count: None,
                },
            ),
            (
                "presence-empty",
                ChannelCounts {
                    subscription_count: 0,
                    user_count: Some(0),
                },
            ),
        ];
        assert_eq!(
            json_of(&channels_answer(&query, channels)),
            json!({"channels": {"presence-foobar": {"user_count": 42}, "presence-another": {"user_count": 123}}})
        );
        let all = parse_channels_query(&signed(&[])).unwrap();
        assert_eq!(
            json_of(&channels_answer(&all, channels)),
            json!({"channels": {"presence-foobar": {}, "presence-another": {}, "public": {}}})
        );
        assert_eq!(
            parse_channels_query(&signed(&[("info", "user_count")])),
            Err(ApiError::UserCountNotAvailable)
        );
        assert!(parse_channels_query(&signed(&[("info", "subscription_count")])).is_ok());
    }

    #[test]
    fn channel_query_and_answer() {
        let presence = channel("presence-foobar");
        let info = parse_channel_query(
            &presence,
            &signed(&[("info", "user_count,subscription_count")]),
        )
        .unwrap();
        let counts = ChannelCounts {
            subscription_count: 42,
            user_count: Some(42),
        };
        assert_eq!(
            json_of(&channel_answer(info, counts)),
            json!({"occupied": true, "user_count": 42, "subscription_count": 42})
        );
        assert_eq!(
            json_of(&channel_answer(
                InfoAttributes::default(),
                ChannelCounts::default()
            )),
            json!({"occupied": false})
        );
        assert_eq!(
            parse_channel_query(&channel("public"), &signed(&[("info", "user_count")])),
            Err(ApiError::UserCountNotAvailable)
        );
    }

    #[test]
    fn users_answer_matches_the_docs() {
        assert_eq!(
            json_of(&users_answer(["1", "2"])),
            json!({"users": [{"id": "1"}, {"id": "2"}]})
        );
    }

    #[test]
    fn every_error_has_its_status_and_a_json_body() {
        let cases = [
            (ApiError::NotFound, 404),
            (ApiError::MethodNotAllowed { allow: "GET" }, 405),
            (ApiError::UnknownApp, 404),
            (ApiError::AppDisabled, 403),
            (ApiError::Auth(RestAuthError::UnknownAuthKey), 401),
            (ApiError::Auth(RestAuthError::TooManyParams), 400),
            (ApiError::InvalidJson("x".into()), 400),
            (ApiError::MissingField("name"), 400),
            (ApiError::InvalidEventName { limit_bytes: 200 }, 400),
            (ApiError::ReservedEventName("pusher:x".into()), 400),
            (ApiError::ChannelAndChannels, 400),
            (
                ApiError::TooManyChannels {
                    count: 101,
                    limit: 100,
                },
                400,
            ),
            (
                ApiError::InvalidChannel {
                    channel: "a b".into(),
                    error: ChannelNameError::Empty,
                },
                400,
            ),
            (ApiError::InvalidSocketId("x".into()), 400),
            (
                ApiError::PayloadTooLarge {
                    length_bytes: 2,
                    limit_bytes: 1,
                },
                413,
            ),
            (ApiError::EmptyBatch, 400),
            (
                ApiError::TooManyBatchEvents {
                    count: 11,
                    limit: 10,
                },
                400,
            ),
            (ApiError::UnknownInfoAttribute("x".into()), 400),
            (ApiError::UserCountNotAvailable, 400),
            (ApiError::NotPresenceChannel, 400),
            (ApiError::InvalidUserId, 400),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(json_of(&error.body())["error"], error.to_string());
        }
    }

    #[test]
    fn info_attributes_parse() {
        assert!(InfoAttributes::parse("").unwrap().is_empty());
        let both = InfoAttributes::parse(" user_count , subscription_count ").unwrap();
        assert_eq!(
            both,
            InfoAttributes::of(&[InfoAttribute::UserCount, InfoAttribute::SubscriptionCount])
        );
        assert!(InfoAttributes::parse(&"user_count,".repeat(9)).is_err());
    }
}
