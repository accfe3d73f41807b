//! The Redis subscriber core: one thread, pinned to its own core, that joins ringcast nodes
//! through Redis pub/sub (ws4redis-compatible channel names `{prefix}:broadcast:{channel}`):
//! one Redis (`--redis`: SUBSCRIBE through our own RESP link, [`crate::broker::single`];
//! PUBLISH and the scripts through fred) or a Redis Cluster
//! (`--redis-cluster`: sharded pub/sub, SSUBSCRIBE / SPUBLISH on the master serving each
//! channel's slot, through [`crate::broker::cluster`]). Both are one [`Backend`]; the tasks
//! around it (reference counting per shard, forwarding, publishing, supervision) are the same.
//!
//! It runs `fred` on a single-threaded tokio runtime (fred's experimental glommio runtime calls
//! tokio timers and panics outside tokio, so the subscriber core is tokio and talks to the
//! glommio shards through executor-agnostic bounded channels). Shards never talk to Redis.
//!
//! Three jobs, three tasks:
//! - subscriptions: shards report which channels they gained or lost (batched per shard tick);
//!   the core keeps, per channel, how many shards want it, and SUBSCRIBEs when the first shard
//!   wants it and UNSUBSCRIBEs when the last lets go, in batched commands. After a reconnect
//!   every wanted channel is subscribed again before the node reports ready. On a cluster the
//!   changes go to the cluster component (SSUBSCRIBE / SUNSUBSCRIBE per master and slot), which
//!   confirms them and follows failovers and slot migrations by itself; readiness is its;
//! - forwarding: every message received is sent, in Redis's order, to every shard over a bounded
//!   channel; a full channel is waited on for at most `--redis-forward-timeout`, then the message
//!   is counted as dropped for that shard (the reader never blocks forever);
//! - publishing: `POST /publish` on any shard becomes one PUBLISH (cluster: SPUBLISH to the
//!   slot's owner) here (pipelined, in arrival order); while Redis (the slot's master) is down it
//!   fails at once, so the publisher gets a 503, never a silent success.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;

use super::scripts::Scripts;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use tokio::task::JoinHandle;

use super::occupancy::Sinks;
use crate::apps::WebhookEventKind;
use crate::broker::cluster::{
    ClusterMessage, ClusterSettings, ClusterStatus, ClusterSubscriber, MasterState,
};
use crate::broker::history::HistoryRequest;
use crate::broker::single::{
    ConnectionEvent, LinkTarget, SingleError, SingleSettings, SingleSubscriber,
};
use crate::channel::{AppSlot, ChannelName};
use crate::history::StreamPosition;
use crate::history::policy::ChannelHistory;
use crate::publication::Publication;
use crate::telemetry::counters::RedisCounter;
use crate::telemetry::{MasterReading, RedisReadings};
use crate::wire::pusher::webhook::WebhookEvent;

/// Most channels named in one SUBSCRIBE or UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND_MAX: usize = 1000;
/// Most subscription updates taken before the subscriptions are reconciled with Redis.
const UPDATES_PER_ROUND_MAX: usize = 1024;
/// Capacity of the channels from the shards to the subscriber core.
const REQUEST_CHANNEL_CAPACITY: usize = 1024;
/// PUBLISH commands in flight at once (pipelined on one connection, answered in order).
const PUBLISHES_IN_FLIGHT_MAX: usize = 256;
/// How long one Redis command may take before it counts as failed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most shard reports waiting for their channels to be confirmed.
const WAITERS_MAX: usize = 4096;
/// Most messages received but not yet forwarded (the link's output channel; the link stops
/// reading from Redis while it is full).
const RECEIVED_BUFFER_MESSAGES: usize = 65536;
/// The one-Redis subscriber link's PING period (a connection that has not answered the previous
/// PING by the next is declared dead and reconnected).
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Longest delay between the one-Redis subscriber link's reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);
/// How often the cluster's per-master table is read into the node's status (logs of master
/// state changes, reconnection counts; readiness is read directly, not through this).
const CLUSTER_WATCH_PERIOD: Duration = Duration::from_millis(100);
/// Batches of shard reports whose cluster confirmation timed out, waiting to be asked again.
const REQUEUE_CAPACITY: usize = 64;

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
    /// With `--redis`: the server's `host:port` (no credentials), for the per-master table.
    pub address: String,
    /// With `--redis-cluster`: the cluster component's status (set once, when the core starts).
    pub cluster: OnceLock<Arc<ClusterStatus>>,
}

impl RedisStatus {
    /// Both connections up (with a cluster: the slot map known and every master's publishing
    /// connection up), every wanted channel subscribed (on the master serving its slot), and
    /// the core alive.
    pub fn is_ready(&self) -> bool {
        let subscribed = match self.cluster.get() {
            Some(cluster) => cluster.ready.load(Ordering::Relaxed),
            None => {
                self.ready.load(Ordering::Relaxed)
                    && self.publisher_connected.load(Ordering::Relaxed)
            }
        };
        subscribed && !self.core_failed.load(Ordering::Relaxed)
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
        } else if !self.is_ready() {
            "subscribing"
        } else {
            "subscribed"
        }
    }

    /// A copy for `/stat` and `/metrics` (cold path: the cluster's table is behind a lock).
    pub fn readings(&self) -> RedisReadings {
        let mut counters: [u64; RedisCounter::COUNT] =
            std::array::from_fn(|index| self.counters[index].load(Ordering::Relaxed));
        let masters = match self.cluster.get() {
            Some(cluster) => {
                for (counter, value) in [
                    (RedisCounter::Resubscriptions, &cluster.resubscriptions),
                    (
                        RedisCounter::ServerUnsubscribes,
                        &cluster.server_unsubscribes,
                    ),
                    (RedisCounter::TopologyChanges, &cluster.topology_changes),
                ] {
                    counters[counter.index()] = value.load(Ordering::Relaxed);
                }
                let table = cluster
                    .masters
                    .lock()
                    .map(|masters| masters.clone())
                    .unwrap_or_default();
                table
                    .into_iter()
                    .map(|master| MasterReading {
                        address: master.address,
                        state: master.state.as_str(),
                        up: master.state == MasterState::Up,
                        subscribed_channels: master.subscribed_channels as u64,
                        resubscriptions: master.resubscriptions,
                        publisher_connected: master.publisher_connected,
                    })
                    .collect()
            }
            None => {
                let up = self.connected.load(Ordering::Relaxed);
                vec![MasterReading {
                    address: self.address.clone(),
                    state: if up { "up" } else { "down" },
                    up,
                    subscribed_channels: self.subscribed_channels.load(Ordering::Relaxed),
                    resubscriptions: counters[RedisCounter::Resubscriptions.index()],
                    publisher_connected: self.publisher_connected.load(Ordering::Relaxed),
                }]
            }
        };
        RedisReadings {
            state: self.state(),
            mode: if self.cluster.get().is_some() {
                "cluster"
            } else {
                "single"
            },
            connected: self.connected.load(Ordering::Relaxed),
            publisher_connected: self.publisher_connected.load(Ordering::Relaxed),
            ready: self.is_ready(),
            core_up: !self.core_failed.load(Ordering::Relaxed),
            subscribed_channels: self.subscribed_channels.load(Ordering::Relaxed),
            counters,
            masters,
        }
    }
}

