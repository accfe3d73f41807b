//! The fan-out task of a shard: take publications from the shard's inbox, the mesh and the Redis
//! core, frame each once per wire format its subscribers here speak, queue the frame for every
//! local subscriber, then give every connection with queued frames one vectored write, and close
//! the slow consumers of the pass (never in the middle of it).

use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;
use futures::channel::mpsc;
use glommio::channels::shared_channel::ConnectedReceiver;

use super::shard::{Shard, ShardMessage};
use crate::config::{FLUSHES_PER_YIELD, MAX_MESSAGES_PER_PASS};
use crate::publication::Publication;
use crate::telemetry::ShardId;
use crate::telemetry::counters::Counter;

/// Most publications a shard holds between taking them from its sources and fanning them out.
const STAGED_MAX: usize = 4 * MAX_MESSAGES_PER_PASS;

/// Where a shard's fan-out takes messages from, besides its own inbox.
pub struct Sources {
    /// One receiver per other shard, with the sending shard's id.
    pub mesh: Vec<(ShardId, ConnectedReceiver<ShardMessage>)>,
    /// Messages from the Redis subscriber core.
    pub redis: Option<mpsc::Receiver<Publication>>,
}

/// The fan-out task's working state.
struct FanoutState {
    sources: Sources,
    /// Publications taken from the sources, not yet released (see `collect`).
    staged: Vec<Publication>,
    /// Publications released for the next queueing.
    batch: Vec<Publication>,
    /// Publish time of each queued publication whose frames are not all written yet, with the
    /// pass that will have written them all (at most two passes away, so this stays bounded).
    unrecorded: Vec<(Instant, u64)>,
    /// Passes started so far.
    pass: u64,
}

/// The fan-out task: forever take a batch of messages, queue them, write, then close the slow
/// consumers of this pass.
pub async fn run_fanout(shard: Rc<Shard>, sources: Sources) {
    let mut state = FanoutState {
        sources,
        staged: Vec::with_capacity(STAGED_MAX),
        batch: Vec::with_capacity(MAX_MESSAGES_PER_PASS),
        unrecorded: Vec::new(),
        pass: 0,
    };
    loop {
        if let Some(stall) = crate::faults::fanout_stall(shard.id.0) {
            glommio::timer::sleep(stall).await;
        }
        // Wait for a message only when nothing is left to write.
        let idle = shard.registry.borrow().flush_list_is_empty();
        let mut taken = take_messages(&shard, &mut state, idle, MAX_MESSAGES_PER_PASS).await;
        if idle && !shard.config.write_coalesce.is_zero() {
            glommio::timer::sleep(shard.config.write_coalesce).await;
            let limit = MAX_MESSAGES_PER_PASS - taken;
            taken += take_messages(&shard, &mut state, false, limit).await;
        }
        // A connection gets at most `MAX_MESSAGES_PER_PASS` new frames between two writes (the
        // slow-consumer check comes after the pass): the pass takes only what is left.
        let budget = MAX_MESSAGES_PER_PASS.saturating_sub(taken);
        state.pass += 1;
        write_pass_absorbing(&shard, &mut state, budget).await;
        let now_ms = shard.now_ms();
        let mut registry = shard.registry.borrow_mut();
        // A publication's latency ends with the pass that wrote its last frame.
        let now = Instant::now();
        let pass = state.pass;
        state.unrecorded.retain(|&(at, written_by)| {
            if written_by > pass {
                return true;
            }
            registry
                .stats
                .record_fanout_latency(now.duration_since(at).as_micros() as u64);
            false
        });
        registry.request_slow_consumer_closes(now_ms);
    }
}

/// Takes available messages (waiting for one if `wait`), at most `limit`, and queues them for
/// subscribers; returns how many it took.
async fn take_messages(shard: &Shard, state: &mut FanoutState, wait: bool, limit: usize) -> usize {
    let FanoutState {
        sources,
        staged,
        batch,
        unrecorded,
        pass,
    } = state;
    poll_fn(|context| collect(shard, context, sources, staged, batch, wait, limit)).await;
    let taken = batch.len();
    if taken > 0 {
        // Queued between passes: the next pass writes every frame. Queued during pass k: the
        // subscribers it already wrote get theirs in pass k + 1. Either way: `pass + 1`.
        let written_by = *pass + 1;
        unrecorded.extend(
            queue_batch(shard, batch)
                .into_iter()
                .map(|at| (at, written_by)),
        );
    }
    taken
}

/// One write pass over the connections listed at its start, yielding between slices so a
/// fan-out to many connections never starves accepts and reads. It also takes the messages
/// that arrived meanwhile, up to `budget`: subscribers not yet written in this pass get them in
/// the same write (one more frame per send call), the others in the next pass. So a message
/// arriving during a long pass does not wait for the whole pass to end.
async fn write_pass_absorbing(shard: &Shard, state: &mut FanoutState, mut budget: usize) {
    let list = shard.registry.borrow_mut().take_flush_list();
    for slice in list.chunks(FLUSHES_PER_YIELD) {
        shard.write_slice(slice);
        if list.len() > FLUSHES_PER_YIELD {
            glommio::yield_if_needed().await;
            if budget > 0 {
                budget -= take_messages(shard, state, false, budget).await;
            }
        }
    }
    shard.registry.borrow_mut().return_flush_list(list);
}

