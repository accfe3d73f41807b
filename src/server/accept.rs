//! Accepting sockets and serving their HTTP phase: the WebSocket upgrade, or the plain HTTP
//! endpoints (`/publish/{channel}`, `/healthz`, `/readyz`, `/stat`, `/metrics`) with keep-alive.
//!
//! Each accepted socket gets a short-lived task. An upgraded socket is handed to the shard's
//! registry (its one owner from then on) and the task ends: open WebSocket connections have no
//! task of their own. A panic in a task ends that task's connection only (caught, counted).
//!
//! Every wait here is bounded: the request head (and a publish body) must arrive within
//! `--handshake-timeout`, responses are written within it too, and a refused connection is
//! closed after a short linger so the client reads the status instead of a reset.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{TaskQueueHandle, spawn_local_into};
use serde_json::json;

use super::deflate::Deflate;
use super::registry::{Admission, ConnectionKey, Protocol, RawStream, TokenExpiry};
use super::shard::Shard;
use super::shared::AddressLimit;
use crate::auth;
use crate::channel::AppSlot;
use crate::config::Compression;
use crate::history::{Epoch, StreamPosition};
use crate::http::{
    self, ContentType, HttpError, Listener, RequestHead, Response, Route, RouteRules,
    parse_request_head,
};
use crate::protocol::deflate::DeflatePolicy;
use crate::protocol::handshake::{
    negotiate_deflate, switching_protocols_response_with, validate_upgrade,
};
use crate::publication::Publication;
use crate::telemetry::counters::Counter;
use crate::telemetry::stat::StatReport;
use crate::telemetry::{NodeReadings, ProcessReadings, ShardSnapshot, metrics};
use crate::wire::pusher::error::ConnectError;
use crate::wire::raw::RawRole;
/// Most sockets being refused with 503 at once; beyond it, refused sockets are just closed.
const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// How long a refused or finished connection is drained before it is closed (so our last
/// bytes are not destroyed by a reset when the client still had data in flight).
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and discarded while lingering.
const LINGER_BYTES_MAX: usize = 64 << 10;

/// Keeps the shard's count of sockets in their HTTP phase right, however the task ends.
struct SocketGuard {
    shard: Rc<Shard>,
}

impl SocketGuard {
    fn new(shard: &Rc<Shard>) -> SocketGuard {
        shard.http_sockets.set(shard.http_sockets.get() + 1);
        SocketGuard {
            shard: shard.clone(),
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let shard = &self.shard;
        shard.http_sockets.set(shard.http_sockets.get() - 1);
    }
}

/// The accept loop of one shard. Ends when the shard drains (dropping the listener, so the
/// kernel stops routing new connections here).
pub async fn run_accept(
    shard: Rc<Shard>,
    listener: TcpListener,
    kind: Listener,
    connections: TaskQueueHandle,
) {
    let refusals = Rc::new(Cell::new(0usize));
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.draining.wait().await;
            None
        })
        .await;
        let Some(result) = accepted else {
            break;
        };
        match result {
            Ok(stream) => admit(&shard, stream, kind, connections, &refusals),
            Err(error) => {
                shard
                    .registry
                    .borrow_mut()
                    .stats
                    .count(Counter::AcceptErrors);
                let error = io::Error::from(error);
                // Out of descriptors or memory: back off instead of spinning on accept.
                let backoff = match error.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        Duration::from_millis(100)
                    }
                    _ => Duration::from_millis(1),
                };
                if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
                    log::warn!("shard {}: accept failed: {error}", shard.id);
                    last_error_log = Some(Instant::now());
                }
                glommio::timer::sleep(backoff).await;
            }
        }
    }
    log::debug!("shard {}: stopped accepting", shard.id);
}

