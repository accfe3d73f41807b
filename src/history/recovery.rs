//! Exact recovery: joining what history returned with what the live subscription delivered
//! meanwhile, so a subscriber gets every publication after its position once, in order, or is
//! told it cannot.
//!
//! The subscribe sequence the server follows (Centrifugo's, `client.go` `subscribeCmd`):
//! 1. join the channel's live stream first, and buffer what arrives (bounded);
//! 2. read history: everything after the client's position ([`super::HistoryStore::recover`]),
//!    or only the top when it does not recover ([`super::HistoryStore::position`]);
//! 3. [`synchronize`] the read with the buffer: history, then the buffered publications after
//!    the read's top, deduplicated by offset, with no gap;
//! 4. reply, push what [`Synchronized::then_push`] holds, then go live, passing each live
//!    publication through [`advance`].
//!
//! Because the live stream was joined before history was read, every publication after the
//! read's top is in the buffer; a gap there means the live path lost one, and the subscription
//! is in "insufficient state" (disconnect 3010 / unsubscribe 2500): never delivered with a hole.
//!
//! Pure functions only; no store, no clock.

use super::{HistoryPublication, Recovered, StreamPosition, Unrecoverable, UnrecoverableReason};
use bytes::Bytes;

/// A publication that arrived on the live stream (every one carries its position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePublication {
    /// Its offset and epoch.
    pub position: StreamPosition,
    /// Its payload.
    pub payload: Bytes,
}

/// What history said, step 2 of the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryRead {
    /// The client did not ask to recover: only the stream's top.
    Top(StreamPosition),
    /// The client asked to recover and history covers its gap.
    Recovered(Recovered),
    /// The client asked to recover and history does not cover its gap.
    Unrecoverable(Unrecoverable),
}

/// What the subscribe reply tells the client about recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// It did not ask (`was_recovering: false`, `recovered: false`).
    NotRequested,
    /// Everything it missed is in the reply (`was_recovering: true`, `recovered: true`).
    Recovered,
    /// It asked and cannot have it (`was_recovering: true`, `recovered: false`).
    NotRecovered(UnrecoverableReason),
}

/// The result of [`synchronize`]: what to reply, what to push after the reply, and where the
/// subscription's cursor stands then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synchronized {
    /// What the reply says about recovery.
    pub outcome: RecoveryOutcome,
    /// The `offset` and `epoch` of the reply: the client's own position when recovered (it
    /// advances through `reply_publications`, as centrifuge does: "In case of successful
    /// recovery attach stream offset from request to subscribe response"), else the top.
    pub reply_position: StreamPosition,
    /// The reply's `publications`: only when recovered, every publication after the client's
    /// position, contiguous.
    pub reply_publications: Vec<HistoryPublication>,
    /// Publications that arrived during the subscribe, after `reply_position`, when not
    /// recovered: push them right after the reply, in order.
    pub then_push: Vec<HistoryPublication>,
    /// The last offset handed to the client (through the reply or `then_push`): the next live
    /// publication must be `cursor.offset + 1` in `cursor.epoch`.
    pub cursor: StreamPosition,
}

/// Why a subscription cannot be synchronized: the live stream lost something or changed epoch
/// while history was read. Centrifugo answers `DisconnectInsufficientState` (3010), so the
/// client reconnects and recovers from its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsufficientState {
    /// A live publication is from another epoch than history's.
    #[error("the stream's epoch changed during the subscribe")]
    LiveEpochChanged,
    /// A live publication after history's top is missing.
    #[error("live publication {expected} is missing (next seen: {found})")]
    LiveGap {
        /// The offset that should have come.
        expected: u64,
        /// The offset that came instead.
        found: u64,
    },
    /// More publications arrived during the subscribe than the buffer holds.
    #[error("too many publications arrived during the subscribe")]
    BufferOverflow,
}

