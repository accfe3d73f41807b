//! The reactor: one task per shard that reads every WebSocket connection of the shard, decodes
//! what arrived (RFC 6455 codec, then the connection's wire protocol) and decides what to do.
//! It never writes: replies are queued through the registry (the connection's one owner) and
//! leave through the shard's one write path at the end of the round.
//!
//! No task per connection: an idle connection costs its registry entry and nothing in glommio.
//! The reactor sleeps until the shard's epoll set has events (see [`super::poller`]), then runs
//! one bounded round: take the events, read each ready connection a bounded number of times,
//! write what was queued, remove what ended.
//!
//! The sleep is bounded too (`WAKE_WAIT_MAX`): a wake-up lost anywhere on its way (epoll, the
//! POLL_ADD, the eventfd, glommio's read of it) would otherwise leave the connections it should
//! have announced unread until some unrelated event, or forever (seen as Autobahn 12/13 cases
//! that stopped mid-case and ended with a 1001 idle timeout). A round after the bound that finds
//! work counts the miss (`reactor_wakeups_missed`) and re-arms the wake-up path.
//!
//! A panic while one connection's input is handled is caught here: that connection is dropped
//! (counted as `handler_panics`, close reason `internal_error`) and the round goes on. Each
//! handler borrows the registry through a `RefCell` guard that unwinding releases, and the
//! registry's own operations keep its tables consistent at every step they can be interrupted.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::BufferedFile;

use super::registry::{ConnectionKey, PartialInput, Protocol, Registry, recv};
use super::shard::Shard;
use super::state::{CloseRequest, LifeEvent, Lifecycle, ReadState};
use crate::protocol::close::encode_close_reply;
use crate::protocol::message::{Decoded, Event, MessageDecoder};
use crate::telemetry::counters::Counter;
use crate::wire::raw::{self, RawRole, Reply};

/// Most epoll events taken per round.
const EVENTS_PER_ROUND: usize = 1024;
/// Most connections read per round (the rest stay listed for the next round).
const CONNECTIONS_PER_ROUND: usize = 1024;
/// Most reads (each up to the scratch buffer's size) of one connection per round.
const READS_PER_CONNECTION: usize = 4;
/// Longest the reactor sleeps without a wake-up before it looks at the epoll set anyway: the
/// most a lost wake-up can delay input. An idle shard pays one timer and one cancelled eventfd
/// read per interval (its ticker already wakes it four times as often).
const WAKE_WAIT_MAX: Duration = Duration::from_secs(1);

/// How the reactor's wait for a wake-up ended.
enum Wait {
    /// The eventfd was signalled.
    Woken,
    /// Reading the eventfd failed.
    Failed(glommio::GlommioError<()>),
    /// `WAKE_WAIT_MAX` passed without a wake-up.
    BoundRanOut,
}

