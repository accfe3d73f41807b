//! Publishers: K keep-alive connections (HTTP or Redis RESP) driven at a fixed rate on one thread.
//!
//! Each connection has at most one request in flight, so the messages of one publisher reach the
//! server in order and every (channel, publisher) stream can be checked for reordering at the
//! receivers. Message `i` goes to channel `i mod M` on whichever connection is idle; its
//! sequence number is the next one of that (channel, publisher) stream. The send timestamp is
//! written into the payload just before the write. When every connection is busy the schedule
//! falls behind: the backlog is reported (`backlog_max`), never hidden.
//!
//! HTTP answers are counted (200 / 413 / 503 / other) but loss is decided only by what
//! subscribers receive.
//!
//! Pusher triggers (`--protocol pusher`) are whole requests built per message: the body carries
//! the payload and is signed (`body_md5`, `auth_signature`), so nothing can be prebuilt. Servers
//! that close the connection after every API answer (soketi, Sockudo: `Connection: close`) get
//! a fresh connection after each answer; those reconnects are counted apart and are not errors.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::error::{BenchError, BenchResult};
use crate::histogram::{LatencySummary, new_latency_histogram, record_latency_ns, summarize};
use crate::payload::{self, PayloadKind, Stamp};
use crate::pusher::{self, PusherApp};

/// Largest response head or body accepted (bounds the inbound buffer).
const INBOUND_BYTES_MAX: usize = 64 * 1024;
/// Blocking connect timeout for publisher connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After the schedule ends, how long answers to in-flight requests are awaited.
const RESPONSE_GRACE: Duration = Duration::from_secs(5);
/// Longest poll sleep.
const POLL_TIMEOUT_MAX: Duration = Duration::from_millis(10);
/// Reconnects per connection and run before the run fails.
const RECONNECTS_MAX: u32 = 100;
/// A connection idle this long may have been closed by the server's keep-alive timeout just as
/// we wrote to it; a request that fails on it before any answer byte is sent again once.
const STALE_IDLE_NS: u64 = 1_000_000_000;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub enum PublishTarget {
    /// `POST /publish/{channel}`.
    Http {
        /// Server address.
        addr: SocketAddr,
        /// `Host` header.
        host_header: String,
    },
    /// Pusher's signed `POST /apps/{id}/events`.
    Pusher {
        /// Server address.
        addr: SocketAddr,
        /// `Host` header.
        host_header: String,
        /// The application whose secret signs the requests.
        app: PusherApp,
    },
    /// `PUBLISH {prefix}:broadcast:{channel}`.
    Redis {
        /// Redis address.
        addr: SocketAddr,
        /// Channel prefix (`ws` by default).
        prefix: String,
    },
}

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Target.
    pub target: PublishTarget,
    /// Connections (one request in flight each).
    pub publishers: usize,
    /// Channel names (index = channel index in the payload).
    pub channel_names: Vec<String>,
    /// Payload size.
    pub payload_bytes: usize,
    /// Text or binary payload.
    pub payload_kind: PayloadKind,
}

/// Answers received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResponseCounters {
    /// HTTP 200 or a Redis integer reply.
    pub ok: u64,
    /// HTTP 413: payload over the server's limit.
    pub too_large: u64,
    /// HTTP 503: server overloaded.
    pub overloaded: u64,
    /// Any other status or a Redis error reply.
    pub other: u64,
    /// Requests whose connection failed before an answer.
    pub connection_errors: u64,
    /// Requests still unanswered when the grace period ended.
    pub unanswered: u64,
    /// Idle connections the server closed (keep-alive timeout), replaced before use.
    pub idle_reconnects: u64,
    /// Requests sent again because their idle connection was closed under them (a duplicate
    /// delivery, if the server did publish the first copy, is counted by the receivers).
    pub stale_retries: u64,
    /// Connections replaced because the answer said `Connection: close` (soketi and Sockudo
    /// close after every API answer); not errors.
    pub closed_after_answer: u64,
}

