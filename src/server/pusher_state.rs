//! The Pusher features that wait on state shared by every shard and node: presence members,
//! cache channels' last events, and the publishes of client events and member changes.
//!
//! A connection's message is decided synchronously (`super::pusher`, with the registry
//! borrowed); what must wait for a store is queued here as [`PusherWork`] and run as a task
//! once the borrow is released, answering on the connection only if it is still the same one.
//! The stores are the broker's: in memory for one node (`Shared`), in Redis through the
//! subscriber core with `--redis` / `--redis-cluster`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::{mpsc, oneshot};
use serde_json::value::RawValue;

use super::registry::{ConnectionKey, Registry, SeatState};
use super::shard::Shard;
use crate::apps::WebhookEventKind;
use crate::broker::cache::{CacheChannel, CacheCommand, CachedEvent};
use crate::broker::presence::{
    JoinOutcome, LEAVE_DELAY, LeaveOutcome, PresenceChannel, PresenceCommand, StoredMember,
};
use crate::broker::webhook::WebhookQueue;
use crate::channel::{AppSlot, ChannelName};
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::publication::Publication;
use crate::socket_id::SocketId;
use crate::telemetry::counters::Counter;
use crate::wire::pusher::channel::PusherChannel;
use crate::wire::pusher::error::{SubscribeError, SubscriptionErrorType};
use crate::wire::pusher::outgoing::{self, MemberRef};
use crate::wire::pusher::presence::PresenceMember;
use crate::wire::pusher::webhook::WebhookEvent;

/// Most work items waiting for a task at once per shard (beyond: refused, counted).
const WORK_MAX: usize = 65_536;
/// Longest wait for a store's answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most departures waiting to be told again after the store failed (beyond: dropped, and
/// with Redis the node's lease still removes them when the node goes).
const RETRY_MAX: usize = 100_000;
/// How long the presence task waits before telling failed departures again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a connection's message left to do once the registry is free.
#[derive(Debug)]
pub enum PusherWork {
    /// Join a presence channel and answer the subscribe.
    Join {
        /// The connection.
        key: ConnectionKey,
        /// Its generation (the answer is dropped if the key was reused).
        generation: u32,
        /// Its socket id.
        socket_id: SocketId,
        /// The namespace.
        app: AppSlot,
        /// The presence channel.
        channel: PusherChannel,
        /// Who joins.
        member: PresenceMember,
    },
    /// Send a cache channel's last event (or `pusher:cache_miss`) to a new subscriber.
    ReplayCache {
        /// The connection.
        key: ConnectionKey,
        /// Its generation.
        generation: u32,
        /// The namespace.
        app: AppSlot,
        /// The cache channel.
        channel: PusherChannel,
    },
    /// Publish a client event (kept first when its channel is a cache channel).
    Publish(Box<Publication>),
}

/// A shard's work waiting for a task.
#[derive(Debug, Default)]
pub struct PusherQueue(RefCell<Vec<PusherWork>>);

impl PusherQueue {
    /// Queues `work`; refused when [`WORK_MAX`] items wait already.
    pub fn push(&self, work: PusherWork) -> Result<(), PusherWork> {
        let mut queue = self.0.borrow_mut();
        if queue.len() >= WORK_MAX {
            return Err(work);
        }
        queue.push(work);
        Ok(())
    }
}

/// Spawns the queued work (call with no registry borrow held).
pub fn spawn_work(shard: &Rc<Shard>) {
    let works = std::mem::take(&mut *shard.pusher_work.0.borrow_mut());
    for work in works {
        let shard = shard.clone();
        glommio::spawn_local(async move { run(&shard, work).await }).detach();
    }
}

