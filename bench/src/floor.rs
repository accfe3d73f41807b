//! The floor: the kernel's own cost of fanning one frame out to N sockets.
//!
//! A tight loop on its own (pinned) thread accepts N connections, answers their upgrade with a
//! correct `101`, then per round builds ONE frame (the usual timestamp+sequence payload) and
//! writes it to every socket with a plain blocking `send()`: one frame per call, or with
//! `frames_per_send = K` the frames of K rounds in one call. No epoll, no queues, no per-socket
//! state beyond the fd: whatever a real server measures above this is its own overhead.
//! Blocking sends mean a client that falls behind slows the loop down (flow control), never a
//! lost frame; the clients account every frame exactly as for a real server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::{current_thread_id, monotonic_ns, pin_current_thread};
use crate::error::{BenchError, BenchResult};
use crate::histogram::{new_latency_histogram, record_latency_ns};
use crate::payload::{self, PayloadKind, Stamp};
use crate::server::thread_cpu_seconds;
use crate::ws::frame::{Opcode, encode_server_frame};
use crate::ws::handshake::{HEAD_BYTES_MAX, parse_client_request, server_response};

/// Epoch of the floor's frames (the clients start at 0 and move to this one).
pub const FLOOR_EPOCH: u8 = 1;
/// How long one handshake read may block.
const HANDSHAKE_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the floor waits for the start or finish command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// Floor settings.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    /// Connections to accept.
    pub connections: usize,
    /// Frames per send() call.
    pub frames_per_send: usize,
    /// Sends per second (0: as fast as the sockets take them).
    pub sends_per_s: f64,
    /// How long rounds run.
    pub duration: Duration,
    /// Payload size.
    pub payload_bytes: usize,
    /// Text or binary frames.
    pub payload_kind: PayloadKind,
    /// CPUs for the loop.
    pub cores: Option<Vec<usize>>,
    /// Give up accepting after this long.
    pub accept_timeout: Duration,
}

/// What the loop measured.
#[derive(Debug, Clone)]
pub struct FloorOutcome {
    /// Connections accepted and upgraded.
    pub accepted: u64,
    /// Upgrades that failed.
    pub handshake_errors: u64,
    /// Frames written to each socket.
    pub frames_per_connection: u64,
    /// send() batches (each K frames, to every socket).
    pub batches: u64,
    /// Sockets dropped after a send error.
    pub send_errors: u64,
    /// Seconds of the send loop.
    pub elapsed_s: f64,
    /// CPU seconds of the loop thread while sending.
    pub cpu_seconds: f64,
    /// Time to write one batch to all sockets (ns).
    pub batch_ns: Histogram<u64>,
    /// First error text.
    pub first_error: Option<String>,
}

/// Commands to the floor thread.
enum FloorCommand {
    /// Begin the rounds.
    Start,
    /// Close the sockets and exit.
    Finish,
}

/// A running floor server.
pub struct FloorServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// Upgraded connections so far.
    accepted: Arc<AtomicU64>,
    /// Commands.
    commands: Sender<FloorCommand>,
    /// The outcome, once the rounds ended.
    outcome: Receiver<FloorOutcome>,
    /// The thread.
    join: JoinHandle<()>,
}

impl FloorServer {
    /// Binds `listen` and starts accepting on the floor thread.
    pub fn start(listen: SocketAddr, config: FloorConfig) -> BenchResult<FloorServer> {
        let listener = bind_listener(listen, config.connections)
            .map_err(|error| BenchError::io(format!("binding the floor to {listen}"), error))?;
        let addr = listener
            .local_addr()
            .map_err(|error| BenchError::io("reading the floor address", error))?;
        let accepted = Arc::new(AtomicU64::new(0));
        let (commands, command_rx) = mpsc::channel();
        let (outcome_tx, outcome) = mpsc::channel();
        let thread_accepted = Arc::clone(&accepted);
        let join = std::thread::Builder::new()
            .name("floor".into())
            .spawn(move || floor_thread(listener, config, thread_accepted, command_rx, outcome_tx))
            .map_err(|error| BenchError::io("spawning the floor thread", error))?;
        Ok(FloorServer {
            addr,
            accepted,
            commands,
            outcome,
            join,
        })
    }

    /// Connections accepted and upgraded so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Runs the rounds and returns what they measured.
    pub fn run(&self) -> BenchResult<FloorOutcome> {
        self.commands
            .send(FloorCommand::Start)
            .map_err(|_| BenchError::Thread("the floor thread exited early".into()))?;
        self.outcome
            .recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| BenchError::Thread("the floor thread did not report".into()))
    }

    /// Closes the floor's sockets and joins its thread.
    pub fn finish(self) -> BenchResult<()> {
        let _ = self.commands.send(FloorCommand::Finish);
        self.join
            .join()
            .map_err(|_| BenchError::Thread("the floor thread panicked".into()))
    }
}

/// A listening socket with a backlog for `connections` (the kernel caps it at somaxconn).
fn bind_listener(listen: SocketAddr, connections: usize) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(connections.clamp(128, 65_535) as i32)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from(socket))
}