/// Moves publications into `batch` in publish order (until it holds `limit`). With `wait`,
/// stays pending until there is at least one.
///
/// Order across shards: a publish answered by one shard and then a publish made (by the same
/// backend, after that answer) on another shard reach this shard through different channels.
/// Each channel is FIFO, but which one is read first is not. So: take what every source has
/// (pass 1), note the newest `ordered_at` seen, take what every source has again (pass 2:
/// anything ordered before a pass-1 message was in its channel before that message, so it is
/// visible now), then release, sorted by `ordered_at`, only what is not newer than pass 1's
/// newest. Later messages wait for the next round, where the same rule applies.
///
/// `ordered_at` is the publish time, except for a publication positioned in a channel's
/// history: then it is when the owner positioned it. Offsets follow that order, while publish
/// times need not (a publish made on another shard before one made on the owner can reach the
/// owner's sequencer after it): sorting by publish time would release offset n + 1 before n.
fn collect(
    shard: &Shard,
    context: &mut Context<'_>,
    sources: &mut Sources,
    staged: &mut Vec<Publication>,
    batch: &mut Vec<Publication>,
    wait: bool,
    limit: usize,
) -> Poll<()> {
    take_available(shard, context, sources, staged);
    if staged.is_empty() {
        if wait {
            shard.inbox.set_waker(context.waker());
            return Poll::Pending;
        }
        return Poll::Ready(());
    }
    let horizon = staged
        .iter()
        .map(|publication| publication.ordered_at)
        .max()
        .expect("staged is not empty");
    take_available(shard, context, sources, staged);
    staged.sort_by_key(|publication| publication.ordered_at);
    let releasable = staged
        .partition_point(|publication| publication.ordered_at <= horizon)
        .min(limit.saturating_sub(batch.len()));
    batch.extend(staged.drain(..releasable));
    Poll::Ready(())
}

/// Moves what the inbox, the Redis core and the mesh hold into `staged` (at most `STAGED_MAX`
/// in all); snapshot requests are answered at once.
fn take_available(
    shard: &Shard,
    context: &mut Context<'_>,
    sources: &mut Sources,
    staged: &mut Vec<Publication>,
) {
    // Redis delivers in Redis's order through one channel.
    while let Some(redis) = sources.redis.as_mut()
        && staged.len() < STAGED_MAX
    {
        match redis.poll_next_unpin(context) {
            Poll::Ready(Some(publication)) => staged.push(publication),
            Poll::Ready(None) => sources.redis = None,
            Poll::Pending => break,
        }
    }
    let mut messages = Vec::new();
    shard
        .inbox
        .drain_into(&mut messages, STAGED_MAX.saturating_sub(staged.len()));
    let receivers = &mut sources.mesh;
    let mut index = 0;
    let mut taken_from_peer = 0;
    while index < receivers.len() && staged.len() + messages.len() < STAGED_MAX {
        let (peer, receiver) = &mut receivers[index];
        match receiver.poll_next_unpin(context) {
            Poll::Ready(Some(message)) => {
                messages.push(message);
                taken_from_peer += 1;
                continue;
            }
            Poll::Ready(None) => {
                shard.mesh_consumed(*peer, taken_from_peer);
                receivers.swap_remove(index);
            }
            Poll::Pending => {
                shard.mesh_consumed(*peer, taken_from_peer);
                index += 1;
            }
        }
        taken_from_peer = 0;
    }
    if let Some((peer, _)) = receivers.get(index) {
        shard.mesh_consumed(*peer, taken_from_peer);
    }
    for message in messages {
        match message {
            ShardMessage::Publish(publication) => staged.push(publication),
            // The asker may have given up; nothing to do then.
            ShardMessage::Snapshot(reply) => drop(reply.send(shard.snapshot())),
            ShardMessage::Channels(request) => {
                let answer = shard.answer_channels(request.app, &request.query);
                drop(request.reply.send(answer));
            }
            ShardMessage::Append(request) => {
                if let Some(publication) = shard.accept_append(*request) {
                    staged.push(publication);
                }
            }
            ShardMessage::History(ask) => shard.answer_history(ask),
        }
    }
}

/// Frames each publication once per wire format and queues it for every local subscriber;
/// returns the publish times of those that had subscribers here (for the latency histogram).
fn queue_batch(shard: &Shard, batch: &mut Vec<Publication>) -> Vec<Instant> {
    // Returned times are recorded once the frames are written.
    let mut published_at = Vec::new();
    let mut registry = shard.registry.borrow_mut();
    for publication in batch.drain(..) {
        registry.stats.count(Counter::PublicationsFannedOut);
        if registry.fan_out(&publication) > 0 {
            published_at.push(publication.published_at);
        }
    }
    published_at
}