async fn run(shard: &Rc<Shard>, work: PusherWork) {
    match work {
        PusherWork::Join {
            key,
            generation,
            socket_id,
            app,
            channel,
            member,
        } => join(shard, key, generation, socket_id, app, channel, member).await,
        PusherWork::ReplayCache {
            key,
            generation,
            app,
            channel,
        } => {
            replay_cache(shard, key, generation, app, &channel).await;
            shard.write_slice(&[key]);
        }
        PusherWork::Publish(publication) => {
            if let Err(error) = shard.publish_event(*publication).await {
                log::debug!(
                    "shard {}: a client event was not published: {error}",
                    shard.id
                );
                shard
                    .registry
                    .borrow_mut()
                    .stats
                    .count(Counter::ClientEventsDropped);
            }
        }
    }
}

/// A text frame of a Pusher JSON message.
fn text_frame(json: &[u8]) -> Bytes {
    encode_server_frame(OpCode::Text, json)
}

/// Is `key` still the connection `generation` named?
fn current(registry: &Registry, key: ConnectionKey, generation: u32) -> bool {
    registry
        .get(key)
        .is_some_and(|connection| connection.generation() == generation)
}

async fn join(
    shard: &Rc<Shard>,
    key: ConnectionKey,
    generation: u32,
    socket_id: SocketId,
    app: AppSlot,
    channel: PusherChannel,
    member: PresenceMember,
) {
    let Some(presence) = shard.presence_channel(app, &channel) else {
        return;
    };
    let max_members = shard
        .apps
        .get(app)
        .map_or(0, |found| found.limits.max_presence_members);
    let stored = StoredMember {
        user_id: member.user_id.clone(),
        user_info: member.user_info.as_ref().map(|info| info.get().to_string()),
    };
    // With Redis, join only once this node receives the channel: a member who joins after us
    // publishes its member_added after our join, and it must reach us.
    if shard.redis.is_some()
        && !shard
            .wait_for_redis_subscription_in(app, &presence.channel)
            .await
    {
        log::debug!(
            "shard {}: {} not yet subscribed in Redis",
            shard.id,
            presence.channel
        );
    }
    let delay = crate::faults::presence_join_delay(&member.user_id);
    if let Some(delay) = delay {
        glommio::timer::sleep(delay).await;
    }
    let outcome = shard
        .presence_join(&presence, socket_id, stored, max_members)
        .await;
    if let Some(delay) = delay {
        glommio::timer::sleep(delay).await;
    }
    let name = presence.channel.clone();
    let now_ms = shard.now_ms();
    let announce = {
        let mut registry = shard.registry.borrow_mut();
        let seated = current(&registry, key, generation)
            && registry
                .pusher_mut(key)
                .and_then(|pusher| pusher.seat(&name))
                .is_some_and(|seat| seat.state == SeatState::Joining);
        match outcome {
            Ok(JoinOutcome::Joined { .. }) if !seated => Announce::LeaveAgain,
            Ok(JoinOutcome::Joined {
                members,
                first_connection,
                returning,
            }) => {
                let mut held = Vec::new();
                if let Some(seat) = registry.pusher_mut(key).and_then(|p| p.seat(&name)) {
                    seat.state = SeatState::Joined;
                    held = std::mem::take(&mut seat.held);
                }
                let frame = succeeded_frame(&channel, &members);
                registry.queue(key, text_frame(&frame));
                for frame in held_member_frames(&channel, &members, &held) {
                    registry.queue(key, frame);
                }
                registry.stats.count(Counter::PresenceJoins);
                if first_connection {
                    Announce::Added { returning }
                } else {
                    Announce::Nothing
                }
            }
            Ok(JoinOutcome::Full) | Err(_) if seated => {
                let reply = match &outcome {
                    Ok(_) => {
                        SubscribeError::PresenceFull { limit: max_members }.reply(channel.as_str())
                    }
                    Err(error) => {
                        log::warn!("shard {}: presence join failed: {error}", shard.id);
                        crate::wire::pusher::error::Reply::Message(outgoing::subscription_error(
                            channel.as_str(),
                            SubscriptionErrorType::InvalidChannel,
                            "presence membership is unavailable; try again",
                            503,
                        ))
                    }
                };
                registry.leave_presence(key, app, &name);
                super::pusher::apply_reply(&mut registry, key, reply, now_ms);
                if outcome.is_err() {
                    // A join that timed out may still have happened: undo it.
                    Announce::LeaveAgain
                } else {
                    Announce::Nothing
                }
            }
            Err(_) => Announce::LeaveAgain,
            _ => Announce::Nothing,
        }
    };
    shard.write_slice(&[key]);
    match announce {
        Announce::Nothing => {}
        Announce::Added { returning } => {
            let publication = crate::wire::pusher::member_added_publication(
                app,
                &name,
                member.as_ref(),
                socket_id,
            );
            if let Err(error) = shard.publish_event(publication).await {
                log::warn!("shard {}: member_added not published: {error}", shard.id);
            }
            if !returning {
                webhook_member(shard, app, &name, &member.user_id, MemberChange::Added);
            }
        }
        Announce::LeaveAgain => {
            // The connection went (or left) while the join was in flight: undo it.
            let left = shard.presence_leave(&presence, socket_id).await;
            announce_leave(shard, app, &name, left).await;
        }
    }
    if channel.kind().is_cache() {
        replay_cache(shard, key, generation, app, &channel).await;
        shard.write_slice(&[key]);
    }
}

