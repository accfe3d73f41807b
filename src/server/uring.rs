//! `--write-path uring`: the fan-out's vectored writes submitted as a batch of io_uring
//! `SENDMSG` entries, one `io_uring_enter` for up to `FLUSHES_PER_YIELD` connections.
//!
//! glommio 0.9 has no vectored socket write, so each shard keeps a small ring of its own for
//! this. Every entry carries `MSG_DONTWAIT`: the kernel completes it inline (bytes queued, or
//! `-EAGAIN` when the send buffer is full) instead of parking it, so `submit_and_wait` returns
//! with every completion and the iovec arrays can be reused at once. A connection that would
//! block is handed to its task exactly like on the `sendmsg` path; only the system call that
//! carries the write differs. One entry per connection per batch keeps each socket's bytes in
//! order.

use std::io;

use io_uring::{IoUring, opcode, types};

use super::outbound::{WriteOutcome, WriteTally};
use super::registry::{ConnectionKey, Registry};
use crate::config::{FLUSHES_PER_YIELD, MAX_IOVECS_PER_WRITE};

/// Submission queue entries in each shard's write ring.
const RING_ENTRIES: u32 = FLUSHES_PER_YIELD as u32;

/// A shard's batched writer.
pub struct UringWriter {
    ring: IoUring,
    /// One message header per entry of a batch.
    headers: Box<[libc::msghdr]>,
    /// `MAX_IOVECS_PER_WRITE` iovecs per entry of a batch.
    iovecs: Box<[libc::iovec]>,
    /// (connection, bytes submitted) per entry of the current batch.
    entries: Vec<(ConnectionKey, usize)>,
    /// Completion result per entry of the current batch.
    results: Vec<i32>,
}

impl UringWriter {
    /// A writer with its own ring.
    pub fn new() -> io::Result<UringWriter> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .or_else(|_| IoUring::new(RING_ENTRIES))?;
        let batch = FLUSHES_PER_YIELD;
        Ok(UringWriter {
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

    /// Flushes `keys` (at most `FLUSHES_PER_YIELD`) with one submission.
    pub fn flush(&mut self, registry: &mut Registry, keys: &[ConnectionKey]) {
        debug_assert!(keys.len() <= FLUSHES_PER_YIELD);
        self.entries.clear();
        for &key in keys.iter().take(FLUSHES_PER_YIELD) {
            let Some(fd) = registry.begin_flush(key) else {
                continue;
            };
            let slot = self.entries.len();
            let iovecs = &mut self.iovecs[slot * MAX_IOVECS_PER_WRITE..][..MAX_IOVECS_PER_WRITE];
            let (count, total) = registry.outbound_mut(key).fill_iovecs(iovecs);
            let header = &mut self.headers[slot];
            header.msg_iov = iovecs.as_mut_ptr();
            header.msg_iovlen = count as _;
            let entry = opcode::SendMsg::new(types::Fd(fd), header as *const libc::msghdr)
                .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                .build()
                .user_data(slot as u64);
            // SAFETY: the header and its iovecs live in `self` and are not touched until every
            // completion of this batch is reaped below; the iovecs point into `Bytes` held by
            // the connection's queue, which nothing drops before `end_flush`.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            debug_assert!(pushed.is_ok(), "the ring holds a whole batch");
            self.entries.push((key, total));
        }
        if self.entries.is_empty() {
            return;
        }
        let submitted = self.entries.len();
        self.results.clear();
        self.results.resize(submitted, -libc::EAGAIN);
        let mut reaped = 0;
        // Bounded: each round reaps at least one completion or fails.
        while reaped < submitted {
            if let Err(error) = self.ring.submit_and_wait(submitted - reaped) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The ring itself failed: treat the rest as would-block so each task retries on
                // its own socket.
                log::error!("io_uring submit failed: {error}");
                break;
            }
            for completion in self.ring.completion() {
                self.results[completion.user_data() as usize] = completion.result();
                reaped += 1;
            }
        }
        for (slot, &(key, total)) in self.entries.iter().enumerate() {
            let mut tally = WriteTally {
                calls: 1,
                ..WriteTally::default()
            };
            let result = self.results[slot];
            let fd = registry.connections[key].fd;
            let outbound = registry.outbound_mut(key);
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
            registry.stats.add_writes(&tally);
            registry.end_flush(key, outcome);
        }
    }
}
