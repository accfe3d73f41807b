//! A connection's outbound queue and the vectored write that empties it.
//!
//! The queue holds references to frames (`Bytes`): a broadcast frame is built once per shard and
//! every subscriber's queue points at the same bytes. Writing takes everything queued (up to
//! `MAX_IOVECS_PER_WRITE` frames) into one `sendmsg` with an iovec array: the kernel charges per
//! call, not per byte, so frames queued during one tick leave in one call.
//!
//! Invariant: the bytes on the wire are always whole frames in queue order; a partially written
//! head frame stays at the front (with `head_offset`) until it is finished, even when the rest of
//! the queue is dropped for a slow consumer, so the close frame that follows is still parseable.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;

use crate::config::{FRAME_OVERHEAD_BYTES, MAX_IOVECS_PER_WRITE};

/// Result of trying to empty a queue.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Everything queued was written.
    Drained,
    /// The socket's send buffer is full; wait for it to become writable.
    WouldBlock,
    /// The connection is broken (reset, closed by the peer).
    Failed(io::Error),
}

/// Counters for one write attempt, folded into the shard's statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteTally {
    /// System calls made.
    pub calls: u64,
    /// Frames completely written.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Frames waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Frames in order; `frames[0]` may be partially written.
    frames: VecDeque<Bytes>,
    /// Bytes of `frames[0]` already written.
    head_offset: usize,
    /// Memory charged to the queue: frame lengths plus `FRAME_OVERHEAD_BYTES` each.
    queued_bytes: usize,
}

impl Outbound {
    /// Appends a frame (a reference to shared bytes: no copy).
    pub fn push(&mut self, frame: Bytes) {
        self.queued_bytes += frame.len() + FRAME_OVERHEAD_BYTES;
        self.frames.push_back(frame);
    }

    /// Nothing left to write.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Memory held by queued frames, as charged against `--outbound-queue-bytes`.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Frames queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Takes every queued frame out (the queue is empty afterwards).
    pub fn take_all(&mut self) -> std::collections::VecDeque<Bytes> {
        self.head_offset = 0;
        self.queued_bytes = 0;
        std::mem::take(&mut self.frames)
    }

    /// The unwritten part of the head frame, if any.
    #[cfg(test)]
    pub fn head_remaining(&self) -> Option<&[u8]> {
        self.frames.front().map(|frame| &frame[self.head_offset..])
    }

    /// Drops every frame not yet started; keeps a partially written head so the stream stays
    /// frame-aligned. Returns how many frames were dropped.
    pub fn drop_unstarted(&mut self) -> usize {
        let keep = usize::from(self.head_offset > 0);
        let dropped = self.frames.len().saturating_sub(keep);
        for frame in self.frames.drain(keep..) {
            self.queued_bytes -= frame.len() + FRAME_OVERHEAD_BYTES;
        }
        self.shrink_if_idle();
        dropped
    }

    /// Records that `written` bytes left; returns the number of frames completed.
    pub fn advance(&mut self, mut written: usize) -> u64 {
        let mut completed = 0;
        while written > 0 {
            let Some(front) = self.frames.front() else {
                debug_assert!(false, "wrote more bytes than were queued");
                break;
            };
            let remaining = front.len() - self.head_offset;
            if written < remaining {
                self.head_offset += written;
                break;
            }
            written -= remaining;
            self.queued_bytes -= front.len() + FRAME_OVERHEAD_BYTES;
            self.frames.pop_front();
            self.head_offset = 0;
            completed += 1;
        }
        self.shrink_if_idle();
        completed
    }

    /// Fills `iovecs` with the queued frames, in order; returns (count, total bytes).
    pub fn fill_iovecs(&self, iovecs: &mut [libc::iovec]) -> (usize, usize) {
        let mut total = 0;
        let mut count = 0;
        for (slot, (index, frame)) in iovecs.iter_mut().zip(self.frames.iter().enumerate()) {
            let bytes = if index == 0 {
                &frame[self.head_offset..]
            } else {
                &frame[..]
            };
            *slot = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            total += bytes.len();
            count += 1;
        }
        (count, total)
    }

