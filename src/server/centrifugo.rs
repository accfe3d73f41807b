//! The Centrifugo client protocol on a shard (`/connection/websocket`): what a connection's
//! commands do (through the registry, the connection's one owner), the subscribe that reads
//! history and merges it with the live stream, and the server API (`/api/publish`,
//! `/api/history`) on the API listener.
//!
//! Every protocol decision is the sans-IO layer's (`wire::centrifugo`, `history`, `auth`);
//! this module carries them out. Work that must wait for another shard (a channel's history
//! lives on its owner shard) is recorded as [`Deferred`] while the registry is borrowed, and
//! spawned as a task once the reactor lets go of it.
//!
//! Deliberately not here: presence, RPC, client-side publish (refused: 103), server-side
//! subscriptions, protobuf.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::history::{HistoryAnswer, HistoryQuestion, HistoryUnavailable};
use super::registry::{CentrifugoConnection, ConnectionKey, Protocol, Registry};
use super::shard::Shard;
use super::state::{CloseRequest, LifeEvent};
use crate::auth::token::{Grant, TokenError, needs_token};
use crate::channel::{AppSlot, ChannelName};
use crate::history::recovery::{HistoryRead, RecoveryOutcome};
use crate::history::{HistoryPage, HistoryQuery, StreamPosition, history_limit};
use crate::http::{CentrifugoApi, ContentType, Response};
use crate::protocol::message::DataKind;
use crate::publication::Publication;
use crate::telemetry::counters::Counter;
use crate::wire::centrifugo::codes::{ClientError, DisconnectCode, Verdict, history_error};
use crate::wire::centrifugo::command::{
    Command, ConnectRequest, DecodeLimits, Decoded, Request, SubscribeRequest, Token, decode_frame,
};
use crate::wire::centrifugo::data::JsonData;
use crate::wire::centrifugo::reply::{
    ConnectResult, EmptyResult, RefreshResult, ReplyBatch, SubscribeResult,
};
use crate::wire::centrifugo::session::{Expiry, Session, SessionLimits};

/// The version the connect reply names.
const VERSION: &str = concat!("ringcast ", env!("CARGO_PKG_VERSION"));
/// Most publications one `history` call returns (centrifuge's `HistoryMaxPublicationLimit`).
const HISTORY_PAGE_MAX: usize = 300;
/// Most deferred works waiting on a shard (beyond it, the command is answered 111 "too many
/// requests", which the client retries).
const DEFERRED_MAX: usize = 65_536;

/// A Centrifugo connection's protocol state, for an upgrade to `/connection/websocket`.
pub fn admit(now_ms: u64, limits: &SessionLimits) -> Protocol {
    Protocol::Centrifugo(Box::new(CentrifugoConnection {
        session: Session::new(now_ms, limits),
    }))
}

/// Work that waits for a channel's history owner.
#[derive(Debug)]
pub struct Deferred {
    key: ConnectionKey,
    generation: u32,
    id: u32,
    channel: ChannelName,
    work: DeferredWork,
}

/// What a [`Deferred`] asks.
#[derive(Debug)]
enum DeferredWork {
    /// Complete a subscribe to a channel with history (recovering from a position, or not).
    Subscribe { recover: Option<StreamPosition> },
    /// Answer a `history` command.
    History(HistoryQuery),
}

/// Deferred work of one shard, waiting for the reactor to spawn it.
#[derive(Debug, Default)]
pub struct DeferredQueue(RefCell<Vec<Deferred>>);

impl DeferredQueue {
    fn push(&self, deferred: Deferred) -> Result<(), Deferred> {
        let mut queue = self.0.borrow_mut();
        if queue.len() >= DEFERRED_MAX {
            return Err(deferred);
        }
        queue.push(deferred);
        Ok(())
    }
}

