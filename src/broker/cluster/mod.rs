//! Redis Cluster sharded pub/sub for the subscriber core: SSUBSCRIBE on the master that serves
//! each channel's hash slot, one subscriber connection per master, SPUBLISH to the owner, and
//! the topology followed through failovers and slot migrations.
//!
//! Runs on the subscriber core's current-thread tokio runtime, inside a `LocalSet` (no thread of
//! its own). Four parts:
//! - the manager (this file): the wanted channels, the slot map, one `Link` per master; it
//!   reconciles what each master has confirmed with what is wanted, in batched SSUBSCRIBE /
//!   SUNSUBSCRIBE commands (one slot per command, as the cluster requires; grouped per master);
//! - [`link`]: one subscriber connection per master (our own sans-IO RESP2 in [`resp`], because
//!   fred hides the `sunsubscribe` a server sends when a slot moves away);
//! - the topology task: `CLUSTER NODES` from every connected master (the seeds while none
//!   answers), merged by config epoch ([`topology`]), every `topology_refresh_ms` and at once
//!   when a link goes down, a command is redirected or a server drops a channel, and every
//!   100 ms while not ready;
//! - publishing: one fred `Client` per master, SPUBLISH to the slot's owner, one redirection
//!   (`MOVED`) followed.
//!
//! What it deliberately does not do: channel naming (it works on full Redis channel names; the
//! core adds `{prefix}:broadcast:`), reference counting per shard (the core's), retrying a
//! publish that was answered with an error (a publish that failed is never sent later), or
//! recovering messages published while a channel was moving (pub/sub is at-most-once).
//!
//! Invariants: a channel counts as subscribed only once the master that serves its slot (by
//! the current topology) confirmed it on its live connection; queues and maps are bounded
//! (`REQUEST_CAPACITY`, `EVENT_CAPACITY`, `WAITERS_MAX`, `link::PENDING_COMMANDS_MAX`,
//! `settings.output_capacity`).

pub mod link;
pub mod resp;
pub mod topology;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use fred::types::CustomCommand;
use futures::channel::oneshot;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use link::{LinkCommand, LinkEvent, LinkId, LinkSettings, UnsubscribeCause};
use resp::ReplyError;
use topology::{NodeRecord, Topology, hash_slot};

/// Capacity of the request channel from the handles to the manager.
const REQUEST_CAPACITY: usize = 1024;
/// Capacity of the event channel from the links to the manager.
const EVENT_CAPACITY: usize = 4096;
/// Capacity of each link's command channel.
const LINK_COMMAND_CAPACITY: usize = 64;
/// Requests or events taken in one round before reconciling.
const BATCH_MAX: usize = 1024;
/// Most `set_interest` calls waiting for their confirmation.
const WAITERS_MAX: usize = 4096;
/// How often the manager looks again at what is missing (retries, waiter deadlines).
const TICK: Duration = Duration::from_millis(50);
/// A channel refused by a master (MOVED, CLUSTERDOWN) is not asked again before this long,
/// unless the topology changes first.
const REFUSED_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Shortest gap between two topology refreshes (a burst of triggers makes one refresh).
const REFRESH_GAP_MIN: Duration = Duration::from_millis(20);
/// Refresh period while not ready (a master down, a slot moving, nothing known yet): a
/// promoted replica or a slot's new owner is found within this.
const REFRESH_WHILE_NOT_READY: Duration = Duration::from_millis(100);

/// Settings of the cluster subscriber. Every field has its unit in its name.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Seed nodes, `host:port` (any nodes of the cluster; masters are found from them).
    pub seeds: Vec<String>,
    /// Most channels in one SSUBSCRIBE / SUNSUBSCRIBE (all of one slot). Default 100: the
    /// command stays small, and many channels of one slot still take few round trips.
    pub channels_per_command_max: usize,
    /// How often the slot map is read again without a reason. Default 1000 ms: failovers and
    /// migrations also trigger a refresh at once (link down, `MOVED`, a server's
    /// `sunsubscribe`), so the period only bounds how late a silent change is seen.
    pub topology_refresh_ms: u64,
    /// Longest wait for a TCP connection to a master. Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// Longest wait for a publish or `CLUSTER NODES` answer. Default 2000 ms.
    pub command_timeout_ms: u64,
    /// A subscriber connection sends PING this often and is declared dead when the previous
    /// one is unanswered. Default 1000 ms.
    pub ping_interval_ms: u64,
    /// Longest delay between reconnection attempts to a master. Default 1000 ms.
    pub reconnect_delay_max_ms: u64,
    /// How long `set_interest` waits for the confirmations before it answers with an error
    /// (the interest stays; the channels are subscribed when their master allows). Default
    /// 5000 ms.
    pub confirm_timeout_ms: u64,
    /// Largest message payload accepted from Redis. Default 64 MiB.
    pub message_bytes_max: usize,
    /// Capacity of the channel of received messages. Default 65536 messages.
    pub output_capacity: usize,
}