fn admit(
    shard: &Rc<Shard>,
    stream: TcpStream,
    kind: Listener,
    queue: TaskQueueHandle,
    refusals: &Rc<Cell<usize>>,
) {
    if shard.open_sockets() >= shard.shared.max_sockets_per_shard {
        let mut registry = shard.registry.borrow_mut();
        registry.stats.count(Counter::ConnectionsOverLimit);
        registry.stats.count_http_rejection(503);
        if refusals.get() >= REFUSALS_IN_FLIGHT_MAX {
            return; // Dropping the stream closes it.
        }
        refusals.set(refusals.get() + 1);
        let refusals = refusals.clone();
        spawn_connection_task(shard, queue, async move {
            let mut stream = stream;
            respond_and_close(&mut stream, &HttpError::ConnectionLimit.response()).await;
            refusals.set(refusals.get() - 1);
        });
        return;
    }
    spawn_connection_task(shard, queue, handle_connection(shard.clone(), stream, kind));
}

/// Spawns one socket's task; a panic inside it ends that task only (logged and counted).
fn spawn_connection_task(
    shard: &Rc<Shard>,
    queue: TaskQueueHandle,
    task: impl Future<Output = ()> + 'static,
) {
    let panics = shard.clone();
    let guarded = AssertUnwindSafe(task).catch_unwind().map(move |result| {
        if result.is_err() {
            log::error!(
                "shard {}: a connection task panicked; its connection is closed",
                panics.id
            );
            panics
                .registry
                .borrow_mut()
                .stats
                .count(Counter::HandlerPanics);
        }
    });
    match spawn_local_into(guarded, queue) {
        Ok(task) => {
            task.detach();
        }
        Err(_) => log::error!("shard {}: cannot spawn into the connection queue", shard.id),
    }
}

/// Why no request head could be read.
enum HeadError {
    Http(HttpError),
    TimedOut,
    Closed,
}

/// Serves one connection: HTTP requests until it upgrades or closes.
async fn handle_connection(shard: Rc<Shard>, mut stream: TcpStream, kind: Listener) {
    let socket = SocketGuard::new(&shard);
    shard
        .registry
        .borrow_mut()
        .stats
        .count(Counter::ConnectionsAccepted);
    // Small frames must leave at once; ringcast does its own batching.
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    // Bounded by the handshake timeout per request and the peer's patience.
    loop {
        // Transient steps are boxed: the task's own state stays as small as the WebSocket phase
        // needs, since an idle connection keeps this future for its whole life.
        let head = match Box::pin(read_head(&shard, &mut stream, &mut buffer)).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(HeadError::Closed) => return,
            Err(HeadError::TimedOut) => {
                shard
                    .registry
                    .borrow_mut()
                    .stats
                    .count(Counter::HandshakeTimeouts);
                return;
            }
            Err(HeadError::Http(error)) => {
                return Box::pin(refuse(&shard, &mut stream, error)).await;
            }
        };
        let rules = RouteRules {
            listener: kind,
            policy: &shard.policy,
            echo: shard.config.echo,
        };
        let route = match authenticate(&shard, kind, &head).and_then(|()| http::route(&head, rules))
        {
            Ok(route) => route,
            Err(error) => return Box::pin(refuse(&shard, &mut stream, error)).await,
        };
        if route.is_websocket() {
            // Only frames pipelined behind the head are kept; an idle connection keeps no buffer.
            let leftover = buffer[head.head_len..].to_vec();
            drop(buffer);
            return upgrade(socket, stream, head, route, leftover).await;
        }
        let serving = Box::pin(serve_http(&shard, &mut stream, &head, route, &mut buffer));
        let consumed = match serving.await {
            Ok(consumed) => consumed,
            Err(Some(error)) => return Box::pin(refuse(&shard, &mut stream, error)).await,
            Err(None) => return,
        };
        if !head.keep_alive || shard.draining.is_set() {
            Box::pin(linger_close(&mut stream)).await;
            return;
        }
        buffer.drain(..consumed);
        if buffer.is_empty() {
            buffer = Vec::new();
        }
    }
}

/// On the API listener with `--api-key`: every request carries the key (checked in constant
/// time), whatever it asks for.
fn authenticate(shard: &Shard, kind: Listener, head: &RequestHead) -> Result<(), HttpError> {
    if head.path.starts_with("/apps/") {
        // The Pusher HTTP API is signed with the application's secret instead.
        return Ok(());
    }
    match (kind, &shard.config.api_key) {
        (Listener::Api, Some(key)) => {
            auth::api_key::check(&head.credentials, key).map_err(HttpError::Unauthorized)
        }
        _ => Ok(()),
    }
}

