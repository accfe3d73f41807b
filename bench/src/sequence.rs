//! Per-stream sequence accounting: loss, duplicates and reordering, never silently ignored.
//!
//! A stream is one (channel, publisher) pair: each publisher numbers its messages per channel
//! from 0, so a receiver expects 0, 1, 2, ... on every stream it hears. The state is 24 bytes per
//! stream and receiver: the next expected number, how many distinct numbers arrived, and a 64-bit
//! window of which of the last 64 numbers arrived, which tells a late message (reordered) from a
//! repeated one (duplicate). Loss is decided at the end, once the publisher says how many it sent:
//! `lost = sent - distinct`, so messages that never arrived by the end of the drain count too.

use serde::Serialize;

/// How many numbers below the highest one the window remembers.
pub const WINDOW: u64 = 64;

/// What one arrival meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected number.
    InOrder,
    /// Ahead of the expected number: `skipped` numbers are missing for now.
    Gap {
        /// Numbers jumped over (they may still arrive late).
        skipped: u64,
    },
    /// Below the highest number seen and not seen before: arrived out of order.
    Reordered,
    /// Seen before.
    Duplicate,
    /// More than `WINDOW` below the highest number: late or duplicate, cannot tell which.
    BeyondWindow,
}

/// Receiver-side state of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// One past the highest sequence number seen.
    next_sequence: u64,
    /// Bit `i` set: number `next_sequence - 1 - i` arrived.
    seen_window: u64,
    /// Distinct numbers that arrived.
    distinct: u32,
}

impl StreamState {
    /// Records the arrival of `sequence` and says what it meant.
    pub fn record(&mut self, sequence: u64) -> Arrival {
        if sequence >= self.next_sequence {
            let skipped = sequence - self.next_sequence;
            let shift = skipped + 1;
            self.seen_window = if shift >= WINDOW {
                0
            } else {
                self.seen_window << shift
            };
            self.seen_window |= 1;
            self.next_sequence = sequence + 1;
            self.distinct += 1;
            return if skipped == 0 {
                Arrival::InOrder
            } else {
                Arrival::Gap { skipped }
            };
        }
        let age = self.next_sequence - 1 - sequence;
        if age >= WINDOW {
            return Arrival::BeyondWindow;
        }
        let bit = 1u64 << age;
        if self.seen_window & bit != 0 {
            return Arrival::Duplicate;
        }
        self.seen_window |= bit;
        self.distinct += 1;
        Arrival::Reordered
    }

    /// Distinct numbers received so far.
    pub fn distinct(&self) -> u64 {
        u64::from(self.distinct)
    }

    /// Messages of the `sent` the publisher sent that never arrived (0 if more arrived).
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.distinct())
    }
}

/// Sequence anomalies summed over streams and receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SequenceCounters {
    /// Arrivals that were the next expected number.
    pub in_order: u64,
    /// Arrivals that jumped ahead (a gap opened).
    pub gap_events: u64,
    /// Numbers jumped over by gaps when they opened (late arrivals may fill some).
    pub gap_skipped: u64,
    /// Late arrivals that filled a gap.
    pub reordered: u64,
    /// Arrivals of a number already received.
    pub duplicates: u64,
    /// Arrivals too far behind to classify (late or duplicate).
    pub beyond_window: u64,
}

impl SequenceCounters {
    /// Counts one arrival.
    pub fn count(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::InOrder => self.in_order += 1,
            Arrival::Gap { skipped } => {
                self.gap_events += 1;
                self.gap_skipped += skipped;
            }
            Arrival::Reordered => self.reordered += 1,
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::BeyondWindow => self.beyond_window += 1,
        }
    }

    /// Adds another set of counters (merging threads).
    pub fn add(&mut self, other: &SequenceCounters) {
        self.in_order += other.in_order;
        self.gap_events += other.gap_events;
        self.gap_skipped += other.gap_skipped;
        self.reordered += other.reordered;
        self.duplicates += other.duplicates;
        self.beyond_window += other.beyond_window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(sequences: &[u64]) -> (StreamState, SequenceCounters) {
        let mut state = StreamState::default();
        let mut counters = SequenceCounters::default();
        for &sequence in sequences {
            counters.count(state.record(sequence));
        }
        (state, counters)
    }

    #[test]
    fn in_order_stream_has_no_anomalies() {
        let (state, counters) = feed(&[0, 1, 2, 3]);
        assert_eq!(counters.in_order, 4);
        assert_eq!(state.lost(4), 0);
        assert_eq!(
            counters,
            SequenceCounters {
                in_order: 4,
                ..Default::default()
            }
        );
    }

    #[test]
    fn gap_is_loss_unless_filled() {
        let (state, counters) = feed(&[0, 1, 4, 5]);
        assert_eq!(counters.gap_events, 1);
        assert_eq!(counters.gap_skipped, 2);
        assert_eq!(state.lost(6), 2);
    }

    #[test]
    fn tail_loss_counts_messages_never_received() {
        let (state, _) = feed(&[0, 1, 2]);
        assert_eq!(state.lost(10), 7);
    }

    #[test]
    fn late_arrival_is_reordered_not_lost() {
        let (state, counters) = feed(&[0, 2, 1, 3]);
        assert_eq!(counters.reordered, 1);
        assert_eq!(counters.gap_events, 1);
        assert_eq!(state.lost(4), 0);
    }

    #[test]
    fn repeats_are_duplicates_and_do_not_hide_loss() {
        let (state, counters) = feed(&[0, 1, 1, 0, 3, 3]);
        assert_eq!(counters.duplicates, 3);
        assert_eq!(state.lost(4), 1, "number 2 is still missing");
    }

    #[test]
    fn arrivals_beyond_the_window_are_counted_separately() {
        let mut sequences: Vec<u64> = (1..=100).collect();
        sequences.push(0);
        let (state, counters) = feed(&sequences);
        assert_eq!(counters.beyond_window, 1);
        assert_eq!(
            state.lost(101),
            1,
            "unclassifiable arrivals are not credited"
        );
    }

    #[test]
    fn window_edge_is_still_classified() {
        let mut sequences: Vec<u64> = (1..WINDOW).collect();
        sequences.push(0);
        sequences.push(0);
        let (_, counters) = feed(&sequences);
        assert_eq!(counters.reordered, 1);
        assert_eq!(counters.duplicates, 1);
    }
}
