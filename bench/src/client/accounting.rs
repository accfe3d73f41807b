//! What a client thread learns from the messages it receives, per measurement epoch.
//!
//! One `Accounting` per thread: the latency histogram, the sequence state of every (connection,
//! publisher) stream in one flat array (no per-connection allocation), per-broadcast "slowest
//! receiver so far" for the publish->last-receiver histogram, and counters for everything that
//! is not a clean delivery. `finish_epoch` turns it into a `ThreadReport` and resets it.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::histogram::{new_latency_histogram, record_latency_ns};
use crate::payload;
use crate::sequence::{Arrival, SequenceCounters, StreamState};
use crate::ws::frame::Opcode;

/// Data-frame counters of one epoch: every frame that is not a clean delivery is counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FrameCounters {
    /// Text or binary frames received.
    pub messages: u64,
    /// Payload bytes of those frames.
    pub message_bytes: u64,
    /// Frames of the other data type than the payload kind asks for.
    pub wrong_opcode: u64,
    /// Payloads whose size differs from `--payload-bytes` (the server changed them).
    pub wrong_size: u64,
    /// Payloads that are not ours (bad header).
    pub decode_errors: u64,
    /// Payloads from an earlier epoch (arrived after that step's drain).
    pub stale_epoch: u64,
    /// Payloads for another channel than the connection subscribed to.
    pub wrong_channel: u64,
    /// Fragmented messages (the server must send one frame per message).
    pub fragmented: u64,
    /// Payloads stamped later than their arrival (clock misuse; latency recorded as 0).
    pub clock_anomalies: u64,
    /// Pings received (each answered with a pong).
    pub pings: u64,
    /// Of `messages`, those compressed with permessage-deflate (RSV1; `message_bytes` counts
    /// their compressed size, the bytes on the wire).
    #[serde(default)]
    pub compressed: u64,
    /// Pusher: text messages that are neither the harness's event nor a protocol step the
    /// connection waited for (e.g. `pusher:pong`, another event).
    #[serde(default)]
    pub pusher_other: u64,
}

impl FrameCounters {
    /// Adds another thread's counters.
    pub fn add(&mut self, other: &FrameCounters) {
        self.messages += other.messages;
        self.message_bytes += other.message_bytes;
        self.compressed += other.compressed;
        self.wrong_opcode += other.wrong_opcode;
        self.wrong_size += other.wrong_size;
        self.decode_errors += other.decode_errors;
        self.stale_epoch += other.stale_epoch;
        self.wrong_channel += other.wrong_channel;
        self.fragmented += other.fragmented;
        self.clock_anomalies += other.clock_anomalies;
        self.pings += other.pings;
        self.pusher_other += other.pusher_other;
    }
}

/// Loss accounting of one epoch, from what subscribers received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LossCounters {
    /// Connections whose every message is accounted (open since the ramp, never churned).
    pub connections_accounted: u64,
    /// Messages those connections should have received (sent on their channel).
    pub expected_deliveries: u64,
    /// Distinct messages they did receive.
    pub delivered_distinct: u64,
    /// Expected but never received, including messages missing at the end of the drain.
    pub lost: u64,
    /// Received more distinct numbers than were sent (a publisher/receiver mismatch).
    pub unexpected_extra: u64,
    /// Connections that lost at least one message.
    pub connections_with_loss: u64,
}

impl LossCounters {
    /// Adds another thread's counters.
    pub fn add(&mut self, other: &LossCounters) {
        self.connections_accounted += other.connections_accounted;
        self.expected_deliveries += other.expected_deliveries;
        self.delivered_distinct += other.delivered_distinct;
        self.lost += other.lost;
        self.unexpected_extra += other.unexpected_extra;
        self.connections_with_loss += other.connections_with_loss;
    }
}

/// The slowest receiver of one broadcast seen by one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastSlot {
    /// Largest publish->receive latency among this thread's receivers.
    pub latency_ns_max: u64,
    /// Accounted receivers in this thread that got it.
    pub receivers: u32,
}