/// Runs `work` with the handshake timeout, giving up early if the shard drains.
async fn bounded<T>(shard: &Shard, work: impl Future<Output = T>) -> Option<T> {
    let timed = glommio::timer::timeout(shard.config.handshake_timeout, async { Ok(work.await) });
    futures_lite::future::or(async { timed.await.ok() }, async {
        shard.draining.wait().await;
        None
    })
    .await
}

/// Reads until `buffer` holds a complete request head. `Ok(None)`: the client closed cleanly
/// before sending anything.
async fn read_head(
    shard: &Shard,
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Option<RequestHead>, HeadError> {
    let max_header_bytes = shard.config.max_header_bytes;
    let max_headers = shard.config.max_headers;
    let work = async {
        let mut scanned = 0;
        // Bounded: each round reads at least one byte, and the buffer is capped.
        loop {
            // Parse only once the blank line that ends the head has arrived: a client that
            // sends one byte at a time costs one scan of that byte, not a parse per byte.
            if has_head_end(buffer, &mut scanned) || buffer.len() >= max_header_bytes {
                match parse_request_head(buffer, max_header_bytes, max_headers) {
                    Ok(Some(head)) => return Ok(Some(head)),
                    Ok(None) => {}
                    Err(error) => return Err(HeadError::Http(error)),
                }
            }
            let room = (max_header_bytes + 1).saturating_sub(buffer.len()).max(1);
            match read_more(shard, stream, buffer, room).await {
                Ok(0) if buffer.is_empty() => return Ok(None),
                Ok(0) | Err(_) => return Err(HeadError::Closed),
                Ok(_) => {}
            }
        }
    };
    bounded(shard, work)
        .await
        .unwrap_or(Err(HeadError::TimedOut))
}

/// Finds the blank line ending a request head (`\n\n`, `\n\r\n`: httparse accepts bare LF
/// line ends), scanning only bytes not seen before.
fn has_head_end(buffer: &[u8], scanned: &mut usize) -> bool {
    let start = scanned.saturating_sub(2);
    let found = buffer[start..].iter().enumerate().any(|(index, &byte)| {
        let at = start + index;
        byte == b'\n' && (buffer[..at].ends_with(b"\n") || buffer[..at].ends_with(b"\n\r"))
    });
    *scanned = buffer.len();
    found
}

/// Reads up to `max_bytes` more into `buffer`; returns how many arrived (0 = end of stream).
/// The read lands in the shard's scratch buffer and only what arrived is copied, so a
/// connection's own buffer is the size of its request, not of a read.
async fn read_more(
    shard: &Shard,
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    max_bytes: usize,
) -> io::Result<usize> {
    let read = poll_fn(|context| {
        let mut scratch = shard.scratch.borrow_mut();
        let limit = max_bytes.min(scratch.len());
        Pin::new(&mut *stream).poll_read(context, &mut scratch[..limit])
    })
    .await?;
    buffer.extend_from_slice(&shard.scratch.borrow()[..read]);
    Ok(read)
}

/// Serves a plain HTTP request; returns the bytes of `buffer` it consumed. `Err(Some)` is
/// answered with its status and the connection closed; `Err(None)` just closes.
async fn serve_http(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    head: &RequestHead,
    route: Route,
    buffer: &mut Vec<u8>,
) -> Result<usize, Option<HttpError>> {
    let (response, consumed) = match route {
        Route::Publish(channel) => {
            let limit = shard.config.max_message_bytes;
            let (payload, consumed) = read_body(shard, stream, head, buffer, limit).await?;
            (
                publish(shard, channel, payload).await.map_err(Some)?,
                consumed,
            )
        }
        Route::PusherApi => {
            let (body, consumed) =
                read_body(shard, stream, head, buffer, PUSHER_API_BODY_MAX_BYTES).await?;
            let method = match head.method {
                http::Method::Get => "GET",
                http::Method::Post => "POST",
                http::Method::Other => "OTHER",
            };
            let response = super::pusher::serve_api(shard, method, &head.path, &head.query, &body);
            (response.await, consumed)
        }
        Route::CentrifugoApi(method) => {
            // The data plus its JSON envelope.
            let limit = shard.config.max_message_bytes + CENTRIFUGO_API_ENVELOPE_BYTES;
            let (body, consumed) = read_body(shard, stream, head, buffer, limit).await?;
            (
                super::centrifugo::serve_api(shard, method, &body).await,
                consumed,
            )
        }
        other => {
            if head.content_length.unwrap_or(0) > 0 || head.has_transfer_encoding {
                return Err(Some(HttpError::BadRequest("unexpected request body")));
            }
            (answer(shard, other).await, head.head_len)
        }
    };
    let bytes = response.encode(head.keep_alive);
    match bounded(shard, stream.write_all(&bytes)).await {
        Some(Ok(())) => Ok(consumed),
        _ => Err(None),
    }
}

/// The answer to a request without a body.
async fn answer(shard: &Rc<Shard>, route: Route) -> Response {
    match route {
        Route::Health => health(shard),
        Route::Ready => readiness(shard),
        Route::Stat { json } => {
            let snapshots = shard.snapshots().await;
            let node = node_readings(shard, &snapshots);
            let report = StatReport::new(&node);
            if json {
                Response::json(200, &report.json())
            } else {
                Response::text(200, report.text())
            }
        }
        Route::Metrics => {
            let snapshots = shard.snapshots().await;
            let node = node_readings(shard, &snapshots);
            Response {
                status: 200,
                content_type: ContentType::OpenMetrics,
                body: metrics::render(&node).into_bytes(),
            }
        }
        Route::Publish(_)
        | Route::PusherApi
        | Route::CentrifugoApi(_)
        | Route::Subscribe(_)
        | Route::Echo
        | Route::PusherConnect
        | Route::CentrifugoConnect => {
            unreachable!("publishes have a body; WebSocket routes are upgraded")
        }
    }
}

/// What `/stat` and `/metrics` show, from the shards' snapshots.
fn node_readings<'a>(shard: &Shard, snapshots: &'a [ShardSnapshot]) -> NodeReadings<'a> {
    let shared = &shard.shared;
    NodeReadings {
        shards: shared.shards.len(),
        shard_up: shared.shard_health(),
        uptime_s: shared.started_at.elapsed().as_secs(),
        snapshots,
        redis: shared.redis.as_ref().map(|redis| redis.readings()),
        webhooks: shared
            .webhooks
            .as_ref()
            .map(|webhooks| webhooks.status().readings()),
        process: ProcessReadings::read(),
    }
}