/// Spawns the work deferred while the registry was borrowed (call with no borrow held).
pub fn spawn_deferred(shard: &Rc<Shard>) {
    let works = std::mem::take(&mut *shard.deferred.0.borrow_mut());
    for deferred in works {
        let shard = shard.clone();
        glommio::spawn_local(async move { run_deferred(&shard, deferred).await }).detach();
    }
}

/// Handles one complete data message from a Centrifugo connection: every command in it, the
/// replies batched into one frame.
pub fn handle_message(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    _kind: DataKind,
    payload: &[u8],
    now_ms: u64,
) {
    let limits = DecodeLimits::default();
    let decoded = match decode_frame(payload, &limits) {
        Ok(decoded) => decoded,
        Err(error) => {
            log::debug!("centrifugo: refused frame: {error}");
            return disconnect(registry, key, error.disconnect(), now_ms);
        }
    };
    let mut batch = ReplyBatch::new();
    let mut end = None;
    for item in decoded {
        match item {
            Decoded::Refused { id, error, .. } => batch.error(id, error.client_error()),
            Decoded::Command(command) => {
                if let Err(code) = handle_command(registry, shard, key, command, &mut batch, now_ms)
                {
                    end = Some(code);
                    break;
                }
            }
        }
    }
    if let Some(frame) = batch.finish() {
        registry.queue(key, frame);
    }
    if let Some(code) = end {
        disconnect(registry, key, code, now_ms);
    }
}

/// Closes the connection with a Centrifugo disconnect code.
fn disconnect(registry: &mut Registry, key: ConnectionKey, code: DisconnectCode, now_ms: u64) {
    let request = CloseRequest::Application {
        code: code.code(),
        reason: code.reason(),
    };
    registry.life(key, LifeEvent::Request(request), now_ms);
}

/// One command; `Err` ends the connection with that code.
fn handle_command(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    command: Command,
    batch: &mut ReplyBatch,
    now_ms: u64,
) -> Result<(), DisconnectCode> {
    let limits = registry.centrifugo_limits();
    let Command { id, request } = command;
    let Some(session) = registry.centrifugo_session(key) else {
        return Ok(());
    };
    if let Err(error) = session.admit(&request, now_ms, &limits) {
        return match error.verdict() {
            Verdict::Reply(error) => {
                batch.error(id, error);
                Ok(())
            }
            Verdict::Disconnect(code) => Err(code),
        };
    }
    match request {
        Request::Pong => Ok(()),
        Request::Connect(connect) => {
            connect_command(shard, session, id, &connect, batch, &limits, now_ms)
        }
        Request::Subscribe(subscribe) => {
            subscribe_command(registry, shard, key, id, subscribe, batch, now_ms)
        }
        Request::Unsubscribe(channel) => {
            session.unsubscribe(&channel);
            registry.unsubscribe(key, AppSlot::DEFAULT, &channel);
            batch.empty(id, EmptyResult::Unsubscribe);
            Ok(())
        }
        // Clients do not publish here: the application's backend does (`/api/publish`).
        Request::Publish { .. } => {
            batch.error(id, ClientError::PermissionDenied);
            Ok(())
        }
        Request::History(history) => {
            if !session.is_subscribed(&history.channel) {
                batch.error(id, ClientError::PermissionDenied);
                return Ok(());
            }
            if shard
                .history_of(AppSlot::DEFAULT, &history.channel)
                .is_none()
            {
                batch.error(id, ClientError::NotAvailable);
                return Ok(());
            }
            let query = HistoryQuery {
                since: history.since,
                limit: history_limit(history.limit, HISTORY_PAGE_MAX),
                reverse: history.reverse,
            };
            defer(
                registry,
                shard,
                key,
                id,
                history.channel,
                DeferredWork::History(query),
                batch,
            );
            Ok(())
        }
        Request::Refresh(token) => {
            let grant = match verify(shard, &token) {
                Ok(grant) => grant,
                Err(TokenError::Expired) => {
                    batch.error(id, ClientError::TokenExpired);
                    return Ok(());
                }
                Err(_) => return Err(DisconnectCode::InvalidToken),
            };
            let (expiry, ttl_s) = expiry_of(&grant, now_ms);
            session.refreshed(expiry);
            let client = session.client().unwrap_or_default().to_string();
            batch.refresh(
                id,
                &RefreshResult {
                    client: &client,
                    version: VERSION,
                    ttl_s,
                },
            );
            Ok(())
        }
        Request::SubRefresh { channel, token } => {
            match verify(shard, &token) {
                Ok(grant) if grant.allows(channel.as_str()) => {
                    batch.sub_refresh(id, expiry_of(&grant, now_ms).1);
                }
                Ok(_) => batch.error(id, ClientError::PermissionDenied),
                Err(TokenError::Expired) => batch.error(id, ClientError::TokenExpired),
                Err(_) => return Err(DisconnectCode::InvalidToken),
            }
            Ok(())
        }
        // Refused by `admit` already; answered the same way if one gets here.
        Request::Presence(_)
        | Request::PresenceStats(_)
        | Request::Ping
        | Request::Send { .. }
        | Request::Rpc { .. } => {
            batch.error(id, ClientError::NotAvailable);
            Ok(())
        }
    }
}