/// One thread's results for one epoch.
#[derive(Debug)]
pub struct ThreadReport {
    /// Publish->receive latency of every delivery (ns).
    pub latency_ns: Histogram<u64>,
    /// Sequence anomalies.
    pub sequence: SequenceCounters,
    /// Frame counters.
    pub frames: FrameCounters,
    /// Loss against what the publishers sent.
    pub loss: LossCounters,
    /// Per stream (channel * publishers + publisher), per sequence number: slowest receiver.
    pub last_receiver: Vec<Vec<BroadcastSlot>>,
    /// Broadcasts not tracked for the last-receiver histogram (over the memory bound).
    pub broadcasts_untracked: u64,
    /// Accounted connections per channel (how many receivers a complete broadcast has here).
    pub accounted_per_channel: Vec<u32>,
}

/// Identity of the connection a message arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Receiver {
    /// Slot index within the thread.
    pub slot: usize,
    /// Channel the connection subscribed to.
    pub channel_index: u32,
    /// Whether its deliveries count for loss (open since the ramp, never churned).
    pub accounted: bool,
}

/// Per-thread accounting state.
pub struct Accounting {
    /// Current epoch; payloads of other epochs are stale.
    epoch: u8,
    /// Publishers per channel (streams per connection).
    publishers: usize,
    /// Channels in the run.
    channels: usize,
    /// Expected payload size.
    payload_bytes: usize,
    /// Expected data opcode (text or binary).
    expected_opcode: Opcode,
    /// Latency histogram of this epoch.
    latency_ns: Histogram<u64>,
    /// Sequence anomalies of this epoch.
    sequence: SequenceCounters,
    /// Frame counters of this epoch.
    frames: FrameCounters,
    /// Sequence state, indexed `slot * publishers + publisher`.
    streams: Vec<StreamState>,
    /// Slowest receiver per broadcast, indexed by stream id then sequence.
    last_receiver: Vec<Vec<BroadcastSlot>>,
    /// Broadcast slots allocated in `last_receiver`.
    broadcasts_tracked: usize,
    /// Bound on `broadcasts_tracked` (memory: 16 bytes each).
    broadcasts_tracked_max: usize,
    /// Broadcasts beyond the bound.
    broadcasts_untracked: u64,
    /// Distinct accounted deliveries this epoch (drives the early end of the drain).
    deliveries: u64,
    /// With `--deflate`: a raw inflater for the stamp of compressed messages.
    stamp_inflater: Option<Box<flate2::Decompress>>,
    /// With `--deflate`: stamps already inflated, by compressed bytes.
    stamp_cache: StampCache,
}

/// Slots of a `StampCache`: direct-mapped, so room for many more messages than are in flight
/// at once (rate x the spread of arrival times: at 342 msg/s and 100 ms, 34); a thread's
/// cache holds at most this many compressed messages (about 1 MiB at 1 KiB payloads).
const STAMP_CACHE_SLOTS: usize = 4096;

/// The stamps of recently inflated messages, by their compressed bytes.
///
/// The handshake refuses a server that keeps its compression context between messages
/// (`HandshakeError::ServerContextTakeover`), so identical compressed bytes inflate to identical
/// stamps; a server that compresses once per message sends the same bytes to all its
/// subscribers. One inflation per message and client thread, instead of one per delivery, keeps
/// the harness from being the bottleneck it would otherwise be (a raw inflate costs a few µs: at
/// 4000 subscribers one client core then caps the run, results/deflate/). Entries are compared
/// byte for byte; the hash only picks the slot.
#[derive(Debug, Default)]
struct StampCache {
    /// Direct-mapped slots, allocated on first use.
    slots: Vec<CachedStamp>,
}

/// One slot of a `StampCache`.
#[derive(Debug, Clone)]
struct CachedStamp {
    /// The compressed payload (empty: the slot is free).
    compressed: Vec<u8>,
    /// What its first `HEADER_BYTES` inflate to.
    stamp: [u8; payload::HEADER_BYTES],
}

impl Default for CachedStamp {
    fn default() -> Self {
        CachedStamp {
            compressed: Vec::new(),
            stamp: [0; payload::HEADER_BYTES],
        }
    }
}