/// Room for a Centrifugo API body's JSON around its data (`channel`, `since`, ...).
const CENTRIFUGO_API_ENVELOPE_BYTES: usize = 4096;

/// Largest Pusher HTTP API request body (a batch of 10 events of 10 KiB each, with their JSON,
/// fits many times over).
const PUSHER_API_BODY_MAX_BYTES: usize = 1 << 20;

/// Reads a publish body (`Content-Length` bytes after the head, at most `limit_bytes`).
async fn read_body(
    shard: &Shard,
    stream: &mut TcpStream,
    head: &RequestHead,
    buffer: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<(Bytes, usize), Option<HttpError>> {
    if head.has_transfer_encoding {
        return Err(Some(HttpError::LengthRequired));
    }
    let length = head.content_length.unwrap_or(0);
    if length > limit_bytes as u64 {
        return Err(Some(HttpError::PayloadTooLarge));
    }
    let end = head.head_len + length as usize;
    if head.expect_continue
        && buffer.len() < end
        && bounded(shard, stream.write_all(http::CONTINUE_RESPONSE))
            .await
            .is_none()
    {
        return Err(None);
    }
    let work = async {
        // Bounded: each round reads at least one byte towards `end`.
        while buffer.len() < end {
            let wanted = (end - buffer.len()).min(64 << 10);
            match read_more(shard, stream, buffer, wanted).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    };
    match bounded(shard, work).await {
        Some(true) => Ok((Bytes::copy_from_slice(&buffer[head.head_len..end]), end)),
        Some(false) => Err(None),
        None => {
            shard
                .registry
                .borrow_mut()
                .stats
                .count(Counter::HandshakeTimeouts);
            Err(None)
        }
    }
}

/// `POST /publish/{channel}`: hands the message to every shard.
async fn publish(
    shard: &Rc<Shard>,
    channel: crate::channel::ChannelName,
    payload: Bytes,
) -> Result<Response, HttpError> {
    let local_subscribers = shard
        .registry
        .borrow()
        .subscriber_count(AppSlot::DEFAULT, &channel);
    shard
        .registry
        .borrow_mut()
        .stats
        .count(Counter::PublishedHttp);
    if let Some(link) = &shard.redis {
        // Through Redis, so every node delivers it exactly once, this one included.
        let receivers = shard
            .publish_through_redis(link, AppSlot::DEFAULT, channel.clone(), payload)
            .await
            .map(|published| published.receivers)
            .map_err(|error| HttpError::Unavailable(format!("redis: {error}")))?;
        return Ok(Response::json(
            200,
            &json!({
                "channel": channel.as_str(),
                "redis_receivers": receivers,
                "local_subscribers": local_subscribers,
            }),
        ));
    }
    let published = shard
        .publish(Publication::new(channel.clone(), payload))
        .await;
    if let Err(refused) = published {
        return Err(HttpError::Overloaded(format!(
            "{} of {} shards could not take the message within {}; it was sent nowhere",
            refused.len(),
            shard.shared.shards.len(),
            humantime::format_duration(shard.config.publish_timeout)
        )));
    }
    Ok(Response::json(
        200,
        &json!({
            "channel": channel.as_str(),
            "shards": shard.shared.shards.len(),
            "local_subscribers": local_subscribers,
        }),
    ))
}

/// The status body shared by `/healthz` and `/readyz`.
fn status_response(shard: &Shard, status: u16, word: &str) -> Response {
    let shared = &shard.shared;
    let health = shared.shard_health();
    let redis = shared.redis.as_ref().map_or("off", |redis| redis.state());
    Response::json(
        status,
        &json!({
            "status": word,
            "shards": shared.shards.len(),
            "shards_up": health.iter().filter(|up| **up).count(),
            "live": health.iter().all(|up| *up),
            "ready": shared.ready(),
            "redis": redis,
        }),
    )
}

/// `GET /healthz`: liveness. 200 while every shard runs (whatever Redis does, so a Redis outage
/// never gets the process restarted); 503 when a shard died or stalled, when the Redis
/// subscriber core died (only a restart mends either), or while draining. The body also says
/// whether the node is ready.
fn health(shard: &Shard) -> Response {
    let redis_core_dead = shard
        .shared
        .redis
        .as_ref()
        .is_some_and(|redis| !redis.core_alive());
    if shard.shared.shutting_down() {
        status_response(shard, 503, "draining")
    } else if shard.shared.all_shards_healthy() && !redis_core_dead {
        status_response(shard, 200, "ok")
    } else {
        status_response(shard, 503, "degraded")
    }
}

/// `GET /readyz`: 200 only when the node delivers: shards up and, with `--redis`, Redis
/// connected, every wanted channel subscribed and the subscriber core alive.
fn readiness(shard: &Shard) -> Response {
    if shard.shared.ready() {
        status_response(shard, 200, "ready")
    } else {
        status_response(shard, 503, "not ready")
    }
}

/// Validates the upgrade, hands the socket to the registry, answers 101, and ends the task:
/// from here on the connection's owner is the registry and its reader the shard's reactor.
async fn upgrade(
    socket: SocketGuard,
    mut stream: TcpStream,
    head: RequestHead,
    route: Route,
    leftover: Vec<u8>,
) {
    let shard = socket.shard.clone();
    let accept = match validate_upgrade(&head) {
        Ok(accept) => accept,
        Err(error) => return Box::pin(refuse(&shard, &mut stream, error)).await,
    };
    if shard.draining.is_set() {
        return Box::pin(refuse(&shard, &mut stream, HttpError::ShuttingDown)).await;
    }
    if shard.registry.borrow().len() >= shard.shared.max_connections_per_shard {
        shard
            .registry
            .borrow_mut()
            .stats
            .count(Counter::ConnectionsOverLimit);
        return Box::pin(refuse(&shard, &mut stream, HttpError::ConnectionLimit)).await;
    }
    let (admission, refusal) = match admit_upgrade(&shard, &stream, &head, &route) {
        Ok(admitted) => admitted,
        Err(error) => return Box::pin(refuse(&shard, &mut stream, error)).await,
    };
    // The registry owns the socket from here on. glommio's stream keeps its own descriptor
    // (and may have a read poll pending on it), so the registry takes a duplicate and the
    // stream is dropped, closing the original.
    // SAFETY: the descriptor is open for as long as `stream` lives, which is past this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let owned = match borrowed.try_clone_to_owned() {
        Ok(owned) => owned,
        Err(error) => {
            log::warn!("shard {}: cannot take over a socket: {error}", shard.id);
            return Box::pin(refuse(
                &shard,
                &mut stream,
                HttpError::Overloaded("out of descriptors".into()),
            ))
            .await;
        }
    };
    let channel = match route {
        Route::Subscribe(channel) => Some(channel),
        _ => None,
    };
    let streamed = matches!(admission.protocol, Protocol::RawStream(_));
    let since = match (&channel, streamed) {
        (Some(_), _) => match stream_position(&head, streamed) {
            Ok(since) => since,
            Err(error) => return Box::pin(refuse(&shard, &mut stream, error)).await,
        },
        _ => None,
    };
    let negotiated = match admission.deflate {
        Deflate::On(negotiated) => Some(negotiated),
        Deflate::Off => None,
    };
    let key = match register(
        &shard,
        owned,
        admission,
        refusal,
        channel.as_ref(),
        &accept,
        leftover,
    ) {
        Ok(key) => key,
        // Nothing of the connection is left in the registry: refuse on the original stream.
        Err(error) => return Box::pin(refuse(&shard, &mut stream, error)).await,
    };
    drop(stream);
    if let Some(channel) = &channel
        && streamed
    {
        let stream = RawStreamStart {
            channel: channel.clone(),
            since,
            accept: &accept,
            negotiated,
        };
        super::history::complete_raw_stream(&shard, key, stream).await;
    }
    if let Some(channel) = &channel
        && shard.registry.borrow().is_held(key)
    {
        if !shard.wait_for_redis_subscription(channel).await {
            log::debug!("shard {}: {channel} not yet subscribed in Redis", shard.id);
        }
        shard.registry.borrow_mut().release(key);
        shard.write_slice(&[key]);
        shard.registry.borrow_mut().release_queue_if_empty(key);
    }
    drop(socket);
}

/// The checks an upgrade passes before its socket is taken over: its `Origin`, its token (for
/// a channel that needs one), and its address's connection count. Returns what the registry
/// keeps of them.
/// A Pusher connection that failed its own checks is still upgraded (the protocol answers
/// with `pusher:error` and a close code), so it comes back as the second value.
fn admit_upgrade(
    shard: &Shard,
    stream: &TcpStream,
    head: &RequestHead,
    route: &Route,
) -> Result<(Admission, Option<ConnectError>), HttpError> {
    let config = &shard.config;
    if let Some(origin) = &head.origin
        && !config.allowed_origins.is_empty()
        && !config
            .allowed_origins
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
    {
        return Err(HttpError::OriginNotAllowed);
    }
    let mut refusal = None;
    let protocol = match route {
        Route::Echo => Protocol::Raw(RawRole::Echo),
        Route::CentrifugoConnect => {
            super::centrifugo::admit(shard.now_ms(), &shard.registry.borrow().centrifugo_limits())
        }
        Route::PusherConnect => match super::pusher::admit(shard, &head.path, &head.query) {
            Ok(connection) => Protocol::Pusher(Box::new(connection)),
            Err(error) => {
                refusal = Some(error);
                Protocol::Raw(RawRole::Subscriber)
            }
        },
        Route::Subscribe(channel) if shard.history_of(AppSlot::DEFAULT, channel).is_some() => {
            Protocol::RawStream(Box::new(RawStream::subscribing(channel)))
        }
        _ => Protocol::Raw(RawRole::Subscriber),
    };
    let mut expiry = None;
    if let Route::Subscribe(channel) = route {
        let token = http::query_parameter(&head.query, "token");
        let grant = auth::token::authorize(
            channel.as_str(),
            token.as_deref(),
            shard.tokens.as_ref(),
            config.require_token,
        )
        .map_err(HttpError::SubscriptionRefused)?;
        expiry = grant.map(|grant| TokenExpiry::at_unix_s(grant.expires_at_s));
    }
    let ticket = match &shard.shared.address_limit {
        Some(limit) => {
            let address = stream
                .peer_addr()
                .map_err(|_| HttpError::BadRequest("no peer address"))?;
            Some(AddressLimit::acquire(limit, address.ip()).ok_or(HttpError::AddressLimit)?)
        }
        None => None,
    };
    // RFC 7692 §5: the first acceptable permessage-deflate offer, if compression is on.
    let deflate = match config.compression {
        Compression::On => {
            negotiate_deflate(head, &DeflatePolicy::default()).map_or(Deflate::Off, Deflate::On)
        }
        Compression::Off => Deflate::Off,
    };
    let admission = Admission {
        protocol,
        expiry,
        ticket,
        deflate,
    };
    Ok((admission, refusal))
}

/// `?since=OFFSET&epoch=EPOCH` of a `/ws/{channel}` upgrade: only on a channel with history,
/// both or neither.
fn stream_position(
    head: &RequestHead,
    streamed: bool,
) -> Result<Option<StreamPosition>, HttpError> {
    let since = http::query_parameter(&head.query, "since");
    let epoch = http::query_parameter(&head.query, "epoch");
    let (since, epoch) = match (since, epoch) {
        (None, None) => return Ok(None),
        (Some(since), Some(epoch)) if !epoch.is_empty() => (since, epoch),
        _ => {
            return Err(HttpError::BadRequest(
                "?since= needs ?epoch= (both, from the stream position headers)",
            ));
        }
    };
    if !streamed {
        return Err(HttpError::BadRequest(
            "this channel keeps no history: ?since= cannot be answered",
        ));
    }
    let offset = since
        .parse::<u64>()
        .map_err(|_| HttpError::BadRequest("?since= must be an offset (a whole number)"))?;
    Ok(Some(StreamPosition {
        offset,
        epoch: Epoch::new(&epoch),
    }))
}

/// What completing a positioned raw subscription needs.
pub struct RawStreamStart<'a> {
    /// The channel.
    pub channel: crate::channel::ChannelName,
    /// The client's position, when it asks to recover.
    pub since: Option<StreamPosition>,
    /// `Sec-WebSocket-Accept`.
    pub accept: &'a str,
    /// What was negotiated about permessage-deflate.
    pub negotiated: Option<crate::protocol::deflate::Negotiated>,
}