/// Verifies a token with `--token-secret`.
fn verify(shard: &Shard, token: &Token) -> Result<Grant, TokenError> {
    let verifier = shard.tokens.as_ref().ok_or(TokenError::NotConfigured)?;
    verifier.verify(token.expose())
}

/// The session expiry (shard clock) and the seconds left, for a grant.
fn expiry_of(grant: &Grant, now_ms: u64) -> (Expiry, Option<u32>) {
    let left_s = grant.expires_at_s.saturating_sub(unix_now_s());
    let ttl_s = u32::try_from(left_s.max(1)).unwrap_or(u32::MAX);
    (
        Expiry::AtMs(now_ms.saturating_add(left_s.saturating_mul(1000))),
        Some(ttl_s),
    )
}

/// `connect`: a token from `--token-secret`, or none when `--centrifugo-anonymous`.
fn connect_command(
    shard: &Shard,
    session: &mut Session,
    id: u32,
    connect: &ConnectRequest,
    batch: &mut ReplyBatch,
    limits: &SessionLimits,
    now_ms: u64,
) -> Result<(), DisconnectCode> {
    let (expiry, ttl_s) = if connect.token.is_empty() {
        if !shard.config.centrifugo_anonymous {
            return Err(DisconnectCode::InvalidToken);
        }
        (Expiry::Never, None)
    } else {
        match verify(shard, &connect.token) {
            Ok(grant) => expiry_of(&grant, now_ms),
            Err(TokenError::Expired) => {
                session.connect_refused();
                batch.error(id, ClientError::TokenExpired);
                return Ok(());
            }
            Err(_) => return Err(DisconnectCode::InvalidToken),
        }
    };
    let client = shard.next_socket_id().to_string();
    session.connected(&client, expiry, now_ms, limits);
    batch.connect(
        id,
        &ConnectResult {
            client: &client,
            version: VERSION,
            ttl_s,
            ping_s: (limits.ping_interval_ms / 1000) as u32,
            pong: limits.pong_timeout_ms > 0,
            data: None,
        },
    );
    Ok(())
}

