//! The Redis subscriber core: one thread, pinned to its own core, that joins ringcast nodes
//! through Redis pub/sub (ws4redis-compatible channel names `{prefix}:broadcast:{channel}`).
//!
//! It runs `fred` on a single-threaded tokio runtime (fred's experimental glommio runtime calls
//! tokio timers and panics outside tokio, so the subscriber core is tokio and talks to the
//! glommio shards through executor-agnostic bounded channels). Shards never talk to Redis.
//!
//! Three jobs, three tasks:
//! - subscriptions: shards report which channels they gained or lost (batched per shard tick);
//!   the core keeps, per channel, how many shards want it, and SUBSCRIBEs when the first shard
//!   wants it and UNSUBSCRIBEs when the last lets go, in batched commands. After a reconnect
//!   every wanted channel is subscribed again before the node reports ready;
//! - forwarding: every message received is sent, in Redis's order, to every shard over a bounded
//!   channel; a full channel is waited on for at most `--redis-forward-timeout`, then the message
//!   is counted as dropped for that shard (the reader never blocks forever);
//! - publishing: `POST /publish` on any shard becomes one PUBLISH here (pipelined, in arrival
//!   order); while Redis is down it fails at once, so the publisher gets a 503, never a silent
//!   success.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use tokio::task::JoinHandle;

use crate::channel::ChannelName;
use crate::publication::Publication;
use crate::telemetry::RedisReadings;
use crate::telemetry::counters::RedisCounter;

/// Most channels named in one SUBSCRIBE or UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND_MAX: usize = 1000;
/// Most subscription updates taken before the subscriptions are reconciled with Redis.
const UPDATES_PER_ROUND_MAX: usize = 1024;
/// Capacity of the channels from the shards to the subscriber core.
const REQUEST_CHANNEL_CAPACITY: usize = 1024;
/// PUBLISH commands in flight at once (pipelined on one connection, answered in order).
const PUBLISHES_IN_FLIGHT_MAX: usize = 256;
/// How long one Redis command may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most shard reports waiting for their channels to be confirmed.
const WAITERS_MAX: usize = 4096;
/// Capacity of fred's internal message broadcast (messages received but not yet forwarded).
const RECEIVED_BUFFER_MESSAGES: usize = 65536;

/// What the Redis link is doing, for `/healthz`, `/readyz`, `/stat` and `/metrics`. Written only
/// by the subscriber core (never on a shard's data path).
#[derive(Debug, Default)]
pub struct RedisStatus {
    /// The subscriber connection is up.
    pub connected: AtomicBool,
    /// Connected, and every channel some shard wants is subscribed.
    pub ready: AtomicBool,
    /// The publishing connection is up.
    pub publisher_connected: AtomicBool,
    /// One of the core's tasks ended (a panic or a bug): the node delivers nothing from Redis
    /// any more and must not report ready.
    pub core_failed: AtomicBool,
    /// Channels currently subscribed.
    pub subscribed_channels: AtomicU64,
    /// The counters, indexed by [`RedisCounter::index`].
    counters: [AtomicU64; RedisCounter::COUNT],
}

impl RedisStatus {
    /// Both connections up, every wanted channel subscribed, and the core alive.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self.publisher_connected.load(Ordering::Relaxed)
            && !self.core_failed.load(Ordering::Relaxed)
    }

    /// Every task of the subscriber core runs.
    pub fn core_alive(&self) -> bool {
        !self.core_failed.load(Ordering::Relaxed)
    }

    /// Adds `amount` to `counter`.
    pub fn add(&self, counter: RedisCounter, amount: u64) {
        self.counters[counter.index()].fetch_add(amount, Ordering::Relaxed);
    }

    /// The state as a short word for humans.
    pub fn state(&self) -> &'static str {
        if self.core_failed.load(Ordering::Relaxed) {
            "failed"
        } else if !self.connected.load(Ordering::Relaxed)
            || !self.publisher_connected.load(Ordering::Relaxed)
        {
            "disconnected"
        } else if !self.ready.load(Ordering::Relaxed) {
            "subscribing"
        } else {
            "subscribed"
        }
    }

    /// A copy for `/stat` and `/metrics`.
    pub fn readings(&self) -> RedisReadings {
        RedisReadings {
            state: self.state(),
            connected: self.connected.load(Ordering::Relaxed),
            publisher_connected: self.publisher_connected.load(Ordering::Relaxed),
            ready: self.is_ready(),
            core_up: !self.core_failed.load(Ordering::Relaxed),
            subscribed_channels: self.subscribed_channels.load(Ordering::Relaxed),
            counters: std::array::from_fn(|index| self.counters[index].load(Ordering::Relaxed)),
        }
    }
}

