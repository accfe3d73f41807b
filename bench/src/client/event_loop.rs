//! One client thread: an epoll (mio) loop over its share of the connections.
//!
//! The thread opens its connections at its share of the ramp rate, answers pings, accounts every
//! message, churns connections when asked, and answers commands from the scenario between
//! polls. All per-connection state is in `Connection` (small) and in `Accounting` (flat arrays);
//! the only large buffer is the thread's single read buffer. Every loop is bounded: events per
//! poll, reads per event, connects per iteration, commands per iteration.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::accounting::{Accounting, Receiver as AccountedReceiver, ThreadReport};
use super::connection::{CloseReason, Connection, Phase, Progress, Wire, process_bytes};
use super::{ClientConfig, ThreadStatus};
use crate::clock::{monotonic_ns, pin_current_thread};
use crate::ws::handshake::client_request;

/// Events handled per poll.
const EVENTS_PER_POLL: usize = 1024;
/// Reads of one socket per readiness event before it is put back in line.
const READS_PER_EVENT_MAX: usize = 8;
/// Connects started per loop iteration (keeps event handling responsive during the ramp).
const CONNECTS_PER_ITERATION_MAX: usize = 256;
/// Connects (TCP plus handshake) in flight per thread.
const CONNECTS_IN_FLIGHT_MAX: usize = 2048;
/// Commands handled per loop iteration.
const COMMANDS_PER_ITERATION_MAX: usize = 8;
/// Longest sleep in poll, so commands are seen quickly.
const POLL_TIMEOUT_MAX: Duration = Duration::from_millis(10);
/// How often connect timeouts are checked.
const TIMEOUT_SCAN_INTERVAL_MS: u32 = 100;
/// Smallest shared read buffer.
const READ_BUFFER_BYTES_MIN: usize = 256 * 1024;

/// Requests from the scenario to a client thread.
pub enum Command {
    /// Close the epoch: report against `expected` (sent per stream) and start `next_epoch`.
    Snapshot {
        /// Messages sent per stream id (channel * publishers + publisher).
        expected: Arc<Vec<u64>>,
        /// Epoch of the next measurement.
        next_epoch: u8,
        /// Where the report goes.
        reply: Sender<SnapshotReply>,
    },
    /// Replace connections: `cycles` disconnect+reconnect pairs at `rate_per_s` (this thread's share).
    StartChurn {
        /// Cycles per second.
        rate_per_s: f64,
        /// Cycles in total.
        cycles: u64,
    },
    /// Close every connection, then acknowledge.
    CloseAll {
        /// Acknowledgement.
        reply: Sender<()>,
    },
    /// Leave the loop.
    Stop,
}

/// A thread's answer to `Snapshot`.
pub struct SnapshotReply {
    /// Messages of the epoch.
    pub report: ThreadReport,
    /// Connection life-cycle counters since the start.
    pub connections: ConnectionCounters,
    /// First connect or socket error seen, for the summary (e.g. "Too many open files").
    pub first_error: Option<String>,
}

/// Connection life-cycle counters (cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConnectionCounters {
    /// Connects started (including retries and churn).
    pub connect_attempts: u64,
    /// Handshakes completed.
    pub opened: u64,
    /// Of those, re-opened after churn.
    pub reopened_after_churn: u64,
    /// TCP connects that failed (refused, reset, no fds).
    pub connect_errors: u64,
    /// Upgrades refused or malformed.
    pub handshake_errors: u64,
    /// Connects plus handshakes slower than the timeout.
    pub timeouts: u64,
    /// Connections given up after all attempts.
    pub failed: u64,
    /// Open connections the server closed with a close frame.
    pub closed_by_server_frame: u64,
    /// Open connections the server closed without a close frame.
    pub closed_by_server_eof: u64,
    /// Open connections that hit a socket error.
    pub socket_errors: u64,
    /// Open connections closed for a protocol violation by the server.
    pub protocol_errors: u64,
    /// Open connections closed because pongs could not be written.
    pub outbound_overflows: u64,
    /// Connections closed by churn.
    pub closed_by_churn: u64,
}

