//! Channel history: every publication on a channel with history gets a stream position (a
//! monotonic `offset` inside an `epoch`), and the last publications are kept so that a client
//! that reconnects can ask for exactly what it missed.
//!
//! Sans-IO: pure values and pure functions; the clock is a `now_ms` argument, randomness a seed
//! argument. The in-memory store is [`memory::MemoryHistory`]; the exact-recovery merge is
//! [`recovery::synchronize`]; which channels keep history is [`policy::HistoryPolicy`].
//!
//! Deliberately not here: Redis (a Redis Streams store will answer with the same types
//! ([`Recovered`], [`Unrecoverable`], [`HistoryPage`]) and decide with the same pure check,
//! [`check_recovery`], so both stores agree on what "recovered" means), sockets, shards.
//!
//! Invariants owned here:
//! - an epoch names one life of a channel's stream: within an epoch, offsets are assigned
//!   1, 2, 3, ... with no reuse; when the store forgets a stream (its offset counter), the next
//!   life gets a new epoch, never one used before by this store;
//! - "recovered" is only ever said when every publication after the client's position, up to
//!   the stream's top, is handed over ([`check_recovery`] is the one place that decides it).

pub mod memory;
pub mod policy;
pub mod recovery;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::channel::ChannelName;

/// Names one life of a channel's stream. A client holding a position from another epoch cannot
/// recover: the offsets it knows may have been reused. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// An epoch with this text (from a client, from Redis, or made by a store).
    pub fn new(text: &str) -> Epoch {
        Epoch(Arc::from(text))
    }

    /// The epoch as text, as it goes on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are one shared epoch (then they are equal without reading the text).
    pub fn shares(&self, other: &Epoch) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Equality that skips reading the text when both share it.
    pub fn same(&self, other: &Epoch) -> bool {
        self.shares(other) || self.0 == other.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", &*self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A position in a channel's stream: the offset of the last publication seen (0 before the
/// first) in an epoch. Centrifugo's `StreamPosition { offset, epoch }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// Offset of the last publication at this position; 0 when none was published yet.
    pub offset: u64,
    /// The life of the stream the offset belongs to.
    pub epoch: Epoch,
}

/// A publication as history keeps it: its offset in the channel's stream and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPublication {
    /// Offset in the stream (the epoch is the stream's).
    pub offset: u64,
    /// The payload as published (shared, not copied).
    pub payload: Bytes,
}

/// History covers a client's gap: every publication after `since`, up to `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The client's position (what it asked to recover from).
    pub since: StreamPosition,
    /// Exactly the publications `since.offset + 1 ..= position.offset`, in order.
    pub publications: Vec<HistoryPublication>,
    /// The stream's top when history was read.
    pub position: StreamPosition,
}

/// Why a position cannot be recovered. Each is a reason to tell the client `recovered: false`
/// (or, for the history call, error 112 "unrecoverable position").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnrecoverableReason {
    /// centrifuge `isStreamRecovered`: "Epochs do not match, cannot recover."
    #[error("the stream's epoch changed: history was lost")]
    EpochChanged,
    /// The client claims an offset the stream never reached in this epoch.
    #[error("the position is ahead of the stream")]
    AheadOfStream,
    /// Some publications after the position were dropped (size, ttl or memory bound).
    #[error("publications after the position are no longer kept")]
    Trimmed,
    /// More publications were missed than one recovery may return (centrifuge's
    /// `ClientRecoveryMaxPublicationLimit`).
    #[error("more publications were missed than one recovery may return")]
    TooMany,
}

/// A position that cannot be recovered, with the stream's current top (so the client can start
/// from there, as Centrifugo does: "Result contains stream position in case of
/// ErrorUnrecoverablePosition during recovery").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecoverable {
    /// Why.
    pub reason: UnrecoverableReason,
    /// The stream's top when history was read.
    pub position: StreamPosition,
}

/// A history query (the client protocol's `history` command, the server API's `/api/history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only publications after this position (before it when `reverse`); its epoch must be the
    /// stream's.
    pub since: Option<StreamPosition>,
    /// Most publications returned; 0 returns the position only (see [`history_limit`]).
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// The answer to a [`HistoryQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The publications, in the order asked for.
    pub publications: Vec<HistoryPublication>,
    /// The stream's top.
    pub position: StreamPosition,
}

/// The client protocol's `limit` as a count: centrifuge `HistoryFilter.Limit`: "-1 means no
/// limit - i.e. return all publications currently in stream. 0 means that caller only
/// interested in current stream top position". Any negative value and anything above `cap`
/// (centrifuge's `HistoryMaxPublicationLimit`) become `cap`.
pub fn history_limit(requested: i32, cap: usize) -> usize {
    match usize::try_from(requested) {
        Ok(limit) => limit.min(cap),
        Err(_) => cap,
    }
}