/// A shard's report of the channels it gained and lost since its last report.
#[derive(Debug)]
pub struct InterestUpdate {
    /// Which shard.
    pub shard: usize,
    /// Channels that now have subscribers on that shard.
    pub added: Vec<ChannelName>,
    /// Channels that no longer have subscribers on that shard.
    pub removed: Vec<ChannelName>,
    /// Fulfilled once every added channel is subscribed in Redis.
    pub confirmed: oneshot::Sender<()>,
}

/// A publish to send through Redis.
#[derive(Debug)]
pub struct PublishRequest {
    /// The channel (without prefix).
    pub channel: ChannelName,
    /// The message.
    pub payload: Bytes,
    /// Number of Redis subscribers that received it (all nodes), or why it failed.
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// What a shard holds to talk to the subscriber core.
#[derive(Debug, Clone)]
pub struct RedisLink {
    /// Subscription updates.
    pub interest: mpsc::Sender<InterestUpdate>,
    /// Publishes.
    pub publish: mpsc::Sender<PublishRequest>,
    /// Shared status.
    pub status: Arc<RedisStatus>,
}

/// Settings of the subscriber core.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Channel prefix (`ws` gives `ws:broadcast:{channel}`).
    pub prefix: String,
    /// Longest wait for a full shard channel before a message is dropped for that shard.
    pub forward_timeout: Duration,
    /// Core to pin the thread to.
    pub core: Option<usize>,
}

impl RedisSettings {
    fn redis_channel(&self, channel: &ChannelName) -> String {
        format!("{}:broadcast:{}", self.prefix, channel)
    }
}

/// Starts the subscriber core. `shards` receive every message (one sender per shard).
/// Returns the link the shards use, after checking the URL (a down Redis is not an error: the
/// core keeps retrying with capped backoff).
pub fn start(
    settings: RedisSettings,
    shards: Vec<mpsc::Sender<Publication>>,
) -> Result<RedisLink, String> {
    let config = Config::from_url(&settings.url)
        .map_err(|error| format!("--redis {}: {error}", redacted_url(&settings.url)))?;
    let status = Arc::new(RedisStatus::default());
    let (interest_sender, interest) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let (publish_sender, publishes) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let thread_status = status.clone();
    std::thread::Builder::new()
        .name("ringcast-redis".into())
        .spawn(move || {
            if let Some(core) = settings.core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
            {
                log::warn!("redis: could not pin to core {core}");
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    log::error!("redis: cannot start a runtime: {error}");
                    return;
                }
            };
            runtime.block_on(run(
                settings,
                config,
                thread_status,
                shards,
                interest,
                publishes,
            ));
        })
        .map_err(|error| format!("cannot start the Redis thread: {error}"))?;
    Ok(RedisLink {
        interest: interest_sender,
        publish: publish_sender,
        status,
    })
}

/// `url` with any password replaced by `***`, for logs (`redis://:secret@host` ->
/// `redis://:***@host`).
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let redacted = if userinfo.contains(':') {
        format!("{scheme}://{user}:***@{host}")
    } else {
        format!("{scheme}://***@{host}")
    };
    match path {
        Some(path) => format!("{redacted}/{path}"),
        None => redacted,
    }
}

fn reconnect_policy() -> ReconnectPolicy {
    // Retry forever, 100 ms doubling up to 5 s.
    ReconnectPolicy::new_exponential(0, 100, 5000, 2)
}

