//! The in-memory history store: one stream per channel with history (epoch, top offset and the
//! last publications), all of them under one memory bound.
//!
//! What is kept, and what is dropped first:
//! - per channel, at most `ChannelHistory::size` publications, each for `ChannelHistory::ttl_ms`
//!   (the oldest go first; expiry is checked on every access and by [`MemoryHistory::expire`]);
//! - globally, at most [`HistoryLimits::memory_bytes_max`] bytes: when an append goes over, the
//!   oldest publication kept anywhere is dropped (one queue in append order across channels),
//!   until the store fits. Dropping publications never changes an epoch: offsets keep telling
//!   the truth, so a client whose gap reaches a dropped publication is refused, never misled;
//! - a stream (its offset counter) is forgotten when it has held no publication and was not
//!   touched for [`HistoryLimits::meta_ttl_ms`], when [`MemoryHistory::remove`] is called, or
//!   when a new channel needs a slot beyond [`HistoryLimits::channels_max`] (the least recently
//!   touched of a small sample goes). Its next life gets a new epoch.
//!
//! Epochs: `{seed:016x}{generation:x}`: the store's 64-bit seed (random per process, see
//! [`random_seed`], so a restart never repeats an epoch) and a counter of streams created by
//! this store (so a forgotten and re-created channel never repeats one either).
//!
//! Invariants: a stream's kept publications are exactly the offsets `first ..= top` with no
//! hole (a publication too large to keep clears the ones before it instead of leaving a hole);
//! `memory_bytes` is the sum of [`entry_cost`] and [`channel_cost`] of what is kept and never
//! exceeds the bound after a call returns.
//!
//! Deliberately not here: a clock, threads, locks (one owner calls it), Redis.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use slab::Slab;

use super::policy::ChannelHistory;
use super::{
    HistoryPage, HistoryPublication, HistoryQuery, HistoryStore, Recovered, StreamPosition,
    Unrecoverable, UnrecoverableReason, check_recovery,
};
use crate::channel::ChannelName;
use crate::history::Epoch;

/// Bytes counted per kept publication besides its payload: its slot in the channel's queue
/// (offset, payload handle, expiry: 48) and in the global append-order queue (24), rounded up.
pub const ENTRY_OVERHEAD_BYTES: usize = 80;
/// Bytes counted per stream besides its name: map slot, slab slot, epoch, queue header.
pub const CHANNEL_OVERHEAD_BYTES: usize = 192;
/// How many streams are compared when one must be forgotten to make room for a new channel.
const FORGET_SAMPLE: usize = 16;

/// The store's limits (from the validated configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// `--history-memory`, bytes: payloads plus [`ENTRY_OVERHEAD_BYTES`] per publication plus
    /// [`CHANNEL_OVERHEAD_BYTES`] and the name per channel. Default 64 MiB. Larger keeps more
    /// for recovery; it is memory the shards do not get.
    pub memory_bytes_max: usize,
    /// `--history-channels`: most channels with a stream. Default 65 536. Their metadata must
    /// fit in half the memory bound (checked by [`HistoryLimits::validate`]).
    pub channels_max: usize,
    /// `--history-meta-ttl`, ms: how long a stream with no publication left is remembered
    /// (Centrifugo's `history_meta_ttl`). Default 24 h. Shorter frees idle channels sooner, but
    /// a subscriber idle that long is then told its position is unrecoverable.
    pub meta_ttl_ms: u64,
}

impl Default for HistoryLimits {
    fn default() -> HistoryLimits {
        HistoryLimits {
            memory_bytes_max: 64 << 20,
            channels_max: 65_536,
            meta_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

/// Why history limits were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// `channels_max` is 0.
    #[error("--history-channels must be at least 1")]
    NoChannels,
    /// `meta_ttl_ms` is 0.
    #[error("--history-meta-ttl must be at least 1ms")]
    NoMetaTtl,
    /// Stream metadata alone could exceed half the memory bound.
    #[error(
        "{channels} channels need {needed_bytes} bytes of metadata: more than half of --history-memory"
    )]
    MetadataTooLarge {
        /// `channels_max`.
        channels: usize,
        /// Their worst-case metadata, bytes.
        needed_bytes: usize,
    },
}