/// Results of one publishing run.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// Epoch stamped into the payloads.
    pub epoch: u8,
    /// Target rate.
    pub rate_target_per_s: f64,
    /// Messages written (the loss baseline).
    pub published: u64,
    /// Messages written per stream id (channel * publishers + publisher).
    #[serde(skip)]
    pub sent_per_stream: Vec<u64>,
    /// Seconds the schedule ran.
    pub elapsed_s: f64,
    /// `published / elapsed_s`.
    pub rate_achieved_per_s: f64,
    /// Most messages the schedule was behind (all connections busy).
    pub backlog_max: u64,
    /// Answers.
    pub responses: ResponseCounters,
    /// Reconnects during the run.
    pub reconnects: u64,
    /// Request->answer round trip.
    pub round_trip: LatencySummary,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Ready for a request.
    Idle,
    /// Request written (or being written), waiting for the answer.
    Busy,
}

/// One publisher connection.
struct PublisherConnection {
    /// The socket.
    stream: TcpStream,
    /// Idle or busy.
    state: State,
    /// Request bytes; `written` of them are sent.
    outbound: Vec<u8>,
    /// Bytes of `outbound` already written.
    written: usize,
    /// Answer bytes so far.
    inbound: Vec<u8>,
    /// When the current request was stamped.
    sent_ns: u64,
    /// When the connection last became idle.
    idle_since_ns: u64,
    /// The current request was already sent again once.
    retried: bool,
}

/// K connected publishers.
pub struct Publisher {
    /// Settings.
    config: PublisherConfig,
    /// Poll instance for the connections.
    poll: Poll,
    /// Connections, token = index.
    connections: Vec<PublisherConnection>,
    /// Prebuilt request prefix per channel (HTTP head or RESP up to the payload length).
    request_prefixes: Vec<Vec<u8>>,
    /// Bytes after the payload (RESP `\r\n`, nothing for HTTP).
    request_suffix: &'static [u8],
}