/// Step 3 of the sequence: the exact sequence after the client's position, or why not.
///
/// `buffered` is what the live subscription delivered since it was joined (any order,
/// duplicates allowed). Publications at or below the read's top are already covered (by
/// history, or precede the reported position) and are dropped; the rest must continue the top
/// with no gap.
pub fn synchronize(
    read: HistoryRead,
    buffered: &[LivePublication],
) -> Result<Synchronized, InsufficientState> {
    let (outcome, top, history, reply_position) = match read {
        HistoryRead::Top(top) => (RecoveryOutcome::NotRequested, top.clone(), Vec::new(), top),
        HistoryRead::Recovered(recovered) => (
            RecoveryOutcome::Recovered,
            recovered.position,
            recovered.publications,
            recovered.since,
        ),
        HistoryRead::Unrecoverable(refused) => (
            RecoveryOutcome::NotRecovered(refused.reason),
            refused.position.clone(),
            Vec::new(),
            refused.position,
        ),
    };
    let after_top = continue_from(&top, buffered)?;
    let cursor = StreamPosition {
        offset: after_top.last().map_or(top.offset, |last| last.offset),
        epoch: top.epoch,
    };
    let (reply_publications, then_push) = match outcome {
        RecoveryOutcome::Recovered => {
            let mut all = history;
            all.extend(after_top);
            (all, Vec::new())
        }
        RecoveryOutcome::NotRequested | RecoveryOutcome::NotRecovered(_) => (Vec::new(), after_top),
    };
    Ok(Synchronized {
        outcome,
        reply_position,
        reply_publications,
        then_push,
        cursor,
    })
}

/// The buffered publications after `top`, in order, each exactly one past the previous.
fn continue_from(
    top: &StreamPosition,
    buffered: &[LivePublication],
) -> Result<Vec<HistoryPublication>, InsufficientState> {
    let mut sorted: Vec<&LivePublication> = buffered.iter().collect();
    sorted.sort_by_key(|live| live.position.offset);
    let mut last = top.offset;
    let mut after = Vec::new();
    // Bounded: by the buffer, which the session bounds.
    for live in sorted {
        if live.position.epoch != top.epoch {
            return Err(InsufficientState::LiveEpochChanged);
        }
        if live.position.offset <= last {
            continue;
        }
        if live.position.offset != last + 1 {
            return Err(InsufficientState::LiveGap {
                expected: last + 1,
                found: live.position.offset,
            });
        }
        last = live.position.offset;
        after.push(HistoryPublication {
            offset: last,
            payload: live.payload.clone(),
        });
    }
    Ok(after)
}

/// What to do with a live publication on a positioned subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStep {
    /// It is the next one: deliver it (the cursor moved).
    Deliver,
    /// Already delivered (centrifuge: "due to the lag in PUB/SUB processing we received
    /// non-actual update here. Safe to just skip for the subscriber").
    Duplicate,
    /// One or more before it are missing (centrifuge: "Missed message detected"): insufficient
    /// state.
    Gap {
        /// The offset that should have come.
        expected: u64,
        /// The offset that came.
        found: u64,
    },
    /// The stream started a new epoch: insufficient state.
    EpochChanged,
}