impl ConnectionCounters {
    /// Adds another thread's counters.
    pub fn add(&mut self, other: &ConnectionCounters) {
        self.connect_attempts += other.connect_attempts;
        self.opened += other.opened;
        self.reopened_after_churn += other.reopened_after_churn;
        self.connect_errors += other.connect_errors;
        self.handshake_errors += other.handshake_errors;
        self.timeouts += other.timeouts;
        self.failed += other.failed;
        self.closed_by_server_frame += other.closed_by_server_frame;
        self.closed_by_server_eof += other.closed_by_server_eof;
        self.socket_errors += other.socket_errors;
        self.protocol_errors += other.protocol_errors;
        self.outbound_overflows += other.outbound_overflows;
        self.closed_by_churn += other.closed_by_churn;
    }
}

/// Churn in progress.
struct Churn {
    /// Cycles per second for this thread.
    rate_per_s: f64,
    /// Cycles this thread must do.
    cycles_total: u64,
    /// Cycles started.
    cycles_started: u64,
    /// When churn began.
    since: Instant,
    /// Next slot to consider for replacement.
    cursor: usize,
}

/// Why a connection is closed by us, so the counters stay honest.
enum OurClose {
    /// Churn replaced it.
    Churn,
    /// The scenario closed everything.
    Shutdown,
}

/// One client thread's state.
pub struct ClientThread {
    /// Shared run configuration.
    config: Arc<ClientConfig>,
    /// This thread's index.
    thread_index: usize,
    /// Progress counters read by the scenario.
    status: Arc<Vec<ThreadStatus>>,
    /// The epoll instance.
    poll: Poll,
    /// Connection slots; slot j is global connection j * threads + thread_index.
    connections: Vec<Connection>,
    /// Message accounting.
    accounting: Accounting,
    /// Slots waiting for a connect (ramp order, then retries).
    pending_connects: VecDeque<usize>,
    /// Slots whose reads were cut short and must be read again.
    requeued: Vec<usize>,
    /// Shared read buffer.
    read_buffer: Vec<u8>,
    /// Largest frame payload accepted.
    payload_bytes_max: usize,
    /// Connects started by the ramp pacer.
    ramp_started: u64,
    /// Connects (TCP plus handshake) in flight.
    in_flight: usize,
    /// Open connections.
    open: u64,
    /// Life-cycle counters.
    counters: ConnectionCounters,
    /// First error text seen.
    first_error: Option<String>,
    /// Churn in progress.
    churn: Option<Churn>,
    /// Nonce generation counter (every handshake gets a fresh key).
    generation: u64,
    /// xorshift state for mask keys.
    rng: u64,
    /// Thread start, for the ramp pacer and millisecond timestamps.
    started: Instant,
    /// Last timeout scan (ms since start).
    last_timeout_scan_ms: u32,
}

