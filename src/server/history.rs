//! Channel history on a node without Redis: which shard keeps a channel's stream, how a
//! publication gets its offset there, and how any shard asks that stream a question.
//!
//! Every channel with history has one owner shard (a fixed hash of its name). Publications to
//! it go to the owner first, whose fan-out appends each one (the offset is assigned there,
//! once), stamps the position into the publication and delivers it to every shard: at once
//! when nothing is ahead of it, else through its sequencer task, one at a time. Every shard
//! sees a channel's publications in offset order: each shard-to-shard channel is FIFO, only
//! the owner sends a history channel's publications, and each shard releases positioned
//! publications in the order the owner positioned them (`Publication::ordered_at`,
//! `fanout::collect`). Questions
//! (the top, a recovery, a page) travel to the owner as [`ShardMessage::History`] and are
//! answered by its fan-out task from the store it alone touches: no lock, no shared state.
//!
//! The exact-recovery sequence this supports (Centrifugo's): the subscriber joins the channel
//! on its own shard first, then asks the owner; whatever the owner appends after answering is
//! sent after the answer, so it reaches the subscriber live; what was in flight before is a
//! duplicate the merge drops (see `history::recovery`).
//!
//! Deliberately not here: the store itself (`history::memory`), the protocol (`centrifugo.rs`),
//! history in Redis (`broker::history`: with `--redis` the position comes from Redis).

use std::time::{Duration, Instant};

use futures::SinkExt;
use futures::channel::oneshot;
use glommio::channels::local_channel::{LocalReceiver, LocalSender};

use super::accept::RawStreamStart;
use super::registry::ConnectionKey;
use super::shard::{Shard, ShardMessage};
use super::state::{CloseRequest, LifeEvent};
use crate::broker::history::HistoryRequest;
use crate::broker::redis::RedisLink;
use crate::channel::{AppSlot, ChannelName};
use crate::history::StreamPosition;
use crate::history::memory::MemoryHistory;
use crate::history::policy::{ChannelHistory, HistoryPolicy};
use crate::history::recovery::HistoryRead;
use crate::history::recovery::RecoveryOutcome;
pub use crate::history::{HistoryAnswer, HistoryQuestion};
use crate::protocol::handshake::switching_protocols_response_with_headers;
use crate::publication::Publication;
use crate::telemetry::ShardId;
use crate::telemetry::counters::Counter;
use crate::wire::raw::{HISTORY_UNAVAILABLE, POSITION_UNRECOVERABLE, STREAM_GAP, frame_payload};

/// Most appends waiting in one owner's sequencer (beyond it, publishes are refused with 503).
pub const SEQUENCER_CAPACITY: usize = 4096;
/// Publications expiry looks at per tick (bounds the ticker's work).
const EXPIRE_SLOTS_PER_TICK: usize = 1024;

/// A publication on its way to its channel's history owner.
#[derive(Debug)]
pub struct AppendRequest {
    /// The publication (not yet positioned).
    pub publication: Publication,
    /// Where its position (or the refusal) goes.
    pub reply: oneshot::Sender<Result<StreamPosition, Vec<ShardId>>>,
}

/// A question to a channel's history owner.
#[derive(Debug)]
pub struct HistoryAsk {
    /// The channel.
    pub channel: ChannelName,
    /// What is asked.
    pub question: HistoryQuestion,
    /// Where the answer goes.
    pub reply: oneshot::Sender<HistoryAnswer>,
}

/// Why a history question or a positioned publish got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryUnavailable {
    /// The channel keeps no history.
    #[error("the channel keeps no history")]
    NotKept,
    /// The owner shard's channel stayed full, or it died.
    #[error("the shard keeping the channel's history did not answer in time")]
    NoAnswer,
}

/// What one shard keeps about history: the policy (every shard), the streams it owns, and its
/// sequencer's queue.
pub struct ShardHistory {
    /// Which channels keep history.
    pub policy: HistoryPolicy,
    /// The streams of the channels this shard owns.
    pub store: std::cell::RefCell<MemoryHistory>,
    /// Appends waiting for the sequencer.
    appends: LocalSender<AppendRequest>,
    /// The sequencer's end (taken once, by the task).
    waiting: std::cell::RefCell<Option<LocalReceiver<AppendRequest>>>,
    /// Appends queued for the sequencer and not yet delivered (while any is, later ones queue
    /// behind it).
    queued: std::cell::Cell<usize>,
}