impl HistoryLimits {
    /// Checks the relations between the limits.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.channels_max == 0 {
            return Err(LimitsError::NoChannels);
        }
        if self.meta_ttl_ms == 0 {
            return Err(LimitsError::NoMetaTtl);
        }
        let per_channel = CHANNEL_OVERHEAD_BYTES + crate::channel::MAX_CHANNEL_NAME_BYTES;
        let needed_bytes = self.channels_max.saturating_mul(per_channel);
        if needed_bytes > self.memory_bytes_max / 2 {
            return Err(LimitsError::MetadataTooLarge {
                channels: self.channels_max,
                needed_bytes,
            });
        }
        Ok(())
    }
}

/// Bytes a kept publication counts for.
pub fn entry_cost(payload: &[u8]) -> usize {
    payload.len() + ENTRY_OVERHEAD_BYTES
}

/// Bytes a stream counts for.
pub fn channel_cost(channel: &ChannelName) -> usize {
    channel.as_str().len() + CHANNEL_OVERHEAD_BYTES
}

/// A seed for [`MemoryHistory::new`] from the process's randomly keyed hasher (std's
/// `RandomState` is seeded from the operating system's randomness). Not cryptographic: an epoch
/// only has to differ from every earlier one.
pub fn random_seed() -> u64 {
    RandomState::new().hash_one(std::process::id())
}

/// What the store holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryStats {
    /// Streams (channels with an epoch).
    pub channels: usize,
    /// Publications kept.
    pub publications: usize,
    /// Bytes counted against the bound.
    pub memory_bytes: usize,
}

/// One kept publication.
#[derive(Debug)]
struct Entry {
    /// Its offset.
    offset: u64,
    /// Its payload.
    payload: Bytes,
    /// When it is dropped, ms (never earlier than the entry before it).
    expires_at_ms: u64,
}

/// One channel's stream.
#[derive(Debug)]
struct Stream {
    /// The channel (the same allocation as the index key).
    name: ChannelName,
    /// Which stream of this store it is (names its epoch; tells a reused slot apart).
    generation: u64,
    /// Its epoch.
    epoch: Epoch,
    /// Offset of its last publication (0 before the first).
    top: u64,
    /// The publications kept: offsets `first ..= top`, no hole.
    entries: VecDeque<Entry>,
    /// Last append or read, ms.
    last_touch_ms: u64,
}

/// A kept publication in the global append-order queue (stale once the publication is gone).
#[derive(Debug, Clone, Copy)]
struct Retained {
    /// The stream's slab key.
    slot: usize,
    /// The stream's generation (a reused slot has another).
    generation: u64,
    /// The publication's offset.
    offset: u64,
}

/// The in-memory history store. Owned by one thread; every call takes the clock as `now_ms`
/// (monotonic, ms).
#[derive(Debug)]
pub struct MemoryHistory {
    /// The limits.
    limits: HistoryLimits,
    /// Names this store's epochs apart from every other run's.
    seed: u64,
    /// Streams created so far (the last generation handed out).
    generations: u64,
    /// Channel to slab key.
    index: HashMap<ChannelName, usize>,
    /// The streams.
    streams: Slab<Stream>,
    /// Every kept publication in append order (front = oldest kept anywhere), plus stale
    /// records, compacted when they outnumber the live ones.
    retained: VecDeque<Retained>,
    /// Publications kept.
    publications: usize,
    /// Bytes counted against the bound.
    memory_bytes: usize,
    /// Where [`MemoryHistory::expire`] resumes.
    sweep_cursor: usize,
}

impl MemoryHistory {
    /// An empty store; `seed` from [`random_seed`] (tests pass a fixed one).
    pub fn new(limits: HistoryLimits, seed: u64) -> Result<MemoryHistory, LimitsError> {
        limits.validate()?;
        Ok(MemoryHistory {
            limits,
            seed,
            generations: 0,
            index: HashMap::new(),
            streams: Slab::new(),
            retained: VecDeque::new(),
            publications: 0,
            memory_bytes: 0,
            sweep_cursor: 0,
        })
    }