/// The member events a connection got while its join was in flight, as it still needs them
/// after its `subscription_succeeded`: the member list is the channel at the join, so an event
/// it already reflects is left out (a member added who is in it, a member removed who is not),
/// the others follow in order. (A member added and removed again before the join is sent both
/// ways: the client ends with the right members.)
fn held_member_frames(
    channel: &PusherChannel,
    members: &[StoredMember],
    held: &[Publication],
) -> Vec<Bytes> {
    #[derive(serde::Deserialize)]
    struct Member {
        user_id: String,
    }
    if held.is_empty() {
        return Vec::new();
    }
    let mut present: std::collections::HashSet<String> = members
        .iter()
        .map(|member| member.user_id.clone())
        .collect();
    held.iter()
        .filter_map(|publication| {
            let event = publication.event.as_deref()?;
            let data = std::str::from_utf8(&publication.payload).ok()?;
            let member: Member = serde_json::from_str(data).ok()?;
            let needed = if event == outgoing::MEMBER_ADDED_EVENT {
                present.insert(member.user_id)
            } else {
                present.remove(&member.user_id)
            };
            needed.then(|| text_frame(&outgoing::event(channel.as_str(), event, data, None)))
        })
        .collect()
}

/// What a join leaves to tell the others.
enum Announce {
    Nothing,
    /// A user's first connection: `member_added` to the others, and its webhook unless the
    /// user is back within the leave delay (its `member_removed` webhook is cancelled too).
    Added {
        returning: bool,
    },
    LeaveAgain,
}

/// Which way a member changed (for webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// A user's first connection joined.
    Added,
    /// A user's last connection left.
    Removed,
}

/// `pusher_internal:subscription_succeeded` with the members (user_info texts the store kept
/// are JSON; one that is not is sent as `{}`).
fn succeeded_frame(channel: &PusherChannel, members: &[StoredMember]) -> Bytes {
    let infos: Vec<Option<Box<RawValue>>> = members
        .iter()
        .map(|member| {
            member
                .user_info
                .as_ref()
                .and_then(|info| RawValue::from_string(info.clone()).ok())
        })
        .collect();
    let refs: Vec<MemberRef<'_>> = members
        .iter()
        .zip(&infos)
        .map(|(member, info)| MemberRef {
            user_id: &member.user_id,
            user_info: info.as_deref(),
        })
        .collect();
    outgoing::subscription_succeeded_presence(channel, &refs)
}

/// Publishes `member_removed` when a leave was the user's last connection.
async fn announce_leave(
    shard: &Rc<Shard>,
    app: AppSlot,
    channel: &ChannelName,
    left: Result<LeaveOutcome, String>,
) {
    let user_id = match left {
        Ok(Some(user_id)) => user_id,
        Ok(None) => return,
        Err(error) => {
            log::warn!("shard {}: presence leave failed: {error}", shard.id);
            return;
        }
    };
    let publication = crate::wire::pusher::member_removed_publication(app, channel, &user_id);
    if let Err(error) = shard.publish_event(publication).await {
        log::warn!("shard {}: member_removed not published: {error}", shard.id);
    }
    webhook_member(shard, app, channel, &user_id, MemberChange::Removed);
}

