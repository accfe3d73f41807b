//! Per-shard counters: plain integers owned by the shard (no atomics on the data path), copied
//! out when someone asks (`/stat`), merged across shards by the asker.

use hdrhistogram::Histogram;

use super::outbound::WriteTally;

/// Why a WebSocket connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client started the closing handshake.
    Normal,
    /// The client broke RFC 6455 (close code 1002).
    ProtocolError,
    /// The client sent invalid UTF-8 (close code 1007).
    InvalidPayload,
    /// The client sent a message over the limit (close code 1009).
    MessageTooBig,
    /// The outbound queue overflowed (close code 1008).
    SlowConsumer,
    /// Nothing received for `--idle-timeout` (close code 1001).
    IdleTimeout,
    /// The server drained (close code 1001).
    Shutdown,
    /// The TCP connection ended without a closing handshake, or a read/write failed.
    ConnectionLost,
}

impl CloseReason {
    /// Every reason, in the order of [`ShardStats::closes`].
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Normal,
        CloseReason::ProtocolError,
        CloseReason::InvalidPayload,
        CloseReason::MessageTooBig,
        CloseReason::SlowConsumer,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
        CloseReason::ConnectionLost,
    ];

    /// A stable lowercase name (for `/stat` and metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidPayload => "invalid_payload",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ConnectionLost => "connection_lost",
        }
    }

    /// The close code ringcast sends for this reason (`None`: it echoes the client's, or sends
    /// none).
    pub fn close_code(self) -> Option<u16> {
        match self {
            CloseReason::Normal | CloseReason::ConnectionLost => None,
            CloseReason::ProtocolError => Some(1002),
            CloseReason::InvalidPayload => Some(1007),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::SlowConsumer => Some(1008),
            CloseReason::IdleTimeout | CloseReason::Shutdown => Some(1001),
        }
    }

    /// The reason a close code sent for a protocol fault is counted under.
    pub fn for_close_code(code: u16) -> CloseReason {
        match code {
            1007 => CloseReason::InvalidPayload,
            1009 => CloseReason::MessageTooBig,
            _ => CloseReason::ProtocolError,
        }
    }

    fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|reason| *reason == self)
            .expect("ALL lists every reason")
    }
}

/// Latencies up to this many microseconds are recorded exactly (to 3 significant digits).
const LATENCY_HISTOGRAM_MAX_US: u64 = 60_000_000;

/// One shard's counters since start.
#[derive(Debug, Clone)]
pub struct ShardStats {
    /// Sockets accepted.
    pub connections_accepted: u64,
    /// Sockets refused with 503 at `--max-connections`.
    pub connections_over_limit: u64,
    /// `accept()` errors (e.g. EMFILE), each followed by a short back-off.
    pub accept_errors: u64,
    /// HTTP requests refused, by status code.
    pub http_rejections: Vec<(u16, u64)>,
    /// Handshakes that timed out (slowloris).
    pub handshake_timeouts: u64,
    /// Our close frame got no answer within `--close-timeout` (the connection is counted under
    /// the reason it was closed for).
    pub close_handshake_timeouts: u64,
    /// WebSocket connections opened.
    pub websocket_opened: u64,
    /// WebSocket connections closed, by reason (indexed like [`CloseReason::ALL`]).
    pub closes: [u64; 8],
    /// Messages published over HTTP on this shard.
    pub published_http: u64,
    /// Publications this shard fanned out (from any source).
    pub publications_fanned_out: u64,
    /// Frames queued for subscribers (deliveries).
    pub frames_queued: u64,
    /// Frames completely written to sockets.
    pub frames_written: u64,
    /// Write system calls (or io_uring send entries).
    pub write_calls: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Frames not queued because their connection was already closing.
    pub frames_dropped_closing: u64,
    /// Queued frames dropped when a slow consumer was closed.
    pub frames_dropped_slow: u64,
    /// Publishes refused because a shard's inbox stayed full for `--publish-timeout`.
    pub publish_refusals: u64,
    /// Pings sent by the heartbeat.
    pub pings_sent: u64,
    /// Data messages from subscribers that ringcast does not act on.
    pub client_messages_ignored: u64,
    /// Publication received by this shard -> its frames written to every local subscriber, in µs.
    pub fanout_latency_us: Histogram<u64>,
}

impl Default for ShardStats {
    fn default() -> ShardStats {
        ShardStats {
            connections_accepted: 0,
            connections_over_limit: 0,
            accept_errors: 0,
            http_rejections: Vec::new(),
            handshake_timeouts: 0,
            close_handshake_timeouts: 0,
            websocket_opened: 0,
            closes: [0; 8],
            published_http: 0,
            publications_fanned_out: 0,
            frames_queued: 0,
            frames_written: 0,
            write_calls: 0,
            bytes_written: 0,
            frames_dropped_closing: 0,
            frames_dropped_slow: 0,
            publish_refusals: 0,
            pings_sent: 0,
            client_messages_ignored: 0,
            fanout_latency_us: Histogram::new_with_max(LATENCY_HISTOGRAM_MAX_US, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl ShardStats {
    /// Adds one write attempt's counts.
    pub fn add_writes(&mut self, tally: &WriteTally) {
        self.write_calls += tally.calls;
        self.frames_written += tally.frames;
        self.bytes_written += tally.bytes;
    }

    /// Counts a closed connection.
    pub fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason.index()] += 1;
    }

    /// Closes counted under `reason`.
    pub fn closes_for(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }

    /// Counts an HTTP refusal with `status` (a handful of distinct statuses: a short list).
    pub fn count_http_rejection(&mut self, status: u16) {
        match self.http_rejections.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += 1,
            None => self.http_rejections.push((status, 1)),
        }
    }

    /// Records one publication's fan-out latency.
    pub fn record_fanout_latency(&mut self, latency_us: u64) {
        self.fanout_latency_us
            .saturating_record(latency_us.clamp(1, LATENCY_HISTOGRAM_MAX_US));
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &ShardStats) {
        self.connections_accepted += other.connections_accepted;
        self.connections_over_limit += other.connections_over_limit;
        self.accept_errors += other.accept_errors;
        for &(status, count) in &other.http_rejections {
            match self.http_rejections.iter_mut().find(|(s, _)| *s == status) {
                Some((_, total)) => *total += count,
                None => self.http_rejections.push((status, count)),
            }
        }
        self.handshake_timeouts += other.handshake_timeouts;
        self.close_handshake_timeouts += other.close_handshake_timeouts;
        self.websocket_opened += other.websocket_opened;
        for (total, count) in self.closes.iter_mut().zip(other.closes) {
            *total += count;
        }
        self.published_http += other.published_http;
        self.publications_fanned_out += other.publications_fanned_out;
        self.frames_queued += other.frames_queued;
        self.frames_written += other.frames_written;
        self.write_calls += other.write_calls;
        self.bytes_written += other.bytes_written;
        self.frames_dropped_closing += other.frames_dropped_closing;
        self.frames_dropped_slow += other.frames_dropped_slow;
        self.publish_refusals += other.publish_refusals;
        self.pings_sent += other.pings_sent;
        self.client_messages_ignored += other.client_messages_ignored;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.fanout_latency_us.add(&other.fanout_latency_us);
    }
}