/// A shard's report of the channels it gained and lost since its last report.
#[derive(Debug)]
pub struct InterestUpdate {
    /// Which shard.
    pub shard: usize,
    /// Channels (of an application's namespace) that now have subscribers on that shard.
    pub added: Vec<(AppSlot, ChannelName)>,
    /// Channels that no longer have subscribers on that shard.
    pub removed: Vec<(AppSlot, ChannelName)>,
    /// Fulfilled once every added channel is subscribed in Redis.
    pub confirmed: oneshot::Sender<()>,
}

/// A publish to send through Redis.
#[derive(Debug)]
pub struct PublishRequest {
    /// The application whose namespace the channel is in.
    pub app: AppSlot,
    /// The channel (without prefix).
    pub channel: ChannelName,
    /// The message.
    pub payload: Bytes,
    /// What the channel's history keeps, when it has one (then the message is appended to its
    /// stream and published positioned, in one script).
    pub history: Option<ChannelHistory>,
    /// What became of it, or why it failed.
    pub reply: oneshot::Sender<Result<Published, String>>,
}

/// A publish Redis took.
#[derive(Debug, Clone)]
pub struct Published {
    /// Number of Redis subscribers that received it (all nodes).
    pub receivers: u64,
    /// Its place in the channel's history, when the channel has one.
    pub position: Option<StreamPosition>,
}

/// What a shard holds to talk to the subscriber core.
#[derive(Debug, Clone)]
pub struct RedisLink {
    /// Subscription updates.
    pub interest: mpsc::Sender<InterestUpdate>,
    /// Publishes.
    pub publish: mpsc::Sender<PublishRequest>,
    /// Questions to the history kept in Redis.
    pub history: mpsc::Sender<HistoryRequest>,
    /// Channel counts shared with the other nodes.
    pub occupancy: super::occupancy::OccupancyLink,
    /// Presence membership.
    pub presence: super::presence::PresenceLink,
    /// Cache channels' last events.
    pub cache: super::cache::CacheLink,
    /// Shared status.
    pub status: Arc<RedisStatus>,
}

/// What the subscriber core joins.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One Redis: `redis://host:port/db`.
    Single {
        /// The URL (may hold a password: log it only through [`redacted_url`]).
        url: String,
    },
    /// A Redis Cluster (7.0+, sharded pub/sub): seed nodes, `host:port`.
    Cluster {
        /// Any nodes of the cluster; the masters are found from them.
        seeds: Vec<String>,
    },
}

/// Settings of the subscriber core.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One Redis or a cluster.
    pub target: RedisTarget,
    /// Where the webhooks the core finds go (a dead node's members, channel transitions).
    pub webhooks: Option<super::webhook::WebhookQueue>,
    /// Per application slot: does it want `pusher_internal:subscription_count` events?
    pub subscription_counts: Vec<bool>,
    /// Channel prefix (`ws` gives `ws:broadcast:{channel}`).
    pub prefix: String,
    /// The applications' ids by slot: the first application's channels are
    /// `{prefix}:broadcast:{channel}` (the ws4redis names, shared with the raw protocol), the
    /// others' `{prefix}:app:{id}:broadcast:{channel}`.
    pub app_ids: Vec<String>,
    /// Longest wait for a full shard channel before a message is dropped for that shard.
    pub forward_timeout: Duration,
    /// Largest message forwarded to the shards (`--max-message-bytes`); larger ones are dropped
    /// and counted here, so no subscriber is closed for what another node published.
    pub max_message_bytes: usize,
    /// `--redis-buffer-bytes`: what received messages may hold before they reach the shards.
    pub buffer_bytes: usize,
    /// Core to pin the thread to.
    pub core: Option<usize>,
}

impl RedisSettings {
    /// The Redis channel of `channel` in `app`'s namespace (`None`: no such application).
    fn redis_channel(&self, app: AppSlot, channel: &ChannelName) -> Option<String> {
        if app == AppSlot::DEFAULT {
            return Some(format!("{}:broadcast:{}", self.prefix, channel));
        }
        let id = self.app_ids.get(usize::from(app.0))?;
        Some(format!("{}:app:{id}:broadcast:{}", self.prefix, channel))
    }

    /// The namespace and channel of a Redis channel name (`None`: not one of ours).
    fn channel_of(&self, redis_channel: &str) -> Option<(AppSlot, ChannelName)> {
        let rest = redis_channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(':')?;
        if let Some(name) = rest.strip_prefix("broadcast:") {
            return Some((AppSlot::DEFAULT, ChannelName::new(name)?));
        }
        let (id, name) = rest.strip_prefix("app:")?.split_once(":broadcast:")?;
        let slot = self
            .app_ids
            .iter()
            .position(|known| known == id)
            .filter(|&slot| slot > 0)?;
        Some((AppSlot(u16::try_from(slot).ok()?), ChannelName::new(name)?))
    }

    /// Messages the link's receive buffer (the one Redis's link, or the cluster component's
    /// output) may hold: as many of the largest size as fit in half of `--redis-buffer-bytes`.
    fn received_buffer_messages(&self) -> usize {
        (self.buffer_bytes / 2 / self.max_message_bytes.max(1)).clamp(2, RECEIVED_BUFFER_MESSAGES)
    }