/// The one decision of what "recovered" means, shared by every store.
///
/// `position` is the stream's top when it was read; `publications` what the store holds after
/// `since.offset`, ascending (a store may stop reading after `publications_max + 1`).
/// Recovered only when the epochs match and `publications` is exactly
/// `since.offset + 1 ..= position.offset` (centrifuge `isStreamRecovered`: the first is
/// `cmdOffset + 1` and the last is the latest offset).
pub fn check_recovery(
    since: &StreamPosition,
    position: StreamPosition,
    publications: Vec<HistoryPublication>,
    publications_max: usize,
) -> Result<Recovered, Unrecoverable> {
    let refuse = |reason, position| Err(Unrecoverable { reason, position });
    if since.epoch != position.epoch {
        return refuse(UnrecoverableReason::EpochChanged, position);
    }
    if since.offset > position.offset {
        return refuse(UnrecoverableReason::AheadOfStream, position);
    }
    let missed = position.offset - since.offset;
    if missed > publications_max as u64 {
        return refuse(UnrecoverableReason::TooMany, position);
    }
    let exact = publications.len() as u64 == missed
        && publications
            .iter()
            .zip(since.offset + 1..)
            .all(|(publication, expected)| publication.offset == expected);
    if !exact {
        return refuse(UnrecoverableReason::Trimmed, position);
    }
    Ok(Recovered {
        since: since.clone(),
        publications,
        position,
    })
}

/// What a shard asks a channel's history (its owner shard, or Redis).
#[derive(Debug, Clone)]
pub enum HistoryQuestion {
    /// A subscribe: the stream's top, or (with a position) everything after it.
    Subscribe {
        /// The client's position, when it asks to recover.
        recover: Option<StreamPosition>,
    },
    /// A page of history (`history` command, `/api/history`).
    Page(HistoryQuery),
}

/// The history's answer.
#[derive(Debug, Clone)]
pub enum HistoryAnswer {
    /// To [`HistoryQuestion::Subscribe`].
    Subscribe(recovery::HistoryRead),
    /// To [`HistoryQuestion::Page`].
    Page(Result<HistoryPage, Unrecoverable>),
}

/// The operations every history store offers, synchronously. The in-memory store implements
/// it; a Redis Streams store is asynchronous and offers the same four operations returning the
/// same types (and decides recovery with the same [`check_recovery`]).
pub trait HistoryStore {
    /// Appends a publication; returns its position. Assigns the next offset even when the
    /// payload cannot be kept (then a recovery across it is refused, never wrong).
    fn append(
        &mut self,
        channel: &ChannelName,
        settings: &policy::ChannelHistory,
        payload: Bytes,
        now_ms: u64,
    ) -> StreamPosition;

    /// The stream's top (creating the stream, and its epoch, when it does not exist yet, so a
    /// subscriber's position stays valid when the first publication comes).
    fn position(&mut self, channel: &ChannelName, now_ms: u64) -> StreamPosition;

    /// Everything after `since`, or why not (see [`check_recovery`]).
    fn recover(
        &mut self,
        channel: &ChannelName,
        since: &StreamPosition,
        publications_max: usize,
        now_ms: u64,
    ) -> Result<Recovered, Unrecoverable>;

    /// A page of history; refused only when `query.since` is from another epoch.
    fn page(
        &mut self,
        channel: &ChannelName,
        query: &HistoryQuery,
        now_ms: u64,
    ) -> Result<HistoryPage, Unrecoverable>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: Epoch::new(epoch),
        }
    }

    fn publications(offsets: impl IntoIterator<Item = u64>) -> Vec<HistoryPublication> {
        offsets
            .into_iter()
            .map(|offset| HistoryPublication {
                offset,
                payload: Bytes::from(offset.to_string()),
            })
            .collect()
    }

    #[test]
    fn the_exact_suffix_is_recovered() {
        let recovered =
            check_recovery(&position(3, "e"), position(5, "e"), publications(4..=5), 10).unwrap();
        assert_eq!(recovered.publications, publications(4..=5));
        assert_eq!(recovered.since, position(3, "e"));
        assert_eq!(recovered.position, position(5, "e"));
    }

    #[test]
    fn nothing_missed_is_recovered() {
        let recovered = check_recovery(&position(5, "e"), position(5, "e"), Vec::new(), 0).unwrap();
        assert!(recovered.publications.is_empty());
    }

    #[test]
    fn another_epoch_is_refused() {
        let refused =
            check_recovery(&position(0, "a"), position(0, "b"), Vec::new(), 10).unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::EpochChanged);
        assert_eq!(refused.position, position(0, "b"));
    }

    #[test]
    fn a_position_ahead_is_refused() {
        let refused =
            check_recovery(&position(6, "e"), position(5, "e"), Vec::new(), 10).unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::AheadOfStream);
    }

    #[test]
    fn too_many_is_refused() {
        let refused = check_recovery(&position(0, "e"), position(5, "e"), publications(1..=5), 4)
            .unwrap_err();
        assert_eq!(refused.reason, UnrecoverableReason::TooMany);
    }

    #[test]
    fn a_hole_is_refused() {
        for held in [vec![5], vec![4], vec![3, 5], vec![4, 4], vec![5, 4]] {
            let refused =
                check_recovery(&position(3, "e"), position(5, "e"), publications(held), 10)
                    .unwrap_err();
            assert_eq!(refused.reason, UnrecoverableReason::Trimmed);
        }
    }

    #[test]
    fn limits_follow_centrifuge() {
        assert_eq!(history_limit(-1, 300), 300);
        assert_eq!(history_limit(0, 300), 0);
        assert_eq!(history_limit(10, 300), 10);
        assert_eq!(history_limit(1000, 300), 300);
        assert_eq!(history_limit(i32::MIN, 300), 300);
    }
}
