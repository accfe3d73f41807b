//! Readiness of a shard's WebSocket sockets without a task per connection.
//!
//! glommio's own socket types keep a pending poll (an `Rc` source of a few hundred bytes) and a
//! task per connection; for a push server whose connections are mostly idle that is most of the
//! memory a connection costs. Instead, each shard registers its WebSocket sockets in one
//! edge-triggered epoll instance, and wakes its reactor task through glommio like this:
//!
//! ```text
//! epoll fd --(POLL_ADD on a tiny io_uring of our own)--> completion --(registered eventfd)-->
//!   eventfd readable --(glommio read of the eventfd)--> the reactor task wakes
//! ```
//!
//! One wake-up covers every socket that became ready meanwhile. The reactor then takes the
//! events with `epoll_wait(0)` and re-arms the POLL_ADD.
//!
//! The reactor does not trust this chain alone: it waits for a wake-up at most
//! `WAKE_WAIT_MAX` (see [`super::reactor`]), and when a round started by that bound finds work
//! a wake-up should have announced, it counts the miss and calls [`Poller::rearm`], which
//! cancels whatever POLL_ADD may still be pending and submits a fresh one. Every POLL_ADD has a
//! user_data of its own, so a stale or cancelled one that completes later is told apart from
//! the one armed now.
//!
//! Invariant: a socket is registered while its owner (the registry entry or the lingering
//! entry) holds its `OwnedFd`; closing the descriptor removes it from the epoll set, and every
//! event carries the owner's generation, so an event for a socket already gone is recognized and
//! dropped (see [`Token`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{IoUring, opcode, types};

/// Whose socket an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A WebSocket connection in the registry.
    Connection,
    /// A socket lingering after its close (read and discarded until the peer closes).
    Lingering,
}

/// What epoll hands back with an event: the kind, the slab key and the owner's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Whose.
    pub kind: TokenKind,
    /// The slab key.
    pub key: u32,
    /// The owner's generation (30 bits): a reused key has a new one.
    pub generation: u32,
}

/// Generations wrap within 30 bits.
pub const GENERATION_MASK: u32 = (1 << 30) - 1;

impl Token {
    fn encode(self) -> u64 {
        let kind = match self.kind {
            TokenKind::Connection => 0u64,
            TokenKind::Lingering => 1u64,
        };
        (kind << 62) | (u64::from(self.generation & GENERATION_MASK) << 32) | u64::from(self.key)
    }

    fn decode(data: u64) -> Token {
        let kind = if data >> 62 == 1 {
            TokenKind::Lingering
        } else {
            TokenKind::Connection
        };
        Token {
            kind,
            key: data as u32,
            generation: (data >> 32) as u32 & GENERATION_MASK,
        }
    }
}

/// What a socket is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Data, end of stream or an error can be read.
    pub readable: bool,
    /// The send buffer has room again.
    pub writable: bool,
}

/// The epoll set for a shard's WebSocket sockets, and the wake-up path into glommio.
pub struct Poller {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    /// The POLL_ADD of `epoll` lives here; its completions signal `eventfd`.
    ring: IoUring,
    /// The wake-up path's state.
    wake: Wake,
    /// The user_data the next POLL_ADD gets (each one its own, from `FIRST_WAKE_USER_DATA`).
    next_wake_user_data: u64,
}

/// Whether a POLL_ADD is pending on the epoll fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// None: `arm` submits one.
    Idle,
    /// Submitted (or, under the `lose-wakeup` test fault, pretended) and not yet reaped.
    Armed {
        /// Its user_data: only its own completion disarms.
        user_data: u64,
    },
}

/// Interest registered for every socket: edge-triggered input, peer hang-up, and output (an
/// output edge only comes after a write hit a full buffer, which is when we want it).
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT | libc::EPOLLET) as u32;

/// `user_data` of the cancellations [`Poller::rearm`] submits (their completions are ignored).
const CANCEL_USER_DATA: u64 = 0;
/// `user_data` of the first POLL_ADD on the epoll fd; each later one gets the next number.
const FIRST_WAKE_USER_DATA: u64 = 1;