/// `subscribe`: joins the channel's live stream at once; a channel with history completes
/// later, once its owner has answered (the reply then carries the position and, when asked,
/// the recovered publications).
fn subscribe_command(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    id: u32,
    subscribe: SubscribeRequest,
    batch: &mut ReplyBatch,
    now_ms: u64,
) -> Result<(), DisconnectCode> {
    let limits = registry.centrifugo_limits();
    let channel = subscribe.channel;
    if shard.policy.check(channel.as_str()).is_err() {
        batch.error(id, ClientError::PermissionDenied);
        return Ok(());
    }
    let needs_token = shard.config.require_token || needs_token(channel.as_str());
    if needs_token || !subscribe.token.is_empty() {
        match verify(shard, &subscribe.token) {
            Ok(grant) if grant.allows(channel.as_str()) => {}
            Ok(_) => {
                batch.error(id, ClientError::PermissionDenied);
                return Ok(());
            }
            Err(TokenError::Expired) => {
                batch.error(id, ClientError::TokenExpired);
                return Ok(());
            }
            Err(TokenError::Forged | TokenError::Malformed) if !subscribe.token.is_empty() => {
                return Err(DisconnectCode::InvalidToken);
            }
            Err(_) => {
                batch.error(id, ClientError::PermissionDenied);
                return Ok(());
            }
        }
    }
    let positioned = shard.history_of(AppSlot::DEFAULT, &channel).is_some();
    let Some(session) = registry.centrifugo_session(key) else {
        return Ok(());
    };
    if let Err(error) = session.begin_subscribe(&channel, positioned, &limits) {
        return match error.verdict() {
            Verdict::Reply(error) => {
                batch.error(id, error);
                Ok(())
            }
            Verdict::Disconnect(code) => Err(code),
        };
    }
    if registry.subscribe(key, AppSlot::DEFAULT, &channel).is_err() {
        if let Some(session) = registry.centrifugo_session(key) {
            session.unsubscribe(&channel);
        }
        batch.error(id, ClientError::LimitExceeded);
        return Ok(());
    }
    let _ = now_ms;
    if !positioned {
        // Cannot fail: a plain reply has no payload.
        let _ = batch.subscribe(id, SubscribeResult::Plain);
        return Ok(());
    }
    let work = DeferredWork::Subscribe {
        recover: subscribe.recover,
    };
    defer(registry, shard, key, id, channel, work, batch);
    Ok(())
}

/// Records work for the channel's history owner; refused with 111 (temporary) when too much
/// is waiting.
fn defer(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    id: u32,
    channel: ChannelName,
    work: DeferredWork,
    batch: &mut ReplyBatch,
) {
    let Some(generation) = registry.get(key).map(|connection| connection.generation()) else {
        return;
    };
    let deferred = Deferred {
        key,
        generation,
        id,
        channel,
        work,
    };
    if let Err(deferred) = shard.deferred.push(deferred) {
        if let DeferredWork::Subscribe { .. } = deferred.work {
            abandon_subscribe(registry, key, &deferred.channel);
        }
        batch.error(id, ClientError::TooManyRequests);
    }
}

/// Takes a subscription that cannot complete out of the session and the channel.
fn abandon_subscribe(registry: &mut Registry, key: ConnectionKey, channel: &ChannelName) {
    if let Some(session) = registry.centrifugo_session(key) {
        session.unsubscribe(channel);
    }
    registry.unsubscribe(key, AppSlot::DEFAULT, channel);
}

/// Asks the owner, then answers on the connection (if it is still the same one).
async fn run_deferred(shard: &Rc<Shard>, deferred: Deferred) {
    let Deferred {
        key,
        generation,
        id,
        channel,
        work,
    } = deferred;
    let question = match &work {
        DeferredWork::Subscribe { recover } => HistoryQuestion::Subscribe {
            recover: recover.clone(),
        },
        DeferredWork::History(query) => HistoryQuestion::Page(query.clone()),
    };
    // With Redis, history is read once the live subscription is in place (so nothing falls
    // between them); a subscription still missing after the bounded wait shows up as a gap
    // at the next publication, which the client recovers.
    if let (DeferredWork::Subscribe { .. }, Some(_)) = (&work, &shard.redis)
        && !shard.wait_for_redis_subscription(&channel).await
    {
        log::debug!("shard {}: {channel} not yet subscribed in Redis", shard.id);
    }
    let answer = shard.ask_history(&channel, question).await;
    let now_ms = shard.now_ms();
    {
        let mut registry = shard.registry.borrow_mut();
        let current = registry
            .get(key)
            .is_some_and(|connection| connection.generation() == generation);
        if !current {
            return;
        }
        let mut batch = ReplyBatch::new();
        let end = match (work, answer) {
            (DeferredWork::Subscribe { .. }, Ok(HistoryAnswer::Subscribe(read))) => {
                finish_subscribe(&mut registry, key, id, &channel, read, &mut batch)
            }
            (DeferredWork::History(_), Ok(HistoryAnswer::Page(page))) => {
                history_reply(id, page, &mut batch)
            }
            (work, answer) => {
                if let DeferredWork::Subscribe { .. } = work {
                    abandon_subscribe(&mut registry, key, &channel);
                }
                let error = match answer {
                    Err(HistoryUnavailable::NotKept) => ClientError::NotAvailable,
                    _ => ClientError::Internal,
                };
                batch.error(id, error);
                None
            }
        };
        if let Some(frame) = batch.finish() {
            registry.queue(key, frame);
        }
        if let Some(code) = end {
            disconnect(&mut registry, key, code, now_ms);
        }
    }
    shard.write_slice(&[key]);
}