impl ClientThread {
    /// Builds the thread's state (runs on the thread itself, after pinning).
    pub fn new(
        config: Arc<ClientConfig>,
        thread_index: usize,
        status: Arc<Vec<ThreadStatus>>,
    ) -> io::Result<Self> {
        if let Some(cores) = &config.cores {
            pin_current_thread(&[cores[thread_index % cores.len()]])?;
        }
        let threads = config.threads;
        let slots = (config.connections + threads - 1 - thread_index) / threads;
        let channels = config.channel_paths.len();
        let connections: Vec<Connection> = (0..slots)
            .map(|slot| Connection::new(((slot * threads + thread_index) % channels) as u32))
            .collect();
        // Raw: the payload, or a control frame (RFC 6455 §5.5: at most 125 bytes). Pusher: the
        // payload inside its envelope, or a protocol message.
        let payload_bytes_max = match config.pusher_subscriptions {
            Some(_) => config.payload_bytes + crate::pusher::ENVELOPE_BYTES_MAX,
            None => config.payload_bytes.max(125),
        };
        let mut accounting = Accounting::new(
            slots,
            channels,
            config.publishers,
            config.payload_bytes,
            config.expected_opcode,
            config.broadcasts_tracked_max,
        );
        if config.deflate {
            accounting.enable_deflate();
        }
        Ok(ClientThread {
            thread_index,
            status,
            poll: Poll::new()?,
            pending_connects: (0..slots).collect(),
            connections,
            accounting,
            requeued: Vec::new(),
            read_buffer: vec![0u8; READ_BUFFER_BYTES_MIN.max(2 * (payload_bytes_max + 14))],
            payload_bytes_max,
            ramp_started: 0,
            in_flight: 0,
            open: 0,
            counters: ConnectionCounters::default(),
            first_error: None,
            churn: None,
            generation: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (thread_index as u64 + 1),
            started: Instant::now(),
            last_timeout_scan_ms: 0,
            config,
        })
    }