impl Default for ClusterSettings {
    fn default() -> ClusterSettings {
        ClusterSettings {
            seeds: Vec::new(),
            channels_per_command_max: 100,
            topology_refresh_ms: 1000,
            connect_timeout_ms: 1000,
            command_timeout_ms: 2000,
            ping_interval_ms: 1000,
            reconnect_delay_max_ms: 1000,
            confirm_timeout_ms: 5000,
            message_bytes_max: 64 << 20,
            output_capacity: 65536,
        }
    }
}

impl ClusterSettings {
    /// Checks the seeds and the relations between the fields.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.seeds.is_empty() {
            return Err(ClusterError::NoSeeds);
        }
        for seed in &self.seeds {
            split_address(seed)?;
        }
        let positive = [
            (
                self.channels_per_command_max as u64,
                "channels_per_command_max",
            ),
            (self.topology_refresh_ms, "topology_refresh_ms"),
            (self.connect_timeout_ms, "connect_timeout_ms"),
            (self.command_timeout_ms, "command_timeout_ms"),
            (self.ping_interval_ms, "ping_interval_ms"),
            (self.reconnect_delay_max_ms, "reconnect_delay_max_ms"),
            (self.confirm_timeout_ms, "confirm_timeout_ms"),
            (self.message_bytes_max as u64, "message_bytes_max"),
            (self.output_capacity as u64, "output_capacity"),
        ];
        if let Some((_, name)) = positive.iter().find(|(value, _)| *value == 0) {
            return Err(ClusterError::InvalidSetting(name));
        }
        // A command that may not hold all channels of a slot still works (several commands),
        // but one that exceeds a RESP array's item limit would end the connection's replies.
        if self.channels_per_command_max > 10_000 {
            return Err(ClusterError::InvalidSetting("channels_per_command_max"));
        }
        Ok(())
    }

    fn link_settings(&self, address: &str) -> LinkSettings {
        LinkSettings {
            address: address.to_string(),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            reconnect_delay_max: Duration::from_millis(self.reconnect_delay_max_ms),
            message_bytes_max: self.message_bytes_max,
        }
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// Why a cluster operation failed. `ClusterError::status_code` maps each to its HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// At least one seed node is needed to find the cluster.
    #[error("--redis-cluster: no seed node given")]
    NoSeeds,
    /// A seed is `host:port`.
    #[error("--redis-cluster: {0:?} is not host:port")]
    InvalidSeed(String),
    /// A setting out of range.
    #[error("invalid cluster setting {0}")]
    InvalidSetting(&'static str),
    /// No master claims the slot (the slot map is not known yet, or the slot is unassigned).
    #[error("no master is known for slot {slot}")]
    OwnerUnknown {
        /// The channel's hash slot.
        slot: u16,
    },
    /// The master that serves the slot is not connected: fail fast, never send it later.
    #[error("the master {address} serving slot {slot} is not connected")]
    OwnerDown {
        /// The channel's hash slot.
        slot: u16,
        /// The master.
        address: String,
    },
    /// Redis answered with an error (`MOVED` twice, `CLUSTERDOWN`, ...): not published.
    #[error("Redis refused: {0}")]
    Refused(String),
    /// No answer in time: the message may or may not have been published.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// `set_interest`: some added channels were not confirmed in time (they stay wanted).
    #[error("{missing} channel(s) not subscribed within {waited:?}")]
    NotConfirmed {
        /// Channels still not subscribed.
        missing: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// Too many `set_interest` calls wait for confirmations; the oldest was let go.
    #[error("too many interest updates waiting for confirmation")]
    Overloaded,
    /// The manager has stopped (all handles dropped, or the runtime is shutting down).
    #[error("the cluster subscriber has stopped")]
    Stopped,
}

impl ClusterError {
    /// The HTTP status a publisher gets for this error: 503 when the cluster cannot take the
    /// message now, 504 when the outcome is unknown, 500 for configuration errors.
    pub fn status_code(&self) -> u16 {
        match self {
            ClusterError::NoSeeds
            | ClusterError::InvalidSeed(_)
            | ClusterError::InvalidSetting(_) => 500,
            ClusterError::Timeout(_) => 504,
            ClusterError::OwnerUnknown { .. }
            | ClusterError::OwnerDown { .. }
            | ClusterError::Refused(_)
            | ClusterError::NotConfirmed { .. }
            | ClusterError::Overloaded
            | ClusterError::Stopped => 503,
        }
    }
}

/// A message received from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMessage {
    /// The full Redis channel name.
    pub channel: Bytes,
    /// The payload, as published.
    pub payload: Bytes,
}

impl ClusterMessage {
    /// The channel name as text, if it is UTF-8.
    pub fn channel_name(&self) -> Option<&str> {
        std::str::from_utf8(&self.channel).ok()
    }
}

/// The state of the subscriber connection to one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterState {
    /// Connecting for the first time.
    Connecting,
    /// Connected: channels can be subscribed.
    Up,
    /// Lost or refused; reconnecting with backoff.
    Down,
}

impl MasterState {
    /// The state as a short word for `/stat` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            MasterState::Connecting => "connecting",
            MasterState::Up => "up",
            MasterState::Down => "down",
        }
    }
}

