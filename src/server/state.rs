//! The state machines of one WebSocket connection, as pure functions: where its writes stand
//! ([`WriteState`]), whether it is read ([`ReadState`]), and where it is in its life
//! ([`Lifecycle`]). An impossible combination cannot be written down, and every transition is a
//! case of a `match` here, unit-tested below.
//!
//! The owner ([`super::registry::Registry`]) applies an event to a state and carries out the
//! action the machine returns (list the connection for a write, submit a write, queue a close
//! frame, end the connection). Nothing else changes these states.

use crate::protocol::error::close_code;
use crate::telemetry::counters::CloseReason;

/// Where a connection's outbound bytes stand with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteState {
    /// Nothing queued, not listed.
    Idle,
    /// Frames queued; the connection is on the shard's flush list (once).
    Listed,
    /// A write is submitted (an io_uring entry or a `sendmsg` in progress).
    InFlight,
    /// The socket's send buffer was full: waiting for epoll to say it is writable.
    Blocked,
    /// Writes are held back (the 101 waits for the Redis subscription of a new channel);
    /// frames queue up in order.
    Held,
    /// A write failed: nothing more is written; the connection ends.
    Failed,
}

/// How a submitted write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEnd {
    /// Everything submitted left; `queue_empty` says whether more was queued meanwhile.
    Drained {
        /// Nothing is left in the queue.
        queue_empty: bool,
    },
    /// The send buffer filled up (EAGAIN or a short write).
    WouldBlock,
    /// The socket is broken.
    Failed,
}

/// Something that happens to a connection's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEvent {
    /// A frame was queued.
    Queued,
    /// A writer took the connection from the flush list.
    Take {
        /// Nothing is queued.
        queue_empty: bool,
    },
    /// The submitted write ended.
    Ended(WriteEnd),
    /// epoll reported the socket writable.
    Writable {
        /// Nothing is queued.
        queue_empty: bool,
    },
    /// Hold writes back (before the 101 of a first subscriber, with Redis).
    Hold,
    /// Let held writes go.
    Release {
        /// Nothing is queued.
        queue_empty: bool,
    },
}

/// What the owner must do after a write transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    /// Nothing.
    None,
    /// Put the connection on the flush list.
    List,
    /// Submit a write now.
    Write,
    /// The connection is broken: end it.
    Fail,
}

impl WriteState {
    /// The state after `event`, and what to do.
    pub fn on(self, event: WriteEvent) -> (WriteState, WriteAction) {
        use WriteAction as Do;
        use WriteState as S;
        match (self, event) {
            (S::Idle, WriteEvent::Queued) => (S::Listed, Do::List),
            (state, WriteEvent::Queued) => (state, Do::None),
            (S::Listed, WriteEvent::Take { queue_empty: false }) => (S::InFlight, Do::Write),
            (S::Listed, WriteEvent::Take { queue_empty: true }) => (S::Idle, Do::None),
            // A stale flush-list entry (blocked, held, failed, or already written this pass).
            (state, WriteEvent::Take { .. }) => (state, Do::None),
            (S::InFlight, WriteEvent::Ended(WriteEnd::Drained { queue_empty: true })) => {
                (S::Idle, Do::None)
            }
            (S::InFlight, WriteEvent::Ended(WriteEnd::Drained { queue_empty: false })) => {
                (S::Listed, Do::List)
            }
            (S::InFlight, WriteEvent::Ended(WriteEnd::WouldBlock)) => (S::Blocked, Do::None),
            (S::InFlight, WriteEvent::Ended(WriteEnd::Failed)) => (S::Failed, Do::Fail),
            // Only a write in flight can end.
            (state, WriteEvent::Ended(_)) => (state, Do::None),
            (S::Blocked, WriteEvent::Writable { queue_empty: false }) => (S::Listed, Do::List),
            (S::Blocked, WriteEvent::Writable { queue_empty: true }) => (S::Idle, Do::None),
            (state, WriteEvent::Writable { .. }) => (state, Do::None),
            (S::Idle | S::Listed, WriteEvent::Hold) => (S::Held, Do::None),
            (state, WriteEvent::Hold) => (state, Do::None),
            (S::Held, WriteEvent::Release { queue_empty: false }) => (S::Listed, Do::List),
            (S::Held, WriteEvent::Release { queue_empty: true }) => (S::Idle, Do::None),
            (state, WriteEvent::Release { .. }) => (state, Do::None),
        }
    }
}