/// The reactor task of `shard`; `eventfd` wakes it (see [`super::poller`]).
pub async fn run_reactor(shard: Rc<Shard>, eventfd: OwnedFd) {
    // SAFETY: `eventfd` is a descriptor we own; glommio takes it over and closes it.
    let wake = unsafe { BufferedFile::from_raw_fd(eventfd.into_raw_fd()) };
    let mut buffer = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_ROUND];
    let mut events = Vec::with_capacity(EVENTS_PER_ROUND);
    let mut ready = Vec::with_capacity(CONNECTIONS_PER_ROUND);
    loop {
        let mut bound_ran_out = false;
        if shard.registry.borrow().has_ready() {
            // Work left from the last round: let other tasks run first.
            glommio::executor().yield_task_queue_now().await;
        } else {
            let armed = shard.registry.borrow_mut().poller().arm();
            if let Err(error) = armed {
                log::error!("shard {}: cannot arm the reactor: {error}", shard.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
            match wait_for_wake(&wake).await {
                Wait::Woken => {}
                Wait::Failed(error) => {
                    log::error!("shard {}: reactor wake-up failed: {error}", shard.id);
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                Wait::BoundRanOut => bound_ran_out = true,
            }
        }
        let found_work = round(&shard, &mut events, &mut buffer, &mut ready);
        if bound_ran_out && found_work {
            wake_up_missed(&shard);
        }
        super::centrifugo::spawn_deferred(&shard);
        super::pusher_state::spawn_work(&shard);
        shard.flush_all().await;
    }
}

/// Waits for the eventfd, at most `WAKE_WAIT_MAX`. (When the bound wins, glommio cancels the
/// read; the round that follows looks at the epoll set either way.)
async fn wait_for_wake(wake: &BufferedFile) -> Wait {
    futures_lite::future::or(
        async {
            match wake.read_at(0, 8).await {
                Ok(_) => Wait::Woken,
                Err(error) => Wait::Failed(error),
            }
        },
        async {
            glommio::timer::sleep(WAKE_WAIT_MAX).await;
            Wait::BoundRanOut
        },
    )
    .await
}

/// A round after the bound found work that a wake-up should have announced: count it, and
/// replace the POLL_ADD that did not fire.
fn wake_up_missed(shard: &Shard) {
    let mut registry = shard.registry.borrow_mut();
    registry.stats.count(Counter::ReactorWakeupsMissed);
    log::warn!(
        "shard {}: ready sockets found after {WAKE_WAIT_MAX:?} without a wake-up; re-arming",
        shard.id
    );
    if let Err(error) = registry.poller().rearm() {
        log::error!("shard {}: cannot re-arm the reactor: {error}", shard.id);
    }
}

/// One bounded round: take the ready events, read the ready connections. Returns whether there
/// was anything to do (an event, or a connection to read).
fn round(
    shard: &Shard,
    events: &mut Vec<(super::poller::Token, super::poller::Readiness)>,
    buffer: &mut [libc::epoll_event],
    ready: &mut Vec<ConnectionKey>,
) -> bool {
    let now_ms = shard.now_ms();
    let took_events;
    {
        let mut registry = shard.registry.borrow_mut();
        events.clear();
        registry.poller().take_events(events, buffer);
        took_events = !events.is_empty();
        for (token, readiness) in events.drain(..) {
            registry.on_ready(token, readiness);
        }
        registry.take_ready(ready);
    }
    let found_work = took_events || !ready.is_empty();
    // Read at most CONNECTIONS_PER_ROUND now; the rest stay listed for the next round. (A
    // `drain(..).take(n)` would drop the rest from the list while they stay `Ready`, so no edge
    // would ever list them again: a lost wake-up.)
    let now_count = ready.len().min(CONNECTIONS_PER_ROUND);
    for &key in &ready[..now_count] {
        let handled = catch_unwind(AssertUnwindSafe(|| read_connection(shard, key, now_ms)));
        if handled.is_err() {
            log::error!(
                "shard {}: a connection's handler panicked; the connection is dropped",
                shard.id
            );
            shard.registry.borrow_mut().discard(key);
        }
    }
    if ready.len() > now_count {
        // The rest keep `Ready` and were taken from the list: list them again.
        let mut registry = shard.registry.borrow_mut();
        for &key in &ready[now_count..] {
            registry.relist_ready(key);
        }
    }
    ready.clear();
    shard.registry.borrow_mut().finish_ended(now_ms);
    found_work
}

/// Handles bytes that arrived behind the request head of a connection just registered (as a
/// read would). A panic here drops that connection only, as in a round.
pub fn handle_pipelined(shard: &Shard, key: ConnectionKey, bytes: &mut [u8], now_ms: u64) {
    let handled = catch_unwind(AssertUnwindSafe(|| {
        let mut registry = shard.registry.borrow_mut();
        handle_input(&mut registry, shard, key, bytes, now_ms);
    }));
    if handled.is_err() {
        shard.registry.borrow_mut().discard(key);
    }
}

/// Reads `key` until it would block (at most `READS_PER_CONNECTION` reads) and handles what
/// arrived.
fn read_connection(shard: &Shard, key: ConnectionKey, now_ms: u64) {
    let mut registry = shard.registry.borrow_mut();
    let mut scratch = shard.scratch.borrow_mut();
    for _ in 0..READS_PER_CONNECTION {
        let Some(connection) = registry.get(key) else {
            return;
        };
        if connection.read_state() != ReadState::Ready {
            return;
        }
        match recv(connection.fd(), &mut scratch[..]) {
            Ok(0) => {
                registry.set_read(key, ReadState::Done);
                registry.life(key, LifeEvent::PeerGone, now_ms);
                return;
            }
            Ok(count) => {
                registry.touch(key, now_ms);
                handle_input(&mut registry, shard, key, &mut scratch[..count], now_ms);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                registry.set_read(key, ReadState::Waiting);
                return;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                registry.set_read(key, ReadState::Done);
                registry.life(key, LifeEvent::PeerGone, now_ms);
                return;
            }
        }
    }
    // Budget spent with input possibly waiting: read on next round.
    registry.relist_ready(key);
}

/// Decodes and handles `fresh` bytes (after any unfinished frame kept from earlier reads). Only
/// the bytes of an unfinished frame are kept, in a buffer that grows with what was received.
fn handle_input(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    fresh: &mut [u8],
    now_ms: u64,
) {
    match registry.take_input(key) {
        None => {
            // Common case: whole frames straight from the scratch buffer, no copy.
            let mut decoder = registry.new_decoder(key);
            let consumed = handle_frames(registry, shard, key, &mut decoder, fresh, now_ms);
            keep_rest(registry, key, decoder, &fresh[consumed..]);
        }
        Some(mut input) => {
            input.bytes.extend_from_slice(fresh);
            let PartialInput {
                mut bytes,
                mut decoder,
            } = *input;
            let consumed = handle_frames(registry, shard, key, &mut decoder, &mut bytes, now_ms);
            bytes.drain(..consumed);
            keep_rest(registry, key, decoder, &bytes);
        }
    }
}

/// Keeps an unfinished frame or message for the next read; an idle connection keeps nothing.
fn keep_rest(registry: &mut Registry, key: ConnectionKey, decoder: MessageDecoder, rest: &[u8]) {
    let reading = registry
        .get(key)
        .is_some_and(|connection| connection.read_state() != ReadState::Done);
    if reading && (!rest.is_empty() || !decoder.is_idle()) {
        registry.keep_input(
            key,
            Box::new(PartialInput {
                bytes: rest.to_vec(),
                decoder,
            }),
        );
    }
}

/// Decodes and handles every complete frame at the start of `bytes`; returns how many bytes
/// were consumed. Stops at the first protocol error (after queuing the close) or once nothing
/// more is to be read.
fn handle_frames(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    decoder: &mut MessageDecoder,
    bytes: &mut [u8],
    now_ms: u64,
) -> usize {
    let mut offset = 0;
    // Bounded: every iteration consumes at least one frame header or stops.
    while offset < bytes.len() {
        let Some(connection) = registry.get(key) else {
            break;
        };
        if connection.read_state() == ReadState::Done {
            break;
        }
        match decoder.decode(&mut bytes[offset..]) {
            Err(error) => {
                let code = error.close_code();
                log::debug!("closing a connection with {code}: {error}");
                registry.life(key, LifeEvent::Fault { code }, now_ms);
                break;
            }
            Ok(Decoded::Incomplete) => break,
            Ok(Decoded::Fragment { consumed }) => offset += consumed,
            Ok(Decoded::Event { consumed, event }) => {
                offset += consumed;
                handle_event(registry, shard, key, event, now_ms);
                // The replies to what a client sends count against its outbound limit as
                // broadcasts do: one read full of pings must not queue thousands of pongs.
                if registry.over_queue_limit(key) {
                    registry.life(key, LifeEvent::Request(CloseRequest::SlowConsumer), now_ms);
                    break;
                }
            }
        }
    }
    offset
}

/// What one client event means for the connection.
fn handle_event(
    registry: &mut Registry,
    shard: &Shard,
    key: ConnectionKey,
    event: Event<'_>,
    now_ms: u64,
) {
    let Some(connection) = registry.get(key) else {
        return;
    };
    let open = connection.life() == Lifecycle::Open;
    let handler = match connection.protocol() {
        Protocol::Raw(role) => Handler::Raw(*role),
        Protocol::Pusher(_) => Handler::Pusher,
        Protocol::Centrifugo(_) => Handler::Centrifugo,
        Protocol::RawStream(_) => Handler::Raw(RawRole::Subscriber),
    };
    match event {
        // RFC 6455 §5.5.3: a pong may be unsolicited; either way it proves liveness.
        Event::Pong(_) => {}
        Event::Close(payload) => {
            if open {
                // RFC 6455 §5.5.1: the endpoint "typically echos the status code it received".
                registry.queue(key, encode_close_reply(&payload));
            }
            registry.life(key, LifeEvent::CloseReceived, now_ms);
        }
        // Once our close is sent, §5.5.1: the endpoint "MAY ignore" further data.
        _ if !open => {}
        Event::Ping(payload) => apply(registry, key, raw::answer_ping(payload)),
        Event::Message { kind, payload } => {
            crate::faults::on_client_message(payload);
            match handler {
                // Echoes (Autobahn's 12.* and 13.* come through here) are compressed for a
                // client that negotiated permessage-deflate.
                Handler::Raw(role) => match raw::answer_message(role, kind, payload) {
                    Reply::Frame(frame) if role == RawRole::Echo => {
                        registry.queue_compressible(key, frame)
                    }
                    reply => apply(registry, key, reply),
                },
                Handler::Pusher => {
                    super::pusher::handle_message(registry, shard, key, kind, payload, now_ms)
                }
                Handler::Centrifugo => {
                    super::centrifugo::handle_message(registry, shard, key, kind, payload, now_ms)
                }
            }
        }
    }
}

/// Which protocol handles a connection's data messages.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Raw(RawRole),
    Pusher,
    Centrifugo,
}

fn apply(registry: &mut Registry, key: ConnectionKey, reply: Reply) {
    match reply {
        Reply::None => {}
        Reply::Ignored => registry.stats.count(Counter::ClientMessagesIgnored),
        Reply::Frame(frame) => registry.queue(key, frame),
    }
}