/// One master as `/stat` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterReport {
    /// `host:port`.
    pub address: String,
    /// The subscriber connection's state.
    pub state: MasterState,
    /// Channels confirmed on this master's connection.
    pub subscribed_channels: usize,
    /// Successful connections of the subscriber link (1 = never reconnected).
    pub connects: u64,
    /// The publishing connection is up.
    pub publisher_connected: bool,
}

/// Shared counters and state, readable from any thread (shards answer `/readyz` from it).
#[derive(Debug, Default)]
pub struct ClusterStatus {
    /// The slot map is known, every wanted channel is subscribed on its master and every
    /// master's publishing connection is up.
    pub ready: AtomicBool,
    /// Channels wanted.
    pub wanted_channels: AtomicU64,
    /// Channels confirmed on the master that serves them.
    pub subscribed_channels: AtomicU64,
    /// Confirmations of channels that had been confirmed before (after a reconnect, a
    /// failover or a migration).
    pub resubscriptions: AtomicU64,
    /// Channels a server dropped by itself (`sunsubscribe` push: the slot moved away).
    pub server_unsubscribes: AtomicU64,
    /// SSUBSCRIBE / SUNSUBSCRIBE commands refused (MOVED, CLUSTERDOWN, ...).
    pub refused_commands: AtomicU64,
    /// Slot maps that differed from the previous one.
    pub topology_changes: AtomicU64,
    /// Topology refreshes where no node answered.
    pub topology_failures: AtomicU64,
    /// Messages received from the cluster.
    pub messages_received: AtomicU64,
    /// SPUBLISH commands that succeeded.
    pub published: AtomicU64,
    /// Publishes refused or failed.
    pub publish_failures: AtomicU64,
    /// Per master, rebuilt when anything changes (cold path).
    pub masters: Mutex<Vec<MasterReport>>,
}

/// A request from a handle to the manager.
#[derive(Debug)]
enum Request {
    /// `set_interest`.
    Interest {
        /// Channels now wanted.
        added: Vec<String>,
        /// Channels no longer wanted.
        removed: Vec<String>,
        /// Answered when every added channel is confirmed, or at the deadline.
        reply: oneshot::Sender<Result<(), ClusterError>>,
    },
}

/// What the manager and the handles share (same thread): the slot map and the publishers.
#[derive(Default)]
struct Shared {
    /// The current slot map.
    topology: Rc<Topology>,
    /// One publishing client per master, by address.
    publishers: HashMap<String, Client>,
    /// Clients of the seed nodes, asked for the slot map while no master answers.
    seeds: Vec<Client>,
    /// Connection tasks of the seed clients, aborted on drop.
    seed_tasks: Vec<JoinHandle<Result<(), fred::error::Error>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in &self.seed_tasks {
            task.abort();
        }
    }
}

/// The handle of the cluster subscriber. Cheap to clone; the manager stops when the last
/// handle is dropped. Not `Send`: use it on the runtime that started it.
#[derive(Clone)]
pub struct ClusterSubscriber {
    /// Requests to the manager.
    requests: mpsc::Sender<Request>,
    /// Slot map and publishers.
    shared: Rc<RefCell<Shared>>,
    /// Wakes the topology task.
    refresh: Rc<Notify>,
    /// Counters and readiness.
    status: Arc<ClusterStatus>,
    /// Settings.
    settings: Rc<ClusterSettings>,
}

impl ClusterSubscriber {
    /// Starts the manager and the topology task on the current `LocalSet` and returns the
    /// handle and the stream of received messages. Fails only on invalid settings: an
    /// unreachable cluster is retried forever.
    pub fn start(
        settings: ClusterSettings,
    ) -> Result<(ClusterSubscriber, mpsc::Receiver<ClusterMessage>), ClusterError> {
        settings.validate()?;
        let mut shared = Shared::default();
        for seed in &settings.seeds {
            let client = build_client(seed, &settings)?;
            shared.seed_tasks.push(client.connect());
            shared.seeds.push(client);
        }
        let shared = Rc::new(RefCell::new(shared));
        let status = Arc::new(ClusterStatus::default());
        let refresh = Rc::new(Notify::new());
        let (request_sender, requests) = mpsc::channel(REQUEST_CAPACITY);
        let (event_sender, events) = mpsc::channel(EVENT_CAPACITY);
        let (topology_sender, topologies) = mpsc::channel(1);
        let (output, messages) = mpsc::channel(settings.output_capacity);
        let settings = Rc::new(settings);
        let manager = Manager {
            settings: settings.clone(),
            status: status.clone(),
            shared: shared.clone(),
            refresh: refresh.clone(),
            wanted: HashSet::new(),
            confirmed_before: HashSet::new(),
            retry_after: HashMap::new(),
            redirects: HashMap::new(),
            links: HashMap::new(),
            next_link_id: 0,
            waiters: VecDeque::new(),
            events: event_sender,
            output,
        };
        tokio::task::spawn_local(manager.run(requests, events, topologies));
        tokio::task::spawn_local(refresh_topology(
            settings.clone(),
            shared.clone(),
            refresh.clone(),
            topology_sender,
            status.clone(),
        ));
        let handle = ClusterSubscriber {
            requests: request_sender,
            shared,
            refresh,
            status,
            settings,
        };
        Ok((handle, messages))
    }