/// Whether a connection's input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// Read until EAGAIN: epoll (edge-triggered) says when more arrives.
    Waiting,
    /// Input may be waiting: the connection is on the shard's ready list.
    Ready,
    /// Nothing more is read (the client closed, or we failed the connection).
    Done,
}

/// Why the shard closes a connection by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRequest {
    /// Nothing received for `--idle-timeout`.
    Idle,
    /// The server is draining (SIGTERM/SIGINT).
    Shutdown,
    /// The outbound queue exceeded `--outbound-queue-bytes` (broadcasts after a pass, or the
    /// replies to what it sent within one read).
    SlowConsumer,
    /// Its subscription token expired (close 4009, as Centrifugo and Pusher use for
    /// authorization failures).
    TokenExpired,
    /// The connection's protocol closes it with its own code (Pusher's 4000-4999 codes).
    Application {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: &'static str,
    },
}

impl CloseRequest {
    /// The close code and reason sent, and the reason counted.
    pub fn close_frame(self) -> (u16, &'static str, CloseReason) {
        match self {
            CloseRequest::Idle => (
                close_code::GOING_AWAY,
                "idle timeout",
                CloseReason::IdleTimeout,
            ),
            CloseRequest::Shutdown => (
                close_code::GOING_AWAY,
                "server shutting down",
                CloseReason::Shutdown,
            ),
            CloseRequest::SlowConsumer => (
                close_code::POLICY_VIOLATION,
                "slow consumer",
                CloseReason::SlowConsumer,
            ),
            CloseRequest::TokenExpired => (
                close_code::TOKEN_EXPIRED,
                "token expired",
                CloseReason::TokenExpired,
            ),
            CloseRequest::Application { code, reason } => {
                (code, reason, CloseReason::ProtocolRefused)
            }
        }
    }
}

/// Who started the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// We sent our close and wait for the client's (RFC 6455 §7.1.2), reading on.
    Us,
    /// The client closed; our echo is queued, and the connection ends once it is written
    /// (§7.1.1: the server closes the TCP connection first).
    Them,
    /// We failed the connection (§7.1.7): nothing more is read; it ends once our close is
    /// written.
    Fault,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Open: reading, writing, receiving broadcasts.
    Open,
    /// Our close frame is queued (no broadcasts any more); the connection ends when the
    /// handshake completes, or at `deadline_ms` (shard clock) at the latest.
    Closing {
        /// Who closed.
        by: Closer,
        /// What the close is counted as.
        reason: CloseReason,
        /// When to give up waiting (shard clock, ms).
        deadline_ms: u64,
    },
    /// Done: the owner removes the connection (and lingers on its socket unless it was lost).
    Ended(CloseReason),
}

/// Something that happens in a connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeEvent {
    /// The shard closes it (idle, shutdown, slow consumer).
    Request(CloseRequest),
    /// The client broke the protocol: close with `code`.
    Fault {
        /// The close code to send.
        code: u16,
    },
    /// The client's close frame arrived.
    CloseReceived,
    /// Everything queued was written.
    Drained,
    /// The TCP connection ended (end of stream, reset, failed read or write).
    PeerGone,
    /// The closing deadline passed.
    Deadline,
}

/// What the owner must do after a lifecycle transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeAction {
    /// Nothing.
    None,
    /// Queue our close frame (`code`, reason text); first drop queued frames not yet started
    /// when `drop_queued` (slow consumer). Leave every channel.
    SendClose {
        /// Close code.
        code: u16,
        /// Reason text.
        reason: &'static str,
        /// Drop frames not started yet.
        drop_queued: bool,
    },
    /// Queue the echo of the client's close. Leave every channel; stop reading.
    EchoClose,
    /// Stop reading (our close is already queued).
    StopReading,
    /// End the connection now.
    End {
        /// Counted as.
        reason: CloseReason,
        /// The client never answered our close in time (counted).
        unanswered: bool,
    },
}