/// Joins what history said with what arrived live meanwhile; replies, then pushes what came
/// after the reply's position. `Some(code)` ends the connection.
fn finish_subscribe(
    registry: &mut Registry,
    key: ConnectionKey,
    id: u32,
    channel: &ChannelName,
    read: HistoryRead,
    batch: &mut ReplyBatch,
) -> Option<DisconnectCode> {
    let session = registry.centrifugo_session(key)?;
    match session.finish_subscribe(channel, read) {
        Ok(synchronized) => {
            let counter = match synchronized.outcome {
                RecoveryOutcome::NotRequested => None,
                RecoveryOutcome::Recovered => Some(Counter::HistoryRecoveries),
                RecoveryOutcome::NotRecovered(_) => Some(Counter::HistoryUnrecoverable),
            };
            if let Some(counter) = counter {
                registry.stats.count(counter);
            }
            if let Err(error) = batch.subscribe(id, SubscribeResult::Positioned(&synchronized)) {
                return Some(crate::wire::centrifugo::codes::inappropriate(&error));
            }
            for publication in &synchronized.then_push {
                if let Err(error) = batch.publication_push(channel, publication) {
                    return Some(crate::wire::centrifugo::codes::inappropriate(&error));
                }
            }
            None
        }
        Err(error) => {
            registry.unsubscribe(key, AppSlot::DEFAULT, channel);
            Some(error.disconnect())
        }
    }
}

/// The reply to `history`.
fn history_reply(
    id: u32,
    page: Result<HistoryPage, crate::history::Unrecoverable>,
    batch: &mut ReplyBatch,
) -> Option<DisconnectCode> {
    match page {
        Ok(page) => match batch.history(id, &page) {
            Ok(()) => None,
            Err(error) => Some(crate::wire::centrifugo::codes::inappropriate(&error)),
        },
        Err(unrecoverable) => {
            batch.error(id, history_error(unrecoverable.reason));
            None
        }
    }
}

/// Seconds since the Unix epoch (token expiries are in these).
fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

// ----- the server API -----

/// `/api/publish` body.
#[derive(Debug, Deserialize)]
struct PublishBody {
    channel: String,
    data: Box<serde_json::value::RawValue>,
}