    /// Removes `removed`, then adds `added` to the wanted channels; returns once every added
    /// channel is confirmed by the master that serves it, or `NotConfirmed` after
    /// `confirm_timeout_ms` (they stay wanted and are subscribed when possible).
    pub async fn set_interest(
        &self,
        added: &[String],
        removed: &[String],
    ) -> Result<(), ClusterError> {
        let (reply, confirmed) = oneshot::channel();
        let request = Request::Interest {
            added: added.to_vec(),
            removed: removed.to_vec(),
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| ClusterError::Stopped)?;
        confirmed.await.map_err(|_| ClusterError::Stopped)?
    }

    /// SPUBLISH on the master that serves the channel's slot; returns how many subscribers
    /// (of the whole cluster shard) received it. Fails at once while the owner is unknown or
    /// not connected; follows one `MOVED` (a redirected publish was not published).
    pub async fn publish(&self, channel: &str, payload: Bytes) -> Result<u64, ClusterError> {
        let result = self.publish_once(channel, payload).await;
        let counter = if result.is_ok() {
            &self.status.published
        } else {
            &self.status.publish_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn publish_once(&self, channel: &str, payload: Bytes) -> Result<u64, ClusterError> {
        let slot = hash_slot(channel);
        let (address, client) = {
            let shared = self.shared.borrow();
            let owner = shared
                .topology
                .owner(slot)
                .ok_or(ClusterError::OwnerUnknown { slot })?;
            let client = shared.publishers.get(&owner.address).cloned();
            (owner.address.clone(), client)
        };
        let timeout = self.settings.command_timeout();
        let first = spublish(client, &address, slot, channel, payload.clone(), timeout).await;
        let Err(PublishFailure::Moved(to)) = first else {
            return first.map_err(PublishFailure::into_error);
        };
        // Cluster spec: a client receiving MOVED "should reissue the query to the
        // specified node" (and refresh its slot map). MOVED means it was not published.
        self.refresh.notify_one();
        let client = self.shared.borrow().publishers.get(&to).cloned();
        spublish(client, &to, slot, channel, payload, timeout)
            .await
            .map_err(PublishFailure::into_error)
    }

    /// The slot map is known, every wanted channel is subscribed on its master and every
    /// master's publishing connection is up.
    pub fn ready(&self) -> bool {
        self.status.ready.load(Ordering::Relaxed)
    }

    /// Counters and per-master state, shareable with other threads.
    pub fn status(&self) -> Arc<ClusterStatus> {
        self.status.clone()
    }

    /// A snapshot of the per-master state.
    pub fn masters(&self) -> Vec<MasterReport> {
        self.status
            .masters
            .lock()
            .map(|masters| masters.clone())
            .unwrap_or_default()
    }
}

/// How one SPUBLISH attempt failed.
enum PublishFailure {
    /// Redirected to this address: not published, may be sent there.
    Moved(String),
    /// Failed for good.
    Error(ClusterError),
}

impl PublishFailure {
    fn into_error(self) -> ClusterError {
        match self {
            PublishFailure::Moved(address) => ClusterError::Refused(format!("MOVED to {address}")),
            PublishFailure::Error(error) => error,
        }
    }
}

async fn spublish(
    client: Option<Client>,
    address: &str,
    slot: u16,
    channel: &str,
    payload: Bytes,
    timeout: Duration,
) -> Result<u64, PublishFailure> {
    let down = || {
        PublishFailure::Error(ClusterError::OwnerDown {
            slot,
            address: address.to_string(),
        })
    };
    let client = client.ok_or_else(down)?;
    if !client.is_connected() {
        return Err(down());
    }
    // One attempt, failing fast: a publish answered with an error must not be delivered later
    // by a retry after a reconnect.
    let options = Options {
        max_attempts: Some(1),
        max_redirections: Some(0),
        fail_fast: true,
        timeout: Some(timeout),
        ..Options::default()
    };
    let with_options = client.with_options(&options);
    let sent = with_options.spublish::<u64, _, _>(channel.to_string(), payload);
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(receivers)) => Ok(receivers),
        Ok(Err(error)) => match ReplyError::parse(error.details().as_bytes()) {
            ReplyError::Moved { address, .. } => Err(PublishFailure::Moved(address)),
            _ if *error.kind() == ErrorKind::Timeout => {
                Err(PublishFailure::Error(ClusterError::Timeout(timeout)))
            }
            _ => Err(PublishFailure::Error(ClusterError::Refused(
                error.to_string(),
            ))),
        },
        Err(_) => Err(PublishFailure::Error(ClusterError::Timeout(timeout))),
    }
}