    /// What the store holds.
    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            channels: self.streams.len(),
            publications: self.publications,
            memory_bytes: self.memory_bytes,
        }
    }

    /// Appends `payload` to `channel`'s stream; returns its position. Keeps it unless it alone
    /// would take more than half the memory bound (then the kept ones before it are cleared,
    /// so the stream has no hole).
    pub fn append(
        &mut self,
        channel: &ChannelName,
        settings: &ChannelHistory,
        payload: Bytes,
        now_ms: u64,
    ) -> StreamPosition {
        let slot = self.stream_slot(channel, now_ms);
        self.trim_expired(slot, now_ms);
        let cost = entry_cost(&payload);
        let keep = settings.size > 0 && cost <= self.limits.memory_bytes_max / 2;
        let stream = &mut self.streams[slot];
        stream.top += 1;
        stream.last_touch_ms = now_ms;
        let position = StreamPosition {
            offset: stream.top,
            epoch: stream.epoch.clone(),
        };
        if !keep {
            self.clear_entries(slot);
            return position;
        }
        let expires_at_ms = stream
            .entries
            .back()
            .map_or(0, |last| last.expires_at_ms)
            .max(now_ms.saturating_add(settings.ttl_ms));
        stream.entries.push_back(Entry {
            offset: position.offset,
            payload,
            expires_at_ms,
        });
        let generation = stream.generation;
        self.publications += 1;
        self.memory_bytes += cost;
        self.retained.push_back(Retained {
            slot,
            generation,
            offset: position.offset,
        });
        // Bounded: the stream had at most `size` entries before this push.
        while self.streams[slot].entries.len() > settings.size {
            self.pop_front(slot);
        }
        self.enforce_memory_bound();
        position
    }

    /// The stream's top (creating the stream when it does not exist).
    pub fn position(&mut self, channel: &ChannelName, now_ms: u64) -> StreamPosition {
        let slot = self.stream_slot(channel, now_ms);
        self.trim_expired(slot, now_ms);
        let stream = &mut self.streams[slot];
        stream.last_touch_ms = now_ms;
        top_of(stream)
    }

    /// Every publication after `since`, or why not (see [`check_recovery`]).
    pub fn recover(
        &mut self,
        channel: &ChannelName,
        since: &StreamPosition,
        publications_max: usize,
        now_ms: u64,
    ) -> Result<Recovered, Unrecoverable> {
        let slot = self.stream_slot(channel, now_ms);
        self.trim_expired(slot, now_ms);
        let stream = &mut self.streams[slot];
        stream.last_touch_ms = now_ms;
        let top = top_of(stream);
        let readable = since.epoch == stream.epoch
            && since.offset <= stream.top
            && stream.top - since.offset <= publications_max as u64;
        let publications = if readable {
            kept_after(stream, since.offset, usize::MAX)
        } else {
            Vec::new()
        };
        check_recovery(since, top, publications, publications_max)
    }

    /// A page of history. Forward: offsets after `since` (or from the oldest kept), ascending;
    /// reverse: offsets before `since` (or from the newest), descending; at most `limit`.
    /// Refused only when `since` is from another epoch (error 112).
    pub fn page(
        &mut self,
        channel: &ChannelName,
        query: &HistoryQuery,
        now_ms: u64,
    ) -> Result<HistoryPage, Unrecoverable> {
        let slot = self.stream_slot(channel, now_ms);
        self.trim_expired(slot, now_ms);
        let stream = &mut self.streams[slot];
        stream.last_touch_ms = now_ms;
        let position = top_of(stream);
        if let Some(since) = &query.since
            && since.epoch != stream.epoch
        {
            return Err(Unrecoverable {
                reason: UnrecoverableReason::EpochChanged,
                position,
            });
        }
        let since = query.since.as_ref().map(|since| since.offset);
        let publications = match (query.reverse, since) {
            (_, _) if query.limit == 0 => Vec::new(),
            (false, since) => kept_after(stream, since.unwrap_or(0), query.limit),
            (true, since) => kept_before(stream, since.unwrap_or(u64::MAX), query.limit),
        };
        Ok(HistoryPage {
            publications,
            position,
        })
    }

    /// Forgets `channel`'s stream: its next publication starts a new epoch.
    pub fn remove(&mut self, channel: &ChannelName) {
        if let Some(&slot) = self.index.get(channel) {
            self.forget(slot);
        }
    }

    /// Drops expired publications and forgets streams idle past `meta_ttl_ms`, visiting at most
    /// `slots_budget` slab slots from where the last call stopped (call it from a ticker).
    pub fn expire(&mut self, now_ms: u64, slots_budget: usize) {
        let capacity = self.streams.capacity();
        if capacity == 0 {
            return;
        }
        // Bounded: by slots_budget and by the slab's capacity.
        for _ in 0..slots_budget.min(capacity) {
            let slot = self.sweep_cursor % capacity;
            self.sweep_cursor = (slot + 1) % capacity;
            if !self.streams.contains(slot) {
                continue;
            }
            self.trim_expired(slot, now_ms);
            let stream = &self.streams[slot];
            let idle_until = stream.last_touch_ms.saturating_add(self.limits.meta_ttl_ms);
            if stream.entries.is_empty() && idle_until <= now_ms {
                self.forget(slot);
            }
        }
        self.compact_retained();
    }

    /// The slab key of `channel`'s stream, created (new epoch) when missing.
    fn stream_slot(&mut self, channel: &ChannelName, now_ms: u64) -> usize {
        if let Some(&slot) = self.index.get(channel) {
            return slot;
        }
        if self.streams.len() >= self.limits.channels_max {
            self.forget_least_recent();
        }
        self.generations += 1;
        let generation = self.generations;
        let epoch = Epoch::new(&format!("{:016x}{generation:x}", self.seed));
        let slot = self.streams.insert(Stream {
            name: channel.clone(),
            generation,
            epoch,
            top: 0,
            entries: VecDeque::new(),
            last_touch_ms: now_ms,
        });
        self.index.insert(channel.clone(), slot);
        self.memory_bytes += channel_cost(channel);
        self.enforce_memory_bound();
        slot
    }

    /// Forgets the least recently touched of a sample of streams (one with no publication
    /// preferred), to make room for a new channel.
    fn forget_least_recent(&mut self) {
        let capacity = self.streams.capacity();
        let mut victim: Option<(bool, u64, usize)> = None;
        let mut sampled = 0;
        // Bounded: by the slab's capacity; stops after FORGET_SAMPLE live streams.
        for step in 0..capacity {
            let slot = (self.sweep_cursor + step) % capacity;
            let Some(stream) = self.streams.get(slot) else {
                continue;
            };
            let key = (!stream.entries.is_empty(), stream.last_touch_ms, slot);
            if victim.is_none_or(|best| key < best) {
                victim = Some(key);
            }
            sampled += 1;
            if sampled == FORGET_SAMPLE {
                break;
            }
        }
        if let Some((_, _, slot)) = victim {
            self.sweep_cursor = (slot + 1) % capacity;
            self.forget(slot);
        }
    }

    fn forget(&mut self, slot: usize) {
        self.clear_entries(slot);
        let stream = self.streams.remove(slot);
        self.index.remove(&stream.name);
        self.memory_bytes -= channel_cost(&stream.name);
    }

    fn clear_entries(&mut self, slot: usize) {
        // Bounded: by the stream's entries.
        while !self.streams[slot].entries.is_empty() {
            self.pop_front(slot);
        }
    }

    fn trim_expired(&mut self, slot: usize, now_ms: u64) {
        // Bounded: by the stream's entries.
        while self.streams[slot]
            .entries
            .front()
            .is_some_and(|entry| entry.expires_at_ms <= now_ms)
        {
            self.pop_front(slot);
        }
    }

    fn pop_front(&mut self, slot: usize) {
        if let Some(entry) = self.streams[slot].entries.pop_front() {
            self.publications -= 1;
            self.memory_bytes -= entry_cost(&entry.payload);
        }
    }

    /// Drops the oldest publications kept anywhere until the store fits its bound.
    fn enforce_memory_bound(&mut self) {
        // Bounded: each iteration consumes one record of `retained`.
        while self.memory_bytes > self.limits.memory_bytes_max {
            let Some(record) = self.retained.pop_front() else {
                break;
            };
            if self.is_front(record) {
                self.pop_front(record.slot);
            } else {
                debug_assert!(
                    !self.is_kept(&record),
                    "a kept publication is its stream's first"
                );
            }
        }
        self.compact_retained();
    }

    /// Whether `record` names the first publication its stream still keeps.
    fn is_front(&self, record: Retained) -> bool {
        self.streams.get(record.slot).is_some_and(|stream| {
            stream.generation == record.generation
                && stream
                    .entries
                    .front()
                    .is_some_and(|entry| entry.offset == record.offset)
        })
    }

    /// Whether `record` names a publication still kept.
    fn is_kept(&self, record: &Retained) -> bool {
        self.streams.get(record.slot).is_some_and(|stream| {
            stream.generation == record.generation
                && stream
                    .entries
                    .front()
                    .is_some_and(|entry| entry.offset <= record.offset)
        })
    }

    /// Drops stale records once they outnumber the live ones (amortized O(1) per append).
    fn compact_retained(&mut self) {
        if self.retained.len() <= 2 * self.publications + 1024 {
            return;
        }
        let mut retained = std::mem::take(&mut self.retained);
        retained.retain(|record| self.is_kept(record));
        self.retained = retained;
    }
}