impl Lifecycle {
    /// The state after `event` at shard time `now_ms`, and what to do. `close_timeout_ms`
    /// arms the closing deadline.
    pub fn on(
        self,
        event: LifeEvent,
        now_ms: u64,
        close_timeout_ms: u64,
    ) -> (Lifecycle, LifeAction) {
        use LifeAction as Do;
        let closing = |by, reason| Lifecycle::Closing {
            by,
            reason,
            deadline_ms: now_ms + close_timeout_ms,
        };
        let end = |reason, unanswered| (Lifecycle::Ended(reason), Do::End { reason, unanswered });
        match (self, event) {
            (Lifecycle::Ended(reason), _) => (Lifecycle::Ended(reason), Do::None),
            (Lifecycle::Open, LifeEvent::Request(request)) => {
                let (code, text, reason) = request.close_frame();
                let drop_queued = request == CloseRequest::SlowConsumer;
                // A slow consumer is failed, not asked: it reads nothing, so waiting (and
                // reading on) for its close would only let it keep sending.
                let by = if drop_queued {
                    Closer::Fault
                } else {
                    Closer::Us
                };
                (
                    closing(by, reason),
                    Do::SendClose {
                        code,
                        reason: text,
                        drop_queued,
                    },
                )
            }
            (Lifecycle::Open, LifeEvent::Fault { code }) => (
                closing(Closer::Fault, CloseReason::for_close_code(code)),
                Do::SendClose {
                    code,
                    reason: fault_text(code),
                    drop_queued: false,
                },
            ),
            (Lifecycle::Open, LifeEvent::CloseReceived) => {
                (closing(Closer::Them, CloseReason::Normal), Do::EchoClose)
            }
            (Lifecycle::Open, LifeEvent::Drained) => (Lifecycle::Open, Do::None),
            (Lifecycle::Open, LifeEvent::PeerGone) => end(CloseReason::ConnectionLost, false),
            (Lifecycle::Open, LifeEvent::Deadline) => (Lifecycle::Open, Do::None),
            // Closing: a second request changes nothing; our close is already queued.
            (state @ Lifecycle::Closing { .. }, LifeEvent::Request(_)) => (state, Do::None),
            // A fault after our close: read nothing more; end once the close is written.
            (
                Lifecycle::Closing {
                    reason,
                    deadline_ms,
                    ..
                },
                LifeEvent::Fault { .. },
            ) => (
                Lifecycle::Closing {
                    by: Closer::Fault,
                    reason,
                    deadline_ms,
                },
                Do::StopReading,
            ),
            // RFC 6455 §7.1.2: our close answered: the handshake is complete.
            (Lifecycle::Closing { reason, .. }, LifeEvent::CloseReceived) => end(reason, false),
            (Lifecycle::Closing { by: Closer::Us, .. }, LifeEvent::Drained) => (self, Do::None),
            (Lifecycle::Closing { reason, .. }, LifeEvent::Drained) => end(reason, false),
            (Lifecycle::Closing { reason, .. }, LifeEvent::PeerGone) => end(reason, false),
            (
                Lifecycle::Closing {
                    by,
                    reason,
                    deadline_ms,
                },
                LifeEvent::Deadline,
            ) => {
                if now_ms >= deadline_ms {
                    end(reason, by == Closer::Us)
                } else {
                    (self, Do::None)
                }
            }
        }
    }

    /// Does the connection still receive broadcasts?
    pub fn is_open(self) -> bool {
        self == Lifecycle::Open
    }
}