impl ShardHistory {
    /// History for a shard with this policy and store.
    pub fn new(policy: HistoryPolicy, store: MemoryHistory) -> ShardHistory {
        let (appends, waiting) = glommio::channels::local_channel::new_bounded(SEQUENCER_CAPACITY);
        ShardHistory {
            policy,
            store: std::cell::RefCell::new(store),
            appends,
            waiting: std::cell::RefCell::new(Some(waiting)),
            queued: std::cell::Cell::new(0),
        }
    }
}

/// A stable hash of a channel name (FNV-1a): every shard of every build agrees on the owner.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Shard {
    /// What `channel` keeps, when it is in the default namespace and has history.
    pub fn history_of(&self, app: AppSlot, channel: &ChannelName) -> Option<ChannelHistory> {
        if app != AppSlot::DEFAULT {
            return None;
        }
        self.history
            .as_ref()?
            .policy
            .lookup(channel.as_str())
            .copied()
    }

    /// The shard that keeps `channel`'s history.
    fn history_owner(&self, channel: &ChannelName) -> usize {
        (name_hash(channel.as_str()) % self.shared.shards.len() as u64) as usize
    }

    /// Delivers `publication` to every shard; a publication to a channel with history goes
    /// through the channel's owner first and comes back with its position.
    pub async fn publish_positioned(
        &self,
        publication: Publication,
    ) -> Result<Option<StreamPosition>, Vec<ShardId>> {
        if publication.position.is_some()
            || self
                .history_of(publication.app, &publication.channel)
                .is_none()
        {
            return self.publish_all(vec![publication]).await.map(|()| None);
        }
        let owner = self.history_owner(&publication.channel);
        let (reply, answer) = oneshot::channel();
        let request = ShardMessage::Append(Box::new(AppendRequest { publication, reply }));
        if self.send_to_shard(owner, request).await.is_err() {
            return Err(vec![ShardId(owner)]);
        }
        // The owner answers within its own publish timeout; this bound is a backstop.
        let bound = self.config.publish_timeout * 2 + Duration::from_secs(1);
        match glommio::timer::timeout(bound, async { Ok(answer.await) }).await {
            Ok(Ok(result)) => result.map(Some),
            _ => Err(vec![ShardId(owner)]),
        }
    }

    /// Delivers several publications: all or none when no channel among them keeps history;
    /// otherwise one by one, in order, each through its owner when it has one (stopping at
    /// the first refused).
    pub async fn publish_many(&self, publications: Vec<Publication>) -> Result<(), Vec<ShardId>> {
        let positioned = publications.iter().any(|publication| {
            self.history_of(publication.app, &publication.channel)
                .is_some()
        });
        if !positioned {
            return self.publish_all(publications).await;
        }
        for publication in publications {
            self.publish_positioned(publication).await?;
        }
        Ok(())
    }

    /// Asks `channel`'s history owner `question`.
    pub async fn ask_history(
        &self,
        channel: &ChannelName,
        question: HistoryQuestion,
    ) -> Result<HistoryAnswer, HistoryUnavailable> {
        let Some(settings) = self.history_of(AppSlot::DEFAULT, channel) else {
            return Err(HistoryUnavailable::NotKept);
        };
        if let Some(link) = &self.redis {
            return self
                .ask_redis_history(link, channel, settings, question)
                .await;
        }
        let owner = self.history_owner(channel);
        let (reply, answer) = oneshot::channel();
        let ask = ShardMessage::History(HistoryAsk {
            channel: channel.clone(),
            question,
            reply,
        });
        if self.send_to_shard(owner, ask).await.is_err() {
            return Err(HistoryUnavailable::NoAnswer);
        }
        let bound = self.config.publish_timeout + Duration::from_secs(1);
        match glommio::timer::timeout(bound, async { Ok(answer.await) }).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(HistoryUnavailable::NoAnswer),
        }
    }

    /// With `--redis`: the history is in Redis, asked through the subscriber core.
    async fn ask_redis_history(
        &self,
        link: &RedisLink,
        channel: &ChannelName,
        settings: ChannelHistory,
        question: HistoryQuestion,
    ) -> Result<HistoryAnswer, HistoryUnavailable> {
        let (reply, answer) = oneshot::channel();
        let request = HistoryRequest {
            channel: channel.clone(),
            settings,
            question,
            reply,
        };
        let mut sender = link.history.clone();
        let exchange = async {
            sender.send(request).await.ok()?;
            match answer.await {
                Ok(Ok(answer)) => Some(answer),
                Ok(Err(error)) => {
                    log::warn!("shard {}: history from Redis: {error}", self.id);
                    None
                }
                Err(_) => None,
            }
        };
        let bound = self.config.publish_timeout + Duration::from_secs(5);
        match glommio::timer::timeout(bound, async { Ok(exchange.await) }).await {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(HistoryUnavailable::NoAnswer),
        }
    }

    /// Sends `message` to shard `peer` (this one included), waiting at most
    /// `--publish-timeout` for room; `Err` when it could not be sent.
    async fn send_to_shard(&self, peer: usize, mut message: ShardMessage) -> Result<(), ()> {
        let deadline = Instant::now() + self.config.publish_timeout;
        // Bounded by the deadline; each round sleeps 1 ms.
        loop {
            if !self.shared.shards[peer].is_alive() {
                return Err(());
            }
            match self.try_send_to(peer, message) {
                Ok(()) => return Ok(()),
                Err(Some(back)) => message = back,
                Err(None) => return Err(()),
            }
            if Instant::now() >= deadline {
                return Err(());
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The fan-out took an append for a channel this shard owns. When nothing waits in the
    /// sequencer and every other shard has room, it is appended and sent to them now, and
    /// returned for this shard's fan-out to stage (no second trip through a task and the
    /// inbox); otherwise it waits its turn in the sequencer (refused at once when that is
    /// full), so a channel's publications always leave in offset order.
    pub fn accept_append(&self, request: AppendRequest) -> Option<Publication> {
        let Some(history) = &self.history else {
            drop(request.reply.send(Err(vec![self.id])));
            return None;
        };
        // The inbox may still hold what the sequencer delivered last: then this one goes
        // behind it, through the sequencer, or this shard would stage it first.
        if history.queued.get() == 0 && self.inbox.is_empty() && !self.peers_without_room() {
            let AppendRequest {
                mut publication,
                reply,
            } = request;
            let Some(settings) = history.policy.lookup(publication.channel.as_str()).copied()
            else {
                drop(reply.send(Err(vec![self.id])));
                return None;
            };
            let position = self.append(history, &settings, &publication);
            publication.set_position(std::sync::Arc::new(position.clone()));
            self.send_to_peers(&publication);
            drop(reply.send(Ok(position)));
            return Some(publication);
        }
        history.queued.set(history.queued.get() + 1);
        if let Err(
            glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(request))
            | glommio::GlommioError::Closed(glommio::ResourceType::Channel(request)),
        ) = history.appends.try_send(request)
        {
            history.queued.set(history.queued.get() - 1);
            drop(request.reply.send(Err(vec![self.id])));
        }
        None
    }

    /// Appends to the store (its one writer); counts it.
    fn append(
        &self,
        history: &ShardHistory,
        settings: &ChannelHistory,
        publication: &Publication,
    ) -> StreamPosition {
        let position = history.store.borrow_mut().append(
            &publication.channel,
            settings,
            publication.payload.clone(),
            self.now_ms(),
        );
        self.registry
            .borrow_mut()
            .stats
            .count(Counter::HistoryAppended);
        position
    }

    /// The fan-out took a question about a channel this shard owns: answer it now.
    pub fn answer_history(&self, ask: HistoryAsk) {
        let Some(history) = &self.history else {
            return;
        };
        let Some(settings) = history.policy.lookup(ask.channel.as_str()).copied() else {
            return;
        };
        let now_ms = self.now_ms();
        let mut store = history.store.borrow_mut();
        let answer = match ask.question {
            HistoryQuestion::Subscribe { recover: None } => {
                HistoryAnswer::Subscribe(HistoryRead::Top(store.position(&ask.channel, now_ms)))
            }
            HistoryQuestion::Subscribe {
                recover: Some(since),
            } => {
                let read = match store.recover(&ask.channel, &since, settings.size, now_ms) {
                    Ok(recovered) => HistoryRead::Recovered(recovered),
                    Err(unrecoverable) => HistoryRead::Unrecoverable(unrecoverable),
                };
                HistoryAnswer::Subscribe(read)
            }
            HistoryQuestion::Page(query) => {
                HistoryAnswer::Page(store.page(&ask.channel, &query, now_ms))
            }
        };
        drop(ask.reply.send(answer));
    }

    /// The sequencer: appends each publication of a channel this shard owns, in arrival order,
    /// and delivers it positioned to every shard before taking the next.
    pub async fn run_sequencer(self: std::rc::Rc<Self>) {
        let Some(history) = &self.history else {
            return;
        };
        let Some(waiting) = history.waiting.borrow_mut().take() else {
            return;
        };
        while let Some(request) = waiting.recv().await {
            let AppendRequest {
                mut publication,
                reply,
            } = request;
            let Some(settings) = history.policy.lookup(publication.channel.as_str()).copied()
            else {
                history.queued.set(history.queued.get().saturating_sub(1));
                drop(reply.send(Err(vec![self.id])));
                continue;
            };
            let position = self.append(history, &settings, &publication);
            publication.set_position(std::sync::Arc::new(position.clone()));
            // Kept in history even when the delivery is refused: a subscriber then sees a gap
            // at the next publication (or at its position check) and recovers it.
            let delivered = self.publish_all(vec![publication]).await;
            history.queued.set(history.queued.get().saturating_sub(1));
            drop(reply.send(delivered.map(|()| position)));
        }
    }

    /// Drops expired publications and idle streams, a bounded slice per call (the ticker).
    pub fn expire_history(&self) {
        if let Some(history) = &self.history {
            history
                .store
                .borrow_mut()
                .expire(self.now_ms(), EXPIRE_SLOTS_PER_TICK);
        }
    }
}

/// Completes a `/ws/{channel}` subscription to a channel with history, once the channel's owner
/// has answered: the `101` (with the stream position the first message follows, in
/// `Ringcast-Stream-Offset` / `Ringcast-Stream-Epoch`), then the recovered publications and
/// what arrived meanwhile, in order; or, when `?since=` cannot be recovered, the `101` and a
/// close 4010 before any message.
pub async fn complete_raw_stream(
    shard: &std::rc::Rc<Shard>,
    key: ConnectionKey,
    start: RawStreamStart<'_>,
) {
    let Some(generation) = shard
        .registry
        .borrow()
        .get(key)
        .map(|connection| connection.generation())
    else {
        return;
    };
    let question = HistoryQuestion::Subscribe {
        recover: start.since.clone(),
    };
    // With Redis, history is read once the live subscription is in place.
    if shard.redis.is_some() && !shard.wait_for_redis_subscription(&start.channel).await {
        log::debug!(
            "shard {}: {} not yet subscribed in Redis",
            shard.id,
            start.channel
        );
    }
    let answer = shard.ask_history(&start.channel, question).await;
    let now_ms = shard.now_ms();
    {
        let mut registry = shard.registry.borrow_mut();
        let current = registry
            .get(key)
            .is_some_and(|connection| connection.generation() == generation);
        if !current {
            return;
        }
        let read = match answer {
            Ok(HistoryAnswer::Subscribe(read)) => Some(read),
            _ => None,
        };
        let synchronized = read.and_then(|read| {
            let stream = registry.raw_stream(key)?;
            Some(stream.finish(read))
        });
        let (position, frames, close) = match synchronized {
            Some(Ok(synchronized)) => {
                let position = Some(synchronized.reply_position.clone());
                match synchronized.outcome {
                    RecoveryOutcome::NotRecovered(_) => {
                        registry.stats.count(Counter::HistoryUnrecoverable);
                        (position, Vec::new(), Some(POSITION_UNRECOVERABLE))
                    }
                    outcome => {
                        if outcome == RecoveryOutcome::Recovered {
                            registry.stats.count(Counter::HistoryRecoveries);
                        }
                        let frames = synchronized
                            .reply_publications
                            .iter()
                            .chain(&synchronized.then_push)
                            .map(|publication| frame_payload(&publication.payload))
                            .collect();
                        (position, frames, None)
                    }
                }
            }
            Some(Err(_)) => (None, Vec::new(), Some(STREAM_GAP)),
            None => (None, Vec::new(), Some(HISTORY_UNAVAILABLE)),
        };
        let offset = position.as_ref().map(|p| p.offset.to_string());
        let mut headers = Vec::new();
        if let (Some(position), Some(offset)) = (&position, &offset) {
            headers.push(("Ringcast-Stream-Offset", offset.as_str()));
            headers.push(("Ringcast-Stream-Epoch", position.epoch.as_str()));
        }
        let response = switching_protocols_response_with_headers(
            start.accept,
            start.negotiated.as_ref(),
            &headers,
        );
        registry.queue(key, bytes::Bytes::from(response));
        for frame in frames {
            registry.queue(key, frame);
        }
        if let Some((code, reason)) = close {
            let request = CloseRequest::Application { code, reason };
            registry.life(key, LifeEvent::Request(request), now_ms);
        }
    }
    shard.write_slice(&[key]);
    shard.registry.borrow_mut().release_queue_if_empty(key);
}