/// Step 4: checks a live publication against the subscription's cursor and moves the cursor
/// when it is the next one (centrifuge `writePublicationUpdatePosition`).
pub fn advance(cursor: &mut StreamPosition, position: &StreamPosition) -> LiveStep {
    if !position.epoch.same(&cursor.epoch) {
        return LiveStep::EpochChanged;
    }
    if position.offset <= cursor.offset {
        return LiveStep::Duplicate;
    }
    if position.offset != cursor.offset + 1 {
        return LiveStep::Gap {
            expected: cursor.offset + 1,
            found: position.offset,
        };
    }
    cursor.offset = position.offset;
    if !cursor.epoch.shares(&position.epoch) {
        // Hold the stream's own epoch from now on: the next checks compare pointers only.
        cursor.epoch = position.epoch.clone();
    }
    LiveStep::Deliver
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::channel::ChannelName;
    use crate::history::Epoch;
    use crate::history::memory::{HistoryLimits, MemoryHistory};
    use crate::history::policy::ChannelHistory;

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: Epoch::new(epoch),
        }
    }

    fn body(offset: u64) -> Bytes {
        Bytes::from(format!("m{offset}"))
    }

    fn live(offset: u64, epoch: &str) -> LivePublication {
        LivePublication {
            position: at(offset, epoch),
            payload: body(offset),
        }
    }

    fn kept(offsets: impl IntoIterator<Item = u64>) -> Vec<HistoryPublication> {
        offsets
            .into_iter()
            .map(|offset| HistoryPublication {
                offset,
                payload: body(offset),
            })
            .collect()
    }

    fn offsets(publications: &[HistoryPublication]) -> Vec<u64> {
        publications
            .iter()
            .map(|publication| publication.offset)
            .collect()
    }

    #[test]
    fn recovery_merges_history_and_live_without_duplicates() {
        let read = HistoryRead::Recovered(Recovered {
            since: at(2, "e"),
            publications: kept(3..=5),
            position: at(5, "e"),
        });
        let buffered = [live(7, "e"), live(5, "e"), live(6, "e"), live(6, "e")];
        let synchronized = synchronize(read, &buffered).unwrap();
        assert_eq!(synchronized.outcome, RecoveryOutcome::Recovered);
        assert_eq!(synchronized.reply_position, at(2, "e"));
        assert_eq!(offsets(&synchronized.reply_publications), [3, 4, 5, 6, 7]);
        assert_eq!(synchronized.reply_publications[3].payload, body(6));
        assert!(synchronized.then_push.is_empty());
        assert_eq!(synchronized.cursor, at(7, "e"));
    }

    #[test]
    fn without_recovery_the_buffer_follows_the_reply() {
        let synchronized =
            synchronize(HistoryRead::Top(at(5, "e")), &[live(4, "e"), live(6, "e")]).unwrap();
        assert_eq!(synchronized.outcome, RecoveryOutcome::NotRequested);
        assert_eq!(synchronized.reply_position, at(5, "e"));
        assert!(synchronized.reply_publications.is_empty());
        assert_eq!(offsets(&synchronized.then_push), [6]);
        assert_eq!(synchronized.cursor, at(6, "e"));
    }

    #[test]
    fn unrecoverable_says_so_and_starts_at_the_top() {
        let read = HistoryRead::Unrecoverable(Unrecoverable {
            reason: UnrecoverableReason::Trimmed,
            position: at(9, "e"),
        });
        let synchronized = synchronize(read, &[]).unwrap();
        assert_eq!(
            synchronized.outcome,
            RecoveryOutcome::NotRecovered(UnrecoverableReason::Trimmed)
        );
        assert_eq!(synchronized.reply_position, at(9, "e"));
        assert!(synchronized.reply_publications.is_empty());
        assert_eq!(synchronized.cursor, at(9, "e"));
    }

    #[test]
    fn a_live_gap_is_insufficient_state() {
        let result = synchronize(HistoryRead::Top(at(5, "e")), &[live(7, "e")]);
        assert_eq!(
            result,
            Err(InsufficientState::LiveGap {
                expected: 6,
                found: 7
            })
        );
    }

    #[test]
    fn a_live_epoch_change_is_insufficient_state() {
        let result = synchronize(HistoryRead::Top(at(5, "e")), &[live(6, "f")]);
        assert_eq!(result, Err(InsufficientState::LiveEpochChanged));
    }

    #[test]
    fn the_overflow_variant_reads_well() {
        assert_eq!(
            InsufficientState::BufferOverflow.to_string(),
            "too many publications arrived during the subscribe"
        );
    }

    #[test]
    fn live_steps_follow_centrifuge() {
        let mut cursor = at(5, "e");
        assert_eq!(advance(&mut cursor, &at(5, "e")), LiveStep::Duplicate);
        assert_eq!(advance(&mut cursor, &at(6, "e")), LiveStep::Deliver);
        assert_eq!(cursor, at(6, "e"));
        assert_eq!(
            advance(&mut cursor, &at(8, "e")),
            LiveStep::Gap {
                expected: 7,
                found: 8
            }
        );
        assert_eq!(advance(&mut cursor, &at(7, "f")), LiveStep::EpochChanged);
        assert_eq!(cursor, at(6, "e"));
    }

    proptest! {
        /// A stream of `total` publications; the client saw up to `client`; history keeps
        /// `size`; the live subscription joined after publication `joined` and history was
        /// read after publication `read` (joined <= read: live first); the broker may lose,
        /// repeat and reorder what the buffer gets. The result is always the true sequence
        /// (from the client's position when recovered, from the top otherwise) or insufficient
        /// state; and when nothing was lost it is complete.
        #[test]
        fn synchronize_is_exact_or_refuses(
            total in 0u64..40, client in 0u64..45, size in 1usize..30,
            joined_back in 0u64..10, read_forward in 0u64..10, recover in any::<bool>(),
            losses in proptest::collection::vec(any::<bool>(), 40),
            repeats in proptest::collection::vec(any::<bool>(), 40),
            shuffle in any::<u64>(),
        ) {
            let read_at = read_forward.min(total);
            let joined = read_at.saturating_sub(joined_back);
            let limits = HistoryLimits::default();
            let mut history = MemoryHistory::new(limits, 7).unwrap();
            let channel = ChannelName::new("c").unwrap();
            let settings = ChannelHistory { size, ttl_ms: 60_000 };
            let mut epoch = history.position(&channel, 0).epoch;
            let mut buffered = Vec::new();
            let mut lost_any = false;
            for offset in 1..=total {
                let position = history.append(&channel, &settings, body(offset), 0);
                epoch = position.epoch.clone();
                let index = offset as usize - 1;
                if offset <= joined {
                    continue;
                }
                if losses[index] && offset > read_at {
                    lost_any = true;
                    continue;
                }
                buffered.push(LivePublication { position: position.clone(), payload: body(offset) });
                if repeats[index] {
                    buffered.push(LivePublication { position, payload: body(offset) });
                }
            }
            // Read history as it stood after `read_at` publications: a second store replays
            // them (the first kept going), so the read sees exactly that prefix.
            let mut then = MemoryHistory::new(limits, 7).unwrap();
            then.position(&channel, 0);
            for offset in 1..=read_at {
                then.append(&channel, &settings, body(offset), 0);
            }
            let read = if recover {
                match then.recover(&channel, &StreamPosition { offset: client, epoch: epoch.clone() }, 100, 0) {
                    Ok(recovered) => HistoryRead::Recovered(recovered),
                    Err(refused) => HistoryRead::Unrecoverable(refused),
                }
            } else {
                HistoryRead::Top(then.position(&channel, 0))
            };
            let mut order: Vec<usize> = (0..buffered.len()).collect();
            let mut state = shuffle | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let shuffled: Vec<LivePublication> = order.into_iter().map(|i| buffered[i].clone()).collect();
            match synchronize(read, &shuffled) {
                Ok(synchronized) => {
                    let delivered: Vec<&HistoryPublication> = synchronized.reply_publications.iter()
                        .chain(synchronized.then_push.iter()).collect();
                    let start = match synchronized.outcome {
                        RecoveryOutcome::Recovered => {
                            prop_assert!(recover);
                            prop_assert_eq!(synchronized.reply_position.offset, client);
                            prop_assert!(client <= read_at && read_at - client <= size as u64);
                            prop_assert!(synchronized.then_push.is_empty());
                            client
                        }
                        RecoveryOutcome::NotRecovered(_) => {
                            prop_assert!(recover);
                            prop_assert!(synchronized.reply_publications.is_empty());
                            prop_assert!(client > read_at || read_at - client > size.min(100) as u64);
                            read_at
                        }
                        RecoveryOutcome::NotRequested => {
                            prop_assert!(!recover);
                            read_at
                        }
                    };
                    prop_assert_eq!(synchronized.reply_position.epoch.clone(), epoch.clone());
                    let expected: Vec<u64> = (start + 1..=synchronized.cursor.offset).collect();
                    prop_assert_eq!(delivered.iter().map(|p| p.offset).collect::<Vec<_>>(), expected);
                    for publication in delivered {
                        prop_assert_eq!(&publication.payload, &body(publication.offset));
                    }
                    if !lost_any {
                        prop_assert_eq!(synchronized.cursor.offset, total);
                    }
                }
                Err(InsufficientState::LiveGap { expected, found }) => {
                    prop_assert!(lost_any);
                    prop_assert!(expected < found);
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