impl Poller {
    /// A new epoll set with its eventfd and wake ring.
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain system calls; each result is checked before it is owned.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `epoll` is a new descriptor nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: as above.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `eventfd` is a new descriptor nobody else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(eventfd) };
        let ring = IoUring::builder().build(4)?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Poller {
            epoll,
            eventfd,
            ring,
            wake: Wake::Idle,
            next_wake_user_data: FIRST_WAKE_USER_DATA,
        })
    }

    /// A duplicate of the eventfd, for glommio to read (glommio closes what it owns).
    pub fn eventfd_for_glommio(&self) -> io::Result<OwnedFd> {
        self.eventfd.try_clone()
    }

    /// Registers `fd` with `token`.
    pub fn add(&self, fd: RawFd, token: Token) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, token)
    }

    /// Changes the token of a registered `fd` (epoll reports it again if it is ready now).
    pub fn modify(&self, fd: RawFd, token: Token) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, token)
    }

    fn control(&self, operation: libc::c_int, fd: RawFd, token: Token) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: INTEREST,
            u64: token.encode(),
        };
        // SAFETY: valid descriptors and a pointer to a live event struct.
        let result = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), operation, fd, &mut event) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes up to `out.capacity()` ready events without waiting.
    pub fn take_events(&self, out: &mut Vec<(Token, Readiness)>, buffer: &mut [libc::epoll_event]) {
        // SAFETY: `buffer` is writable for `buffer.len()` events.
        let count = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                buffer.as_mut_ptr(),
                buffer.len() as libc::c_int,
                0,
            )
        };
        for event in buffer.iter().take(count.max(0) as usize) {
            let flags = event.events;
            let readable = flags
                & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                != 0;
            let writable = flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            let data = event.u64;
            out.push((Token::decode(data), Readiness { readable, writable }));
        }
    }

    /// Makes sure the wake-up is armed: a POLL_ADD on the epoll fd whose completion signals the
    /// eventfd. If events are pending already, it completes at once.
    pub fn arm(&mut self) -> io::Result<()> {
        self.reap();
        if self.wake != Wake::Idle {
            return Ok(());
        }
        let user_data = self.next_wake_user_data;
        self.next_wake_user_data += 1;
        if crate::faults::lose_wakeup() {
            // Test fault: a POLL_ADD the kernel never completes.
            self.wake = Wake::Armed { user_data };
            return Ok(());
        }
        let entry = opcode::PollAdd::new(types::Fd(self.epoll.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the entry refers to the epoll descriptor only, which `self` keeps open for as
        // long as the ring exists (fields drop in declaration order: `ring` last).
        unsafe {
            self.ring
                .submission()
                .push(&entry)
                .map_err(|_| io::Error::other("the wake ring is full"))?;
        }
        self.ring.submit()?;
        self.wake = Wake::Armed { user_data };
        Ok(())
    }

    /// Replaces a wake-up that did not come: cancels the pending POLL_ADD, if any (its late
    /// completion, if it ever comes, is ignored), and arms a fresh one.
    pub fn rearm(&mut self) -> io::Result<()> {
        self.reap();
        if let Wake::Armed { user_data } = self.wake {
            let cancel = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(CANCEL_USER_DATA);
            // SAFETY: a cancellation refers to no memory, only to a user_data.
            unsafe {
                self.ring
                    .submission()
                    .push(&cancel)
                    .map_err(|_| io::Error::other("the wake ring is full"))?;
            }
            self.ring.submit()?;
            self.wake = Wake::Idle;
        }
        self.arm()
    }

    /// Reaps the wake ring's completions (the armed POLL_ADD fired: arm again before sleeping).
    fn reap(&mut self) {
        for completion in self.ring.completion() {
            if self.wake
                == (Wake::Armed {
                    user_data: completion.user_data(),
                })
            {
                self.wake = Wake::Idle;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn tokens_round_trip() {
        for kind in [TokenKind::Connection, TokenKind::Lingering] {
            for (key, generation) in [(0, 0), (u32::MAX, GENERATION_MASK), (7, 12345)] {
                let token = Token {
                    kind,
                    key,
                    generation,
                };
                assert_eq!(Token::decode(token.encode()), token);
            }
        }
    }

    #[test]
    fn events_carry_their_token_and_the_wake_ring_signals_the_eventfd() {
        let mut poller = Poller::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let token = Token {
            kind: TokenKind::Connection,
            key: 3,
            generation: 9,
        };
        poller.add(ours.as_raw_fd(), token).unwrap();
        poller.arm().unwrap();
        let mut buffer = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let mut events = Vec::new();
        // A new socket is writable: one output edge.
        poller.take_events(&mut events, &mut buffer);
        assert_eq!(events.len(), 1);
        events.clear();
        theirs.write_all(b"x").unwrap();
        poller.take_events(&mut events, &mut buffer);
        assert_eq!(events[0].0, token);
        assert!(events[0].1.readable);
        // The POLL_ADD fired and signalled the eventfd.
        let mut counter = [0u8; 8];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Bounded by the deadline.
        loop {
            // SAFETY: reads 8 bytes into a live buffer.
            let read = unsafe {
                libc::read(
                    poller.eventfd.as_raw_fd(),
                    counter.as_mut_ptr().cast(),
                    counter.len(),
                )
            };
            if read == 8 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "eventfd never signalled"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        poller.reap();
        assert_eq!(poller.wake, Wake::Idle);
    }

    #[test]
    fn rearm_replaces_a_pending_wake_and_ignores_the_old_ones_completion() {
        let mut poller = Poller::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let token = Token {
            kind: TokenKind::Connection,
            key: 1,
            generation: 1,
        };
        poller.add(ours.as_raw_fd(), token).unwrap();
        let mut buffer = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let mut events = Vec::new();
        // Nothing ready: the POLL_ADD stays pending.
        poller.take_events(&mut events, &mut buffer);
        poller.arm().unwrap();
        let first = poller.wake;
        assert!(matches!(first, Wake::Armed { .. }));
        poller.rearm().unwrap();
        let second = poller.wake;
        assert!(matches!(second, Wake::Armed { .. }));
        assert_ne!(first, second, "a fresh POLL_ADD");
        // The cancelled one's completion (and the cancel's) do not disarm the fresh one...
        std::thread::sleep(std::time::Duration::from_millis(50));
        poller.reap();
        assert_eq!(poller.wake, second);
        // ...and the fresh one fires on input.
        theirs.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Bounded by the deadline.
        while poller.wake != Wake::Idle {
            assert!(
                std::time::Instant::now() < deadline,
                "the fresh POLL_ADD never fired"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
            poller.reap();
        }
    }
}