fn build_clients(config: Config) -> Result<(SubscriberClient, Client), Error> {
    let mut config = config;
    // Redis down at start is not fatal: the first connection retries like a reconnect.
    config.fail_fast = false;
    let subscriber = Builder::from_config(config.clone())
        .set_policy(reconnect_policy())
        .with_performance_config(|performance| {
            performance.broadcast_channel_capacity = RECEIVED_BUFFER_MESSAGES;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = COMMAND_TIMEOUT;
        })
        .build_subscriber_client()?;
    let publisher = Builder::from_config(config)
        .set_policy(reconnect_policy())
        .with_connection_config(|connection| {
            connection.connection_timeout = COMMAND_TIMEOUT;
        })
        .build()?;
    Ok((subscriber, publisher))
}

async fn run(
    settings: RedisSettings,
    config: Config,
    status: Arc<RedisStatus>,
    shards: Vec<mpsc::Sender<Publication>>,
    interest: mpsc::Receiver<InterestUpdate>,
    publishes: mpsc::Receiver<PublishRequest>,
) {
    let (subscriber, publisher) = match build_clients(config) {
        Ok(clients) => clients,
        Err(error) => {
            log::error!("redis: {error}");
            return;
        }
    };
    let publisher_events = (publisher.reconnect_rx(), publisher.error_rx());
    let messages = subscriber.message_rx();
    let reconnects = subscriber.reconnect_rx();
    let errors = subscriber.error_rx();
    let _subscriber_connection = subscriber.connect();
    let _publisher_connection = publisher.connect();
    let (resubscribe_sender, resubscribe) = tokio::sync::mpsc::channel(1);

    let local = tokio::task::LocalSet::new();
    let tasks = vec![
        (
            "connection watcher",
            local.spawn_local(watch_connection(
                status.clone(),
                reconnects,
                errors,
                resubscribe_sender,
            )),
        ),
        (
            "publisher watcher",
            local.spawn_local(watch_publisher(status.clone(), publisher_events)),
        ),
        (
            "forwarder",
            local.spawn_local(forward(settings.clone(), status.clone(), messages, shards)),
        ),
        (
            "publisher",
            local.spawn_local(publish(
                settings.clone(),
                status.clone(),
                publisher.clone(),
                publishes,
            )),
        ),
        (
            "subscription manager",
            local.spawn_local(manage_subscriptions(
                settings,
                status.clone(),
                subscriber,
                interest,
                resubscribe,
            )),
        ),
    ];
    local.run_until(supervise(status, tasks)).await;
}