fn top_of(stream: &Stream) -> StreamPosition {
    StreamPosition {
        offset: stream.top,
        epoch: stream.epoch.clone(),
    }
}

/// Kept publications with an offset above `after`, ascending, at most `limit`.
fn kept_after(stream: &Stream, after: u64, limit: usize) -> Vec<HistoryPublication> {
    let Some(first) = stream.entries.front().map(|entry| entry.offset) else {
        return Vec::new();
    };
    let skip = usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
    stream
        .entries
        .iter()
        .skip(skip)
        .take(limit)
        .map(to_publication)
        .collect()
}

/// Kept publications with an offset below `before`, descending, at most `limit`.
fn kept_before(stream: &Stream, before: u64, limit: usize) -> Vec<HistoryPublication> {
    let Some(first) = stream.entries.front().map(|entry| entry.offset) else {
        return Vec::new();
    };
    let below = usize::try_from(before.saturating_sub(first)).unwrap_or(usize::MAX);
    let kept = stream.entries.len().min(below);
    stream
        .entries
        .range(..kept)
        .rev()
        .take(limit)
        .map(to_publication)
        .collect()
}

fn to_publication(entry: &Entry) -> HistoryPublication {
    HistoryPublication {
        offset: entry.offset,
        payload: entry.payload.clone(),
    }
}