/// `host:port` split; the port must be a number above 0.
fn split_address(address: &str) -> Result<(String, u16), ClusterError> {
    let invalid = || ClusterError::InvalidSeed(address.to_string());
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// A fred client for one node (publishing and `CLUSTER NODES`), reconnecting with capped
/// backoff. Not connected yet.
fn build_client(address: &str, settings: &ClusterSettings) -> Result<Client, ClusterError> {
    let (host, port) = split_address(address)?;
    let config = Config {
        server: ServerConfig::new_centralized(host, port),
        fail_fast: true,
        ..Config::default()
    };
    let delay_max_ms = settings.reconnect_delay_max_ms.min(u64::from(u32::MAX)) as u32;
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(0, 50, delay_max_ms, 2))
        .with_connection_config(|connection| {
            connection.connection_timeout = connect_timeout;
        })
        .build()
        .map_err(|error| ClusterError::InvalidSeed(format!("{address}: {error}")))
}

/// One master as the manager tracks it.
struct Link {
    /// Distinguishes this link's events from a replaced link's.
    id: LinkId,
    /// Commands to the subscriber connection.
    commands: mpsc::Sender<LinkCommand>,
    /// The subscriber connection's state.
    state: MasterState,
    /// Channels this connection confirmed (and the server has not dropped since).
    subscribed: HashSet<String>,
    /// Channels in an SSUBSCRIBE / SUNSUBSCRIBE not answered yet.
    pending: HashSet<String>,
    /// Successful connections.
    connects: u64,
    /// The subscriber connection task.
    task: JoinHandle<()>,
    /// The publishing client's connection task.
    publisher_task: Option<JoinHandle<Result<(), fred::error::Error>>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // The client is not used again: ending its task closes its connection.
        self.task.abort();
        if let Some(task) = &self.publisher_task {
            task.abort();
        }
    }
}

/// A `set_interest` call waiting for its channels.
struct Waiter {
    /// Channels added by the call.
    channels: Vec<String>,
    /// When the call was made.
    started: Instant,
    /// The answer.
    reply: oneshot::Sender<Result<(), ClusterError>>,
}

/// The manager's state: owned by its task alone.
struct Manager {
    /// Settings.
    settings: Rc<ClusterSettings>,
    /// Counters and readiness.
    status: Arc<ClusterStatus>,
    /// Slot map and publishers (shared with the handles).
    shared: Rc<RefCell<Shared>>,
    /// Wakes the topology task.
    refresh: Rc<Notify>,
    /// Channels wanted.
    wanted: HashSet<String>,
    /// Wanted channels confirmed at least once (a later confirmation is a resubscription).
    confirmed_before: HashSet<String>,
    /// Channels refused recently, not asked again before the instant (or a new slot map).
    retry_after: HashMap<String, Instant>,
    /// Slot -> master address from `MOVED` answers newer than the slot map (at most one per
    /// slot; cleared by the next slot map).
    redirects: HashMap<u16, String>,
    /// One link per master, by address.
    links: HashMap<String, Link>,
    /// Id of the next link.
    next_link_id: LinkId,
    /// `set_interest` calls waiting for confirmations, oldest first.
    waiters: VecDeque<Waiter>,
    /// Cloned into every new link.
    events: mpsc::Sender<LinkEvent>,
    /// Cloned into every new link: received messages.
    output: mpsc::Sender<ClusterMessage>,
}

