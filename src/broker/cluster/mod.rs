//! Redis Cluster sharded pub/sub for the subscriber core: SSUBSCRIBE on the master that serves
//! each channel's hash slot, one subscriber connection per master, SPUBLISH to the owner, and
//! the topology followed through failovers and slot migrations.
//!
//! Runs on the subscriber core's current-thread tokio runtime, inside a `LocalSet` (no thread of
//! its own). This file holds the public API (settings, errors, the handle, status); four parts
//! do the work:
//! - the manager (`manager.rs`): the wanted channels, the slot map, one `Link` per master; it
//!   reconciles what each master has confirmed with what is wanted, in batched SSUBSCRIBE /
//!   SUNSUBSCRIBE commands (one slot per command, as the cluster requires; one pipelined write
//!   per master per round), and follows `MOVED` at once;
//! - [`link`]: one subscriber connection per master (our own sans-IO RESP2 in [`resp`], because
//!   fred hides the `sunsubscribe` a server sends when a slot moves away);
//! - the topology task: `CLUSTER NODES` from every connected master (the seeds while none
//!   answers), merged by config epoch ([`topology`]), every `topology_refresh_ms` and at once
//!   when a link goes down, a command is redirected or a server drops a channel, and every
//!   50 ms while not ready;
//! - publishing: one fred `Client` per master, SPUBLISH to the slot's owner, one redirection
//!   (`MOVED`) followed.
//!
//! What it deliberately does not do: channel naming (it works on full Redis channel names; the
//! core adds `{prefix}:broadcast:`), reference counting per shard (the core's), retrying a
//! publish that was answered with an error (a publish that failed is never sent later), or
//! recovering messages published while a channel was moving (pub/sub is at-most-once).
//!
//! Why not fred's cluster-aware `SubscriberClient`: tested against a real cluster (the ignored
//! test `fred_subscriber_client_after_migration_and_failover`), fred 10.1 with
//! `manage_subscriptions` lost the channel after a slot migration (it drops the server's
//! `sunsubscribe`) and after a failover (nothing was subscribed on the promoted replica 5 s
//! later).
//!
//! Invariants: a channel counts as subscribed only once the master that serves its slot (by
//! the current topology, or a newer `MOVED`) confirmed it on its live connection; queues and
//! maps are bounded (`manager::REQUEST_CAPACITY`, `EVENT_CAPACITY`, `WAITERS_MAX`,
//! `IN_FLIGHT_CHANNELS_MAX`, `link::PENDING_COMMANDS_MAX`, `settings.output_capacity`).

pub mod link;
mod manager;
pub mod resp;
pub mod topology;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use futures::channel::oneshot;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use link::LinkSettings;
use manager::Request;
use resp::ReplyError;
use topology::{Topology, hash_slot};

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
            kind: resp::PubSubKind::Sharded,
            handshake: link::Handshake::default(),
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
    /// Channels subscribed here again after they had been subscribed before (after a
    /// reconnect, a failover or a slot migration to this master).
    pub resubscriptions: u64,
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

/// What the manager and the handles share (same thread): the slot map and the publishers.
#[derive(Default)]
struct Shared {
    /// The current slot map.
    topology: Rc<Topology>,
    /// One publishing client per master, by address.
    publishers: HashMap<String, Publisher>,
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

/// The publishing client of one master.
#[derive(Clone)]
struct Publisher {
    /// The fred client (one connection to the master).
    client: Client,
    /// It has been connected at least once: while it never was, a publish waits for the first
    /// connection (a new master's client is a few milliseconds old); after that a publish
    /// while it is down fails at once.
    connected_once: Rc<Cell<bool>>,
}

impl Publisher {
    /// Connected now (and remembers that it was).
    fn is_connected(&self) -> bool {
        let connected = self.client.is_connected();
        if connected {
            self.connected_once.set(true);
        }
        connected
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
        let (output, messages) = mpsc::channel(settings.output_capacity);
        let settings = Rc::new(settings);
        let request_sender = manager::spawn(
            settings.clone(),
            shared.clone(),
            refresh.clone(),
            status.clone(),
            output,
        );
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
        let confirmation = self
            .request_interest(added.to_vec(), removed.to_vec())
            .await?;
        confirmation.await_answer().await
    }