impl HistoryStore for MemoryHistory {
    fn append(
        &mut self,
        channel: &ChannelName,
        settings: &ChannelHistory,
        payload: Bytes,
        now_ms: u64,
    ) -> StreamPosition {
        MemoryHistory::append(self, channel, settings, payload, now_ms)
    }

    fn position(&mut self, channel: &ChannelName, now_ms: u64) -> StreamPosition {
        MemoryHistory::position(self, channel, now_ms)
    }

    fn recover(
        &mut self,
        channel: &ChannelName,
        since: &StreamPosition,
        publications_max: usize,
        now_ms: u64,
    ) -> Result<Recovered, Unrecoverable> {
        MemoryHistory::recover(self, channel, since, publications_max, now_ms)
    }

    fn page(
        &mut self,
        channel: &ChannelName,
        query: &HistoryQuery,
        now_ms: u64,
    ) -> Result<HistoryPage, Unrecoverable> {
        MemoryHistory::page(self, channel, query, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEED: u64 = 0x5eed;
    const KEEP: ChannelHistory = ChannelHistory {
        size: 100,
        ttl_ms: 60_000,
    };

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn store() -> MemoryHistory {
        MemoryHistory::new(HistoryLimits::default(), SEED).unwrap()
    }

    fn payload(offset: u64) -> Bytes {
        Bytes::from(format!("message {offset}"))
    }

    fn append_n(history: &mut MemoryHistory, name: &str, settings: &ChannelHistory, n: u64) {
        for offset in 1..=n {
            let position = history.append(&channel(name), settings, payload(offset), 0);
            assert_eq!(position.offset, offset);
        }
    }

    fn at(offset: u64, epoch: &Epoch) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.clone(),
        }
    }

    fn offsets(publications: &[HistoryPublication]) -> Vec<u64> {
        publications
            .iter()
            .map(|publication| publication.offset)
            .collect()
    }

    #[test]
    fn offsets_start_at_one_in_one_epoch() {
        let mut history = store();
        let empty = history.position(&channel("a"), 0);
        assert_eq!(empty.offset, 0);
        assert_eq!(empty.epoch.as_str(), "0000000000005eed1");
        let first = history.append(&channel("a"), &KEEP, payload(1), 0);
        assert_eq!(first, at(1, &empty.epoch));
        let other = history.append(&channel("b"), &KEEP, payload(1), 0);
        assert_eq!(other.offset, 1);
        assert_ne!(other.epoch, empty.epoch);
    }

    #[test]
    fn recovery_returns_the_exact_suffix() {
        let mut history = store();
        append_n(&mut history, "a", &KEEP, 10);
        let epoch = history.position(&channel("a"), 0).epoch;
        let recovered = history
            .recover(&channel("a"), &at(7, &epoch), 300, 0)
            .unwrap();
        assert_eq!(offsets(&recovered.publications), [8, 9, 10]);
        assert_eq!(recovered.publications[0].payload, payload(8));
        assert_eq!(recovered.position, at(10, &epoch));
        let nothing = history
            .recover(&channel("a"), &at(10, &epoch), 300, 0)
            .unwrap();
        assert!(nothing.publications.is_empty());
    }