impl Manager {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::Receiver<LinkEvent>,
        mut topologies: mpsc::Receiver<Topology>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded: ends when every handle is dropped.
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    self.apply_request(request);
                    for _ in 0..BATCH_MAX {
                        let Ok(request) = requests.try_recv() else { break };
                        self.apply_request(request);
                    }
                }
                event = events.recv() => {
                    let Some(event) = event else { return };
                    self.apply_event(event);
                    for _ in 0..BATCH_MAX {
                        let Ok(event) = events.try_recv() else { break };
                        self.apply_event(event);
                    }
                }
                topology = topologies.recv() => {
                    let Some(topology) = topology else { return };
                    self.apply_topology(topology);
                }
                _ = tick.tick() => {}
            }
            self.reconcile();
            self.settle_waiters();
            self.report();
        }
    }

    fn apply_request(&mut self, request: Request) {
        let Request::Interest {
            added,
            removed,
            reply,
        } = request;
        for channel in &removed {
            self.wanted.remove(channel);
            self.confirmed_before.remove(channel);
            self.retry_after.remove(channel);
        }
        self.wanted.extend(added.iter().cloned());
        self.waiters.push_back(Waiter {
            channels: added,
            started: Instant::now(),
            reply,
        });
        // Bounded: the oldest waiter is let go (its caller serves its connections anyway).
        while self.waiters.len() > WAITERS_MAX {
            if let Some(waiter) = self.waiters.pop_front() {
                let _ = waiter.reply.send(Err(ClusterError::Overloaded));
            }
        }
    }

    fn link_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links.values_mut().find(|link| link.id == id)
    }

    fn apply_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected(id) => {
                let Some(link) = self.link_mut(id) else {
                    return;
                };
                link.state = MasterState::Up;
                link.subscribed.clear();
                link.pending.clear();
                link.connects += 1;
            }
            LinkEvent::Down(id, reason) => {
                let Some(link) = self.link_mut(id) else {
                    return;
                };
                if link.state != MasterState::Down {
                    log::warn!("redis cluster: subscriber link down: {reason}");
                }
                link.state = MasterState::Down;
                link.subscribed.clear();
                link.pending.clear();
                self.refresh.notify_one();
            }
            LinkEvent::Subscribed(id, channel) => {
                let Some(link) = self.link_mut(id) else {
                    return;
                };
                link.pending.remove(&channel);
                link.subscribed.insert(channel.clone());
                if self.wanted.contains(&channel) && !self.confirmed_before.insert(channel) {
                    self.status.resubscriptions.fetch_add(1, Ordering::Relaxed);
                }
            }
            LinkEvent::Unsubscribed(id, channel, cause) => {
                let Some(link) = self.link_mut(id) else {
                    return;
                };
                link.pending.remove(&channel);
                link.subscribed.remove(&channel);
                if cause == UnsubscribeCause::Server {
                    self.status
                        .server_unsubscribes
                        .fetch_add(1, Ordering::Relaxed);
                    self.refresh.notify_one();
                }
            }
            LinkEvent::Refused(id, channels, error) => {
                let Some(link) = self.link_mut(id) else {
                    return;
                };
                for channel in &channels {
                    link.pending.remove(channel);
                }
                log::debug!(
                    "redis cluster: {} channel(s) refused: {error}",
                    channels.len()
                );
                self.status.refused_commands.fetch_add(1, Ordering::Relaxed);
                self.refresh.notify_one();
                // Cluster spec: MOVED names the node that serves the slot now; ask it at once
                // (a server's own `sunsubscribe` on a moved slot is answered this way within
                // two round trips, long before the next slot map).
                if let ReplyError::Moved { slot, address } = error
                    && self.links.contains_key(&address)
                    && self.redirects.len() < topology::SLOT_COUNT
                {
                    self.redirects.insert(slot, address);
                    return;
                }
                let retry_at = Instant::now() + REFUSED_RETRY_DELAY;
                for channel in channels {
                    self.retry_after.insert(channel, retry_at);
                }
            }
        }
    }

    fn apply_topology(&mut self, topology: Topology) {
        let masters: HashSet<String> = topology
            .masters()
            .iter()
            .map(|master| master.address.clone())
            .collect();
        // Links to nodes that no longer serve any slot end (a failed master replaced by its
        // replica, a master emptied by resharding).
        let gone: Vec<String> = self
            .links
            .keys()
            .filter(|address| !masters.contains(*address))
            .cloned()
            .collect();
        for address in gone {
            log::info!("redis cluster: {address} no longer serves slots");
            self.links.remove(&address);
            self.shared.borrow_mut().publishers.remove(&address);
        }
        for address in masters {
            if !self.links.contains_key(&address) {
                self.add_link(address);
            }
        }
        self.retry_after.clear();
        self.redirects.clear();
        self.shared.borrow_mut().topology = Rc::new(topology);
        self.status.topology_changes.fetch_add(1, Ordering::Relaxed);
    }

    fn add_link(&mut self, address: String) {
        log::info!("redis cluster: subscribing through master {address}");
        let id = self.next_link_id;
        self.next_link_id += 1;
        let (commands, receiver) = mpsc::channel(LINK_COMMAND_CAPACITY);
        let task = tokio::task::spawn_local(link::run(
            id,
            self.settings.link_settings(&address),
            receiver,
            self.events.clone(),
            self.output.clone(),
            self.status.clone(),
        ));
        let publisher_task = match build_client(&address, &self.settings) {
            Ok(client) => {
                let task = client.connect();
                self.shared
                    .borrow_mut()
                    .publishers
                    .insert(address.clone(), client);
                Some(task)
            }
            Err(error) => {
                log::warn!("redis cluster: no publisher for {address}: {error}");
                None
            }
        };
        let link = Link {
            id,
            commands,
            state: MasterState::Connecting,
            subscribed: HashSet::new(),
            pending: HashSet::new(),
            connects: 0,
            task,
            publisher_task,
        };
        self.links.insert(address, link);
    }

    /// The slot of `channel` and the address of the master serving it: the last `MOVED`
    /// for that slot if one came after the current slot map, else the slot map's owner.
    fn owner_address(
        redirects: &HashMap<u16, String>,
        topology: &Topology,
        channel: &str,
    ) -> Option<(u16, String)> {
        let slot = hash_slot(channel);
        match redirects.get(&slot) {
            Some(address) => Some((slot, address.clone())),
            None => Some((slot, topology.owner(slot)?.address.clone())),
        }
    }

    fn is_subscribed_on_owner(&self, topology: &Topology, channel: &str) -> bool {
        Self::owner_address(&self.redirects, topology, channel)
            .and_then(|(_, address)| self.links.get(&address))
            .is_some_and(|link| link.state == MasterState::Up && link.subscribed.contains(channel))
    }

    /// Sends what each master is missing: SSUBSCRIBE for wanted channels not confirmed on
    /// their owner, SUNSUBSCRIBE for confirmed channels nobody wants, batched per master and
    /// slot.
    fn reconcile(&mut self) {
        let topology = self.shared.borrow().topology.clone();
        let now = Instant::now();
        // address -> slot -> channels.
        let mut subscribe: BTreeMap<String, BTreeMap<u16, Vec<String>>> = BTreeMap::new();
        for channel in &self.wanted {
            let Some((slot, address)) = Self::owner_address(&self.redirects, &topology, channel)
            else {
                continue;
            };
            let Some(link) = self.links.get(&address) else {
                continue;
            };
            let waiting = self.retry_after.get(channel).is_some_and(|at| *at > now);
            if link.state != MasterState::Up
                || waiting
                || link.subscribed.contains(channel)
                || link.pending.contains(channel)
            {
                continue;
            }
            let by_slot = subscribe.entry(address).or_default();
            by_slot.entry(slot).or_default().push(channel.clone());
        }
        let mut unsubscribe: BTreeMap<String, BTreeMap<u16, Vec<String>>> = BTreeMap::new();
        for (address, link) in &mut self.links {
            if link.state != MasterState::Up {
                continue;
            }
            let unwanted: Vec<String> = link
                .subscribed
                .iter()
                .filter(|channel| {
                    !self.wanted.contains(*channel) && !link.pending.contains(*channel)
                })
                .cloned()
                .collect();
            for channel in unwanted {
                match Self::owner_address(&self.redirects, &topology, &channel) {
                    Some((slot, owner)) if owner == *address => {
                        let by_slot = unsubscribe.entry(address.clone()).or_default();
                        by_slot.entry(slot).or_default().push(channel);
                    }
                    // Not served here any more: the server drops it itself, and a SUNSUBSCRIBE
                    // would only be answered MOVED.
                    _ => {
                        link.subscribed.remove(&channel);
                    }
                }
            }
        }
        self.send(subscribe, true);
        self.send(unsubscribe, false);
    }

    fn send(&mut self, batches: BTreeMap<String, BTreeMap<u16, Vec<String>>>, subscribe: bool) {
        let per_command = self.settings.channels_per_command_max;
        for (address, by_slot) in batches {
            let Some(link) = self.links.get_mut(&address) else {
                continue;
            };
            'slots: for channels in by_slot.into_values() {
                for chunk in channels.chunks(per_command) {
                    let command = if subscribe {
                        LinkCommand::Subscribe(chunk.to_vec())
                    } else {
                        LinkCommand::Unsubscribe(chunk.to_vec())
                    };
                    // A full link queue: the rest waits for the next round (its answers wake
                    // the manager).
                    if link.commands.try_send(command).is_err() {
                        break 'slots;
                    }
                    link.pending.extend(chunk.iter().cloned());
                }
            }
        }
    }

    fn settle_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let topology = self.shared.borrow().topology.clone();
        let deadline = Duration::from_millis(self.settings.confirm_timeout_ms);
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if waiter.reply.is_canceled() {
                continue;
            }
            let missing = waiter
                .channels
                .iter()
                .filter(|channel| self.wanted.contains(*channel))
                .filter(|channel| !self.is_subscribed_on_owner(&topology, channel))
                .count();
            let waited = waiter.started.elapsed();
            if missing == 0 {
                let _ = waiter.reply.send(Ok(()));
            } else if waited >= deadline {
                let _ = waiter
                    .reply
                    .send(Err(ClusterError::NotConfirmed { missing, waited }));
            } else {
                self.waiters.push_back(waiter);
            }
        }
    }

    /// Publishes readiness, counts and the per-master table.
    fn report(&self) {
        let topology = self.shared.borrow().topology.clone();
        let subscribed = self
            .wanted
            .iter()
            .filter(|channel| self.is_subscribed_on_owner(&topology, channel))
            .count();
        let masters = self.master_reports();
        let publishers_up = masters.iter().all(|master| master.publisher_connected);
        let ready = !topology.is_empty() && subscribed == self.wanted.len() && publishers_up;
        self.status.ready.store(ready, Ordering::Relaxed);
        self.status
            .wanted_channels
            .store(self.wanted.len() as u64, Ordering::Relaxed);
        self.status
            .subscribed_channels
            .store(subscribed as u64, Ordering::Relaxed);
        if let Ok(mut table) = self.status.masters.lock() {
            *table = masters;
        }
    }

    fn master_reports(&self) -> Vec<MasterReport> {
        let shared = self.shared.borrow();
        let mut masters: Vec<MasterReport> = self
            .links
            .iter()
            .map(|(address, link)| MasterReport {
                address: address.clone(),
                state: link.state,
                subscribed_channels: link.subscribed.len(),
                connects: link.connects,
                publisher_connected: shared
                    .publishers
                    .get(address)
                    .is_some_and(|client| client.is_connected()),
            })
            .collect();
        masters.sort_by(|a, b| a.address.cmp(&b.address));
        masters
    }
}