/// The reason text of a close for a protocol fault with `code`.
fn fault_text(code: u16) -> &'static str {
    match code {
        close_code::INVALID_PAYLOAD => "invalid payload",
        close_code::MESSAGE_TOO_BIG => "message too big",
        close_code::POLICY_VIOLATION => "policy violation",
        _ => "protocol error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_transition() {
        use WriteAction as Do;
        use WriteEvent as E;
        use WriteState as S;
        let drained = |queue_empty| E::Ended(WriteEnd::Drained { queue_empty });
        let cases = [
            (S::Idle, E::Queued, S::Listed, Do::List),
            (S::Listed, E::Queued, S::Listed, Do::None),
            (S::InFlight, E::Queued, S::InFlight, Do::None),
            (S::Blocked, E::Queued, S::Blocked, Do::None),
            (S::Held, E::Queued, S::Held, Do::None),
            (S::Failed, E::Queued, S::Failed, Do::None),
            (
                S::Listed,
                E::Take { queue_empty: false },
                S::InFlight,
                Do::Write,
            ),
            (S::Listed, E::Take { queue_empty: true }, S::Idle, Do::None),
            (S::Idle, E::Take { queue_empty: true }, S::Idle, Do::None),
            (
                S::Blocked,
                E::Take { queue_empty: false },
                S::Blocked,
                Do::None,
            ),
            (S::Held, E::Take { queue_empty: false }, S::Held, Do::None),
            (
                S::Failed,
                E::Take { queue_empty: false },
                S::Failed,
                Do::None,
            ),
            (
                S::InFlight,
                E::Take { queue_empty: false },
                S::InFlight,
                Do::None,
            ),
            (S::InFlight, drained(true), S::Idle, Do::None),
            (S::InFlight, drained(false), S::Listed, Do::List),
            (
                S::InFlight,
                E::Ended(WriteEnd::WouldBlock),
                S::Blocked,
                Do::None,
            ),
            (S::InFlight, E::Ended(WriteEnd::Failed), S::Failed, Do::Fail),
            (S::Idle, drained(true), S::Idle, Do::None),
            (
                S::Blocked,
                E::Writable { queue_empty: false },
                S::Listed,
                Do::List,
            ),
            (
                S::Blocked,
                E::Writable { queue_empty: true },
                S::Idle,
                Do::None,
            ),
            (
                S::Idle,
                E::Writable { queue_empty: true },
                S::Idle,
                Do::None,
            ),
            (
                S::Listed,
                E::Writable { queue_empty: false },
                S::Listed,
                Do::None,
            ),
            (S::Idle, E::Hold, S::Held, Do::None),
            (S::Listed, E::Hold, S::Held, Do::None),
            (S::Blocked, E::Hold, S::Blocked, Do::None),
            (
                S::Held,
                E::Release { queue_empty: false },
                S::Listed,
                Do::List,
            ),
            (S::Held, E::Release { queue_empty: true }, S::Idle, Do::None),
            (S::Idle, E::Release { queue_empty: true }, S::Idle, Do::None),
        ];
        for (from, event, to, action) in cases {
            assert_eq!(from.on(event), (to, action), "{from:?} + {event:?}");
        }
    }

    #[test]
    fn eagain_then_writable_resumes_and_a_failure_is_final() {
        let (state, _) = WriteState::Idle.on(WriteEvent::Queued);
        let (state, action) = state.on(WriteEvent::Take { queue_empty: false });
        assert_eq!(action, WriteAction::Write);
        let (state, _) = state.on(WriteEvent::Ended(WriteEnd::WouldBlock));
        assert_eq!(state, WriteState::Blocked);
        // More frames while blocked wait in the queue, unlisted.
        assert_eq!(
            state.on(WriteEvent::Queued),
            (WriteState::Blocked, WriteAction::None)
        );
        let (state, action) = state.on(WriteEvent::Writable { queue_empty: false });
        assert_eq!((state, action), (WriteState::Listed, WriteAction::List));
        let (state, _) = state.on(WriteEvent::Take { queue_empty: false });
        let (state, action) = state.on(WriteEvent::Ended(WriteEnd::Failed));
        assert_eq!((state, action), (WriteState::Failed, WriteAction::Fail));
        assert_eq!(
            state.on(WriteEvent::Queued),
            (WriteState::Failed, WriteAction::None)
        );
    }

    fn closing(by: Closer, reason: CloseReason, deadline_ms: u64) -> Lifecycle {
        Lifecycle::Closing {
            by,
            reason,
            deadline_ms,
        }
    }

    #[test]
    fn every_lifecycle_transition() {
        use CloseReason as R;
        use LifeAction as Do;
        use LifeEvent as E;
        let open = Lifecycle::Open;
        let us = closing(Closer::Us, R::IdleTimeout, 1100);
        let them = closing(Closer::Them, R::Normal, 1100);
        let fault = closing(Closer::Fault, R::ProtocolError, 1100);
        let end = |reason, unanswered| Do::End { reason, unanswered };
        let cases = [
            (
                open,
                E::Request(CloseRequest::Idle),
                us,
                Do::SendClose {
                    code: 1001,
                    reason: "idle timeout",
                    drop_queued: false,
                },
            ),
            (
                open,
                E::Request(CloseRequest::SlowConsumer),
                closing(Closer::Fault, R::SlowConsumer, 1100),
                Do::SendClose {
                    code: 1008,
                    reason: "slow consumer",
                    drop_queued: true,
                },
            ),
            (
                open,
                E::Fault { code: 1002 },
                fault,
                Do::SendClose {
                    code: 1002,
                    reason: "protocol error",
                    drop_queued: false,
                },
            ),
            (
                open,
                E::Fault { code: 1009 },
                closing(Closer::Fault, R::MessageTooBig, 1100),
                Do::SendClose {
                    code: 1009,
                    reason: "message too big",
                    drop_queued: false,
                },
            ),
            (open, E::CloseReceived, them, Do::EchoClose),
            (open, E::Drained, open, Do::None),
            (open, E::Deadline, open, Do::None),
            (
                open,
                E::PeerGone,
                Lifecycle::Ended(R::ConnectionLost),
                end(R::ConnectionLost, false),
            ),
            (us, E::Request(CloseRequest::Shutdown), us, Do::None),
            (us, E::Drained, us, Do::None),
            (
                us,
                E::CloseReceived,
                Lifecycle::Ended(R::IdleTimeout),
                end(R::IdleTimeout, false),
            ),
            (
                us,
                E::PeerGone,
                Lifecycle::Ended(R::IdleTimeout),
                end(R::IdleTimeout, false),
            ),
            (
                us,
                E::Fault { code: 1002 },
                closing(Closer::Fault, R::IdleTimeout, 1100),
                Do::StopReading,
            ),
            (
                them,
                E::Drained,
                Lifecycle::Ended(R::Normal),
                end(R::Normal, false),
            ),
            (
                them,
                E::PeerGone,
                Lifecycle::Ended(R::Normal),
                end(R::Normal, false),
            ),
            (
                fault,
                E::Drained,
                Lifecycle::Ended(R::ProtocolError),
                end(R::ProtocolError, false),
            ),
            (
                Lifecycle::Ended(R::Normal),
                E::Request(CloseRequest::Idle),
                Lifecycle::Ended(R::Normal),
                Do::None,
            ),
            (
                Lifecycle::Ended(R::Normal),
                E::PeerGone,
                Lifecycle::Ended(R::Normal),
                Do::None,
            ),
        ];
        for (from, event, to, action) in cases {
            assert_eq!(
                from.on(event, 100, 1000),
                (to, action),
                "{from:?} + {event:?}"
            );
        }
    }

    #[test]
    fn deadlines_end_only_when_due_and_count_only_our_unanswered_close() {
        let us = closing(Closer::Us, CloseReason::IdleTimeout, 1100);
        assert_eq!(
            us.on(LifeEvent::Deadline, 1099, 1000),
            (us, LifeAction::None)
        );
        assert_eq!(
            us.on(LifeEvent::Deadline, 1100, 1000).1,
            LifeAction::End {
                reason: CloseReason::IdleTimeout,
                unanswered: true
            }
        );
        let them = closing(Closer::Them, CloseReason::Normal, 1100);
        assert_eq!(
            them.on(LifeEvent::Deadline, 2000, 1000).1,
            LifeAction::End {
                reason: CloseReason::Normal,
                unanswered: false
            }
        );
    }

    #[test]
    fn close_while_a_write_is_in_flight_waits_for_the_write() {
        // The close frame is queued behind the write in flight; the write's end lists the
        // connection again, and the close leaves with the next write.
        let (life, action) = Lifecycle::Open.on(LifeEvent::Request(CloseRequest::Idle), 0, 1000);
        assert!(matches!(action, LifeAction::SendClose { .. }));
        let write = WriteState::InFlight;
        assert_eq!(
            write.on(WriteEvent::Queued),
            (WriteState::InFlight, WriteAction::None)
        );
        let (write, action) = write.on(WriteEvent::Ended(WriteEnd::Drained { queue_empty: false }));
        assert_eq!((write, action), (WriteState::Listed, WriteAction::List));
        // The client's answer completes the handshake.
        assert_eq!(
            life.on(LifeEvent::CloseReceived, 10, 1000).1,
            LifeAction::End {
                reason: CloseReason::IdleTimeout,
                unanswered: false
            }
        );
    }
}