    /// Runs until `Command::Stop` (or the scenario goes away).
    pub fn run(mut self, commands: Receiver<Command>) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            if !self.handle_commands(&commands) {
                break;
            }
            self.start_due_connects();
            self.churn_due();
            self.scan_timeouts();
            let timeout = if !self.requeued.is_empty() {
                Duration::ZERO
            } else if !self.pending_connects.is_empty() {
                Duration::from_millis(1)
            } else {
                POLL_TIMEOUT_MAX
            };
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    self.note_error(&error.to_string());
                }
                continue;
            }
            for event in events.iter() {
                self.handle_event(event.token().0, event.is_writable());
            }
            for slot in std::mem::take(&mut self.requeued) {
                self.connections[slot].requeued = false;
                if self.connections[slot].stream.is_some() {
                    self.read_available(slot);
                }
            }
            self.publish_status();
        }
        self.publish_status();
    }

    /// Handles queued commands; false means stop.
    fn handle_commands(&mut self, commands: &Receiver<Command>) -> bool {
        for _ in 0..COMMANDS_PER_ITERATION_MAX {
            let command = match commands.try_recv() {
                Ok(command) => command,
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            };
            match command {
                Command::Snapshot {
                    expected,
                    next_epoch,
                    reply,
                } => {
                    let receivers =
                        self.connections
                            .iter()
                            .enumerate()
                            .map(|(slot, connection)| AccountedReceiver {
                                slot,
                                channel_index: connection.channel_index,
                                accounted: connection.accounted,
                            });
                    let report = self
                        .accounting
                        .finish_epoch(receivers, &expected, next_epoch);
                    let _ = reply.send(SnapshotReply {
                        report,
                        connections: self.counters,
                        first_error: self.first_error.clone(),
                    });
                }
                Command::StartChurn { rate_per_s, cycles } => {
                    self.churn = Some(Churn {
                        rate_per_s,
                        cycles_total: cycles,
                        cycles_started: 0,
                        since: Instant::now(),
                        cursor: 0,
                    });
                }
                Command::CloseAll { reply } => {
                    self.pending_connects.clear();
                    self.churn = None;
                    for slot in 0..self.connections.len() {
                        if self.connections[slot].stream.is_some() {
                            self.close_ours(slot, OurClose::Shutdown);
                        }
                    }
                    self.publish_status();
                    let _ = reply.send(());
                }
                Command::Stop => return false,
            }
        }
        true
    }

    /// Milliseconds since the thread started.
    fn now_ms(&self) -> u32 {
        self.started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32
    }

    /// Starts connects the ramp rate allows.
    fn start_due_connects(&mut self) {
        let rate_per_s = self.config.ramp_rate_per_s / self.config.threads as f64;
        let allowance = (rate_per_s * self.started.elapsed().as_secs_f64()) as u64 + 1;
        for _ in 0..CONNECTS_PER_ITERATION_MAX {
            if self.ramp_started >= allowance || self.in_flight >= CONNECTS_IN_FLIGHT_MAX {
                return;
            }
            let Some(slot) = self.pending_connects.pop_front() else {
                return;
            };
            self.ramp_started += 1;
            self.start_connect(slot);
        }
    }

    /// Opens a non-blocking socket for `slot`, bound to its source address, and connects it.
    fn start_connect(&mut self, slot: usize) {
        let global = slot * self.config.threads + self.thread_index;
        self.generation += 1;
        let nonce = ((global as u64) << 24) ^ self.generation;
        self.counters.connect_attempts += 1;
        let connection = &mut self.connections[slot];
        connection.attempts = connection.attempts.saturating_add(1);
        connection.nonce = nonce;
        let source = (!self.config.source_ips.is_empty())
            .then(|| self.config.source_ips[global % self.config.source_ips.len()]);
        match open_socket(self.config.server_addr, source) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                );
                if let Err(error) = registered {
                    self.fail_attempt(slot, CloseReason::Connect(error));
                    return;
                }
                let now_ms = self.now_ms();
                let connection = &mut self.connections[slot];
                connection.stream = Some(stream);
                connection.phase = Phase::Connecting;
                connection.phase_since_ms = now_ms;
                self.in_flight += 1;
            }
            Err(error) => {
                self.in_flight += 1;
                self.fail_attempt(slot, CloseReason::Connect(error));
            }
        }
    }

    /// Dispatches one readiness event.
    fn handle_event(&mut self, slot: usize, writable: bool) {
        let Some(connection) = self.connections.get_mut(slot) else {
            return;
        };
        match connection.phase {
            Phase::Connecting => self.finish_connect(slot),
            Phase::Handshaking
            | Phase::PusherConnecting
            | Phase::PusherSubscribing
            | Phase::Open => {
                if writable && !connection.outbound.is_empty() && !self.flush(slot) {
                    return;
                }
                self.read_available(slot);
            }
            Phase::Waiting | Phase::Closed => {}
        }
    }

    /// Completes a non-blocking connect and sends the upgrade request.
    fn finish_connect(&mut self, slot: usize) {
        let connection = &mut self.connections[slot];
        let stream = connection
            .stream
            .as_mut()
            .expect("a connecting slot has a socket");
        match stream.take_error() {
            Ok(Some(error)) | Err(error) => {
                return self.fail_attempt(slot, CloseReason::Connect(error));
            }
            Ok(None) => {}
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotConnected => return,
            Err(error) => return self.fail_attempt(slot, CloseReason::Connect(error)),
        }
        let path = &self.config.channel_paths[connection.channel_index as usize];
        connection.outbound = client_request(
            &self.config.host_header,
            path,
            connection.nonce,
            self.config.deflate,
        );
        connection.phase = Phase::Handshaking;
        if self.flush(slot) {
            self.read_available(slot);
        }
    }

    /// Writes queued bytes; false if the connection was closed on the way.
    fn flush(&mut self, slot: usize) -> bool {
        let connection = &mut self.connections[slot];
        let Some(stream) = connection.stream.as_mut() else {
            return false;
        };
        // Bounded: each iteration writes at least one byte or leaves.
        while !connection.outbound.is_empty() {
            match stream.write(&connection.outbound) {
                Ok(0) => break,
                Ok(written) => {
                    connection.outbound.drain(..written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.close_unexpected(slot, CloseReason::Socket(error));
                    return false;
                }
            }
        }
        if connection.outbound.is_empty() && connection.outbound.capacity() > 0 {
            connection.outbound = Vec::new();
        }
        true
    }

    /// Reads and processes what the socket has, a bounded number of times.
    fn read_available(&mut self, slot: usize) {
        for _ in 0..READS_PER_EVENT_MAX {
            let mask_key = self.next_mask_key();
            let connection = &mut self.connections[slot];
            let Some(stream) = connection.stream.as_mut() else {
                return;
            };
            let carried = connection.partial.len();
            self.read_buffer[..carried].copy_from_slice(&connection.partial);
            let space = self.read_buffer.len() - carried;
            let read = match stream.read(&mut self.read_buffer[carried..]) {
                Ok(0) => return self.close_unexpected(slot, CloseReason::Eof),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return self.close_unexpected(slot, CloseReason::Socket(error)),
            };
            let data = &self.read_buffer[..carried + read];
            let wire = match &self.config.pusher_subscriptions {
                Some(subscriptions) => {
                    Wire::Pusher(&subscriptions[connection.channel_index as usize])
                }
                None => Wire::Raw,
            };
            let progress = process_bytes(
                connection,
                slot,
                data,
                monotonic_ns(),
                &mut self.accounting,
                self.payload_bytes_max,
                mask_key,
                wire,
            );
            match progress {
                Ok(Progress::Consumed { consumed, opened }) => {
                    connection.keep_partial(&data[consumed..]);
                    if opened {
                        self.on_opened(slot);
                    }
                    if !self.connections[slot].outbound.is_empty() && !self.flush(slot) {
                        return;
                    }
                }
                Ok(Progress::Closing) => {
                    self.flush(slot);
                    return self.close_unexpected(slot, CloseReason::CloseFrame);
                }
                Err(reason) => return self.close_unexpected(slot, reason),
            }
            // A short read drained the socket; the next arrival raises a new edge.
            if read < space {
                return;
            }
        }
        if !self.connections[slot].requeued {
            self.connections[slot].requeued = true;
            self.requeued.push(slot);
        }
    }

    /// Bookkeeping when a handshake completes.
    fn on_opened(&mut self, slot: usize) {
        self.in_flight -= 1;
        self.open += 1;
        self.counters.opened += 1;
        let connection = &mut self.connections[slot];
        connection.attempts = 0;
        if connection.churned {
            self.counters.reopened_after_churn += 1;
            self.status[self.thread_index]
                .churn_cycles
                .fetch_add(1, Ordering::Relaxed);
        } else {
            connection.accounted = true;
        }
    }

    /// Ends a connect attempt; retries while attempts remain.
    fn fail_attempt(&mut self, slot: usize, reason: CloseReason) {
        match &reason {
            CloseReason::Connect(error) | CloseReason::Socket(error) => {
                self.counters.connect_errors += 1;
                self.note_error(&error.to_string());
            }
            CloseReason::Timeout => self.counters.timeouts += 1,
            other => {
                self.counters.handshake_errors += 1;
                self.note_error(&other.to_string());
            }
        }
        self.drop_socket(slot);
        self.in_flight -= 1;
        let connection = &mut self.connections[slot];
        if u32::from(connection.attempts) < self.config.connect_attempts_max {
            connection.phase = Phase::Waiting;
            self.pending_connects.push_back(slot);
        } else {
            connection.phase = Phase::Closed;
            self.counters.failed += 1;
            self.status[self.thread_index]
                .failed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The server (or the network) ended a connection.
    fn close_unexpected(&mut self, slot: usize, reason: CloseReason) {
        if self.connections[slot].phase != Phase::Open {
            return self.fail_attempt(slot, reason);
        }
        match &reason {
            CloseReason::CloseFrame => self.counters.closed_by_server_frame += 1,
            CloseReason::Eof => self.counters.closed_by_server_eof += 1,
            CloseReason::Protocol(_) => self.counters.protocol_errors += 1,
            CloseReason::OutboundOverflow => self.counters.outbound_overflows += 1,
            _ => self.counters.socket_errors += 1,
        }
        self.note_error(&reason.to_string());
        self.status[self.thread_index]
            .closed_unexpectedly
            .fetch_add(1, Ordering::Relaxed);
        self.drop_socket(slot);
        self.open -= 1;
        self.connections[slot].phase = Phase::Closed;
    }

    /// We end a connection (churn or shutdown).
    fn close_ours(&mut self, slot: usize, why: OurClose) {
        let phase = self.connections[slot].phase;
        self.drop_socket(slot);
        match phase {
            Phase::Open => self.open -= 1,
            phase if phase.is_connecting() => self.in_flight -= 1,
            _ => {}
        }
        self.connections[slot].phase = Phase::Closed;
        if let OurClose::Churn = why {
            self.counters.closed_by_churn += 1;
        }
    }

    /// Deregisters and closes the socket and frees the buffers of `slot`.
    fn drop_socket(&mut self, slot: usize) {
        let connection = &mut self.connections[slot];
        if let Some(mut stream) = connection.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        connection.partial = Vec::new();
        connection.outbound = Vec::new();
    }

    /// Fails connects and handshakes older than the timeout.
    fn scan_timeouts(&mut self) {
        let now_ms = self.now_ms();
        if self.in_flight == 0
            || now_ms.saturating_sub(self.last_timeout_scan_ms) < TIMEOUT_SCAN_INTERVAL_MS
        {
            return;
        }
        self.last_timeout_scan_ms = now_ms;
        let timeout_ms = self
            .config
            .connect_timeout
            .as_millis()
            .min(u128::from(u32::MAX)) as u32;
        for slot in 0..self.connections.len() {
            let connection = &self.connections[slot];
            if connection.phase.is_connecting()
                && now_ms.saturating_sub(connection.phase_since_ms) > timeout_ms
            {
                self.fail_attempt(slot, CloseReason::Timeout);
            }
        }
    }

    /// Replaces open connections at the churn rate.
    fn churn_due(&mut self) {
        let Some(churn) = self.churn.as_ref() else {
            return;
        };
        let due = ((churn.rate_per_s * churn.since.elapsed().as_secs_f64()) as u64 + 1)
            .min(churn.cycles_total);
        let (mut started, mut cursor) = (churn.cycles_started, churn.cursor);
        let slots = self.connections.len();
        let mut scanned = 0;
        // Bounded by one pass over the slots and by the connects in flight.
        while started < due && scanned < slots && self.in_flight < CONNECTS_IN_FLIGHT_MAX {
            let slot = cursor % slots;
            cursor += 1;
            scanned += 1;
            if self.connections[slot].phase != Phase::Open {
                continue;
            }
            started += 1;
            self.close_ours(slot, OurClose::Churn);
            self.accounting.reset_slot(slot);
            let connection = &mut self.connections[slot];
            connection.accounted = false;
            connection.churned = true;
            connection.attempts = 0;
            self.start_connect(slot);
        }
        if let Some(churn) = self.churn.as_mut() {
            churn.cycles_started = started;
            churn.cursor = cursor;
        }
    }

    /// Publishes progress counters for the scenario.
    fn publish_status(&self) {
        let status = &self.status[self.thread_index];
        status.open.store(self.open, Ordering::Relaxed);
        status
            .deliveries
            .store(self.accounting.deliveries(), Ordering::Relaxed);
        status.in_flight.store(
            self.in_flight as u64 + self.pending_connects.len() as u64,
            Ordering::Relaxed,
        );
    }

    /// Keeps the first error text for the summary.
    fn note_error(&mut self, text: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(text.to_owned());
        }
    }

    /// A fresh masking key (xorshift64; RFC 6455 wants unpredictability against proxies, not
    /// cryptographic strength, and there is no proxy on loopback).
    fn next_mask_key(&mut self) -> [u8; 4] {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_ne_bytes()
    }
}

/// Creates a non-blocking TCP socket, binds it to `source` (port chosen at connect time) and
/// starts connecting to `server`.
fn open_socket(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = source {
        if source.is_ipv4() {
            // IP_BIND_ADDRESS_NO_PORT: pick the port at connect(), from the 4-tuple, so one source
            // address serves ~64k connections per destination instead of sharing one port range.
            let enable: libc::c_int = 1;
            // SAFETY: valid fd, option value is a c_int of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&enable as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}
