//! One WebSocket connection's task after the upgrade: reads and answers the client, waits for
//! writability when the fan-out found its socket full, and carries out closes.
//!
//! Reads go into the shard's scratch buffer; only the bytes of an unfinished frame are copied
//! into the connection's own `input`, so an idle connection owns no read buffer. All writes,
//! the fan-out's and this task's (pongs, echoes, close frames), go through the connection's one
//! outbound queue, so they reach the wire in the order they were queued.
//!
//! Closing (RFC 6455 §7): on a protocol error we send the close code and stop reading frames;
//! when the client closes we echo its code and close the TCP connection first (§7.1.1, the
//! server closes first); when we close (idle, slow consumer, shutdown) we keep reading until
//! the client's close arrives or `--close-timeout` passes. In every case the socket is
//! half-closed and lingered on, so the close frame is not destroyed by a reset.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::connection::linger_close;
use super::outbound::WriteTally;
use super::registry::{CloseRequest, ConnectionKey};
use super::shard::Shard;
use super::stats::CloseReason;
use crate::protocol::close::{encode_close_frame, encode_close_reply};
use crate::protocol::error::ProtocolError;
use crate::protocol::frame::{OpCode, encode_server_frame};
use crate::protocol::message::{DataKind, Decoded, Event, MessageDecoder};

/// What the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// `/ws/{channel}`: receives broadcasts; answers heartbeats.
    Subscriber,
    /// `/echo`: sends every message back (conformance testing).
    Echo,
}

/// Why the task woke up.
enum Wake {
    /// `n` bytes were read into the shard's scratch buffer.
    Read(usize),
    /// The client closed its side.
    EndOfStream,
    /// A read or write failed.
    Failed,
    /// A blocked write made progress.
    Wrote,
    /// The shard asked for a close.
    CloseRequested(CloseRequest),
    /// The close timeout passed.
    Deadline,
}

/// Where the closing handshake stands.
#[derive(Debug, Default)]
struct Closing {
    /// Our close frame is queued.
    sent: bool,
    /// The client's close frame arrived.
    received: bool,
    /// We failed the connection: read nothing more.
    failed: bool,
    /// What to count when the connection ends.
    reason: Option<CloseReason>,
}

/// Most wake-ups (reads, writes, close requests) a session handles before it lets other tasks
/// run.
const WAKES_PER_POLL: usize = 16;

/// A connection's task after the upgrade. Written by hand rather than as an `async fn`: an
/// idle connection's memory is mostly this future, and a generated one holds moved arguments
/// twice (520 bytes against this one's ~240).
#[allow(
    clippy::large_enum_variant,
    reason = "Running is the state of the connection's whole life; boxing it would add an allocation per connection"
)]
pub enum SessionTask<G> {
    /// Reading and answering the client.
    Running {
        session: Session,
        stream: TcpStream,
        guard: G,
    },
    /// Closing: only a closing connection pays for the closing machinery (boxed).
    Finishing(Pin<Box<dyn Future<Output = ()>>>),
    /// Ended.
    Done,
}

impl<G: Unpin + 'static> Future for SessionTask<G> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        // Unpin: the variants hold no self-references (the closing future is boxed).
        let this = self.get_mut();
        // Bounded: each turn either returns or moves the state forward (Running, Finishing,
        // Done).
        loop {
            match this {
                SessionTask::Running {
                    session, stream, ..
                } => {
                    let Poll::Ready(reason) = session.poll_run(context, stream) else {
                        return Poll::Pending;
                    };
                    if let SessionTask::Running {
                        session,
                        stream,
                        guard,
                    } = std::mem::replace(this, SessionTask::Done)
                    {
                        *this =
                            SessionTask::Finishing(Box::pin(session.close(stream, guard, reason)));
                    }
                }
                SessionTask::Finishing(closing) => {
                    let Poll::Ready(()) = closing.as_mut().poll(context) else {
                        return Poll::Pending;
                    };
                    *this = SessionTask::Done;
                }
                SessionTask::Done => return Poll::Ready(()),
            }
        }
    }
}