    #[test]
    fn the_size_bound_makes_older_positions_unrecoverable() {
        let mut history = store();
        let small = ChannelHistory { size: 3, ..KEEP };
        append_n(&mut history, "a", &small, 10);
        let epoch = history.position(&channel("a"), 0).epoch;
        assert!(
            history
                .recover(&channel("a"), &at(7, &epoch), 300, 0)
                .is_ok()
        );
        let refused = history
            .recover(&channel("a"), &at(6, &epoch), 300, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::Trimmed);
        assert_eq!(refused.position, at(10, &epoch));
        assert_eq!(history.stats().publications, 3);
    }

    #[test]
    fn expired_publications_are_dropped_but_the_position_stays() {
        let mut history = store();
        let short = ChannelHistory {
            ttl_ms: 100,
            ..KEEP
        };
        let epoch = history.append(&channel("a"), &short, payload(1), 0).epoch;
        history.append(&channel("a"), &short, payload(2), 50);
        let refused = history
            .recover(&channel("a"), &at(0, &epoch), 300, 120)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::Trimmed);
        let recovered = history
            .recover(&channel("a"), &at(1, &epoch), 300, 120)
            .unwrap();
        assert_eq!(offsets(&recovered.publications), [2]);
        assert!(
            history
                .recover(&channel("a"), &at(2, &epoch), 300, 500)
                .is_ok()
        );
        assert_eq!(history.position(&channel("a"), 500), at(2, &epoch));
        assert_eq!(history.stats().publications, 0);
    }

    #[test]
    fn too_many_missed_is_refused() {
        let mut history = store();
        append_n(&mut history, "a", &KEEP, 10);
        let epoch = history.position(&channel("a"), 0).epoch;
        let refused = history
            .recover(&channel("a"), &at(0, &epoch), 9, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::TooMany);
        assert!(
            history
                .recover(&channel("a"), &at(0, &epoch), 10, 0)
                .is_ok()
        );
    }

    #[test]
    fn another_epoch_or_a_future_offset_is_refused() {
        let mut history = store();
        append_n(&mut history, "a", &KEEP, 3);
        let epoch = history.position(&channel("a"), 0).epoch;
        let stranger = Epoch::new("other");
        let refused = history
            .recover(&channel("a"), &at(1, &stranger), 300, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::EpochChanged);
        let refused = history
            .recover(&channel("a"), &at(4, &epoch), 300, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::AheadOfStream);
    }

    #[test]
    fn the_memory_bound_drops_the_oldest_publication_anywhere() {
        let limits = HistoryLimits {
            memory_bytes_max: 8 * 1024,
            channels_max: 4,
            ..HistoryLimits::default()
        };
        let mut history = MemoryHistory::new(limits, SEED).unwrap();
        let big = Bytes::from(vec![b'x'; 1000]);
        let a = history.append(&channel("a"), &KEEP, big.clone(), 0).epoch;
        // Bounded: a handful of appends, each must keep the store within its bound.
        for _ in 0..10 {
            history.append(&channel("b"), &KEEP, big.clone(), 0);
            assert!(history.stats().memory_bytes <= limits.memory_bytes_max);
        }
        let refused = history
            .recover(&channel("a"), &at(0, &a), 300, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::Trimmed);
        assert_eq!(refused.position, at(1, &a), "dropping data keeps the epoch");
        let b = history.position(&channel("b"), 0).epoch;
        assert!(history.recover(&channel("b"), &at(9, &b), 300, 0).is_ok());
        assert!(history.recover(&channel("b"), &at(0, &b), 300, 0).is_err());
    }

    #[test]
    fn a_payload_too_large_to_keep_leaves_no_hole() {
        let limits = HistoryLimits {
            memory_bytes_max: 4096,
            channels_max: 4,
            ..HistoryLimits::default()
        };
        let mut history = MemoryHistory::new(limits, SEED).unwrap();
        let epoch = history.append(&channel("a"), &KEEP, payload(1), 0).epoch;
        let huge = history.append(&channel("a"), &KEEP, Bytes::from(vec![0; 4096]), 0);
        assert_eq!(huge, at(2, &epoch));
        history.append(&channel("a"), &KEEP, payload(3), 0);
        assert!(
            history
                .recover(&channel("a"), &at(0, &epoch), 300, 0)
                .is_err()
        );
        assert!(
            history
                .recover(&channel("a"), &at(1, &epoch), 300, 0)
                .is_err()
        );
        let recovered = history
            .recover(&channel("a"), &at(2, &epoch), 300, 0)
            .unwrap();
        assert_eq!(offsets(&recovered.publications), [3]);
    }

    #[test]
    fn a_forgotten_stream_comes_back_in_a_new_epoch() {
        let mut history = store();
        append_n(&mut history, "a", &KEEP, 3);
        let old = history.position(&channel("a"), 0).epoch;
        history.remove(&channel("a"));
        assert_eq!(history.stats(), HistoryStats::default());
        let new = history.append(&channel("a"), &KEEP, payload(1), 0);
        assert_eq!(new.offset, 1);
        assert_ne!(new.epoch, old);
        let refused = history
            .recover(&channel("a"), &at(0, &old), 300, 0)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::EpochChanged);
    }

    #[test]
    fn a_new_channel_beyond_the_limit_forgets_the_least_recent() {
        let limits = HistoryLimits {
            channels_max: 2,
            ..HistoryLimits::default()
        };
        let mut history = MemoryHistory::new(limits, SEED).unwrap();
        let a = history.append(&channel("a"), &KEEP, payload(1), 10).epoch;
        history.append(&channel("b"), &KEEP, payload(1), 20);
        history.append(&channel("c"), &KEEP, payload(1), 30);
        assert_eq!(history.stats().channels, 2);
        let again = history.position(&channel("a"), 40);
        assert_eq!(again.offset, 0);
        assert_ne!(again.epoch, a);
    }

    #[test]
    fn idle_streams_are_forgotten_after_the_meta_ttl() {
        let limits = HistoryLimits {
            meta_ttl_ms: 1000,
            ..HistoryLimits::default()
        };
        let mut history = MemoryHistory::new(limits, SEED).unwrap();
        let short = ChannelHistory {
            ttl_ms: 100,
            ..KEEP
        };
        let epoch = history.append(&channel("a"), &short, payload(1), 0).epoch;
        history.expire(500, 16);
        assert_eq!(history.stats().channels, 1);
        assert_eq!(history.stats().publications, 0);
        history.expire(1000, 16);
        assert_eq!(history.stats(), HistoryStats::default());
        assert_ne!(history.position(&channel("a"), 1000).epoch, epoch);
    }

    #[test]
    fn pages_follow_since_limit_and_direction() {
        let mut history = store();
        append_n(&mut history, "a", &KEEP, 5);
        let epoch = history.position(&channel("a"), 0).epoch;
        let mut page = |since: Option<u64>, limit, reverse| {
            let query = HistoryQuery {
                since: since.map(|offset| at(offset, &epoch)),
                limit,
                reverse,
            };
            let page = history.page(&channel("a"), &query, 0).unwrap();
            assert_eq!(page.position, at(5, &epoch));
            offsets(&page.publications)
        };
        assert_eq!(page(None, 10, false), [1, 2, 3, 4, 5]);
        assert_eq!(page(None, 2, false), [1, 2]);
        assert_eq!(page(None, 2, true), [5, 4]);
        assert_eq!(page(Some(2), 2, false), [3, 4]);
        assert_eq!(page(Some(4), 10, true), [3, 2, 1]);
        assert_eq!(page(Some(5), 10, false), Vec::<u64>::new());
        assert_eq!(page(None, 0, false), Vec::<u64>::new());
        let query = HistoryQuery {
            since: Some(at(1, &Epoch::new("old"))),
            limit: 10,
            reverse: false,
        };
        let refused = history.page(&channel("a"), &query, 0).unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::EpochChanged);
    }

    #[test]
    fn every_limits_error_has_its_variant() {
        let bad = |limits: HistoryLimits| MemoryHistory::new(limits, SEED).unwrap_err();
        let base = HistoryLimits::default();
        assert_eq!(
            bad(HistoryLimits {
                channels_max: 0,
                ..base
            }),
            LimitsError::NoChannels
        );
        assert_eq!(
            bad(HistoryLimits {
                meta_ttl_ms: 0,
                ..base
            }),
            LimitsError::NoMetaTtl
        );
        assert!(matches!(
            bad(HistoryLimits {
                memory_bytes_max: 1024,
                ..base
            }),
            LimitsError::MetadataTooLarge {
                channels: 65_536,
                ..
            }
        ));
    }

    #[test]
    fn random_seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }

    proptest! {
        /// Appending N, reading since any offset returns exactly the suffix, or is refused for
        /// the one reason that applies.
        #[test]
        fn recovery_is_the_exact_suffix_or_refused(
            n in 0u64..60, size in 1usize..40, max in 0usize..70, since in 0u64..70,
        ) {
            let mut history = store();
            let settings = ChannelHistory { size, ttl_ms: 60_000 };
            append_n(&mut history, "a", &settings, n);
            let epoch = history.position(&channel("a"), 0).epoch;
            let answer = history.recover(&channel("a"), &at(since, &epoch), max, 0);
            let missed = n.saturating_sub(since);
            match answer {
                Ok(recovered) => {
                    prop_assert!(since <= n && missed <= size as u64 && missed <= max as u64);
                    prop_assert_eq!(offsets(&recovered.publications), (since + 1..=n).collect::<Vec<_>>());
                    for publication in &recovered.publications {
                        prop_assert_eq!(&publication.payload, &payload(publication.offset));
                    }
                }
                Err(refused) => {
                    let expected = if since > n {
                        UnrecoverableReason::AheadOfStream
                    } else if missed > max as u64 {
                        UnrecoverableReason::TooMany
                    } else {
                        UnrecoverableReason::Trimmed
                    };
                    prop_assert_eq!(refused.reason, expected);
                    prop_assert!(since > n || missed > max as u64 || missed > size as u64);
                }
            }
        }

        /// Under a small memory bound with channels coming and going, every recovery that
        /// succeeds returns exactly what was published after the position, the bound always
        /// holds, and a channel's epoch only changes when its stream was forgotten.
        #[test]
        fn eviction_never_yields_a_hole(
            ops in proptest::collection::vec((0usize..4, 0u8..10, 0usize..600), 1..200),
        ) {
            let limits = HistoryLimits { memory_bytes_max: 6 * 1024, channels_max: 3, meta_ttl_ms: 50 };
            let mut history = MemoryHistory::new(limits, SEED).unwrap();
            let names = ["a", "b", "c", "d"];
            // The truth: per channel, its epoch and every payload of that epoch.
            let mut truth: Vec<Option<(Epoch, Vec<Bytes>)>> = vec![None; names.len()];
            let mut seen_epochs: Vec<Vec<Epoch>> = vec![Vec::new(); names.len()];
            let settings = ChannelHistory { size: 8, ttl_ms: 40 };
            for (step, (which, op, len)) in ops.into_iter().enumerate() {
                let now = step as u64;
                let name = channel(names[which]);
                match op {
                    0..=5 => {
                        let body = Bytes::from(vec![step as u8; len]);
                        let position = history.append(&name, &settings, body.clone(), now);
                        let entry = truth[which].get_or_insert_with(|| (position.epoch.clone(), Vec::new()));
                        if entry.0 != position.epoch {
                            *entry = (position.epoch.clone(), Vec::new());
                        }
                        entry.1.push(body);
                        prop_assert_eq!(position.offset, entry.1.len() as u64);
                    }
                    6 => history.remove(&name),
                    7 => history.expire(now, 2),
                    _ => {
                        let position = history.position(&name, now);
                        let entry = truth[which].get_or_insert_with(|| (position.epoch.clone(), Vec::new()));
                        if entry.0 != position.epoch {
                            // A new life starts empty.
                            prop_assert_eq!(position.offset, 0);
                            *entry = (position.epoch.clone(), Vec::new());
                        }
                        let bodies = entry.1.clone();
                        let since = (len as u64) % (position.offset + 2);
                        if let Ok(recovered) = history.recover(&name, &at(since, &position.epoch), 100, now) {
                            prop_assert_eq!(offsets(&recovered.publications), (since + 1..=position.offset).collect::<Vec<_>>());
                            for publication in &recovered.publications {
                                prop_assert_eq!(&publication.payload, &bodies[publication.offset as usize - 1]);
                            }
                        }
                    }
                }
                prop_assert!(history.stats().memory_bytes <= limits.memory_bytes_max);
                // An epoch, once replaced, never comes back.
                if let Some(epoch) = history.index.get(&name).map(|&slot| history.streams[slot].epoch.clone()) {
                    let seen = &mut seen_epochs[which];
                    if seen.last() != Some(&epoch) {
                        prop_assert!(!seen.contains(&epoch));
                        seen.push(epoch);
                    }
                }
            }
        }
    }
}