async fn replay_cache(
    shard: &Shard,
    key: ConnectionKey,
    generation: u32,
    app: AppSlot,
    channel: &PusherChannel,
) {
    let Some(cache) = shard.cache_channel(app, channel) else {
        return;
    };
    let cached = shard.cache_get(&cache).await;
    let mut registry = shard.registry.borrow_mut();
    if !current(&registry, key, generation) || !registry.is_subscribed(key, app, &cache.channel) {
        return;
    }
    match cached {
        Ok(Some(event)) => {
            let Ok(data) = std::str::from_utf8(&event.data) else {
                return;
            };
            let json = outgoing::event(channel.as_str(), &event.event, data, None);
            registry.queue(key, text_frame(&json));
        }
        Ok(None) => {
            registry.queue(key, text_frame(&outgoing::cache_miss(channel)));
            drop(registry);
            shard.webhook_cache_miss(app, channel.as_str());
        }
        Err(error) => {
            log::warn!("shard {}: cache read failed: {error}", shard.id);
            registry.queue(key, text_frame(&outgoing::cache_miss(channel)));
        }
    }
}

/// Tells the store about every presence departure of this shard, and publishes the
/// `member_removed` of users who left for good. Runs for the shard's life.
pub async fn run_departures(shard: Rc<Shard>) {
    let departed = shard.registry.borrow().departed.clone();
    let mut retry: Vec<super::registry::Departure> = Vec::new();
    loop {
        let notified = departed.notified();
        let mut departures = shard.registry.borrow_mut().take_departures();
        departures.append(&mut retry);
        if departures.is_empty() {
            notified.await;
            continue;
        }
        let mut failed = false;
        for departure in departures {
            let Some(presence) = shard.presence_channel_by_name(departure.app, &departure.channel)
            else {
                continue;
            };
            let left = shard.presence_leave(&presence, departure.socket_id).await;
            if left.is_err() && retry.len() < RETRY_MAX {
                retry.push(departure);
                failed = true;
                continue;
            }
            announce_leave(&shard, departure.app, &departure.channel, left).await;
        }
        if failed {
            glommio::timer::sleep(RETRY_AFTER).await;
        }
    }
}

impl Shard {
    /// The presence channel `channel` of `app` as the store names it.
    fn presence_channel(&self, app: AppSlot, channel: &PusherChannel) -> Option<PresenceChannel> {
        let name = ChannelName::new(channel.as_str())?;
        self.presence_channel_by_name(app, &name)
    }

    fn presence_channel_by_name(
        &self,
        app: AppSlot,
        name: &ChannelName,
    ) -> Option<PresenceChannel> {
        Some(PresenceChannel {
            app,
            app_id: Arc::from(self.apps.get(app)?.id.as_str()),
            channel: name.clone(),
        })
    }

    /// The cache channel `channel` of `app` as the store names it (`None`: not a cache channel).
    pub fn cache_channel(&self, app: AppSlot, channel: &PusherChannel) -> Option<CacheChannel> {
        if !channel.kind().is_cache() {
            return None;
        }
        Some(CacheChannel {
            app,
            app_id: Arc::from(self.apps.get(app)?.id.as_str()),
            channel: ChannelName::new(channel.as_str())?,
        })
    }

