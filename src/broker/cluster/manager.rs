//! The manager of the cluster subscriber: owns the wanted channels, the slot map and one
//! `Link` per master, turns link events and slot maps into SSUBSCRIBE / SUNSUBSCRIBE batches
//! (per master, one slot per command), answers `set_interest` when its channels are confirmed,
//! and publishes readiness and the per-master table. Also the topology task that reads the slot
//! map.
//!
//! It deliberately does no I/O itself (links and fred clients do) and never waits on a link:
//! commands go out with `try_send`, what does not fit goes in the next round.
//!
//! Invariants: `Link::subscribed` holds only what the server confirmed on the live connection
//! (cleared on connect and on loss); `missing` is exactly the wanted channels not confirmed on
//! their owner (so `ready` is `missing.is_empty()`, and a round costs O(missing + stale)); a
//! channel is asked for at most once at a time (`Link::pending`); refused channels wait
//! `REFUSED_RETRY_DELAY` or a new slot map, unless a `MOVED` named the new owner.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::CustomCommand;
use futures::channel::oneshot;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::link::{self, LinkCommand, LinkEvent, LinkId, UnsubscribeCause};
use super::resp::ReplyError;
use super::topology::{self, NodeRecord, Topology, hash_slot};
use super::{
    ClusterError, ClusterMessage, ClusterSettings, ClusterStatus, MasterReport, MasterState,
    Publisher, Shared, build_client,
};

/// Capacity of the request channel from the handles to the manager.
const REQUEST_CAPACITY: usize = 1024;
/// Capacity of the event channel from the links to the manager.
const EVENT_CAPACITY: usize = 4096;
/// Capacity of each link's command channel (each message: one round's batch).
const LINK_COMMAND_CAPACITY: usize = 64;
/// Most channels in SSUBSCRIBE / SUNSUBSCRIBE commands in flight on one link.
const IN_FLIGHT_CHANNELS_MAX: usize = 50_000;
/// Most commands sent to one link in one round (one pipelined write).
const COMMANDS_PER_ROUND_MAX: usize = 4096;
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
const REFRESH_WHILE_NOT_READY: Duration = Duration::from_millis(50);

/// Starts the manager and the topology task on the current `LocalSet`; returns the sender of
/// requests (the manager stops when every clone of it is dropped).
pub(super) fn spawn(
    settings: Rc<ClusterSettings>,
    shared: Rc<RefCell<Shared>>,
    refresh: Rc<Notify>,
    status: Arc<ClusterStatus>,
    output: mpsc::Sender<ClusterMessage>,
) -> mpsc::Sender<Request> {
    let (request_sender, requests) = mpsc::channel(REQUEST_CAPACITY);
    let (event_sender, events) = mpsc::channel(EVENT_CAPACITY);
    let (topology_sender, topologies) = mpsc::channel(1);
    let manager = Manager {
        settings: settings.clone(),
        status: status.clone(),
        shared: shared.clone(),
        refresh: refresh.clone(),
        wanted: HashSet::new(),
        missing: HashSet::new(),
        stale: HashSet::new(),
        dirty: false,
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
        settings,
        shared,
        refresh,
        topology_sender,
        status,
    ));
    request_sender
}