/// A session for a registered connection; `leftover` holds bytes that came behind the
/// request head. The connection is removed from the registry when the session's task ends
/// (before the socket closes).
pub fn new_session(
    shard: &Rc<Shard>,
    key: ConnectionKey,
    kind: SessionKind,
    leftover: Vec<u8>,
) -> Session {
    let mut session = Session {
        shard: shard.clone(),
        key,
        kind,
        input: Vec::new(),
        decoder: MessageDecoder::new(shard.config.max_message_bytes as u64),
        closing: Closing::default(),
        deadline: None,
        incomplete_frame_bytes: 0,
    };
    if !leftover.is_empty() {
        // Frames pipelined behind the request head: process them like a read.
        session.process_bytes(leftover);
    }
    session
}

/// One open WebSocket connection's reading side (its writes go through the registry).
pub struct Session {
    shard: Rc<Shard>,
    key: ConnectionKey,
    kind: SessionKind,
    /// Bytes of an unfinished frame.
    input: Vec<u8>,
    decoder: MessageDecoder,
    closing: Closing,
    /// Armed when our close frame is sent.
    deadline: Option<Timer>,
    /// Length of the frame whose header was seen but whose payload is still arriving.
    incomplete_frame_bytes: usize,
}

impl Session {
    /// Serves the connection until it ends: the returned future is the connection's task.
    /// `guard` is dropped last, after the socket is closed.
    pub fn serve<G: Unpin + 'static>(self, stream: TcpStream, guard: G) -> SessionTask<G> {
        SessionTask::Running {
            session: self,
            stream,
            guard,
        }
    }

    /// Ends the connection: the closing handshake (unless the connection was lost), removal
    /// from the registry, the socket's close, then `guard`.
    async fn close<G>(mut self, mut stream: TcpStream, guard: G, reason: CloseReason) {
        self.finish(&mut stream, reason).await;
        self.shard.publish_connection_count();
        drop(stream);
        drop(guard);
    }

    /// The main loop; ready with why the connection ends. At most `WAKES_PER_POLL` wake-ups
    /// are handled per poll, so a client that keeps sending cannot hold the shard.
    fn poll_run(&mut self, context: &mut Context<'_>, stream: &mut TcpStream) -> Poll<CloseReason> {
        for _ in 0..WAKES_PER_POLL {
            if self.closing.failed || (self.closing.sent && self.closing.received) {
                return Poll::Ready(self.closing.reason.unwrap_or(CloseReason::Normal));
            }
            let Poll::Ready(wake) = self.poll_wake(context, stream) else {
                return Poll::Pending;
            };
            match wake {
                Wake::Read(count) => {
                    let now_ms = self.shard.now_ms();
                    self.shard.registry.borrow_mut().connections[self.key].last_read_ms = now_ms;
                    self.process_scratch(count);
                }
                Wake::Wrote => {}
                Wake::EndOfStream | Wake::Failed => {
                    return Poll::Ready(self.closing.reason.unwrap_or(CloseReason::ConnectionLost));
                }
                Wake::CloseRequested(request) => {
                    let (code, reason, counted) = request.close_frame();
                    self.send_close(code, reason, request == CloseRequest::SlowConsumer);
                    self.closing.reason = Some(counted);
                }
                Wake::Deadline => {
                    self.shard
                        .registry
                        .borrow_mut()
                        .stats
                        .close_handshake_timeouts += 1;
                    return Poll::Ready(self.closing.reason.unwrap_or(CloseReason::ConnectionLost));
                }
            }
        }
        // Budget spent: let the other tasks run, then continue.
        context.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls, in order: write failure, close requests, writability (if blocked), the close
    /// deadline, and input (unless the queue is full: an echo client that does not read its
    /// echoes is not read either).
    fn poll_wake(&mut self, context: &mut Context<'_>, stream: &mut TcpStream) -> Poll<Wake> {
        let shard = self.shard.clone();
        let mut registry = shard.registry.borrow_mut();
        let registry = &mut *registry;
        let connection = &mut registry.connections[self.key];
        if connection.write_failed {
            return Poll::Ready(Wake::Failed);
        }
        if let Some(request) = connection.close_request.take()
            && !self.closing.sent
        {
            return Poll::Ready(Wake::CloseRequested(request));
        }
        if connection.write_blocked {
            let head = connection.outbound.head_remaining().unwrap_or_default();
            match Pin::new(&mut *stream).poll_write(context, head) {
                Poll::Ready(Ok(written)) => {
                    let mut tally = WriteTally {
                        calls: 1,
                        bytes: written as u64,
                        frames: connection.outbound.advance(written),
                    };
                    connection.write_blocked = false;
                    registry.stats.add_writes(&tally);
                    tally = WriteTally::default();
                    let outcome = registry
                        .outbound_mut(self.key)
                        .write_to(stream_fd(stream), &mut tally);
                    registry.stats.add_writes(&tally);
                    registry.end_flush(self.key, outcome);
                    return Poll::Ready(Wake::Wrote);
                }
                Poll::Ready(Err(_)) => {
                    connection.write_failed = true;
                    return Poll::Ready(Wake::Failed);
                }
                Poll::Pending => {}
            }
        }
        if let Some(deadline) = self.deadline.as_mut()
            && Pin::new(deadline).poll(context).is_ready()
        {
            return Poll::Ready(Wake::Deadline);
        }
        let connection = &mut registry.connections[self.key];
        let readable = !self.closing.received
            && connection.outbound.queued_bytes() <= self.shard.config.outbound_queue_bytes;
        if readable {
            let mut scratch = self.shard.scratch.borrow_mut();
            match Pin::new(&mut *stream).poll_read(context, &mut scratch[..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Wake::EndOfStream),
                Poll::Ready(Ok(count)) => return Poll::Ready(Wake::Read(count)),
                Poll::Ready(Err(_)) => return Poll::Ready(Wake::Failed),
                Poll::Pending => {}
            }
        }
        if !connection
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(context.waker()))
        {
            connection.waker = Some(context.waker().clone());
        }
        Poll::Pending
    }

    /// Handles `count` fresh bytes in the shard's scratch buffer.
    fn process_scratch(&mut self, count: usize) {
        let shard = self.shard.clone();
        let mut scratch = shard.scratch.borrow_mut();
        let fresh = &mut scratch[..count];
        if self.input.is_empty() {
            // Common case: whole frames straight from the scratch buffer, no copy.
            let consumed = self.process_frames(fresh);
            if !self.closing.failed && consumed < fresh.len() {
                // Reserve room for the whole frame once, not on every read.
                self.input
                    .reserve(self.incomplete_frame_bytes.max(fresh.len() - consumed));
                self.input.extend_from_slice(&fresh[consumed..]);
            }
        } else {
            self.input.extend_from_slice(fresh);
            drop(scratch);
            let input = std::mem::take(&mut self.input);
            self.process_bytes(input);
        }
        self.flush();
    }

    /// Handles bytes that are already in a buffer of our own (`input`, or pipelined bytes).
    fn process_bytes(&mut self, mut bytes: Vec<u8>) {
        let consumed = self.process_frames(&mut bytes);
        bytes.drain(..consumed);
        if bytes.is_empty() {
            // An idle connection keeps no read buffer.
            bytes = Vec::new();
        } else {
            bytes.reserve(self.incomplete_frame_bytes.saturating_sub(bytes.len()));
        }
        self.input = bytes;
        self.flush();
    }

    /// Decodes and handles every complete frame at the start of `bytes`; returns how many bytes
    /// were consumed. Stops at the first protocol error (after queuing the close).
    fn process_frames(&mut self, bytes: &mut [u8]) -> usize {
        let mut offset = 0;
        self.incomplete_frame_bytes = 0;
        // Bounded: every iteration consumes at least one frame header or stops.
        while offset < bytes.len() && !self.closing.failed && !self.closing.received {
            let decoded = match self.decoder.decode(&mut bytes[offset..]) {
                Ok(decoded) => decoded,
                Err(error) => {
                    self.fail(&error);
                    break;
                }
            };
            match decoded {
                Decoded::Incomplete => {
                    if let Ok(Some(header)) = self.decoder.peek_header(&bytes[offset..]) {
                        self.incomplete_frame_bytes = header.frame_len() as usize;
                    }
                    break;
                }
                Decoded::Fragment { consumed } => offset += consumed,
                Decoded::Event { consumed, event } => {
                    offset += consumed;
                    let reply = respond(self.kind, self.closing.sent, event);
                    self.apply(reply);
                }
            }
        }
        offset
    }

    fn apply(&mut self, reply: Reply) {
        let mut registry = self.shard.registry.borrow_mut();
        match reply {
            Reply::None => {}
            Reply::Ignored => registry.stats.client_messages_ignored += 1,
            Reply::Frame(frame) => registry.queue(self.key, frame),
            Reply::CloseReceived(answer) => {
                self.closing.received = true;
                if let Some(answer) = answer {
                    registry.queue(self.key, answer);
                    drop(registry);
                    self.mark_close_sent(false);
                }
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): the close code of `error`, then no more reading.
    fn fail(&mut self, error: &ProtocolError) {
        let code = error.close_code();
        log::debug!("shard {}: closing with {code}: {error}", self.shard.id);
        self.send_close(code, &error.to_string(), false);
        self.closing.failed = true;
        self.closing.reason = Some(CloseReason::for_close_code(code));
    }

    /// Queues our close frame (after dropping unsent frames for a slow consumer).
    fn send_close(&mut self, code: u16, reason: &str, drop_queued: bool) {
        if self.closing.sent {
            return;
        }
        {
            let mut registry = self.shard.registry.borrow_mut();
            if drop_queued {
                let dropped = registry.outbound_mut(self.key).drop_unstarted();
                registry.stats.frames_dropped_slow += dropped as u64;
            }
            registry.queue(self.key, encode_close_frame(code, reason));
        }
        self.mark_close_sent(true);
        self.flush();
    }

    /// No more broadcasts once our close is queued; the deadline bounds the rest.
    fn mark_close_sent(&mut self, arm_deadline: bool) {
        self.closing.sent = true;
        let mut registry = self.shard.registry.borrow_mut();
        registry.connections[self.key].closing = true;
        registry.unsubscribe_all(self.key);
        if arm_deadline {
            self.deadline = Some(Timer::new(self.shard.config.close_timeout));
        }
    }

    fn flush(&mut self) {
        self.shard.registry.borrow_mut().flush(self.key);
    }

    /// Lets queued bytes (the close frame) drain within the close timeout, removes the
    /// connection from the registry, then half-closes and lingers.
    async fn finish(&mut self, stream: &mut TcpStream, reason: CloseReason) {
        if reason != CloseReason::ConnectionLost {
            let deadline = self
                .deadline
                .take()
                .unwrap_or_else(|| Timer::new(self.shard.config.close_timeout));
            let drained = poll_fn(|context| self.poll_drained(context, stream));
            futures_lite::future::or(drained, async {
                deadline.await;
            })
            .await;
        }
        {
            let mut registry = self.shard.registry.borrow_mut();
            registry.remove(self.key);
            registry.count_close(reason);
        }
        if reason != CloseReason::ConnectionLost {
            Box::pin(linger_close(stream)).await;
        }
    }

    /// Ready when the queue is empty or the socket is broken.
    fn poll_drained(&mut self, context: &mut Context<'_>, stream: &mut TcpStream) -> Poll<()> {
        // Bounded: each round writes at least one byte or returns.
        loop {
            let mut registry = self.shard.registry.borrow_mut();
            let connection = &mut registry.connections[self.key];
            if connection.outbound.is_empty() || connection.write_failed {
                return Poll::Ready(());
            }
            let head = connection.outbound.head_remaining().unwrap_or_default();
            match Pin::new(&mut *stream).poll_write(context, head) {
                Poll::Ready(Ok(written)) => {
                    connection.write_blocked = false;
                    connection.outbound.advance(written);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn stream_fd(stream: &TcpStream) -> std::os::fd::RawFd {
    std::os::fd::AsRawFd::as_raw_fd(stream)
}

/// What to do about one client event (a pure function of the event and the session).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Nothing to send.
    None,
    /// A message ringcast does not act on (counted).
    Ignored,
    /// Queue this frame.
    Frame(Bytes),
    /// The client's close arrived; queue the answer unless we already sent our close.
    CloseReceived(Option<Bytes>),
}

/// The text heartbeat of browsers, which cannot send ping frames (the seeds' convention).
const TEXT_PING: &[u8] = b"ping";

fn respond(kind: SessionKind, close_sent: bool, event: Event<'_>) -> Reply {
    match event {
        // RFC 6455 §5.5.3: a pong may be unsolicited; either way it proves liveness.
        Event::Pong(_) => Reply::None,
        // Once our close is sent, §5.5.1: "the endpoint ... MAY ignore" further data.
        _ if close_sent && !matches!(event, Event::Close(_)) => Reply::None,
        // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
        // response ... The Pong frame sent in response MUST have identical Application data".
        Event::Ping(payload) => Reply::Frame(encode_server_frame(OpCode::Pong, payload)),
        Event::Close(payload) => {
            Reply::CloseReceived((!close_sent).then(|| encode_close_reply(&payload)))
        }
        Event::Message {
            kind: data,
            payload,
        } => match kind {
            SessionKind::Echo => {
                let opcode = match data {
                    DataKind::Text => OpCode::Text,
                    DataKind::Binary => OpCode::Binary,
                };
                Reply::Frame(encode_server_frame(opcode, payload))
            }
            SessionKind::Subscriber if data == DataKind::Text && payload == TEXT_PING => {
                Reply::Frame(encode_server_frame(OpCode::Text, b"pong"))
            }
            SessionKind::Subscriber => Reply::Ignored,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::close::ClosePayload;

    #[test]
    fn ping_gets_a_pong_with_the_same_payload() {
        let reply = respond(SessionKind::Subscriber, false, Event::Ping(b"abc"));
        assert_eq!(reply, Reply::Frame(Bytes::from_static(b"\x8a\x03abc")));
    }

    #[test]
    fn text_ping_gets_text_pong() {
        let event = Event::Message {
            kind: DataKind::Text,
            payload: b"ping",
        };
        assert_eq!(
            respond(SessionKind::Subscriber, false, event),
            Reply::Frame(Bytes::from_static(b"\x81\x04pong"))
        );
        let other = Event::Message {
            kind: DataKind::Text,
            payload: b"hello",
        };
        assert_eq!(
            respond(SessionKind::Subscriber, false, other),
            Reply::Ignored
        );
    }

    #[test]
    fn echo_keeps_the_message_type() {
        let event = Event::Message {
            kind: DataKind::Binary,
            payload: &[0xff],
        };
        assert_eq!(
            respond(SessionKind::Echo, false, event),
            Reply::Frame(Bytes::from_static(b"\x82\x01\xff"))
        );
    }

    #[test]
    fn close_is_answered_once() {
        let close = ClosePayload {
            code: Some(1000),
            reason: "",
        };
        assert_eq!(
            respond(SessionKind::Echo, false, Event::Close(close)),
            Reply::CloseReceived(Some(Bytes::from_static(b"\x88\x02\x03\xe8")))
        );
        assert_eq!(
            respond(SessionKind::Echo, true, Event::Close(close)),
            Reply::CloseReceived(None)
        );
        assert_eq!(
            respond(SessionKind::Echo, true, Event::Ping(b"")),
            Reply::None
        );
    }
}

#[cfg(test)]
mod memory_budget {
    //! An idle connection's memory is mostly these structs (plus glommio's task header and its
    //! pending read poll): keep them from growing unnoticed.

    #[test]
    fn per_connection_structs_stay_small() {
        assert!(std::mem::size_of::<super::Session>() <= 128);
        // The task an idle connection keeps (its socket guard is one pointer).
        assert!(std::mem::size_of::<super::SessionTask<std::rc::Rc<()>>>() <= 256);
        assert!(std::mem::size_of::<crate::server::registry::Connection>() <= 128);
        assert!(std::mem::size_of::<crate::protocol::message::MessageDecoder>() <= 48);
    }
}