/// Registers an upgraded socket, subscribes it, queues and writes the 101, and handles the
/// bytes pipelined behind the request. On an error nothing of it is left in the registry (its
/// descriptor is closed with the failed entry) and the caller answers with the error.
fn register(
    shard: &Rc<Shard>,
    owned: OwnedFd,
    admission: Admission,
    refusal: Option<ConnectError>,
    channel: Option<&crate::channel::ChannelName>,
    accept: &str,
    leftover: Vec<u8>,
) -> Result<ConnectionKey, HttpError> {
    let now_ms = shard.now_ms();
    let negotiated = match admission.deflate {
        Deflate::On(negotiated) => Some(negotiated),
        Deflate::Off => None,
    };
    let mut registry = shard.registry.borrow_mut();
    let key = registry.insert(owned, admission, now_ms).map_err(|error| {
        log::warn!("shard {}: cannot register a connection: {error}", shard.id);
        HttpError::Overloaded("cannot register the connection".into())
    })?;
    if let Some(channel) = channel
        && registry.subscribe(key, AppSlot::DEFAULT, channel).is_err()
    {
        registry.abort(key);
        return Err(HttpError::Overloaded(
            "too many channels on this shard".into(),
        ));
    }
    if crate::faults::fail_registration(channel.map(|c| c.as_str())) {
        registry.abort(key);
        return Err(HttpError::Overloaded(
            "test fault: registration failed".into(),
        ));
    }
    // With Redis, the first subscriber of a channel on this shard gets its 101 once the channel
    // is subscribed in Redis (bounded wait, in `upgrade`), so it misses nothing published after
    // its handshake: its writes are held until then.
    if let Some(channel) = channel
        && shard.redis.is_some()
        && !registry.channel_confirmed(AppSlot::DEFAULT, channel)
    {
        registry.hold(key);
    }
    // The 101 goes through the connection's queue, so nothing can overtake it. A positioned
    // raw subscriber gets it once its channel's history has answered (with its position in
    // the headers); its publications are held by its cursor until then.
    let streamed = matches!(
        registry.get(key).map(|connection| connection.protocol()),
        Some(Protocol::RawStream(_))
    );
    if !streamed {
        let response = switching_protocols_response_with(accept, negotiated.as_ref());
        registry.queue(key, Bytes::from(response));
    }
    registry.stats.count(Counter::WebsocketOpened);
    // A Pusher client hears first whether it is welcome.
    let greeting = match registry.get(key).map(|connection| connection.protocol()) {
        Some(Protocol::Pusher(connection)) => {
            Some(super::pusher::connection_established(shard, connection))
        }
        _ => None,
    };
    if let Some(frame) = greeting {
        registry.queue(key, frame);
    }
    if let Some(error) = refusal {
        super::pusher::apply_reply(&mut registry, key, error.reply(), now_ms);
    }
    drop(registry);
    shard.write_slice(&[key]);
    shard.registry.borrow_mut().release_queue_if_empty(key);
    if !leftover.is_empty() {
        // Frames pipelined behind the request head: handled like a read.
        let mut bytes = leftover;
        super::reactor::handle_pipelined(shard, key, &mut bytes, now_ms);
        super::centrifugo::spawn_deferred(shard);
        shard.write_slice(&[key]);
    }
    Ok(key)
}