    /// Bytes each shard's queue may hold: the other half, split between the shards.
    fn shard_queue_bytes(&self, shards: usize) -> usize {
        (self.buffer_bytes / 2 / shards.max(1)).max(self.max_message_bytes + QUEUED_OVERHEAD_BYTES)
    }
}

/// Starts the subscriber core. `shards` receive every message (one sender per shard).
/// Returns the link the shards use, after checking the URL or the seeds (a down Redis is not
/// an error: the core keeps retrying with capped backoff).
pub fn start(
    settings: RedisSettings,
    shards: Vec<mpsc::Sender<Publication>>,
) -> Result<RedisLink, String> {
    let backend = match &settings.target {
        RedisTarget::Single { url } => {
            let config = Config::from_url(url)
                .map_err(|error| format!("--redis {}: {error}", redacted_url(url)))?;
            let target = LinkTarget::from_config(&config).ok_or_else(|| {
                format!(
                    "--redis {}: expected redis://[user:password@]host:port[/db]",
                    redacted_url(url)
                )
            })?;
            BackendConfig::Single(Box::new(config), target)
        }
        RedisTarget::Cluster { seeds } => {
            let cluster = ClusterSettings {
                seeds: seeds.clone(),
                output_capacity: settings.received_buffer_messages(),
                ..ClusterSettings::default()
            };
            cluster.validate().map_err(|error| error.to_string())?;
            BackendConfig::Cluster(cluster)
        }
    };
    let address = match &settings.target {
        RedisTarget::Single { url } => server_address(url),
        RedisTarget::Cluster { .. } => String::new(),
    };
    let status = Arc::new(RedisStatus {
        address,
        ..RedisStatus::default()
    });
    let (interest_sender, interest) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let (publish_sender, publishes) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let (history_sender, history) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let (occupancy_link, occupancy) = super::occupancy::channel(REQUEST_CHANNEL_CAPACITY);
    let (presence_link, presence) = super::presence::channel(REQUEST_CHANNEL_CAPACITY);
    let (cache_link, cache) = super::cache::channel(REQUEST_CHANNEL_CAPACITY);
    let announce = publish_sender.clone();
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
            let requests = Requests {
                interest,
                publishes,
                history,
                occupancy,
                presence,
                cache,
                announce,
            };
            match backend {
                BackendConfig::Single(config, target) => runtime.block_on(run(
                    settings,
                    (*config, target),
                    thread_status,
                    shards,
                    requests,
                )),
                BackendConfig::Cluster(cluster) => runtime.block_on(run_cluster(
                    settings,
                    cluster,
                    thread_status,
                    shards,
                    requests,
                )),
            }
        })
        .map_err(|error| format!("cannot start the Redis thread: {error}"))?;
    Ok(RedisLink {
        interest: interest_sender,
        publish: publish_sender,
        history: history_sender,
        occupancy: occupancy_link,
        presence: presence_link,
        cache: cache_link,
        status,
    })
}

/// The checked configuration of the backend, handed to the core's thread.
enum BackendConfig {
    /// fred's configuration of the one Redis (publishing, scripts) and where the subscriber
    /// link connects.
    Single(Box<Config>, LinkTarget),
    /// The cluster component's settings.
    Cluster(ClusterSettings),
}

/// What the shards send the core.
struct Requests {
    /// Subscription updates.
    interest: mpsc::Receiver<InterestUpdate>,
    /// Publishes.
    publishes: mpsc::Receiver<PublishRequest>,
    /// History questions.
    history: mpsc::Receiver<HistoryRequest>,
    /// Channel counts (answered only with one Redis).
    occupancy: super::occupancy::OccupancyRequests,
    /// Presence membership.
    presence: mpsc::Receiver<super::presence::PresenceCommand>,
    /// Cache channels' last events.
    cache: mpsc::Receiver<super::cache::CacheCommand>,
    /// The core's own way into the publish queue (a sweep's `member_removed`).
    announce: mpsc::Sender<PublishRequest>,
}

/// What the subscriber core talks to. Everything that differs between one Redis and a cluster
/// is here; the rest of the core does not know which it has.
#[derive(Clone)]
enum Backend {
    /// One Redis: a subscriber connection and a publishing connection.
    Single {
        /// SUBSCRIBE / UNSUBSCRIBE (the received messages come through its output channel).
        subscriber: SingleSubscriber,
        /// PUBLISH.
        publisher: Client,
    },
    /// A Redis Cluster: SSUBSCRIBE / SUNSUBSCRIBE per master, SPUBLISH (and the scripts of
    /// the state kept in Redis) to the slot's owner.
    Cluster(ClusterSubscriber),
}

/// `host:port` of a Redis URL, without credentials or database (for `/stat` and `/metrics`).
fn server_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.to_string()
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

/// The fred client that publishes and runs the scripts on the one Redis.
fn build_publisher(config: Config) -> Result<Client, Error> {
    let mut config = config;
    // Redis down at start is not fatal: the first connection retries like a reconnect.
    config.fail_fast = false;
    Builder::from_config(config)
        .set_policy(reconnect_policy())
        .with_connection_config(|connection| {
            connection.connection_timeout = COMMAND_TIMEOUT;
        })
        .build()
}