impl StampCache {
    /// The slot for `compressed` (a multiplicative fold of its 8-byte words).
    fn slot(compressed: &[u8]) -> usize {
        let mut hash = compressed.len() as u64;
        let mut words = compressed.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        for &byte in words.remainder() {
            hash = (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        (hash >> 32) as usize % STAMP_CACHE_SLOTS
    }

    /// The stamp of `compressed` if it is cached.
    fn get(&self, slot: usize, compressed: &[u8]) -> Option<[u8; payload::HEADER_BYTES]> {
        self.slots
            .get(slot)
            .filter(|cached| cached.compressed == compressed)
            .map(|cached| cached.stamp)
    }

    /// Caches `stamp` for `compressed` (replacing whatever held the slot).
    fn put(&mut self, slot: usize, compressed: &[u8], stamp: [u8; payload::HEADER_BYTES]) {
        if self.slots.is_empty() {
            self.slots = vec![CachedStamp::default(); STAMP_CACHE_SLOTS];
        }
        let cached = &mut self.slots[slot];
        cached.compressed.clear();
        cached.compressed.extend_from_slice(compressed);
        cached.stamp = stamp;
    }
}

impl Accounting {
    /// Offers permessage-deflate: RSV1 data frames are accepted and their stamp inflated.
    pub fn enable_deflate(&mut self) {
        self.stamp_inflater = Some(Box::new(flate2::Decompress::new(false)));
    }

    /// Whether permessage-deflate is offered.
    pub fn deflate(&self) -> bool {
        self.stamp_inflater.is_some()
    }

    /// A compressed message (RFC 7692 §7.2.2): only its first `HEADER_BYTES` are inflated (the
    /// stamp; inflating stops there), the rest is counted as received with its wire size.
    pub fn on_compressed_message(
        &mut self,
        receiver: Receiver,
        opcode: Opcode,
        compressed: &[u8],
        now_ns: u64,
    ) {
        let Some(inflater) = self.stamp_inflater.as_mut() else {
            self.frames.decode_errors += 1;
            return;
        };
        let slot = StampCache::slot(compressed);
        if let Some(stamp) = self.stamp_cache.get(slot, compressed) {
            self.frames.compressed += 1;
            self.on_delivery(receiver, opcode, &stamp, compressed.len(), now_ns);
            return;
        }
        inflater.reset(false);
        let before_bytes = inflater.total_out();
        let mut stamp = [0u8; payload::HEADER_BYTES];
        let inflated = inflater
            .decompress(compressed, &mut stamp, flate2::FlushDecompress::Sync)
            .map(|_| (inflater.total_out() - before_bytes) as usize);
        self.frames.compressed += 1;
        match inflated {
            Ok(length) if length == stamp.len() => {
                self.stamp_cache.put(slot, compressed, stamp);
                self.on_delivery(receiver, opcode, &stamp, compressed.len(), now_ns);
            }
            _ => {
                self.frames.messages += 1;
                self.frames.decode_errors += 1;
            }
        }
    }

    /// Creates the state for `slots` connections.
    pub fn new(
        slots: usize,
        channels: usize,
        publishers: usize,
        payload_bytes: usize,
        expected_opcode: Opcode,
        broadcasts_tracked_max: usize,
    ) -> Self {
        assert!(
            publishers >= 1 && channels >= 1,
            "at least one publisher and one channel"
        );
        Accounting {
            epoch: 0,
            publishers,
            channels,
            payload_bytes,
            expected_opcode,
            latency_ns: new_latency_histogram(),
            sequence: SequenceCounters::default(),
            frames: FrameCounters::default(),
            streams: vec![StreamState::default(); slots * publishers],
            last_receiver: vec![Vec::new(); channels * publishers],
            broadcasts_tracked: 0,
            stamp_inflater: None,
            stamp_cache: StampCache::default(),
            broadcasts_tracked_max,
            broadcasts_untracked: 0,
            deliveries: 0,
        }
    }

    /// Distinct accounted deliveries so far this epoch.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Counts a ping (the caller answers it).
    pub fn count_ping(&mut self) {
        self.frames.pings += 1;
    }

    /// Counts a Pusher message that is neither a delivery nor an awaited protocol step.
    pub fn count_other_message(&mut self) {
        self.frames.pusher_other += 1;
    }

    /// Counts a fragmented message or continuation frame.
    pub fn count_fragment(&mut self) {
        self.frames.fragmented += 1;
    }

    /// Forgets the sequence state of a slot (its connection was churned and replaced).
    pub fn reset_slot(&mut self, slot: usize) {
        let first = slot * self.publishers;
        self.streams[first..first + self.publishers].fill(StreamState::default());
    }

    /// Accounts one complete data message received at `now_ns`.
    pub fn on_message(&mut self, receiver: Receiver, opcode: Opcode, payload: &[u8], now_ns: u64) {
        if payload.len() != self.payload_bytes {
            self.frames.wrong_size += 1;
        }
        self.on_delivery(receiver, opcode, payload, payload.len(), now_ns);
    }

    /// Accounts one message whose stamp is at the start of `payload` and which took
    /// `wire_bytes` of payload on the wire.
    fn on_delivery(
        &mut self,
        receiver: Receiver,
        opcode: Opcode,
        payload: &[u8],
        wire_bytes: usize,
        now_ns: u64,
    ) {
        self.frames.messages += 1;
        self.frames.message_bytes += wire_bytes as u64;
        if opcode != self.expected_opcode {
            self.frames.wrong_opcode += 1;
        }
        let Ok(stamp) = payload::decode(payload) else {
            self.frames.decode_errors += 1;
            return;
        };
        if stamp.epoch != self.epoch {
            self.frames.stale_epoch += 1;
            return;
        }
        if stamp.channel_index != receiver.channel_index {
            self.frames.wrong_channel += 1;
            return;
        }
        let publisher = usize::from(stamp.publisher_index);
        if publisher >= self.publishers {
            self.frames.decode_errors += 1;
            return;
        }
        let latency_ns = match now_ns.checked_sub(stamp.sent_ns) {
            Some(latency_ns) => latency_ns,
            None => {
                self.frames.clock_anomalies += 1;
                0
            }
        };
        record_latency_ns(&mut self.latency_ns, latency_ns);
        if !receiver.accounted {
            return;
        }
        let arrival =
            self.streams[receiver.slot * self.publishers + publisher].record(stamp.sequence);
        self.sequence.count(arrival);
        if matches!(
            arrival,
            Arrival::InOrder | Arrival::Gap { .. } | Arrival::Reordered
        ) {
            self.deliveries += 1;
            let stream_id = receiver.channel_index as usize * self.publishers + publisher;
            self.track_last_receiver(stream_id, stamp.sequence, latency_ns);
        }
    }

    /// Raises the slowest-receiver latency of broadcast (`stream_id`, `sequence`).
    fn track_last_receiver(&mut self, stream_id: usize, sequence: u64, latency_ns: u64) {
        let slots = &mut self.last_receiver[stream_id];
        let index = sequence as usize;
        if index >= slots.len() {
            let growth = index + 1 - slots.len();
            if self.broadcasts_tracked + growth > self.broadcasts_tracked_max {
                self.broadcasts_untracked += 1;
                return;
            }
            self.broadcasts_tracked += growth;
            slots.resize(index + 1, BroadcastSlot::default());
        }
        let slot = &mut slots[index];
        slot.latency_ns_max = slot.latency_ns_max.max(latency_ns);
        slot.receivers += 1;
    }

    /// Closes the epoch: loss against `expected` (messages sent per stream id), then resets for
    /// `next_epoch`. `receivers` lists every slot that is accounted.
    pub fn finish_epoch(
        &mut self,
        receivers: impl Iterator<Item = Receiver>,
        expected: &[u64],
        next_epoch: u8,
    ) -> ThreadReport {
        assert_eq!(
            expected.len(),
            self.channels * self.publishers,
            "one expected count per stream"
        );
        let mut loss = LossCounters::default();
        let mut accounted_per_channel = vec![0u32; self.channels];
        for receiver in receivers.filter(|receiver| receiver.accounted) {
            loss.connections_accounted += 1;
            accounted_per_channel[receiver.channel_index as usize] += 1;
            let mut connection_lost = 0;
            for publisher in 0..self.publishers {
                let state = &self.streams[receiver.slot * self.publishers + publisher];
                let sent = expected[receiver.channel_index as usize * self.publishers + publisher];
                loss.expected_deliveries += sent;
                loss.delivered_distinct += state.distinct();
                loss.unexpected_extra += state.distinct().saturating_sub(sent);
                connection_lost += state.lost(sent);
            }
            loss.lost += connection_lost;
            loss.connections_with_loss += u64::from(connection_lost > 0);
        }
        let report = ThreadReport {
            latency_ns: std::mem::replace(&mut self.latency_ns, new_latency_histogram()),
            sequence: std::mem::take(&mut self.sequence),
            frames: std::mem::take(&mut self.frames),
            loss,
            last_receiver: std::mem::replace(
                &mut self.last_receiver,
                vec![Vec::new(); self.channels * self.publishers],
            ),
            broadcasts_untracked: std::mem::take(&mut self.broadcasts_untracked),
            accounted_per_channel,
        };
        self.streams.fill(StreamState::default());
        self.broadcasts_tracked = 0;
        self.deliveries = 0;
        self.epoch = next_epoch;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{PayloadKind, Stamp, encode};

    fn message(sequence: u64, epoch: u8, sent_ns: u64) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        let stamp = Stamp {
            epoch,
            channel_index: 0,
            publisher_index: 0,
            sequence,
            sent_ns,
        };
        encode(&mut out, &stamp, PayloadKind::Text);
        out
    }

    #[test]
    fn loss_duplicates_and_last_receiver_are_accounted() {
        let mut accounting = Accounting::new(2, 1, 1, 64, Opcode::Text, 1000);
        let mut report = accounting.finish_epoch(std::iter::empty(), &[0], 1);
        assert_eq!(report.loss.expected_deliveries, 0);
        let receivers = [
            Receiver {
                slot: 0,
                channel_index: 0,
                accounted: true,
            },
            Receiver {
                slot: 1,
                channel_index: 0,
                accounted: true,
            },
        ];
        for sequence in [0, 1, 1, 3] {
            accounting.on_message(receivers[0], Opcode::Text, &message(sequence, 1, 100), 150);
        }
        for sequence in 0..4 {
            accounting.on_message(receivers[1], Opcode::Text, &message(sequence, 1, 100), 300);
        }
        accounting.on_message(receivers[1], Opcode::Text, &message(9, 0, 100), 300);
        assert_eq!(accounting.deliveries(), 7);
        report = accounting.finish_epoch(receivers.into_iter(), &[4], 2);
        assert_eq!(report.loss.expected_deliveries, 8);
        assert_eq!(report.loss.lost, 1);
        assert_eq!(report.loss.connections_with_loss, 1);
        assert_eq!(report.sequence.duplicates, 1);
        assert_eq!(report.frames.stale_epoch, 1);
        assert_eq!(report.latency_ns.len(), 8);
        assert_eq!(
            report.last_receiver[0][0],
            BroadcastSlot {
                latency_ns_max: 200,
                receivers: 2
            }
        );
        assert_eq!(report.last_receiver[0][2].receivers, 1);
        assert_eq!(report.accounted_per_channel, [2]);
    }

    #[test]
    fn wrong_kind_and_size_are_counted() {
        let mut accounting = Accounting::new(1, 1, 1, 100, Opcode::Text, 10);
        let receiver = Receiver {
            slot: 0,
            channel_index: 0,
            accounted: true,
        };
        accounting.on_message(receiver, Opcode::Binary, &message(0, 0, 1), 2);
        accounting.on_message(receiver, Opcode::Text, b"not ours", 2);
        let report = accounting.finish_epoch(std::iter::once(receiver), &[1], 1);
        assert_eq!(report.frames.wrong_opcode, 1);
        assert_eq!(report.frames.wrong_size, 2);
        assert_eq!(report.frames.decode_errors, 1);
        assert_eq!(report.loss.lost, 0);
    }

    /// RFC 7692 §7.2.1: raw deflate, sync flush, the trailing 00 00 ff ff removed.
    fn compress(message: &[u8]) -> Vec<u8> {
        let mut deflater = flate2::Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(message.len() + 64);
        deflater
            .compress_vec(message, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_are_inflated_once_and_accounted_for_every_receiver() {
        let mut accounting = Accounting::new(2, 1, 1, 64, Opcode::Text, 1000);
        accounting.enable_deflate();
        let _ = accounting.finish_epoch(std::iter::empty(), &[0], 1);
        let receivers = [0, 1].map(|slot| Receiver {
            slot,
            channel_index: 0,
            accounted: true,
        });
        for sequence in 0..3 {
            let compressed = compress(&message(sequence, 1, 100 + sequence));
            for receiver in receivers {
                accounting.on_compressed_message(receiver, Opcode::Text, &compressed, 1000);
            }
        }
        // Bytes that are no deflate stream: not ours, whatever the cache holds.
        accounting.on_compressed_message(receivers[0], Opcode::Text, &[0xff; 20], 1000);
        let report = accounting.finish_epoch(receivers.into_iter(), &[3], 2);
        assert_eq!(report.frames.compressed, 7);
        assert_eq!(report.frames.decode_errors, 1);
        assert_eq!(report.loss.expected_deliveries, 6);
        assert_eq!(report.loss.lost, 0);
        assert_eq!(report.sequence.duplicates, 0);
        assert_eq!(report.latency_ns.len(), 6);
    }
}