    /// Asks the Redis core `command` (made with the reply sender) and waits for its answer.
    async fn ask_core<C, T>(
        &self,
        mut link: mpsc::Sender<C>,
        command: impl FnOnce(oneshot::Sender<Result<T, String>>) -> C,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            link.send(command(reply))
                .await
                .map_err(|_| "the Redis core stopped".to_string())?;
            answer
                .await
                .map_err(|_| "the Redis core stopped".to_string())?
        };
        glommio::timer::timeout(STORE_TIMEOUT, async { Ok(exchange.await) })
            .await
            .unwrap_or_else(|_| Err("Redis did not answer in time".into()))
    }

    /// After the leave delay: is `user_id` still gone from the channel (true once per
    /// departure)?
    pub async fn presence_confirm_left(
        &self,
        channel: &PresenceChannel,
        user_id: &str,
    ) -> Result<bool, String> {
        let Some(link) = &self.redis else {
            let mut book = self.shared.presence.lock().expect("never poisoned");
            return Ok(book.confirm_left(channel, user_id));
        };
        let (channel, user_id) = (channel.clone(), user_id.to_string());
        self.ask_core(link.presence.clone(), |reply| {
            PresenceCommand::ConfirmLeft {
                channel,
                user_id,
                reply,
            }
        })
        .await
    }

    /// Joins `socket_id` to a presence channel.
    pub async fn presence_join(
        &self,
        channel: &PresenceChannel,
        socket_id: SocketId,
        member: StoredMember,
        max_members: usize,
    ) -> Result<JoinOutcome, String> {
        let Some(link) = &self.redis else {
            let mut book = self.shared.presence.lock().expect("never poisoned");
            return Ok(book.join(channel, &socket_id.to_string(), member, max_members));
        };
        let channel = channel.clone();
        self.ask_core(link.presence.clone(), |reply| PresenceCommand::Join {
            channel,
            socket_id: socket_id.to_string(),
            member,
            max_members,
            reply,
        })
        .await
    }

    /// `socket_id` leaves a presence channel.
    pub async fn presence_leave(
        &self,
        channel: &PresenceChannel,
        socket_id: SocketId,
    ) -> Result<LeaveOutcome, String> {
        let Some(link) = &self.redis else {
            let mut book = self.shared.presence.lock().expect("never poisoned");
            return Ok(book.leave(channel, &socket_id.to_string()));
        };
        let channel = channel.clone();
        self.ask_core(link.presence.clone(), |reply| PresenceCommand::Leave {
            channel,
            socket_id: socket_id.to_string(),
            reply,
        })
        .await
    }

    /// A presence channel's members, across every node.
    pub async fn presence_members(
        &self,
        app: AppSlot,
        name: &ChannelName,
    ) -> Result<Vec<StoredMember>, String> {
        let channel = self
            .presence_channel_by_name(app, name)
            .ok_or_else(|| "unknown application".to_string())?;
        let Some(link) = &self.redis else {
            let book = self.shared.presence.lock().expect("never poisoned");
            return Ok(book.members(&channel));
        };
        self.ask_core(link.presence.clone(), |reply| PresenceCommand::Members {
            channel,
            reply,
        })
        .await
    }

    /// Keeps a Pusher event published on a cache channel as the channel's last (a failure is
    /// logged: the event itself still goes out).
    pub async fn keep_if_cached(&self, publication: &Publication) {
        let Some(event) = &publication.event else {
            return;
        };
        let Ok(channel) = PusherChannel::parse(publication.channel.as_str()) else {
            return;
        };
        let Some(cache) = self.cache_channel(publication.app, &channel) else {
            return;
        };
        let cached = CachedEvent {
            event: event.clone(),
            data: publication.payload.clone(),
        };
        if let Err(error) = self.cache_put(cache, cached).await {
            log::warn!("shard {}: cache channel event not kept: {error}", self.id);
        }
    }

    /// Keeps `event` as a cache channel's last, for the application's cache TTL.
    pub async fn cache_put(&self, channel: CacheChannel, event: CachedEvent) -> Result<(), String> {
        let ttl = self
            .apps
            .get(channel.app)
            .map_or(Duration::from_secs(1800), |app| {
                Duration::from_secs(app.limits.cache_ttl_s.max(1))
            });
        let Some(link) = &self.redis else {
            let mut cache = self.shared.cache.lock().expect("never poisoned");
            return cache
                .put(&channel, event, ttl, Instant::now())
                .map_err(|_| "the cache is full".to_string());
        };
        self.ask_core(link.cache.clone(), |reply| CacheCommand::Put {
            channel,
            event,
            ttl,
            reply,
        })
        .await
    }

    /// A cache channel's last event.
    pub async fn cache_get(&self, channel: &CacheChannel) -> Result<Option<CachedEvent>, String> {
        let Some(link) = &self.redis else {
            let mut cache = self.shared.cache.lock().expect("never poisoned");
            return Ok(cache.get(channel, Instant::now()));
        };
        let channel = channel.clone();
        self.ask_core(link.cache.clone(), |reply| CacheCommand::Get {
            channel,
            reply,
        })
        .await
    }

    /// Publishes one event everywhere (through Redis with `--redis`, else to every shard),
    /// keeping it first as its channel's last event when the channel is a cache channel.
    pub async fn publish_event(&self, publication: Publication) -> Result<(), String> {
        self.keep_if_cached(&publication).await;
        if let Some(link) = &self.redis {
            return self
                .publish_publication_through_redis(link, publication)
                .await
                .map(drop);
        }
        self.publish_many(vec![publication])
            .await
            .map_err(|refused| format!("{} shards could not take the event in time", refused.len()))
    }

    /// A `client_event` webhook, if the application wants it.
    pub fn webhook_client_event(
        &self,
        app: AppSlot,
        channel: &PusherChannel,
        event: &str,
        data: &str,
        socket_id: SocketId,
        user_id: Option<&str>,
    ) {
        let Some(webhooks) = self.wanted_webhooks(app, WebhookEventKind::ClientEvent) else {
            return;
        };
        webhooks.send(
            app,
            WebhookEvent::ClientEvent {
                channel: channel.as_str().to_string(),
                event: event.to_string(),
                data: data.to_string(),
                socket_id,
                user_id: user_id.map(str::to_string),
            },
        );
    }

    /// A `cache_miss` webhook, if the application wants it.
    pub fn webhook_cache_miss(&self, app: AppSlot, channel: &str) {
        if let Some(webhooks) = self.wanted_webhooks(app, WebhookEventKind::CacheMiss) {
            webhooks.send(
                app,
                WebhookEvent::CacheMiss {
                    channel: channel.to_string(),
                },
            );
        }
    }

    /// The webhook queue, if `app` wants `kind`.
    fn wanted_webhooks(&self, app: AppSlot, kind: WebhookEventKind) -> Option<&WebhookQueue> {
        self.shared
            .webhooks
            .as_ref()
            .filter(|webhooks| webhooks.wants(app, kind))
    }
}