/// The core on one Redis: the subscriber link ([`SingleSubscriber`]) and fred's publishing
/// client run on this thread's `LocalSet` next to the forwarding, publishing and subscription
/// tasks.
async fn run(
    settings: RedisSettings,
    (config, target): (Config, LinkTarget),
    status: Arc<RedisStatus>,
    shards: Vec<mpsc::Sender<Publication>>,
    requests: Requests,
) {
    let publisher = match build_publisher(config) {
        Ok(client) => client,
        Err(error) => {
            log::error!("redis: {error}");
            status.core_failed.store(true, Ordering::Relaxed);
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    let core = async move {
        let (subscriber, messages, connection_events) = SingleSubscriber::start(SingleSettings {
            target,
            connect_timeout: COMMAND_TIMEOUT,
            ping_interval: PING_INTERVAL,
            reconnect_delay_max: RECONNECT_DELAY_MAX,
            output_capacity: settings.received_buffer_messages(),
        });
        let publisher_events = (publisher.reconnect_rx(), publisher.error_rx());
        let _publisher_connection = publisher.connect();
        let (resubscribe_sender, resubscribe) = tokio::sync::mpsc::channel(1);
        let scripts = Scripts::Single(publisher.clone());
        let backend = Backend::Single {
            subscriber,
            publisher,
        };
        let mut tasks = vec![
            (
                "connection watcher",
                tokio::task::spawn_local(watch_connection(
                    status.clone(),
                    connection_events,
                    resubscribe_sender,
                )),
            ),
            (
                "publisher watcher",
                tokio::task::spawn_local(watch_publisher(status.clone(), publisher_events)),
            ),
        ];
        tasks.extend(spawn_services(
            settings,
            &status,
            scripts,
            backend,
            messages,
            shards,
            requests,
            resubscribe,
        ));
        supervise(status, tasks).await;
    };
    local.run_until(core).await;
}

/// The services one Redis and a cluster run alike once their connections exist: history,
/// channel counts, presence and cache (through `scripts`), forwarding what `messages` brings
/// to the shards, publishing, and keeping the subscriptions what the shards want.
#[expect(
    clippy::too_many_arguments,
    reason = "each is a distinct handle the services take over"
)]
fn spawn_services(
    settings: RedisSettings,
    status: &Arc<RedisStatus>,
    scripts: Scripts,
    backend: Backend,
    messages: tokio::sync::mpsc::Receiver<ClusterMessage>,
    shards: Vec<mpsc::Sender<Publication>>,
    requests: Requests,
    resubscribe: tokio::sync::mpsc::Receiver<()>,
) -> Vec<(&'static str, JoinHandle<()>)> {
    let status = status.clone();
    vec![
        (
            "history",
            tokio::task::spawn_local(super::history::serve(
                scripts.clone(),
                Arc::from(settings.prefix.as_str()),
                requests.history,
            )),
        ),
        (
            "occupancy",
            tokio::task::spawn_local(super::occupancy::serve(
                scripts.clone(),
                Arc::from(settings.prefix.as_str()),
                status.clone(),
                requests.occupancy,
                sinks_of(&settings, requests.announce.clone()),
            )),
        ),
        (
            "presence",
            tokio::task::spawn_local(serve_presence(
                scripts.clone(),
                settings.clone(),
                requests.presence,
                requests.announce,
            )),
        ),
        (
            "cache",
            tokio::task::spawn_local(super::cache::serve(
                scripts,
                Arc::from(settings.prefix.as_str()),
                requests.cache,
            )),
        ),
        (
            "forwarder",
            tokio::task::spawn_local(forward_received(
                settings.clone(),
                status.clone(),
                messages,
                shards,
            )),
        ),
        (
            "publisher",
            tokio::task::spawn_local(publish(
                settings.clone(),
                status.clone(),
                backend.clone(),
                requests.publishes,
            )),
        ),
        (
            "subscription manager",
            tokio::task::spawn_local(manage_subscriptions(
                settings,
                status.clone(),
                backend,
                requests.interest,
                resubscribe,
            )),
        ),
    ]
}

/// What the occupancy service finds besides storing counts: transitions for the webhooks, and
/// changed channels' totals for the applications that want `pusher_internal:subscription_count`
/// (published through this core's publish queue, dropped with a log line when it is full).
fn sinks_of(settings: &RedisSettings, announce: mpsc::Sender<PublishRequest>) -> Sinks {
    Sinks {
        transitions: transitions_of(settings),
        totals: totals_of(settings, announce),
    }
}

fn totals_of(
    settings: &RedisSettings,
    mut announce: mpsc::Sender<PublishRequest>,
) -> Option<super::occupancy::TotalSink> {
    if !settings.subscription_counts.iter().any(|&wanted| wanted) {
        return None;
    }
    let settings = settings.clone();
    Some(Box::new(move |total| {
        let Some(slot) = settings.app_ids.iter().position(|id| *id == total.app_id) else {
            return;
        };
        if !settings
            .subscription_counts
            .get(slot)
            .copied()
            .unwrap_or(false)
        {
            return;
        }
        let (app, Some(channel)) = (AppSlot(slot as u16), ChannelName::new(&total.channel)) else {
            return;
        };
        let Some(publication) =
            crate::wire::pusher::subscription_count_publication(app, &channel, total.count)
        else {
            return;
        };
        let (request, answer) = core_publish(publication);
        if announce.try_send(request).is_err() {
            log::debug!("redis: a subscription_count event was dropped (publish queue full)");
            return;
        }
        // Held until published: a request whose asker is gone is not published.
        tokio::task::spawn_local(async move {
            let _ = answer.await;
        });
    }))
}

/// Where the occupancy service sends channel transitions: the webhook queue, as
/// `channel_occupied` / `channel_vacated` (`None` when no application wants either).
fn transitions_of(settings: &RedisSettings) -> Option<super::occupancy::TransitionSink> {
    let webhooks = settings.webhooks.clone()?;
    let app_ids = settings.app_ids.clone();
    let wanted = (0..app_ids.len()).any(|slot| {
        let app = AppSlot(slot as u16);
        webhooks.wants(app, WebhookEventKind::ChannelOccupied)
            || webhooks.wants(app, WebhookEventKind::ChannelVacated)
    });
    if !wanted {
        return None;
    }
    Some(Box::new(move |transition| {
        send_transition(&webhooks, &app_ids, transition)
    }))
}

/// A channel transition as its webhook.
pub fn send_transition(
    webhooks: &super::webhook::WebhookQueue,
    app_ids: &[String],
    transition: super::occupancy::Transition,
) {
    use super::occupancy::TransitionKind;
    let Some(slot) = app_ids.iter().position(|id| *id == transition.app_id) else {
        return;
    };
    let channel = transition.channel;
    let event = match transition.kind {
        TransitionKind::Occupied => WebhookEvent::ChannelOccupied { channel },
        TransitionKind::Vacated => WebhookEvent::ChannelVacated { channel },
    };
    webhooks.send(AppSlot(slot as u16), event);
}

