//! The one write path: every byte a WebSocket connection sends (the 101, broadcasts, pongs,
//! echoes, pings, close frames, and the rest after EAGAIN) leaves through [`Writer::write`], as
//! one vectored write per connection per call.
//!
//! Two ways to carry it, chosen by `--write-path`:
//! - `sendmsg`: one `sendmsg` system call per connection with its queued frames as an iovec
//!   array;
//! - `uring` (default): the same `sendmsg`s submitted as a batch of io_uring `SENDMSG` entries,
//!   one `io_uring_enter` for up to `FLUSHES_PER_YIELD` connections. glommio 0.9 has no vectored
//!   socket write, so each shard keeps a small ring of its own for this. Every entry carries
//!   `MSG_DONTWAIT`: the kernel completes it inline (bytes queued, or `-EAGAIN` when the send
//!   buffer is full) instead of parking it. One entry per connection per batch keeps each
//!   socket's bytes in order.
//!
//! The ring's invariant (the one SAFETY argument for every entry): a batch's message headers and
//! iovec arrays, and the frames (`Bytes`) the iovecs point into, are not reused, moved or freed
//! until every entry of the batch has been reaped. If the ring fails so that some entries cannot
//! be reaped, the ring, its arrays and those connections' frames are retired together and kept
//! until the shard ends, the connections whose writes are unaccounted for are closed (counted),
//! and the shard writes with `sendmsg` from then on (counted).

use std::io;

use bytes::Bytes;
use io_uring::{IoUring, opcode, types};

use super::outbound::{WriteOutcome, WriteTally};
use super::registry::{ConnectionKey, Registry};
use crate::config::{FLUSHES_PER_YIELD, MAX_IOVECS_PER_WRITE, WritePath};
use crate::telemetry::counters::Counter;

/// Submission queue entries in each shard's write ring: one batch.
const RING_ENTRIES: u32 = FLUSHES_PER_YIELD as u32;
/// How many times a failed submit-and-wait is retried (reaping what completed in between)
/// before the ring is retired.
const REAP_ATTEMPTS_MAX: usize = 8;

/// A shard's writer.
pub struct Writer {
    /// How writes are carried now.
    path: Path,
    /// Rings given up after an error, with what they may still point at. Kept until the shard
    /// ends (at most one: after retiring, the shard writes with sendmsg).
    retired: Vec<RetiredRing>,
}

enum Path {
    Sendmsg,
    Uring(Box<UringBatch>),
}

/// A ring and everything its unreaped entries may point at.
#[allow(dead_code, reason = "held only so the kernel never sees freed memory")]
struct RetiredRing {
    batch: Box<UringBatch>,
    frames: Vec<Bytes>,
}

impl Writer {
    /// A writer for `path`; falls back to `sendmsg` (with a warning) if no ring can be made.
    pub fn new(path: WritePath, shard: usize) -> Writer {
        let path = match path {
            WritePath::Uring => match UringBatch::new() {
                Ok(batch) => Path::Uring(Box::new(batch)),
                Err(error) => {
                    log::warn!("shard {shard}: no io_uring write ring ({error}); using sendmsg");
                    Path::Sendmsg
                }
            },
            WritePath::Sendmsg => Path::Sendmsg,
        };
        Writer {
            path,
            retired: Vec::new(),
        }
    }

    /// One vectored write for each connection of `keys` (at most `FLUSHES_PER_YIELD`) that
    /// the registry lists for writing; the registry learns how each ended.
    pub fn write(&mut self, registry: &mut Registry, keys: &[ConnectionKey], now_ms: u64) {
        debug_assert!(keys.len() <= FLUSHES_PER_YIELD);
        match &mut self.path {
            Path::Sendmsg => {
                for &key in keys {
                    write_with_sendmsg(registry, key, now_ms);
                }
            }
            Path::Uring(batch) => {
                if let Err(lost) = batch.write(registry, keys, now_ms) {
                    let Path::Uring(batch) = std::mem::replace(&mut self.path, Path::Sendmsg)
                    else {
                        unreachable!("matched above");
                    };
                    let mut frames = Vec::new();
                    for key in lost {
                        registry.write_lost(key, &mut frames);
                    }
                    registry.stats.count(Counter::UringRingsRetired);
                    log::error!(
                        "io_uring write ring failed; retired it, writing with sendmsg from now on"
                    );
                    self.retired.push(RetiredRing { batch, frames });
                }
            }
        }
    }
}

/// Writes one connection's queue with `sendmsg` calls.
fn write_with_sendmsg(registry: &mut Registry, key: ConnectionKey, now_ms: u64) {
    let Some(fd) = registry.begin_write(key) else {
        return;
    };
    let mut tally = WriteTally::default();
    let outcome = match registry.outbound_mut(key) {
        Some(outbound) => outbound.write_to(fd, &mut tally),
        None => WriteOutcome::Drained,
    };
    registry.end_write(key, outcome, &tally, now_ms);
}

/// A ring with the arrays for one batch of `SENDMSG` entries.
struct UringBatch {
    ring: IoUring,
    /// One message header per entry of a batch.
    headers: Box<[libc::msghdr]>,
    /// `MAX_IOVECS_PER_WRITE` iovecs per entry of a batch.
    iovecs: Box<[libc::iovec]>,
    /// (connection, bytes submitted) per entry of the current batch.
    entries: Vec<(ConnectionKey, usize)>,
    /// Completion result per entry of the current batch (`None`: not reaped).
    results: Vec<Option<i32>>,
}