impl Publisher {
    /// Connects `publishers` connections to the target.
    pub fn connect(config: PublisherConfig) -> BenchResult<Publisher> {
        if config.publishers == 0 || config.publishers > usize::from(u16::MAX) {
            return Err(BenchError::Config(
                "--publishers must be in 1..=65535".into(),
            ));
        }
        let poll =
            Poll::new().map_err(|error| BenchError::io("creating the publisher poll", error))?;
        let request_prefixes = config
            .channel_names
            .iter()
            .map(|name| {
                request_prefix(
                    &config.target,
                    name,
                    config.payload_bytes,
                    config.payload_kind,
                )
            })
            .collect();
        let request_suffix: &'static [u8] = match config.target {
            PublishTarget::Http { .. } | PublishTarget::Pusher { .. } => b"",
            PublishTarget::Redis { .. } => b"\r\n",
        };
        let mut publisher = Publisher {
            config,
            poll,
            connections: Vec::new(),
            request_prefixes,
            request_suffix,
        };
        for index in 0..publisher.config.publishers {
            let stream = publisher.open(index)?;
            publisher.connections.push(PublisherConnection {
                stream,
                state: State::Idle,
                outbound: Vec::new(),
                written: 0,
                inbound: Vec::new(),
                sent_ns: 0,
                idle_since_ns: monotonic_ns(),
                retried: false,
            });
        }
        Ok(publisher)
    }

    /// Opens and registers the socket of connection `index`.
    fn open(&self, index: usize) -> BenchResult<TcpStream> {
        let addr = match &self.config.target {
            PublishTarget::Http { addr, .. }
            | PublishTarget::Pusher { addr, .. }
            | PublishTarget::Redis { addr, .. } => *addr,
        };
        let stream = StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|error| BenchError::Publisher(format!("cannot connect to {addr}: {error}")))?;
        stream
            .set_nodelay(true)
            .map_err(|error| BenchError::io("setting TCP_NODELAY", error))?;
        stream
            .set_nonblocking(true)
            .map_err(|error| BenchError::io("setting O_NONBLOCK", error))?;
        let mut stream = TcpStream::from_std(stream);
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|error| BenchError::io("registering a publisher", error))?;
        Ok(stream)
    }

    /// Publishes at `rate_per_s` for `duration`, stamping `epoch`; sequence numbers restart at 0.
    pub fn run(
        &mut self,
        rate_per_s: f64,
        duration: Duration,
        epoch: u8,
    ) -> BenchResult<PublishReport> {
        let channels = self.config.channel_names.len();
        let streams = channels * self.config.publishers;
        let mut run = Run {
            epoch,
            sent_per_stream: vec![0; streams],
            responses: ResponseCounters::default(),
            reconnects: 0,
            round_trip_ns: new_latency_histogram(),
            payload: vec![0u8; self.config.payload_bytes],
            body: Vec::new(),
        };
        // Notice connections the server closed while we were not looking (between runs).
        self.poll
            .poll(&mut events_scratch(), Some(Duration::ZERO))
            .map_err(|error| BenchError::io("polling publishers", error))?;
        for index in 0..self.connections.len() {
            self.on_ready(index, &mut run)?;
        }
        let start_ns = monotonic_ns();
        let schedule_ns = duration.as_nanos() as u64;
        let mut cursor = 0usize;
        let mut issued = 0u64;
        let mut backlog_max = 0u64;
        let mut events = Events::with_capacity(256);
        loop {
            let elapsed_ns = monotonic_ns() - start_ns;
            let scheduling = rate_per_s > 0.0 && elapsed_ns < schedule_ns;
            if scheduling {
                let due = (rate_per_s * elapsed_ns as f64 / 1e9) as u64 + 1;
                backlog_max = backlog_max.max(due.saturating_sub(issued));
                // Bounded by the number of connections; round-robin so every connection stays in use.
                for offset in 0..self.connections.len() {
                    if issued >= due {
                        break;
                    }
                    let index = (cursor + offset) % self.connections.len();
                    if self.connections[index].state == State::Idle {
                        cursor = index + 1;
                        self.issue(index, issued as usize % channels, &mut run)?;
                        issued += 1;
                    }
                }
            } else {
                let busy = self
                    .connections
                    .iter()
                    .any(|connection| connection.state == State::Busy);
                if !busy || elapsed_ns > schedule_ns + RESPONSE_GRACE.as_nanos() as u64 {
                    run.responses.unanswered += self
                        .connections
                        .iter()
                        .filter(|connection| connection.state == State::Busy)
                        .count() as u64;
                    break;
                }
            }
            let next_due_ns = if rate_per_s > 0.0 {
                ((issued as f64) / rate_per_s * 1e9) as u64
            } else {
                u64::MAX
            };
            let timeout =
                Duration::from_nanos(next_due_ns.saturating_sub(elapsed_ns)).min(POLL_TIMEOUT_MAX);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(BenchError::io("polling publishers", error)),
            }
            for event in events.iter() {
                self.on_ready(event.token().0, &mut run)?;
            }
        }
        // Connections left busy get a fresh socket so the next run starts clean.
        for index in 0..self.connections.len() {
            if self.connections[index].state == State::Busy {
                self.reconnect(index, &mut run)?;
            }
        }
        let elapsed_s = (schedule_ns.min(monotonic_ns() - start_ns)) as f64 / 1e9;
        let published: u64 = run.sent_per_stream.iter().sum();
        Ok(PublishReport {
            epoch,
            rate_target_per_s: rate_per_s,
            published,
            rate_achieved_per_s: if elapsed_s > 0.0 {
                published as f64 / elapsed_s
            } else {
                0.0
            },
            sent_per_stream: run.sent_per_stream,
            elapsed_s,
            backlog_max,
            responses: run.responses,
            reconnects: run.reconnects,
            round_trip: summarize(&run.round_trip_ns),
        })
    }

    /// Builds and starts writing one message on connection `index` to `channel`.
    fn issue(&mut self, index: usize, channel: usize, run: &mut Run) -> BenchResult<()> {
        let stream_id = channel * self.config.publishers + index;
        let sequence = run.sent_per_stream[stream_id];
        run.sent_per_stream[stream_id] += 1;
        let sent_ns = monotonic_ns();
        let stamp = Stamp {
            epoch: run.epoch,
            channel_index: channel as u32,
            publisher_index: index as u16,
            sequence,
            sent_ns,
        };
        payload::encode(&mut run.payload, &stamp, self.config.payload_kind);
        let connection = &mut self.connections[index];
        if let PublishTarget::Pusher {
            app, host_header, ..
        } = &self.config.target
        {
            pusher::write_trigger_body(
                &mut run.body,
                &self.config.channel_names[channel],
                &run.payload,
            );
            let now_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            pusher::write_trigger_request(
                &mut connection.outbound,
                app,
                host_header,
                &run.body,
                now_s,
            );
        } else {
            connection.outbound.clear();
            connection
                .outbound
                .extend_from_slice(&self.request_prefixes[channel]);
            connection.outbound.extend_from_slice(&run.payload);
            connection.outbound.extend_from_slice(self.request_suffix);
        }
        connection.written = 0;
        connection.inbound.clear();
        connection.state = State::Busy;
        connection.sent_ns = sent_ns;
        connection.retried = false;
        self.write_pending(index, run)
    }

    /// Writes what is left of the current request.
    fn write_pending(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        let connection = &mut self.connections[index];
        // Bounded: each iteration writes at least one byte or leaves.
        while connection.written < connection.outbound.len() {
            match connection
                .stream
                .write(&connection.outbound[connection.written..])
            {
                Ok(0) => break,
                Ok(written) => connection.written += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail_busy(index, run),
            }
        }
        Ok(())
    }

    /// Handles readiness of connection `index`.
    fn on_ready(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        if self.connections[index].state == State::Idle {
            return self.check_idle(index, run);
        }
        self.write_pending(index, run)?;
        let mut chunk = [0u8; 4096];
        // Bounded by INBOUND_BYTES_MAX / chunk size.
        loop {
            let connection = &mut self.connections[index];
            if connection.state != State::Busy {
                return Ok(());
            }
            match connection.stream.read(&mut chunk) {
                Ok(0) => return self.fail_busy(index, run),
                Ok(read) => {
                    connection.inbound.extend_from_slice(&chunk[..read]);
                    if connection.inbound.len() > INBOUND_BYTES_MAX {
                        run.responses.other += 1;
                        return self.reconnect(index, run);
                    }
                    self.try_complete(index, run)?;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail_busy(index, run),
            }
        }
    }

    /// Completes the request on `index` if its whole answer has arrived.
    fn try_complete(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        let connection = &mut self.connections[index];
        let answer = match &self.config.target {
            PublishTarget::Http { .. } => parse_http_answer(&connection.inbound),
            PublishTarget::Pusher { .. } => parse_http_answer(&connection.inbound)
                .map(|answer| pusher_answer(answer, &connection.inbound)),
            PublishTarget::Redis { .. } => parse_resp_answer(&connection.inbound),
        };
        let Some(answer) = answer else { return Ok(()) };
        record_latency_ns(&mut run.round_trip_ns, monotonic_ns() - connection.sent_ns);
        match answer.status {
            AnswerStatus::Ok => run.responses.ok += 1,
            AnswerStatus::TooLarge => run.responses.too_large += 1,
            AnswerStatus::Overloaded => run.responses.overloaded += 1,
            AnswerStatus::Other => run.responses.other += 1,
        }
        connection.state = State::Idle;
        connection.idle_since_ns = monotonic_ns();
        connection
            .inbound
            .drain(..answer.bytes.min(connection.inbound.len()));
        if answer.close {
            run.responses.closed_after_answer += 1;
            return self.replace_socket(index);
        }
        Ok(())
    }

    /// The connection of an unanswered request failed: send the request again once if the
    /// connection had been idle (the server's keep-alive timeout raced our write), else count it.
    fn fail_busy(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        let connection = &self.connections[index];
        let stale = connection.inbound.is_empty()
            && !connection.retried
            && connection.sent_ns.saturating_sub(connection.idle_since_ns) >= STALE_IDLE_NS;
        if !stale {
            run.responses.connection_errors += 1;
            return self.reconnect(index, run);
        }
        let outbound = std::mem::take(&mut self.connections[index].outbound);
        self.reconnect(index, run)?;
        run.responses.stale_retries += 1;
        let connection = &mut self.connections[index];
        connection.outbound = outbound;
        connection.written = 0;
        connection.state = State::Busy;
        connection.retried = true;
        self.write_pending(index, run)
    }

    /// Reads an idle connection: end of stream means the server closed it (keep-alive timeout),
    /// so it is replaced now rather than failing the next request.
    fn check_idle(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        let mut chunk = [0u8; 512];
        // Bounded: stray bytes are discarded until the socket is drained or closed.
        for _ in 0..16 {
            match self.connections[index].stream.read(&mut chunk) {
                Ok(0) => {
                    run.responses.idle_reconnects += 1;
                    return self.reconnect(index, run);
                }
                Ok(_) => run.responses.other += 1,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    run.responses.idle_reconnects += 1;
                    return self.reconnect(index, run);
                }
            }
        }
        Ok(())
    }

    /// Replaces the socket of connection `index` after a failure (counted, and bounded).
    fn reconnect(&mut self, index: usize, run: &mut Run) -> BenchResult<()> {
        run.reconnects += 1;
        if run.reconnects > u64::from(RECONNECTS_MAX) * self.connections.len() as u64 {
            return Err(BenchError::Publisher(
                "too many reconnects: the server keeps closing publisher connections".into(),
            ));
        }
        self.replace_socket(index)
    }

    /// Opens a fresh socket for connection `index`, which becomes idle.
    fn replace_socket(&mut self, index: usize) -> BenchResult<()> {
        let _ = self
            .poll
            .registry()
            .deregister(&mut self.connections[index].stream);
        let stream = self.open(index)?;
        let connection = &mut self.connections[index];
        connection.stream = stream;
        connection.state = State::Idle;
        connection.inbound.clear();
        connection.written = 0;
        connection.idle_since_ns = monotonic_ns();
        Ok(())
    }
}