/// Reads the slot map every `topology_refresh_ms`, and at once when woken; sends it to the
/// manager when it changed. Ends when the manager is gone.
async fn refresh_topology(
    settings: Rc<ClusterSettings>,
    shared: Rc<RefCell<Shared>>,
    refresh: Rc<Notify>,
    manager: mpsc::Sender<Topology>,
    status: Arc<ClusterStatus>,
) {
    let period = Duration::from_millis(settings.topology_refresh_ms);
    let mut last: Option<Topology> = None;
    // Bounded: one refresh per period or trigger, at most one per REFRESH_GAP_MIN; ends with
    // the manager.
    while !manager.is_closed() {
        let views = fetch_views(&shared, settings.command_timeout()).await;
        if views.is_empty() {
            status.topology_failures.fetch_add(1, Ordering::Relaxed);
        } else {
            let topology = Topology::merge(&views);
            if last.as_ref() != Some(&topology) {
                if manager.send(topology.clone()).await.is_err() {
                    return;
                }
                last = Some(topology);
            }
        }
        // While something is missing, ask again soon.
        let wait = if status.ready.load(Ordering::Relaxed) {
            period
        } else {
            REFRESH_WHILE_NOT_READY
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = refresh.notified() => {}
        }
        tokio::time::sleep(REFRESH_GAP_MIN).await;
    }
}