/// Answers with `error`'s status, counts it, and closes.
async fn refuse(shard: &Shard, stream: &mut TcpStream, error: HttpError) {
    shard
        .registry
        .borrow_mut()
        .stats
        .count_http_rejection(error.status());
    respond_and_close(stream, &error.response()).await;
}

/// Writes `response` (bounded in time) and closes with a linger.
async fn respond_and_close(stream: &mut TcpStream, response: &[u8]) {
    let written =
        glommio::timer::timeout(LINGER, async { Ok(stream.write_all(response).await) }).await;
    if matches!(written, Ok(Ok(()))) {
        linger_close(stream).await;
    }
}

/// Half-closes, then reads and discards for a bounded time and amount, so the peer receives
/// everything we wrote before the socket is closed (closing with unread input sends a reset).
async fn linger_close(stream: &mut TcpStream) {
    // SAFETY: the descriptor is open for as long as `stream` lives, which is past this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 512];
    let drain = async {
        let mut discarded = 0;
        // Bounded by LINGER_BYTES_MAX and the timeout around it.
        while discarded < LINGER_BYTES_MAX {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read,
            }
        }
        Ok(())
    };
    let _ = glommio::timer::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::has_head_end;

    #[test]
    fn head_end_is_found_across_reads() {
        let mut scanned = 0;
        let mut buffer = b"GET / HTTP/1.1\r\nHost: x\r\n\r".to_vec();
        assert!(!has_head_end(&buffer, &mut scanned));
        buffer.push(b'\n');
        assert!(has_head_end(&buffer, &mut scanned));
        let mut scanned = 0;
        assert!(has_head_end(b"GET / HTTP/1.1\nHost: x\n\n", &mut scanned));
        let mut scanned = 0;
        assert!(!has_head_end(
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            &mut scanned
        ));
        let mut scanned = 0;
        assert!(has_head_end(b"GET / HTTP/1.1\nHost: x\n\r\n", &mut scanned));
        // Split at every point: found exactly when the last byte arrives.
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 1..head.len() {
            let mut scanned = 0;
            assert!(!has_head_end(&head[..cut], &mut scanned), "{cut}");
            assert!(has_head_end(head, &mut scanned), "{cut}");
        }
    }
}