/// A member webhook: `member_added` at once; `member_removed` after the leave delay, and only
/// if the user did not come back meanwhile (asked of the store, so exactly once across nodes).
/// Without Redis the delayed check always runs: it also forgets the departure.
fn webhook_member(
    shard: &Rc<Shard>,
    app: AppSlot,
    channel: &ChannelName,
    user_id: &str,
    change: MemberChange,
) {
    let kind = match change {
        MemberChange::Added => WebhookEventKind::MemberAdded,
        MemberChange::Removed => WebhookEventKind::MemberRemoved,
    };
    let wanted = shard.wanted_webhooks(app, kind).cloned();
    let (channel_text, user_id) = (channel.as_str().to_string(), user_id.to_string());
    match change {
        MemberChange::Added => {
            if let Some(webhooks) = wanted {
                let event = WebhookEvent::MemberAdded {
                    channel: channel_text,
                    user_id,
                };
                webhooks.send(app, event);
            }
        }
        MemberChange::Removed => {
            if wanted.is_none() && shard.redis.is_some() {
                return;
            }
            let Some(presence) = shard.presence_channel_by_name(app, channel) else {
                return;
            };
            let shard = shard.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(LEAVE_DELAY).await;
                let gone = shard.presence_confirm_left(&presence, &user_id).await;
                if let (Ok(true), Some(webhooks)) = (gone, wanted) {
                    let event = WebhookEvent::MemberRemoved {
                        channel: channel_text,
                        user_id,
                    };
                    webhooks.send(app, event);
                }
            })
            .detach();
        }
    }
}