impl UringBatch {
    fn new() -> io::Result<UringBatch> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .or_else(|_| IoUring::new(RING_ENTRIES))?;
        let batch = FLUSHES_PER_YIELD;
        Ok(UringBatch {
            ring,
            // SAFETY: `msghdr` is plain old data; all-zero is a valid empty header.
            headers: (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovecs: (0..batch * MAX_IOVECS_PER_WRITE)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            entries: Vec::with_capacity(batch),
            results: Vec::with_capacity(batch),
        })
    }

    /// Writes `keys` with one submission. `Err(keys)`: the ring failed and these connections'
    /// entries could not be reaped (the caller retires the ring).
    fn write(
        &mut self,
        registry: &mut Registry,
        keys: &[ConnectionKey],
        now_ms: u64,
    ) -> Result<(), Vec<ConnectionKey>> {
        self.entries.clear();
        for &key in keys.iter().take(FLUSHES_PER_YIELD) {
            let Some(fd) = registry.begin_write(key) else {
                continue;
            };
            let slot = self.entries.len();
            let iovecs = &mut self.iovecs[slot * MAX_IOVECS_PER_WRITE..][..MAX_IOVECS_PER_WRITE];
            let (count, total) = match registry.outbound_mut(key) {
                Some(outbound) => outbound.fill_iovecs(iovecs),
                None => (0, 0),
            };
            let header = &mut self.headers[slot];
            header.msg_iov = iovecs.as_mut_ptr();
            header.msg_iovlen = count as _;
            let entry = opcode::SendMsg::new(types::Fd(fd), header as *const libc::msghdr)
                .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                .build()
                .user_data(slot as u64);
            // SAFETY: the module's invariant: the header, its iovecs and the frames they point
            // into stay put until this entry is reaped (below) or the ring is retired with them.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_err() {
                // The ring holds a whole batch, so this does not happen; if it does, this
                // connection is written with sendmsg (its bytes stay in order: it has no
                // entry in this batch).
                let mut tally = WriteTally::default();
                let outcome = match registry.outbound_mut(key) {
                    Some(outbound) => outbound.write_to(fd, &mut tally),
                    None => WriteOutcome::Drained,
                };
                registry.end_write(key, outcome, &tally, now_ms);
                continue;
            }
            self.entries.push((key, total));
        }
        if self.entries.is_empty() {
            return Ok(());
        }
        self.submit_and_reap();
        let mut lost = Vec::new();
        for (slot, &(key, total)) in self.entries.iter().enumerate() {
            match self.results[slot] {
                Some(result) => finish_entry(registry, key, total, result, now_ms),
                None => lost.push(key),
            }
        }
        if lost.is_empty() { Ok(()) } else { Err(lost) }
    }

    /// Submits the batch and reaps its completions, retrying a failed wait a bounded number of
    /// times; entries still unreaped afterwards keep `None`.
    fn submit_and_reap(&mut self) {
        let submitted = self.entries.len();
        self.results.clear();
        self.results.resize(submitted, None);
        let mut reaped = 0;
        let mut failures = 0;
        // Bounded: each round reaps at least one completion, or counts a failure.
        while reaped < submitted && failures < REAP_ATTEMPTS_MAX {
            let waited = match crate::faults::uring_submit() {
                Some(error) => {
                    // Test fault: the entries really go to the kernel, the wait "fails".
                    let _ = self.ring.submit();
                    Err(error)
                }
                None if crate::faults::uring_wait_fails() => {
                    Err(io::Error::from_raw_os_error(libc::EBUSY))
                }
                None => self.ring.submit_and_wait(submitted - reaped),
            };
            match waited {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    failures += 1;
                    log::warn!("io_uring submit failed ({error}); reaping and retrying");
                }
            }
            if crate::faults::uring_wait_fails() {
                // Test fault: the completions are never seen.
                continue;
            }
            for completion in self.ring.completion() {
                // A completion that is not of this batch cannot exist (every batch is reaped
                // whole); ignore one rather than index out of range.
                if let Some(result) = self.results.get_mut(completion.user_data() as usize)
                    && result.is_none()
                {
                    *result = Some(completion.result());
                    reaped += 1;
                }
            }
        }
    }
}

/// Accounts one reaped entry: bytes written, and the rest of the queue if the entry could not
/// carry all of it.
fn finish_entry(
    registry: &mut Registry,
    key: ConnectionKey,
    total: usize,
    result: i32,
    now_ms: u64,
) {
    let mut tally = WriteTally {
        calls: 1,
        ..WriteTally::default()
    };
    let fd = registry.get(key).map(|connection| connection.fd());
    let (Some(fd), Some(outbound)) = (fd, registry.outbound_mut(key)) else {
        return;
    };
    let outcome = if result >= 0 {
        let written = result as usize;
        tally.bytes = written as u64;
        tally.frames = outbound.advance(written);
        if written < total {
            WriteOutcome::WouldBlock
        } else {
            // More than one entry's worth of frames: finish with plain sendmsg.
            outbound.write_to(fd, &mut tally)
        }
    } else if result == -libc::EAGAIN {
        WriteOutcome::WouldBlock
    } else if result == -libc::EINTR {
        outbound.write_to(fd, &mut tally)
    } else {
        WriteOutcome::Failed(io::Error::from_raw_os_error(-result))
    };
    registry.end_write(key, outcome, &tally, now_ms);
}