/// A request from a handle to the manager.
#[derive(Debug)]
pub(super) enum Request {
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
    /// Confirmations here of channels confirmed before (here or on another master).
    resubscriptions: u64,
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
    /// `channels[..confirmed]` have been seen confirmed (or no longer wanted).
    confirmed: usize,
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
    /// Wanted channels not confirmed on the live connection of the master that serves them:
    /// what the next round asks for. Kept up to date by every event, so a round costs
    /// O(missing), not O(wanted); recomputed whole only when owners change.
    missing: HashSet<String>,
    /// Channels not wanted that some link may still hold: what the next round lets go.
    stale: HashSet<String>,
    /// Something may need a command (set by every change that can create work; a
    /// confirmation does not): rounds without it skip the O(missing + stale) scan.
    dirty: bool,
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

/// Per master address, per slot, channels: the commands of one round.
type Batches = BTreeMap<String, BTreeMap<u16, Vec<String>>>;

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
                _ = tick.tick() => {
                    // A quiet tick costs O(masters): a round runs only when something waits
                    // or a publisher connection changed.
                    if !self.tick_has_work() {
                        continue;
                    }
                }
            }
            self.reconcile();
            self.settle_waiters();
            self.report();
        }
    }

    /// Something to retry or answer, or readiness would change.
    fn tick_has_work(&self) -> bool {
        let publishers_up = {
            let shared = self.shared.borrow();
            self.links.keys().all(|address| {
                shared
                    .publishers
                    .get(address)
                    .is_some_and(Publisher::is_connected)
            })
        };
        let ready = self.status.ready.load(Ordering::Relaxed);
        !ready || publishers_up != ready || !self.waiters.is_empty() || !self.retry_after.is_empty()
    }

    fn apply_request(&mut self, request: Request) {
        let Request::Interest {
            added,
            removed,
            reply,
        } = request;
        self.dirty = true;
        for channel in &removed {
            if self.wanted.remove(channel) {
                self.missing.remove(channel);
                self.confirmed_before.remove(channel);
                self.retry_after.remove(channel);
                self.stale.insert(channel.clone());
            }
        }
        for channel in &added {
            if self.wanted.insert(channel.clone()) {
                // Still held from before? The round sees it and settles it at once.
                self.stale.remove(channel);
                self.missing.insert(channel.clone());
            }
        }
        self.waiters.push_back(Waiter {
            channels: added,
            confirmed: 0,
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

    /// The address of the link with this id (events of a replaced link find none).
    fn address_of(&self, id: LinkId) -> Option<String> {
        self.links
            .iter()
            .find(|(_, link)| link.id == id)
            .map(|(address, _)| address.clone())
    }

    fn apply_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected(id) => self.reset_link(id, MasterState::Up),
            LinkEvent::Down(id, reason) => {
                if let Some(link) = self.address_of(id).and_then(|a| self.links.get(&a))
                    && link.state != MasterState::Down
                {
                    log::warn!("redis cluster: subscriber link down: {reason}");
                }
                self.reset_link(id, MasterState::Down);
                self.refresh.notify_one();
            }
            LinkEvent::Subscribed(id, channel) => self.apply_confirmation(id, channel),
            LinkEvent::Unsubscribed(id, channel, cause) => {
                let Some(link) = self.address_of(id).and_then(|a| self.links.get_mut(&a)) else {
                    return;
                };
                link.pending.remove(&channel);
                link.subscribed.remove(&channel);
                self.dirty = true;
                if cause == UnsubscribeCause::Server {
                    self.status
                        .server_unsubscribes
                        .fetch_add(1, Ordering::Relaxed);
                    self.refresh.notify_one();
                }
                if self.wanted.contains(&channel) {
                    self.missing.insert(channel);
                }
            }
            LinkEvent::Refused(id, channels, error) => self.apply_refusal(id, channels, error),
        }
    }

    /// A connection began or ended: the server holds nothing for it any more.
    fn reset_link(&mut self, id: LinkId, state: MasterState) {
        let Some(link) = self.address_of(id).and_then(|a| self.links.get_mut(&a)) else {
            return;
        };
        if state == MasterState::Up {
            link.connects += 1;
        }
        self.dirty = true;
        link.state = state;
        let held: Vec<String> = link
            .subscribed
            .drain()
            .chain(link.pending.drain())
            .collect();
        for channel in held {
            if self.wanted.contains(&channel) {
                self.missing.insert(channel);
            }
        }
    }

    /// The server confirmed a channel on a link.
    fn apply_confirmation(&mut self, id: LinkId, channel: String) {
        let Some(address) = self.address_of(id) else {
            return;
        };
        let topology = self.shared.borrow().topology.clone();
        let on_owner = Self::owner_address(&self.redirects, &topology, &channel)
            .is_some_and(|(_, owner)| owner == address);
        let wanted = self.wanted.contains(&channel);
        let again = wanted && !self.confirmed_before.insert(channel.clone());
        if !wanted {
            self.confirmed_before.remove(&channel);
            self.stale.insert(channel.clone());
            self.dirty = true;
        } else if on_owner {
            self.missing.remove(&channel);
        }
        let Some(link) = self.links.get_mut(&address) else {
            return;
        };
        link.pending.remove(&channel);
        link.subscribed.insert(channel);
        if again {
            link.resubscriptions += 1;
            self.status.resubscriptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A command was refused: follow a MOVED at once, otherwise retry after a delay.
    fn apply_refusal(&mut self, id: LinkId, channels: Vec<String>, error: ReplyError) {
        let Some(link) = self.address_of(id).and_then(|a| self.links.get_mut(&a)) else {
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
        self.dirty = true;
        // Cluster spec: MOVED names the node that serves the slot now; ask it at once (a
        // server's own `sunsubscribe` on a moved slot is answered this way within two round
        // trips, long before the next slot map).
        if let ReplyError::Moved { slot, address } = error
            && self.links.contains_key(&address)
            && self.redirects.len() < topology::SLOT_COUNT
        {
            self.redirects.insert(slot, address);
            self.recompute_missing();
            return;
        }
        let retry_at = Instant::now() + REFUSED_RETRY_DELAY;
        for channel in channels {
            self.retry_after.insert(channel, retry_at);
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
        self.recompute_missing();
        self.dirty = true;
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
                let publisher = Publisher {
                    client,
                    connected_once: Rc::new(Cell::new(false)),
                };
                self.shared
                    .borrow_mut()
                    .publishers
                    .insert(address.clone(), publisher);
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
            resubscriptions: 0,
            task,
            publisher_task,
        };
        self.links.insert(address, link);
    }

    /// The slot of `channel` and the address of the master serving it: the last `MOVED`
    /// for that slot if one came after the current slot map, else the slot map's owner.
    fn owner_address<'a>(
        redirects: &'a HashMap<u16, String>,
        topology: &'a Topology,
        channel: &str,
    ) -> Option<(u16, &'a str)> {
        let slot = hash_slot(channel);
        match redirects.get(&slot) {
            Some(address) => Some((slot, address)),
            None => Some((slot, &topology.owner(slot)?.address)),
        }
    }

    /// After owners changed (a new slot map, a MOVED): which wanted channels are not on their
    /// owner. O(wanted), but owners change rarely.
    fn recompute_missing(&mut self) {
        let topology = self.shared.borrow().topology.clone();
        let links = &self.links;
        let redirects = &self.redirects;
        self.missing = self
            .wanted
            .iter()
            .filter(|channel| {
                let on_owner = Self::owner_address(redirects, &topology, channel)
                    .and_then(|(_, address)| links.get(address))
                    .is_some_and(|link| {
                        link.state == MasterState::Up && link.subscribed.contains(*channel)
                    });
                !on_owner
            })
            .cloned()
            .collect();
    }

    /// Sends what each master is missing (SSUBSCRIBE) and lets go of what nobody wants
    /// (SUNSUBSCRIBE), batched per master and slot, one pipelined write per master.
    fn reconcile(&mut self) {
        let now = Instant::now();
        let retries = self.retry_after.len();
        self.retry_after.retain(|_, at| *at > now);
        if !self.dirty && self.retry_after.len() == retries {
            return;
        }
        self.dirty = false;
        let subscribe = self.missing_batches();
        let unsubscribe = self.stale_batches();
        self.send(subscribe, true);
        self.send(unsubscribe, false);
    }

    fn missing_batches(&mut self) -> Batches {
        let topology = self.shared.borrow().topology.clone();
        let mut batches = Batches::new();
        let mut settled = Vec::new();
        let mut queued: HashMap<&str, usize> = HashMap::new();
        for channel in &self.missing {
            let Some((slot, address)) = Self::owner_address(&self.redirects, &topology, channel)
            else {
                continue;
            };
            let Some((address, link)) = self.links.get_key_value(address) else {
                continue;
            };
            if link.state != MasterState::Up {
                continue;
            }
            if link.subscribed.contains(channel) {
                settled.push(channel.clone());
                continue;
            }
            let in_flight = queued.entry(address).or_insert(link.pending.len());
            if link.pending.contains(channel) || self.retry_after.contains_key(channel) {
                continue;
            }
            if *in_flight >= IN_FLIGHT_CHANNELS_MAX {
                // The rest goes once answers come back.
                self.dirty = true;
                continue;
            }
            *in_flight += 1;
            let by_slot = batches.entry(address.clone()).or_default();
            by_slot.entry(slot).or_default().push(channel.clone());
        }
        for channel in settled {
            self.missing.remove(&channel);
        }
        batches
    }

    fn stale_batches(&mut self) -> Batches {
        let topology = self.shared.borrow().topology.clone();
        let mut batches = Batches::new();
        let mut released = Vec::new();
        for channel in &self.stale {
            let owner = Self::owner_address(&self.redirects, &topology, channel);
            let mut held = false;
            for (address, link) in &mut self.links {
                if link.pending.contains(channel) {
                    held = true;
                    continue;
                }
                if !link.subscribed.contains(channel) {
                    continue;
                }
                held = true;
                match owner {
                    Some((slot, owner)) if owner == address && link.state == MasterState::Up => {
                        let by_slot = batches.entry(address.clone()).or_default();
                        by_slot.entry(slot).or_default().push(channel.clone());
                    }
                    // Not served here any more: the server drops it itself, and a SUNSUBSCRIBE
                    // would only be answered MOVED.
                    _ => {
                        link.subscribed.remove(channel);
                    }
                }
            }
            if !held {
                released.push(channel.clone());
            }
        }
        for channel in released {
            self.stale.remove(&channel);
        }
        batches
    }

    /// One pipelined batch of commands per master (each command: one slot, at most
    /// `channels_per_command_max` channels; at most `COMMANDS_PER_ROUND_MAX` commands).
    fn send(&mut self, batches: Batches, subscribe: bool) {
        let per_command = self.settings.channels_per_command_max;
        for (address, by_slot) in batches {
            let Some(link) = self.links.get_mut(&address) else {
                continue;
            };
            let mut commands: Vec<Vec<String>> = by_slot
                .values()
                .flat_map(|channels| channels.chunks(per_command).map(<[String]>::to_vec))
                .collect();
            if commands.len() > COMMANDS_PER_ROUND_MAX {
                commands.truncate(COMMANDS_PER_ROUND_MAX);
                self.dirty = true;
            }
            let sent: Vec<String> = commands.iter().flatten().cloned().collect();
            let command = if subscribe {
                LinkCommand::Subscribe(commands)
            } else {
                LinkCommand::Unsubscribe(commands)
            };
            // A full link queue: the rest waits for the next round (answers wake the manager).
            if link.commands.try_send(command).is_ok() {
                link.pending.extend(sent);
            } else {
                self.dirty = true;
            }
        }
    }

    fn settle_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let deadline = Duration::from_millis(self.settings.confirm_timeout_ms);
        let waiters = std::mem::take(&mut self.waiters);
        for mut waiter in waiters {
            if waiter.reply.is_canceled() {
                continue;
            }
            // Amortised O(1) per channel: each waiter's cursor only moves forward.
            while let Some(channel) = waiter.channels.get(waiter.confirmed) {
                if self.wanted.contains(channel) && self.missing.contains(channel) {
                    break;
                }
                waiter.confirmed += 1;
            }
            let waited = waiter.started.elapsed();
            if waiter.confirmed == waiter.channels.len() {
                let _ = waiter.reply.send(Ok(()));
            } else if waited >= deadline {
                let missing = waiter.channels[waiter.confirmed..]
                    .iter()
                    .filter(|channel| self.missing.contains(*channel))
                    .count();
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
        let topology_known = !self.shared.borrow().topology.is_empty();
        let masters = self.master_reports();
        let publishers_up = masters.iter().all(|master| master.publisher_connected);
        let ready = topology_known && self.missing.is_empty() && publishers_up;
        self.status.ready.store(ready, Ordering::Relaxed);
        self.status
            .wanted_channels
            .store(self.wanted.len() as u64, Ordering::Relaxed);
        let subscribed = self.wanted.len().saturating_sub(self.missing.len());
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
                resubscriptions: link.resubscriptions,
                publisher_connected: shared
                    .publishers
                    .get(address)
                    .is_some_and(Publisher::is_connected),
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
        .filter(|publisher| publisher.is_connected())
        .map(|publisher| publisher.client.clone())
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