/// A small event list for the poll that only collects pending readiness before a run.
fn events_scratch() -> Events {
    Events::with_capacity(64)
}

/// Per-run mutable state.
struct Run {
    /// Epoch stamped into payloads.
    epoch: u8,
    /// Messages per stream id.
    sent_per_stream: Vec<u64>,
    /// Answers.
    responses: ResponseCounters,
    /// Reconnects.
    reconnects: u64,
    /// Round trips.
    round_trip_ns: Histogram<u64>,
    /// Scratch payload.
    payload: Vec<u8>,
    /// Scratch Pusher trigger body.
    body: Vec<u8>,
}

/// Builds the bytes before the payload for `channel`.
///
/// The content type follows the payload kind: some servers (Nchan) pick the frame type from it.
fn request_prefix(
    target: &PublishTarget,
    channel: &str,
    payload_bytes: usize,
    payload_kind: PayloadKind,
) -> Vec<u8> {
    match target {
        // Built whole per message (`pusher::write_trigger_request`).
        PublishTarget::Pusher { .. } => Vec::new(),
        PublishTarget::Http { host_header, .. } => {
            let content_type = match payload_kind {
                PayloadKind::Text => "text/plain",
                PayloadKind::Json => "application/json",
                PayloadKind::Binary => "application/octet-stream",
            };
            format!(
                "POST /publish/{channel} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {payload_bytes}\r\n\r\n"
            )
            .into_bytes()
        }
        PublishTarget::Redis { prefix, .. } => {
            let redis_channel = format!("{prefix}:broadcast:{channel}");
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{redis_channel}\r\n${payload_bytes}\r\n",
                redis_channel.len()
            )
            .into_bytes()
        }
    }
}