    /// Writes as much as the socket takes, one `sendmsg` per `MAX_IOVECS_PER_WRITE` frames.
    pub fn write_to(&mut self, fd: RawFd, tally: &mut WriteTally) -> WriteOutcome {
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOVECS_PER_WRITE];
        // Bounded: each round either empties the queue, finishes at least one more frame, or
        // returns; the queue is finite.
        loop {
            let (count, total) = self.fill_iovecs(&mut iovecs);
            if count == 0 {
                return WriteOutcome::Drained;
            }
            tally.calls += 1;
            match sendmsg(fd, &iovecs[..count]) {
                Ok(written) => {
                    tally.bytes += written as u64;
                    tally.frames += self.advance(written);
                    if written < total {
                        // A short write means the send buffer is full: the next call would
                        // only return EAGAIN.
                        return WriteOutcome::WouldBlock;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return WriteOutcome::WouldBlock;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return WriteOutcome::Failed(error),
            }
        }
    }

    /// Releases the queue's buffer if it is empty (after the handshake response, so an idle
    /// connection holds no queue memory).
    pub fn release_if_empty(&mut self) {
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }

    /// Releases the ring buffer of a queue that grew large and is empty again, so a burst does
    /// not pin memory on an idle connection forever.
    fn shrink_if_idle(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 16 {
            self.frames = VecDeque::new();
        }
    }
}

/// One non-blocking `sendmsg` of `iovecs`; never raises SIGPIPE.
pub fn sendmsg(fd: RawFd, iovecs: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: `msghdr` is plain old data; all-zero is a valid empty header.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
    header.msg_iovlen = iovecs.len() as _;
    // SAFETY: `header` points at `iovecs`, which outlive the call, and every iovec points into a
    // live `Bytes` held by the queue; the kernel only reads them.
    let result = unsafe { libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn frame(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn advance_tracks_partial_heads_and_memory() {
        let mut queue = Outbound::default();
        queue.push(frame("abc"));
        queue.push(frame("de"));
        assert_eq!(queue.queued_bytes(), 5 + 2 * FRAME_OVERHEAD_BYTES);
        assert_eq!(queue.advance(2), 0);
        assert_eq!(queue.head_remaining(), Some(&b"c"[..]));
        assert_eq!(queue.advance(2), 1);
        assert_eq!(queue.head_remaining(), Some(&b"e"[..]));
        assert_eq!(queue.advance(1), 1);
        assert!(queue.is_empty());
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[test]
    fn drop_unstarted_keeps_a_partial_head() {
        let mut queue = Outbound::default();
        for text in ["abc", "de", "f"] {
            queue.push(frame(text));
        }
        queue.advance(1);
        assert_eq!(queue.drop_unstarted(), 2);
        assert_eq!(queue.head_remaining(), Some(&b"bc"[..]));
        assert_eq!(queue.queued_bytes(), 3 + FRAME_OVERHEAD_BYTES);
        queue.advance(2);
        queue.push(frame("x"));
        assert_eq!(queue.drop_unstarted(), 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn write_to_sends_all_frames_in_one_call_and_in_order() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut queue = Outbound::default();
        for index in 0..10 {
            queue.push(frame(&format!("<{index}>")));
        }
        let mut tally = WriteTally::default();
        assert!(matches!(
            queue.write_to(ours.as_raw_fd(), &mut tally),
            WriteOutcome::Drained
        ));
        assert_eq!((tally.calls, tally.frames), (1, 10));
        drop(ours);
        let mut received = String::new();
        theirs.read_to_string(&mut received).unwrap();
        assert_eq!(received, "<0><1><2><3><4><5><6><7><8><9>");
    }

    #[test]
    fn write_to_a_full_socket_would_block_and_resumes_in_order() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let big = Bytes::from(vec![7u8; 64 << 10]);
        let mut queue = Outbound::default();
        for _ in 0..64 {
            queue.push(big.clone());
        }
        let mut tally = WriteTally::default();
        assert!(matches!(
            queue.write_to(ours.as_raw_fd(), &mut tally),
            WriteOutcome::WouldBlock
        ));
        let mut sink = vec![0u8; 1 << 20];
        let mut total = tally.bytes as usize;
        let mut received = 0;
        while received < 64 * (64 << 10) {
            received += theirs.read(&mut sink).unwrap();
            if let WriteOutcome::Failed(error) = queue.write_to(ours.as_raw_fd(), &mut tally) {
                panic!("{error}");
            }
            total = tally.bytes as usize;
        }
        assert_eq!(total, 64 * (64 << 10));
        assert!(queue.is_empty());
    }

    #[test]
    fn write_to_a_closed_peer_fails() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let mut queue = Outbound::default();
        queue.push(frame("x"));
        let mut tally = WriteTally::default();
        assert!(matches!(
            queue.write_to(ours.as_raw_fd(), &mut tally),
            WriteOutcome::Failed(_)
        ));
    }
}