/// The floor thread: accept, wait for start, send rounds, report, wait for finish.
fn floor_thread(
    listener: TcpListener,
    config: FloorConfig,
    accepted: Arc<AtomicU64>,
    commands: Receiver<FloorCommand>,
    outcome: Sender<FloorOutcome>,
) {
    let mut first_error = None;
    if let Some(cores) = &config.cores
        && let Err(error) = pin_current_thread(cores)
    {
        first_error = Some(format!("pinning the floor thread: {error}"));
    }
    let deadline = Instant::now() + config.accept_timeout;
    let mut sockets = Vec::with_capacity(config.connections);
    let mut handshake_errors = 0;
    // Bounded by the connection count and the deadline.
    while sockets.len() < config.connections && Instant::now() < deadline {
        if let Ok(FloorCommand::Finish) = commands.try_recv() {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => match upgrade(stream) {
                Ok(stream) => {
                    sockets.push(stream);
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    handshake_errors += 1;
                    first_error.get_or_insert_with(|| format!("floor handshake: {error}"));
                }
            },
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => wait_readable(&listener),
            Err(error) => {
                first_error.get_or_insert_with(|| format!("floor accept: {error}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    drop(listener);
    match commands.recv_timeout(COMMAND_TIMEOUT) {
        Ok(FloorCommand::Start) => {}
        _ => return,
    }
    let mut result = send_rounds(&sockets, &config);
    result.accepted = sockets.len() as u64;
    result.handshake_errors = handshake_errors;
    result.first_error = result.first_error.or(first_error);
    let _ = outcome.send(result);
    let _ = commands.recv_timeout(COMMAND_TIMEOUT);
}

/// Sleeps until the listener is readable or 50 ms passed.
fn wait_readable(listener: &TcpListener) {
    let mut poll_fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut poll_fd, 1, 50) };
}

/// Reads the upgrade request and answers `101`; the socket is left blocking.
fn upgrade(mut stream: TcpStream) -> io::Result<TcpStream> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(HANDSHAKE_READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // Bounded by HEAD_BYTES_MAX.
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed during the handshake",
            ));
        }
        head.extend_from_slice(&chunk[..read]);
        match parse_client_request(&head) {
            Ok(Some(request)) => {
                stream.write_all(&server_response(&request.key))?;
                return Ok(stream);
            }
            Ok(None) if head.len() <= HEAD_BYTES_MAX => {}
            Ok(None) => return Err(io::Error::other("request head too large")),
            Err(error) => return Err(io::Error::other(error.to_string())),
        }
    }
}

/// Writes all of `bytes` with blocking send(MSG_NOSIGNAL) calls (one call unless the socket
/// buffer is full).
fn send_all(fd: i32, mut bytes: &[u8]) -> io::Result<()> {
    // Bounded: each iteration sends at least one byte or returns.
    while !bytes.is_empty() {
        // SAFETY: fd is an open socket owned by the caller; the pointer and length describe `bytes`.
        let sent =
            unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        bytes = &bytes[sent as usize..];
    }
    Ok(())
}

/// The measured loop: build one batch of K frames, write it to every socket, repeat.
fn send_rounds(sockets: &[TcpStream], config: &FloorConfig) -> FloorOutcome {
    let frames_per_send = config.frames_per_send.max(1);
    let mut batch = Vec::with_capacity(frames_per_send * (config.payload_bytes + 14));
    let mut payload = vec![0u8; config.payload_bytes];
    let opcode = if config.payload_kind.is_text() {
        Opcode::Text
    } else {
        Opcode::Binary
    };
    let mut outcome = FloorOutcome {
        accepted: 0,
        handshake_errors: 0,
        frames_per_connection: 0,
        batches: 0,
        send_errors: 0,
        elapsed_s: 0.0,
        cpu_seconds: 0.0,
        batch_ns: new_latency_histogram(),
        first_error: None,
    };
    let tid = current_thread_id();
    let cpu_start = thread_cpu_seconds(tid).unwrap_or(0.0);
    let start_ns = monotonic_ns();
    let duration_ns = config.duration.as_nanos() as u64;
    let mut alive: Vec<bool> = vec![true; sockets.len()];
    // Bounded by the duration.
    while monotonic_ns() - start_ns < duration_ns {
        if config.sends_per_s > 0.0 {
            let due_ns = start_ns + (outcome.batches as f64 / config.sends_per_s * 1e9) as u64;
            let now_ns = monotonic_ns();
            if due_ns > now_ns {
                std::thread::sleep(Duration::from_nanos(due_ns - now_ns));
            }
        }
        batch.clear();
        let sent_ns = monotonic_ns();
        for frame in 0..frames_per_send as u64 {
            let stamp = Stamp {
                epoch: FLOOR_EPOCH,
                channel_index: 0,
                publisher_index: 0,
                sequence: outcome.frames_per_connection + frame,
                sent_ns,
            };
            payload::encode(&mut payload, &stamp, config.payload_kind);
            encode_server_frame(&mut batch, opcode, &payload);
        }
        let batch_start_ns = monotonic_ns();
        for (stream, alive) in sockets
            .iter()
            .zip(alive.iter_mut())
            .filter(|(_, alive)| **alive)
        {
            if let Err(error) = send_all(stream.as_raw_fd(), &batch) {
                *alive = false;
                outcome.send_errors += 1;
                outcome
                    .first_error
                    .get_or_insert_with(|| format!("floor send: {error}"));
            }
        }
        record_latency_ns(&mut outcome.batch_ns, monotonic_ns() - batch_start_ns);
        outcome.frames_per_connection += frames_per_send as u64;
        outcome.batches += 1;
    }
    outcome.elapsed_s = (monotonic_ns() - start_ns) as f64 / 1e9;
    outcome.cpu_seconds = thread_cpu_seconds(tid).unwrap_or(0.0) - cpu_start;
    outcome
}