/// The presence service, and the `member_removed` of every user a sweep removed (published
/// like any message, through this core's publish queue).
async fn serve_presence(
    scripts: Scripts,
    settings: RedisSettings,
    commands: mpsc::Receiver<super::presence::PresenceCommand>,
    mut announce: mpsc::Sender<PublishRequest>,
) {
    use futures::SinkExt;
    let (swept_sender, mut swept) = mpsc::channel(REQUEST_CHANNEL_CAPACITY);
    let prefix = Arc::from(settings.prefix.as_str());
    let service = super::presence::serve(scripts, prefix, commands, swept_sender);
    let announcer = async move {
        // Bounded: ends when the service (and its sweeper) ends.
        while let Some(member) = swept.next().await {
            if let Some(webhooks) = &settings.webhooks
                && let Some(slot) = settings.app_ids.iter().position(|id| *id == member.app_id)
            {
                let event = WebhookEvent::MemberRemoved {
                    channel: member.channel.clone(),
                    user_id: member.user_id.clone(),
                };
                webhooks.send(AppSlot(slot as u16), event);
            }
            let Some((request, answer)) = member_removed_request(&settings, member) else {
                continue;
            };
            if announce.send(request).await.is_err() {
                return;
            }
            // Held until published: a request whose asker is gone is not published.
            if let Ok(Err(error)) = answer.await {
                log::warn!("redis: a swept member's member_removed was not published: {error}");
            }
        }
    };
    futures::join!(service, announcer);
}

/// A publish of `pusher_internal:member_removed` for a swept member.
fn member_removed_request(
    settings: &RedisSettings,
    member: super::presence::SweptMember,
) -> Option<(PublishRequest, oneshot::Receiver<Result<Published, String>>)> {
    let slot = settings
        .app_ids
        .iter()
        .position(|id| *id == member.app_id)?;
    let app = AppSlot(u16::try_from(slot).ok()?);
    let channel = ChannelName::new(&member.channel)?;
    let publication =
        crate::wire::pusher::member_removed_publication(app, &channel, &member.user_id);
    Some(core_publish(publication))
}

/// A publish the core makes itself, and where its answer comes (hold it until then: a
/// request whose asker is gone is not published).
fn core_publish(
    publication: Publication,
) -> (PublishRequest, oneshot::Receiver<Result<Published, String>>) {
    let (reply, answer) = oneshot::channel();
    let request = PublishRequest {
        app: publication.app,
        payload: publication.to_redis_payload(),
        channel: publication.channel,
        history: None,
        reply,
    };
    (request, answer)
}

/// The core on a Redis Cluster: the cluster component (manager, links, topology) runs on this
/// thread's `LocalSet` next to the same forwarding, publishing and subscription tasks.
async fn run_cluster(
    settings: RedisSettings,
    cluster_settings: ClusterSettings,
    status: Arc<RedisStatus>,
    shards: Vec<mpsc::Sender<Publication>>,
    requests: Requests,
) {
    let local = tokio::task::LocalSet::new();
    let core = async move {
        let (cluster, messages) = match ClusterSubscriber::start(cluster_settings) {
            Ok(started) => started,
            Err(error) => {
                log::error!("redis cluster: {error}");
                status.core_failed.store(true, Ordering::Relaxed);
                return;
            }
        };
        let _ = status.cluster.set(cluster.status());
        // The cluster follows its own connections: nothing asks for a full resubscription.
        let (resubscribe_sender, resubscribe) = tokio::sync::mpsc::channel(1);
        let scripts = Scripts::Cluster(cluster.clone());
        let backend = Backend::Cluster(cluster.clone());
        let mut tasks = vec![(
            "cluster watcher",
            tokio::task::spawn_local(watch_cluster(
                status.clone(),
                cluster.status(),
                resubscribe_sender,
            )),
        )];
        tasks.extend(spawn_services(
            settings,
            &status,
            scripts,
            backend,
            messages,
            shards,
            requests,
            resubscribe,
        ));
        supervise(status, tasks).await;
    };
    local.run_until(core).await;
}