/// `CLUSTER NODES` from every connected master at once (from the seeds if none is).
async fn fetch_views(shared: &Rc<RefCell<Shared>>, timeout: Duration) -> Vec<Vec<NodeRecord>> {
    let masters: Vec<Client> = shared
        .borrow()
        .publishers
        .values()
        .filter(|client| client.is_connected())
        .cloned()
        .collect();
    let mut views = ask_cluster_nodes(&masters, timeout).await;
    if views.is_empty() {
        let seeds = shared.borrow().seeds.clone();
        views = ask_cluster_nodes(&seeds, timeout).await;
    }
    views
}

async fn ask_cluster_nodes(clients: &[Client], timeout: Duration) -> Vec<Vec<NodeRecord>> {
    let command = CustomCommand::new_static("CLUSTER", None, false);
    let asks = clients.iter().map(|client| {
        let command = command.clone();
        async move {
            let reply = tokio::time::timeout(
                timeout,
                client.custom::<String, &str>(command, vec!["NODES"]),
            )
            .await;
            match reply {
                Ok(Ok(text)) => topology::parse_cluster_nodes(&text)
                    .map_err(|error| log::warn!("redis cluster: CLUSTER NODES: {error}"))
                    .ok(),
                _ => None,
            }
        }
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClusterSettings {
        ClusterSettings {
            seeds: vec!["127.0.0.1:7000".into()],
            ..ClusterSettings::default()
        }
    }

    #[test]
    fn default_settings_with_a_seed_are_valid() {
        assert_eq!(settings().validate(), Ok(()));
    }

    #[test]
    fn no_seed_is_refused() {
        let settings = ClusterSettings::default();
        assert_eq!(settings.validate(), Err(ClusterError::NoSeeds));
    }

    #[test]
    fn seeds_must_be_host_and_port() {
        for bad in ["localhost", ":7000", "host:0", "host:x", "host:70000"] {
            let settings = ClusterSettings {
                seeds: vec![bad.into()],
                ..ClusterSettings::default()
            };
            assert_eq!(
                settings.validate(),
                Err(ClusterError::InvalidSeed(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            split_address("[::1]:7000").unwrap(),
            ("::1".to_string(), 7000)
        );
    }

    #[test]
    fn zero_settings_are_refused() {
        let zero = ClusterSettings {
            output_capacity: 0,
            ..settings()
        };
        assert_eq!(
            zero.validate(),
            Err(ClusterError::InvalidSetting("output_capacity"))
        );
        let huge = ClusterSettings {
            channels_per_command_max: 10_001,
            ..settings()
        };
        assert_eq!(
            huge.validate(),
            Err(ClusterError::InvalidSetting("channels_per_command_max"))
        );
    }

    #[test]
    fn every_error_maps_to_a_status() {
        let cases = [
            (ClusterError::NoSeeds, 500),
            (ClusterError::InvalidSeed("x".into()), 500),
            (ClusterError::InvalidSetting("x"), 500),
            (ClusterError::OwnerUnknown { slot: 1 }, 503),
            (
                ClusterError::OwnerDown {
                    slot: 1,
                    address: "a:1".into(),
                },
                503,
            ),
            (ClusterError::Refused("x".into()), 503),
            (ClusterError::Timeout(Duration::from_secs(1)), 504),
            (
                ClusterError::NotConfirmed {
                    missing: 1,
                    waited: Duration::from_secs(1),
                },
                503,
            ),
            (ClusterError::Overloaded, 503),
            (ClusterError::Stopped, 503),
        ];
        for (error, status) in cases {
            assert_eq!(error.status_code(), status, "{error}");
        }
    }
}