/// Kind of answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerStatus {
    /// Accepted.
    Ok,
    /// 413.
    TooLarge,
    /// 503.
    Overloaded,
    /// Anything else.
    Other,
}

/// A complete answer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    /// Kind.
    status: AnswerStatus,
    /// Bytes it took.
    bytes: usize,
    /// The server will close the connection.
    close: bool,
}

/// Parses one HTTP/1.1 response (head and Content-Length body); `None` while incomplete.
fn parse_http_answer(bytes: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => {
            return Some(Answer {
                status: AnswerStatus::Other,
                bytes: bytes.len(),
                close: true,
            });
        }
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    let body_bytes: usize = header("content-length")
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let close = header("connection").is_some_and(|value| value.eq_ignore_ascii_case(b"close"));
    if bytes.len() < head_bytes + body_bytes {
        return None;
    }
    let status = match response.code {
        // Any 2xx: peers answer 201 or 202 for an accepted publish.
        Some(200..=299) => AnswerStatus::Ok,
        Some(413) => AnswerStatus::TooLarge,
        Some(503) => AnswerStatus::Overloaded,
        _ => AnswerStatus::Other,
    };
    Some(Answer {
        status,
        bytes: head_bytes + body_bytes,
        close,
    })
}

/// A Pusher API answer: soketi answers every error with 200 and `{"error":..}` in the body,
/// so a 2xx whose body names an error is not a success.
fn pusher_answer(answer: Answer, bytes: &[u8]) -> Answer {
    let answered = &bytes[..answer.bytes.min(bytes.len())];
    if answer.status == AnswerStatus::Ok && memchr::memmem::find(answered, b"\"error\"").is_some() {
        return Answer {
            status: AnswerStatus::Other,
            ..answer
        };
    }
    answer
}