    /// Hands the change to the manager (waiting only for room in its queue, so changes are
    /// applied in call order) and returns the confirmation to wait for: the caller need not
    /// stop everything else while a master is down. The confirmation resolves as
    /// `set_interest` answers.
    pub async fn request_interest(
        &self,
        added: Vec<String>,
        removed: Vec<String>,
    ) -> Result<Confirmation, ClusterError> {
        let (reply, confirmed) = oneshot::channel();
        let request = Request::Interest {
            added,
            removed,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| ClusterError::Stopped)?;
        Ok(Confirmation(confirmed))
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
        let channel = channel.to_string();
        self.on_owner(hash_slot(&channel), move |client| {
            let (channel, payload) = (channel.clone(), payload.clone());
            async move { client.spublish::<u64, _, _>(channel, payload).await }
        })
        .await
    }

    /// One EVAL of a script on the master that serves `slot` (the slot of its keys; a script
    /// must not reach outside it), with the same rules as a publish: one attempt, at once
    /// or not at all, following one `MOVED`.
    pub async fn eval(&self, slot: u16, args: Vec<Value>) -> Result<Value, ClusterError> {
        self.on_owner(slot, move |client| {
            let args = args.clone();
            async move {
                let eval = fred::types::CustomCommand::new_static(
                    "EVAL",
                    fred::types::ClusterHash::Custom(slot),
                    false,
                );
                client.custom::<Value, Value>(eval, args).await
            }
        })
        .await
    }

    /// Runs `command` once on the master that serves `slot`; fails at once while the owner is
    /// unknown or not connected; follows one `MOVED` (a redirected command did not run).
    async fn on_owner<T, F, Fut>(&self, slot: u16, command: F) -> Result<T, ClusterError>
    where
        F: Fn(fred::clients::WithOptions<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let (address, client) = {
            let shared = self.shared.borrow();
            let owner = shared
                .topology
                .owner(slot)
                .ok_or(ClusterError::OwnerUnknown { slot })?;
            let client = shared.publishers.get(&owner.address).cloned();
            (owner.address.clone(), client)
        };
        let first = self.send_once(client, &address, slot, &command).await;
        let Err(PublishFailure::Moved(to)) = first else {
            return first.map_err(PublishFailure::into_error);
        };
        // Cluster spec: a client receiving MOVED "should reissue the query to the
        // specified node" (and refresh its slot map). MOVED means it did not run.
        self.refresh.notify_one();
        let client = self.shared.borrow().publishers.get(&to).cloned();
        self.send_once(client, &to, slot, &command)
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

/// The answer to a [`ClusterSubscriber::request_interest`]: every added channel confirmed,
/// or why not.
#[derive(Debug)]
pub struct Confirmation(oneshot::Receiver<Result<(), ClusterError>>);

impl Confirmation {
    /// Waits for the answer (at most `confirm_timeout_ms` plus one manager tick).
    pub async fn await_answer(self) -> Result<(), ClusterError> {
        self.0.await.map_err(|_| ClusterError::Stopped)?
    }
}

/// How one attempt on a slot's owner failed.
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

impl ClusterSubscriber {
    /// One attempt of `command` on `address`'s publisher.
    async fn send_once<T, F, Fut>(
        &self,
        publisher: Option<Publisher>,
        address: &str,
        slot: u16,
        command: &F,
    ) -> Result<T, PublishFailure>
    where
        F: Fn(fred::clients::WithOptions<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let down = || {
            PublishFailure::Error(ClusterError::OwnerDown {
                slot,
                address: address.to_string(),
            })
        };
        let publisher = publisher.ok_or_else(down)?;
        if !publisher.is_connected() {
            if publisher.connected_once.get() {
                return Err(down());
            }
            let connect_timeout = Duration::from_millis(self.settings.connect_timeout_ms);
            let connected =
                tokio::time::timeout(connect_timeout, publisher.client.wait_for_connect()).await;
            if !matches!(connected, Ok(Ok(()))) || !publisher.is_connected() {
                return Err(down());
            }
        }
        // One attempt, failing fast: a publish answered with an error must not be delivered
        // later by a retry after a reconnect.
        let timeout = self.settings.command_timeout();
        let options = Options {
            max_attempts: Some(1),
            max_redirections: Some(0),
            fail_fast: true,
            timeout: Some(timeout),
            ..Options::default()
        };
        let sent = command(publisher.client.with_options(&options));
        match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(answer)) => Ok(answer),
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