/// Waits for the first of the core's tasks to end. Each runs for the life of the process, so
/// one that ends (it returned, or it panicked: a `LocalSet` would otherwise swallow the panic)
/// leaves the node unable to deliver from Redis: it is marked failed, so `/readyz` says 503 and
/// a load balancer stops sending clients here.
async fn supervise(status: Arc<RedisStatus>, tasks: Vec<(&'static str, JoinHandle<()>)>) {
    type Ended = (&'static str, Result<(), tokio::task::JoinError>);
    let waits = tasks.into_iter().map(|(name, handle)| {
        Box::pin(async move { (name, handle.await) })
            as std::pin::Pin<Box<dyn std::future::Future<Output = Ended>>>
    });
    let ((name, result), _, _) = futures::future::select_all(waits).await;
    status.core_failed.store(true, Ordering::Relaxed);
    status.ready.store(false, Ordering::Relaxed);
    match result {
        Err(error) if error.is_panic() => {
            log::error!("redis: the subscriber core's {name} task panicked; the node is not ready")
        }
        _ => log::error!("redis: the subscriber core's {name} task ended; the node is not ready"),
    }
}

/// Tracks connection state: errors make the link not ready; a reconnect asks the subscription
/// manager to subscribe everything again.
async fn watch_connection(
    status: Arc<RedisStatus>,
    mut reconnects: tokio::sync::broadcast::Receiver<Server>,
    mut errors: tokio::sync::broadcast::Receiver<(Error, Option<Server>)>,
    resubscribe: tokio::sync::mpsc::Sender<()>,
) {
    let mut first = true;
    loop {
        tokio::select! {
            event = reconnects.recv() => match event {
                Ok(server) => {
                    if first {
                        log::info!("redis: connected to {server}");
                        first = false;
                    } else {
                        log::warn!("redis: reconnected to {server}");
                        status.add(RedisCounter::Reconnects, 1);
                    }
                    status.connected.store(true, Ordering::Relaxed);
                    let _ = resubscribe.try_send(());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            event = errors.recv() => match event {
                Ok((error, _)) => {
                    if status.connected.swap(false, Ordering::Relaxed) {
                        log::warn!("redis: connection lost: {error}");
                    }
                    status.ready.store(false, Ordering::Relaxed);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Tracks the publishing connection: publishes are refused at once while it is down.
async fn watch_publisher(
    status: Arc<RedisStatus>,
    (mut reconnects, mut errors): (
        tokio::sync::broadcast::Receiver<Server>,
        tokio::sync::broadcast::Receiver<(Error, Option<Server>)>,
    ),
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            event = reconnects.recv() => match event {
                Ok(_) => status.publisher_connected.store(true, Ordering::Relaxed),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            event = errors.recv() => match event {
                Ok(_) => status.publisher_connected.store(false, Ordering::Relaxed),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Subscription state of the node, reconciled with Redis in batches.
async fn manage_subscriptions(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    subscriber: SubscriberClient,
    mut updates: mpsc::Receiver<InterestUpdate>,
    mut resubscribe: tokio::sync::mpsc::Receiver<()>,
) {
    // Redis channel -> set of shards that want it.
    let mut wanted: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut retry = Duration::from_millis(100);
    let mut failed = false;
    loop {
        tokio::select! {
            update = updates.next() => {
                let Some(update) = update else { return };
                apply_update(&settings, &mut wanted, &mut waiting, update);
                // Batch: take whatever else is already queued.
                for _ in 0..UPDATES_PER_ROUND_MAX {
                    match updates.try_recv() {
                        Ok(update) => apply_update(&settings, &mut wanted, &mut waiting, update),
                        _ => break,
                    }
                }
            }
            signal = resubscribe.recv() => {
                if signal.is_none() { return; }
                // After a reconnect Redis remembers nothing: subscribe everything again.
                subscribed.clear();
                failed = false;
            }
            _ = tokio::time::sleep(retry), if failed => {}
        }
        if !status.connected.load(Ordering::Relaxed) {
            continue;
        }
        match reconcile(&subscriber, &wanted, &mut subscribed).await {
            Ok(()) => {
                failed = false;
                retry = Duration::from_millis(100);
                status.ready.store(true, Ordering::Relaxed);
                for confirmed in waiting.drain(..) {
                    let _ = confirmed.send(());
                }
            }
            Err(error) => {
                log::warn!("redis: subscription update failed ({error}); retrying in {retry:?}");
                failed = true;
                retry = (retry * 2).min(Duration::from_secs(5));
                status.ready.store(false, Ordering::Relaxed);
            }
        }
        status
            .subscribed_channels
            .store(subscribed.len() as u64, Ordering::Relaxed);
    }
}

fn apply_update(
    settings: &RedisSettings,
    wanted: &mut HashMap<String, HashSet<usize>>,
    waiting: &mut Vec<oneshot::Sender<()>>,
    update: InterestUpdate,
) {
    for channel in &update.added {
        wanted
            .entry(settings.redis_channel(channel))
            .or_default()
            .insert(update.shard);
    }
    for channel in &update.removed {
        let name = settings.redis_channel(channel);
        if let Some(shards) = wanted.get_mut(&name) {
            shards.remove(&update.shard);
            if shards.is_empty() {
                wanted.remove(&name);
            }
        }
    }
    waiting.push(update.confirmed);
    // Bounded: while Redis is down, the oldest waiters are dropped (their shards stop waiting
    // and serve the connections anyway, as they would after their own timeout).
    if waiting.len() > WAITERS_MAX {
        waiting.drain(..waiting.len() - WAITERS_MAX);
    }
}

/// Brings Redis in line with `wanted`: UNSUBSCRIBE what nobody wants, SUBSCRIBE what is
/// missing, in commands of up to `CHANNELS_PER_COMMAND_MAX` channels.
async fn reconcile(
    subscriber: &SubscriberClient,
    wanted: &HashMap<String, HashSet<usize>>,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let unwanted: Vec<String> = subscribed
        .iter()
        .filter(|channel| !wanted.contains_key(*channel))
        .cloned()
        .collect();
    for batch in unwanted.chunks(CHANNELS_PER_COMMAND_MAX) {
        timed(subscriber.unsubscribe(batch.to_vec())).await?;
        for channel in batch {
            subscribed.remove(channel);
        }
    }
    let missing: Vec<String> = wanted
        .keys()
        .filter(|channel| !subscribed.contains(*channel))
        .cloned()
        .collect();
    for batch in missing.chunks(CHANNELS_PER_COMMAND_MAX) {
        timed(subscriber.subscribe(batch.to_vec())).await?;
        subscribed.extend(batch.iter().cloned());
    }
    Ok(())
}

async fn timed<T>(
    command: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// Forwards every message, in order, to every shard.
async fn forward(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    mut messages: tokio::sync::broadcast::Receiver<Message>,
    mut shards: Vec<mpsc::Sender<Publication>>,
) {
    let prefix = format!("{}:broadcast:", settings.prefix);
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(count)) => {
                log::warn!("redis: {count} messages lost: received faster than forwarded");
                status.add(RedisCounter::MessagesDropped, count * shards.len() as u64);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        status.add(RedisCounter::MessagesReceived, 1);
        let Some(publication) = to_publication(&prefix, message) else {
            status.add(RedisCounter::MessagesInvalid, 1);
            continue;
        };
        for shard in shards.iter_mut() {
            let delivered = match shard.try_send(publication.clone()) {
                Ok(()) => true,
                Err(error) if error.is_full() => {
                    let publication = error.into_inner();
                    matches!(
                        tokio::time::timeout(settings.forward_timeout, shard.send(publication))
                            .await,
                        Ok(Ok(()))
                    )
                }
                Err(_) => false,
            };
            if !delivered {
                status.add(RedisCounter::MessagesDropped, 1);
            }
        }
    }
}

fn to_publication(prefix: &str, message: Message) -> Option<Publication> {
    let channel = ChannelName::new(message.channel.strip_prefix(prefix)?)?;
    let payload = match message.value {
        Value::Bytes(bytes) => bytes,
        Value::String(text) => text.into_inner(),
        _ => return None,
    };
    crate::faults::on_redis_payload(&payload);
    Publication::from_redis(crate::channel::AppSlot::DEFAULT, channel, payload)
}

/// Turns publish requests into PUBLISH commands, pipelined and answered in arrival order.
async fn publish(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    publisher: Client,
    requests: mpsc::Receiver<PublishRequest>,
) {
    requests
        .map(|request| {
            let publisher = publisher.clone();
            let channel = settings.redis_channel(&request.channel);
            async move {
                // One attempt, failing fast while the connection is down: a publish answered 503
                // must not be delivered later by a retry after the reconnect.
                let options = Options {
                    max_attempts: Some(1),
                    fail_fast: true,
                    timeout: Some(COMMAND_TIMEOUT),
                    ..Options::default()
                };
                let result = if publisher.is_connected() {
                    timed(
                        publisher
                            .with_options(&options)
                            .publish::<u64, _, _>(channel, request.payload),
                    )
                    .await
                } else {
                    Err("Redis is not connected".to_string())
                };
                (request.reply, result)
            }
        })
        .buffered(PUBLISHES_IN_FLIGHT_MAX)
        .for_each(|(reply, result)| {
            let counter = if result.is_ok() {
                RedisCounter::Published
            } else {
                RedisCounter::PublishFailures
            };
            status.add(counter, 1);
            let _ = reply.send(result);
            async {}
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redacted_url("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted_url("redis://user:s3cret@host:6379"),
            "redis://user:***@host:6379"
        );
        assert_eq!(redacted_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