/// Parses one RESP reply to PUBLISH (`:n` integer or `-ERR`); `None` while incomplete.
fn parse_resp_answer(bytes: &[u8]) -> Option<Answer> {
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let status = match bytes.first() {
        Some(b':') => AnswerStatus::Ok,
        _ => AnswerStatus::Other,
    };
    Some(Answer {
        status,
        bytes: line_end + 2,
        close: status != AnswerStatus::Ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_parse() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"sent\":10}";
        assert_eq!(
            parse_http_answer(ok),
            Some(Answer {
                status: AnswerStatus::Ok,
                bytes: ok.len(),
                close: false
            })
        );
        assert_eq!(parse_http_answer(&ok[..ok.len() - 1]), None);
        let busy =
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(
            parse_http_answer(busy),
            Some(Answer {
                status: AnswerStatus::Overloaded,
                bytes: busy.len(),
                close: true
            })
        );
        let large = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_http_answer(large).unwrap().status,
            AnswerStatus::TooLarge
        );
    }

    #[test]
    fn pusher_errors_answered_with_200_are_not_successes() {
        let error = b"HTTP/1.1 200 OK\r\nContent-Length: 44\r\nConnection: close\r\n\r\n{\"error\":\"The auth signature is invalid.\",\"code\":401}";
        let answer = parse_http_answer(&error[..]).unwrap();
        assert!(answer.close);
        assert_eq!(pusher_answer(answer, error).status, AnswerStatus::Other);
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
        let answer = parse_http_answer(&ok[..]).unwrap();
        assert_eq!(pusher_answer(answer, ok).status, AnswerStatus::Ok);
    }

    #[test]
    fn resp_answers_parse() {
        assert_eq!(
            parse_resp_answer(b":3\r\n"),
            Some(Answer {
                status: AnswerStatus::Ok,
                bytes: 4,
                close: false
            })
        );
        assert_eq!(parse_resp_answer(b":3\r"), None);
        assert_eq!(
            parse_resp_answer(b"-ERR x\r\n").unwrap().status,
            AnswerStatus::Other
        );
    }

    #[test]
    fn requests_are_well_formed() {
        let http = PublishTarget::Http {
            addr: "127.0.0.1:1".parse().unwrap(),
            host_header: "h:1".into(),
        };
        let head =
            String::from_utf8(request_prefix(&http, "bench-0", 64, PayloadKind::Text)).unwrap();
        assert!(
            head.starts_with("POST /publish/bench-0 HTTP/1.1\r\n")
                && head.contains("Content-Length: 64\r\n")
        );
        let redis = PublishTarget::Redis {
            addr: "127.0.0.1:1".parse().unwrap(),
            prefix: "ws".into(),
        };
        let resp =
            String::from_utf8(request_prefix(&redis, "bench-0", 64, PayloadKind::Text)).unwrap();
        assert_eq!(
            resp,
            "*3\r\n$7\r\nPUBLISH\r\n$20\r\nws:broadcast:bench-0\r\n$64\r\n"
        );
    }
}