/// A stream position as the API takes it.
#[derive(Debug, Deserialize)]
struct PositionBody {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

/// `/api/history` body.
#[derive(Debug, Deserialize)]
struct HistoryBody {
    channel: String,
    #[serde(default)]
    limit: i32,
    #[serde(default)]
    since: Option<PositionBody>,
    #[serde(default)]
    reverse: bool,
}

/// An API error in Centrifugo's shape (HTTP 200, as Centrifugo answers them).
fn api_error(error: ClientError) -> Response {
    Response::json(
        200,
        &json!({"error": {"code": error.code(), "message": error.message()}}),
    )
}

/// Answers a server API call (the API key was checked by the listener).
pub async fn serve_api(shard: &Shard, method: CentrifugoApi, body: &[u8]) -> Response {
    match method {
        CentrifugoApi::Publish => api_publish(shard, body).await,
        CentrifugoApi::History => api_history(shard, body).await,
    }
}

async fn api_publish(shard: &Shard, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<PublishBody>(body) else {
        return Response::json(
            400,
            &json!({"error": "expected {\"channel\":..,\"data\":..}"}),
        );
    };
    let Ok(channel) = shard.policy.check(&request.channel) else {
        return api_error(ClientError::BadRequest);
    };
    let payload = Bytes::copy_from_slice(request.data.get().as_bytes());
    if payload.len() > shard.config.max_message_bytes {
        return Response::json(413, &json!({"error": "data over --max-message-bytes"}));
    }
    shard
        .registry
        .borrow_mut()
        .stats
        .count(Counter::PublishedHttp);
    let publication = Publication::new(channel, payload);
    let published = match &shard.redis {
        Some(link) => shard
            .publish_publication_through_redis(link, publication)
            .await
            .map(|published| published.position),
        None => shard
            .publish_positioned(publication)
            .await
            .map_err(|_| "the shards could not take it in time".to_string()),
    };
    match published {
        Ok(Some(position)) => Response::json(
            200,
            &json!({"result": {"offset": position.offset, "epoch": position.epoch.as_str()}}),
        ),
        Ok(None) => Response::json(200, &json!({"result": {}})),
        Err(reason) => Response::json(
            503,
            &json!({"error": {"code": ClientError::Internal.code(), "message": format!("the message was not published: {reason}")}}),
        ),
    }
}

async fn api_history(shard: &Shard, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<HistoryBody>(body) else {
        return Response::json(400, &json!({"error": "expected {\"channel\":..}"}));
    };
    let Ok(channel) = shard.policy.check(&request.channel) else {
        return api_error(ClientError::BadRequest);
    };
    let query = HistoryQuery {
        since: request.since.map(|since| StreamPosition {
            offset: since.offset,
            epoch: crate::history::Epoch::new(&since.epoch),
        }),
        limit: history_limit(request.limit, HISTORY_PAGE_MAX),
        reverse: request.reverse,
    };
    match shard
        .ask_history(&channel, HistoryQuestion::Page(query))
        .await
    {
        Ok(HistoryAnswer::Page(Ok(page))) => Response {
            status: 200,
            content_type: ContentType::Json,
            body: history_json(&page),
        },
        Ok(HistoryAnswer::Page(Err(unrecoverable))) => {
            api_error(history_error(unrecoverable.reason))
        }
        Err(HistoryUnavailable::NotKept) => api_error(ClientError::NotAvailable),
        _ => Response::json(
            503,
            &json!({"error": {"code": ClientError::Internal.code(), "message": "history did not answer in time"}}),
        ),
    }
}

/// `{"result":{"publications":[{"data":..,"offset":N}],"offset":N,"epoch":"E"}}`; a payload
/// that is not JSON is embedded as a string, a binary one as its lossy text.
fn history_json(page: &HistoryPage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.publications.len() * 64);
    out.extend_from_slice(b"{\"result\":{\"publications\":[");
    for (index, publication) in page.publications.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"data\":");
        match JsonData::classify(&publication.payload) {
            Ok(data) => data.write(&mut out),
            Err(_) => {
                let text = String::from_utf8_lossy(&publication.payload);
                // Writing a &str to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, text.as_ref());
            }
        }
        out.extend_from_slice(format!(",\"offset\":{}}}", publication.offset).as_bytes());
    }
    out.extend_from_slice(b"],\"offset\":");
    out.extend_from_slice(page.position.offset.to_string().as_bytes());
    out.extend_from_slice(b",\"epoch\":");
    let _ = serde_json::to_writer(&mut out, page.position.epoch.as_str());
    out.extend_from_slice(b"}}");
    out
}