/// Copies the cluster's per-master table into the node's status every
/// `CLUSTER_WATCH_PERIOD`: connection flags, reconnections, and a log line per master state
/// change. Holds `_resubscribe` so the subscription manager's signal channel stays open.
async fn watch_cluster(
    status: Arc<RedisStatus>,
    cluster: Arc<ClusterStatus>,
    _resubscribe: tokio::sync::mpsc::Sender<()>,
) {
    // Address -> (state, connects) at the previous look; bounded by the masters in the table.
    let mut seen: HashMap<String, (MasterState, u64)> = HashMap::new();
    let mut period = tokio::time::interval(CLUSTER_WATCH_PERIOD);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        period.tick().await;
        let masters = cluster
            .masters
            .lock()
            .map(|masters| masters.clone())
            .unwrap_or_default();
        let known = !masters.is_empty();
        let connected = known && masters.iter().all(|m| m.state == MasterState::Up);
        let publishers = known && masters.iter().all(|m| m.publisher_connected);
        status.connected.store(connected, Ordering::Relaxed);
        status
            .publisher_connected
            .store(publishers, Ordering::Relaxed);
        status.subscribed_channels.store(
            cluster.subscribed_channels.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        for master in &masters {
            let (before, connects_before) = seen
                .get(&master.address)
                .copied()
                .unwrap_or((MasterState::Connecting, 0));
            // The first connection of a master is not a reconnection.
            let reconnects = master
                .connects
                .saturating_sub(connects_before.max(1))
                .min(master.connects.saturating_sub(1));
            status.add(RedisCounter::Reconnects, reconnects);
            if before != master.state {
                match master.state {
                    MasterState::Up => log::info!("redis cluster: master {} up", master.address),
                    MasterState::Down => {
                        log::warn!("redis cluster: master {} down", master.address)
                    }
                    MasterState::Connecting => {}
                }
            }
        }
        seen = masters
            .into_iter()
            .map(|master| (master.address, (master.state, master.connects)))
            .collect();
    }
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

/// Tracks the subscriber link's state: a loss makes the node not ready; a connection asks the
/// subscription manager to subscribe everything again.
async fn watch_connection(
    status: Arc<RedisStatus>,
    mut events: tokio::sync::mpsc::Receiver<ConnectionEvent>,
    resubscribe: tokio::sync::mpsc::Sender<()>,
) {
    let mut first = true;
    // Why the last attempt to connect failed, logged once until it changes (a wrong password
    // or a refused SELECT is said, never repeated every retry).
    let mut last_failure: Option<String> = None;
    // Bounded: one event per round; ends when the link's task is gone.
    while let Some(event) = events.recv().await {
        match event {
            ConnectionEvent::Up => {
                last_failure = None;
                if first {
                    log::info!("redis: connected to {}", status.address);
                    first = false;
                } else {
                    log::warn!("redis: reconnected to {}", status.address);
                    status.add(RedisCounter::Reconnects, 1);
                }
                status.connected.store(true, Ordering::Relaxed);
                let _ = resubscribe.try_send(());
            }
            ConnectionEvent::Down(reason) => {
                if status.connected.swap(false, Ordering::Relaxed) {
                    log::warn!("redis: connection lost: {reason}");
                } else if last_failure.as_deref() != Some(reason.as_str()) {
                    log::warn!("redis: cannot connect to {}: {reason}", status.address);
                    last_failure = Some(reason);
                }
                status.ready.store(false, Ordering::Relaxed);
            }
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

/// A shard report waiting for its channels to be subscribed.
struct Waiter {
    /// The Redis channels it added.
    channels: Vec<String>,
    /// Fulfilled once they are subscribed.
    confirmed: oneshot::Sender<()>,
}

/// Subscription state of the node, reconciled with Redis in batches.
async fn manage_subscriptions(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    backend: Backend,
    mut updates: mpsc::Receiver<InterestUpdate>,
    mut resubscribe: tokio::sync::mpsc::Receiver<()>,
) {
    // Redis channel -> set of shards that want it.
    let mut wanted: HashMap<String, HashSet<usize>> = HashMap::new();
    // One Redis: what Redis confirmed. A cluster: what the cluster component was asked for
    // (it confirms, and follows the topology, by itself).
    let mut subscribed: HashSet<String> = HashSet::new();
    // Subscribed before the last reconnect (one Redis): counted as resubscriptions when
    // subscribed again.
    let mut before_reconnect: HashSet<String> = HashSet::new();
    let mut waiting: Vec<Waiter> = Vec::new();
    // Cluster confirmations that timed out come back here to be asked for again.
    let (requeue_sender, mut requeued) = tokio::sync::mpsc::channel(REQUEUE_CAPACITY);
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
                before_reconnect.extend(subscribed.drain());
                before_reconnect.retain(|channel| wanted.contains_key(channel));
                failed = false;
            }
            Some(waiters) = requeued.recv() => {
                waiting.extend(waiters);
                bound_waiters(&mut waiting);
            }
            _ = tokio::time::sleep(retry), if failed => {}
        }
        let result = match &backend {
            Backend::Single { subscriber, .. } => {
                if !status.connected.load(Ordering::Relaxed) {
                    continue;
                }
                reconcile(subscriber, &wanted, &mut subscribed).await
            }
            Backend::Cluster(cluster) => {
                reconcile_cluster(
                    cluster,
                    &wanted,
                    &mut subscribed,
                    &mut waiting,
                    &requeue_sender,
                )
                .await
            }
        };
        match result {
            Ok(()) => {
                failed = false;
                retry = Duration::from_millis(100);
                status.ready.store(true, Ordering::Relaxed);
                for waiter in waiting.drain(..) {
                    let _ = waiter.confirmed.send(());
                }
                if !before_reconnect.is_empty() {
                    let again = before_reconnect
                        .iter()
                        .filter(|channel| subscribed.contains(*channel))
                        .count();
                    status.add(RedisCounter::Resubscriptions, again as u64);
                    before_reconnect.clear();
                }
            }
            Err(error) => {
                log::warn!("redis: subscription update failed ({error}); retrying in {retry:?}");
                failed = true;
                retry = (retry * 2).min(Duration::from_secs(5));
                status.ready.store(false, Ordering::Relaxed);
            }
        }
        if matches!(backend, Backend::Single { .. }) {
            status
                .subscribed_channels
                .store(subscribed.len() as u64, Ordering::Relaxed);
        }
    }
}

fn apply_update(
    settings: &RedisSettings,
    wanted: &mut HashMap<String, HashSet<usize>>,
    waiting: &mut Vec<Waiter>,
    update: InterestUpdate,
) {
    let mut channels = Vec::with_capacity(update.added.len());
    for (app, channel) in &update.added {
        let Some(name) = settings.redis_channel(*app, channel) else {
            continue;
        };
        wanted.entry(name.clone()).or_default().insert(update.shard);
        channels.push(name);
    }
    for (app, channel) in &update.removed {
        let Some(name) = settings.redis_channel(*app, channel) else {
            continue;
        };
        if let Some(shards) = wanted.get_mut(&name) {
            shards.remove(&update.shard);
            if shards.is_empty() {
                wanted.remove(&name);
            }
        }
    }
    waiting.push(Waiter {
        channels,
        confirmed: update.confirmed,
    });
    bound_waiters(waiting);
}

/// Bounded: while Redis is down, the oldest waiters are dropped (their shards stop waiting
/// and serve the connections anyway, as they would after their own timeout).
fn bound_waiters(waiting: &mut Vec<Waiter>) {
    if waiting.len() > WAITERS_MAX {
        waiting.drain(..waiting.len() - WAITERS_MAX);
    }
}

/// Brings Redis in line with `wanted`: UNSUBSCRIBE what nobody wants, SUBSCRIBE what is
/// missing, in commands of up to `CHANNELS_PER_COMMAND_MAX` channels.
async fn reconcile(
    subscriber: &SingleSubscriber,
    wanted: &HashMap<String, HashSet<usize>>,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let unwanted: Vec<String> = subscribed
        .iter()
        .filter(|channel| !wanted.contains_key(*channel))
        .cloned()
        .collect();
    for batch in unwanted.chunks(CHANNELS_PER_COMMAND_MAX) {
        timed_link(subscriber.unsubscribe(batch.to_vec())).await?;
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
        timed_link(subscriber.subscribe(batch.to_vec())).await?;
        subscribed.extend(batch.iter().cloned());
    }
    Ok(())
}

/// Hands the cluster component what changed (it SSUBSCRIBEs / SUNSUBSCRIBEs per master, in
/// batches per slot, and follows the topology by itself), without waiting for its
/// confirmations: a local task answers the waiting shards once the cluster confirmed their
/// channels, or sends them back to be asked again if it did not in time (a master down, a
/// slot moving). Returns at once with the waiters taken.
async fn reconcile_cluster(
    cluster: &ClusterSubscriber,
    wanted: &HashMap<String, HashSet<usize>>,
    asked: &mut HashSet<String>,
    waiting: &mut Vec<Waiter>,
    requeue: &tokio::sync::mpsc::Sender<Vec<Waiter>>,
) -> Result<(), String> {
    let unwanted: Vec<String> = asked
        .iter()
        .filter(|channel| !wanted.contains_key(*channel))
        .cloned()
        .collect();
    let mut added: Vec<String> = wanted
        .keys()
        .filter(|channel| !asked.contains(*channel))
        .cloned()
        .collect();
    if unwanted.is_empty() && added.is_empty() && waiting.is_empty() {
        return Ok(());
    }
    for channel in &unwanted {
        asked.remove(channel);
    }
    asked.extend(added.iter().cloned());
    // Waiters sent back after a timeout: ask again for their channels still wanted (adding a
    // wanted channel again only waits for its confirmation).
    let new: HashSet<&String> = added.iter().collect();
    let again: Vec<String> = waiting
        .iter()
        .flat_map(|waiter| waiter.channels.iter())
        .filter(|channel| wanted.contains_key(*channel) && !new.contains(channel))
        .cloned()
        .collect();
    added.extend(again);
    let confirmation = cluster
        .request_interest(added, unwanted)
        .await
        .map_err(|error| error.to_string())?;
    let waiters = std::mem::take(waiting);
    let requeue = requeue.clone();
    tokio::task::spawn_local(async move {
        match confirmation.await_answer().await {
            Ok(()) => {
                for waiter in waiters {
                    let _ = waiter.confirmed.send(());
                }
            }
            Err(error) => {
                log::debug!("redis cluster: {error}; asking again");
                // Full (many timeouts at once): these shards stop waiting, as after a drop.
                let _ = requeue.try_send(waiters);
            }
        }
    });
    Ok(())
}

/// A subscriber link command with the core's timeout.
async fn timed_link(
    command: impl std::future::Future<Output = Result<(), SingleError>>,
) -> Result<(), String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// A Redis command with the core's timeout.
pub(super) async fn timed<T>(
    command: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// Messages queued for one shard between the reader and that shard's forwarder: as deep as the
/// reader's own receive buffer (at most 65 536 messages), so a burst that one Redis connection
/// can deliver is absorbed for a healthy shard as it was when the reader waited on it. Bounded:
/// a publication is a reference to a payload shared by every shard (at most
/// `--max-message-bytes`), so a stalled shard holds at most this many references.
const SHARD_QUEUE_MESSAGES: usize = 65_536;

/// Starts one forwarder per shard, so forwarding to one shard never waits on another: each
/// hands its queue to its shard in order, waits at most `forward_timeout` for a full shard
/// channel, then drops that message for that shard only (counted). Returns the queues.
fn spawn_shard_forwarders(
    settings: &RedisSettings,
    status: &Arc<RedisStatus>,
    shards: Vec<mpsc::Sender<Publication>>,
) -> Vec<ShardQueue> {
    let limit_bytes = settings.shard_queue_bytes(shards.len());
    shards
        .into_iter()
        .map(|mut shard| {
            let (sender, mut queued) = tokio::sync::mpsc::channel(SHARD_QUEUE_MESSAGES);
            let bytes = std::rc::Rc::new(std::cell::Cell::new(0_usize));
            let status = status.clone();
            let wait = settings.forward_timeout;
            let held = bytes.clone();
            tokio::task::spawn_local(async move {
                while let Some(publication) = queued.recv().await {
                    held.set(held.get().saturating_sub(queued_cost(&publication)));
                    let handed = tokio::time::timeout(wait, shard.send(publication)).await;
                    if !matches!(handed, Ok(Ok(()))) {
                        status.add(RedisCounter::MessagesDropped, 1);
                    }
                }
            });
            ShardQueue {
                sender,
                bytes,
                limit_bytes,
            }
        })
        .collect()
}

/// Bytes a queued message counts for: its payload and its handle.
const QUEUED_OVERHEAD_BYTES: usize = std::mem::size_of::<Publication>();

fn queued_cost(publication: &Publication) -> usize {
    publication.payload.len() + QUEUED_OVERHEAD_BYTES
}

/// One shard's queue on the subscriber core, bounded in messages and in bytes (both its ends
/// run on the core's thread, so a plain cell counts the bytes).
struct ShardQueue {
    sender: tokio::sync::mpsc::Sender<Publication>,
    bytes: std::rc::Rc<std::cell::Cell<usize>>,
    limit_bytes: usize,
}

/// Forwards every message received (from one Redis in its order; from a cluster per channel in
/// its master's order) to every shard.
async fn forward_received(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    mut messages: tokio::sync::mpsc::Receiver<ClusterMessage>,
    shards: Vec<mpsc::Sender<Publication>>,
) {
    let shards = spawn_shard_forwarders(&settings, &status, shards);
    while let Some(ClusterMessage { channel, payload }) = messages.recv().await {
        // A channel name that is not UTF-8 is not ours: counted as invalid.
        let channel = std::str::from_utf8(&channel).unwrap_or_default();
        if forward_one(&settings, &status, channel, Some(payload), &shards).is_err() {
            return;
        }
    }
}

/// A shard's forwarder ended (it cannot while its queue is held): the core stops, and the
/// supervisor makes the node not ready.
#[derive(Debug)]
struct ForwarderGone;

/// Queues one received message for every shard's forwarder, never waiting: a full queue (its
/// shard stalled) drops the message for that shard only, counted.
fn forward_one(
    settings: &RedisSettings,
    status: &RedisStatus,
    channel: &str,
    payload: Option<Bytes>,
    shards: &[ShardQueue],
) -> Result<(), ForwarderGone> {
    status.add(RedisCounter::MessagesReceived, 1);
    if payload
        .as_ref()
        .is_some_and(|payload| payload.len() > settings.max_message_bytes)
    {
        status.add(RedisCounter::MessagesOversized, 1);
        return Ok(());
    }
    let Some(publication) = payload.and_then(|payload| to_publication(settings, channel, payload))
    else {
        status.add(RedisCounter::MessagesInvalid, 1);
        return Ok(());
    };
    let cost = queued_cost(&publication);
    for shard in shards {
        if shard.bytes.get() + cost > shard.limit_bytes {
            status.add(RedisCounter::MessagesDropped, 1);
            continue;
        }
        match shard.sender.try_send(publication.clone()) {
            Ok(()) => shard.bytes.set(shard.bytes.get() + cost),
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                status.add(RedisCounter::MessagesDropped, 1);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                log::error!("redis: a shard's forwarder ended; the subscriber core stops");
                return Err(ForwarderGone);
            }
        }
    }
    Ok(())
}

fn to_publication(settings: &RedisSettings, channel: &str, payload: Bytes) -> Option<Publication> {
    let (app, channel) = settings.channel_of(channel)?;
    crate::faults::on_redis_payload(&payload);
    Publication::from_redis(app, channel, payload)
}

/// Turns publish requests into PUBLISH (one Redis) or SPUBLISH (cluster: to the master that
/// serves the channel's slot) commands, pipelined and answered in arrival order.
async fn publish(
    settings: RedisSettings,
    status: Arc<RedisStatus>,
    backend: Backend,
    requests: mpsc::Receiver<PublishRequest>,
) {
    requests
        .map(|request| {
            let backend = backend.clone();
            let channel = settings.redis_channel(request.app, &request.channel);
            let prefix = settings.prefix.clone();
            async move {
                let Some(channel) = channel else {
                    return (request.reply, Err("no such application".to_string()));
                };
                if request.reply.is_canceled() {
                    // The request was answered 503 meanwhile: it must not be published now.
                    return (
                        request.reply,
                        Err("abandoned before it was sent".to_string()),
                    );
                }
                let result = match (&backend, &request.history) {
                    (Backend::Single { publisher, .. }, Some(history)) => {
                        super::history::publish_positioned(
                            &Scripts::Single(publisher.clone()),
                            &prefix,
                            channel,
                            &request.channel,
                            history,
                            request.payload,
                            super::history::PublishCommand::Publish,
                        )
                        .await
                        .map(|(receivers, position)| Published {
                            receivers,
                            position: Some(position),
                        })
                    }
                    (Backend::Single { publisher, .. }, None) => {
                        publish_single(publisher, channel, request.payload)
                            .await
                            .map(|receivers| Published {
                                receivers,
                                position: None,
                            })
                    }
                    // One attempt, failing fast while the slot's master is down or unknown
                    // (the component never sends a failed publish later).
                    (Backend::Cluster(cluster), Some(history)) => {
                        super::history::publish_positioned(
                            &Scripts::Cluster(cluster.clone()),
                            &prefix,
                            channel,
                            &request.channel,
                            history,
                            request.payload,
                            super::history::PublishCommand::Spublish,
                        )
                        .await
                        .map(|(receivers, position)| Published {
                            receivers,
                            position: Some(position),
                        })
                    }
                    (Backend::Cluster(cluster), None) => cluster
                        .publish(&channel, request.payload)
                        .await
                        .map(|receivers| Published {
                            receivers,
                            position: None,
                        })
                        .map_err(|error| error.to_string()),
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

/// One PUBLISH on the one Redis.
async fn publish_single(
    publisher: &Client,
    channel: String,
    payload: Bytes,
) -> Result<u64, String> {
    // One attempt, failing fast while the connection is down: a publish answered 503 must not
    // be delivered later by a retry after the reconnect.
    let options = Options {
        max_attempts: Some(1),
        fail_fast: true,
        timeout: Some(COMMAND_TIMEOUT),
        ..Options::default()
    };
    if !publisher.is_connected() {
        return Err("Redis is not connected".to_string());
    }
    timed(
        publisher
            .with_options(&options)
            .publish::<u64, _, _>(channel, payload),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::{AppSlot, ChannelName, RedisSettings, RedisTarget, redacted_url, server_address};

    fn settings() -> RedisSettings {
        RedisSettings {
            target: RedisTarget::Single {
                url: "redis://127.0.0.1".into(),
            },
            webhooks: None,
            subscription_counts: Vec::new(),
            prefix: "ws".into(),
            app_ids: vec!["1".into(), "two".into()],
            forward_timeout: std::time::Duration::from_millis(1),
            max_message_bytes: 1024,
            buffer_bytes: 1 << 20,
            core: None,
        }
    }

    #[test]
    fn each_application_has_its_own_redis_channels() {
        let settings = settings();
        let news = ChannelName::new("news").unwrap();
        let first = settings.redis_channel(AppSlot::DEFAULT, &news).unwrap();
        let second = settings.redis_channel(AppSlot(1), &news).unwrap();
        assert_eq!(first, "ws:broadcast:news");
        assert_eq!(second, "ws:app:two:broadcast:news");
        assert_eq!(settings.redis_channel(AppSlot(2), &news), None);
        assert_eq!(
            settings.channel_of(&first),
            Some((AppSlot::DEFAULT, news.clone()))
        );
        assert_eq!(
            settings.channel_of(&second),
            Some((AppSlot(1), news.clone()))
        );
        // A default-namespace channel whose name looks like another app's stays default.
        let tricky = ChannelName::new("app:two:broadcast:x").unwrap();
        let name = settings.redis_channel(AppSlot::DEFAULT, &tricky).unwrap();
        assert_eq!(settings.channel_of(&name), Some((AppSlot::DEFAULT, tricky)));
        // Unknown applications, the first app by id, other prefixes: not ours.
        for foreign in [
            "ws:app:three:broadcast:news",
            "ws:app:1:broadcast:news",
            "other:broadcast:news",
            "wsx:broadcast:news",
        ] {
            assert_eq!(settings.channel_of(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_per_master_table_shows_host_and_port_only() {
        assert_eq!(
            server_address("redis://:s3cret@127.0.0.1:6379/0"),
            "127.0.0.1:6379"
        );
        assert_eq!(server_address("redis://user:pw@host:6380"), "host:6380");
        assert_eq!(server_address("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }

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
