//! The counter tables: one row per counter (its name and help text), and the per-shard struct
//! that holds the values.
//!
//! Shards keep plain integers of their own (no atomics shared across cores, nothing per
//! delivery beyond an add); a snapshot copies them out and the asker merges them. Each row's name
//! is the counter's only name: `/stat` prints it as is, `/metrics` exposes it as
//! `ringcast_{name}_total` with a `shard` label. Adding a counter is one line in `counters!`.

use hdrhistogram::Histogram;

/// Declares a counter enum and its table: `Variant, "name", "help";` per row.
macro_rules! counter_table {
    ($(#[$meta:meta])* $table:ident { $($variant:ident, $name:literal, $help:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $table {
            $(#[doc = $help] $variant,)*
        }

        impl $table {
            /// Every counter of the table, in row order.
            pub const ALL: &'static [$table] = &[$($table::$variant),*];
            /// How many rows the table has.
            pub const COUNT: usize = $table::ALL.len();

            /// The counter's one name (lowercase, `_`-separated).
            pub fn name(self) -> &'static str {
                match self {
                    $($table::$variant => $name,)*
                }
            }

            /// What the counter counts, for `/metrics`' HELP line.
            pub fn help(self) -> &'static str {
                match self {
                    $($table::$variant => $help,)*
                }
            }

            /// The counter's index in a value array.
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

counter_table! {
    /// A shard's counters.
    Counter {
        ConnectionsAccepted, "connections_accepted", "Sockets accepted";
        ConnectionsOverLimit, "connections_over_limit", "Connections refused with 503 at --max-connections or the open-file limit";
        AcceptErrors, "accept_errors", "accept() failures (each followed by a back-off)";
        HandshakeTimeouts, "handshake_timeouts", "Connections closed for not sending a complete request in time";
        CloseHandshakeTimeouts, "close_handshake_timeouts", "Close frames sent that got no answer within --close-timeout";
        WebsocketOpened, "websocket_opened", "WebSocket connections opened (101 sent)";
        PublishedHttp, "published_http", "Messages published with POST /publish on this shard";
        PublishRefusals, "publish_refusals", "Publishes refused (503) because a shard's inbox stayed full for --publish-timeout";
        PublicationsFannedOut, "publications_fanned_out", "Publications taken by a shard's fan-out (each publication counts once per shard)";
        Deliveries, "deliveries", "Broadcast frames queued for subscribers (one per subscriber per message)";
        DeliveriesDroppedClosing, "deliveries_dropped_closing", "Deliveries not queued because the subscriber was already closing";
        DeliveriesDroppedSlow, "deliveries_dropped_slow", "Queued deliveries dropped when a slow consumer was closed";
        DeliveriesExcluded, "deliveries_excluded", "Deliveries skipped for the connection a publish excluded (Pusher socket_id)";
        DeliveriesUnframable, "deliveries_unframable", "Deliveries skipped because the message has no form in the subscriber's protocol (binary to Pusher)";
        DeliveriesHeldByRecovery, "deliveries_held_by_recovery", "Centrifugo deliveries held back (a subscribe reading history buffers them for the merge) or skipped as already delivered";
        CentrifugoLiveGaps, "centrifugo_live_gaps", "Centrifugo subscriptions that saw a gap in a channel's stream and were told to resubscribe (unsubscribe 2500; the client recovers)";
        HistoryAppended, "history_appended", "Publications appended to a channel's history on this shard (the shard that keeps the channel's history)";
        HistoryRecoveries, "history_recoveries", "Subscribes that asked to recover and got every missed publication";
        HistoryUnrecoverable, "history_unrecoverable", "Subscribes that asked to recover and were told they cannot (epoch changed, trimmed, too many)";
        DeflateMessagesCompressed, "deflate_messages_compressed", "Messages compressed with permessage-deflate (once per shard and wire format, whatever the number of subscribers)";
        DeflateMessagesIncompressible, "deflate_messages_incompressible", "Messages tried that permessage-deflate would not make smaller (sent uncompressed)";
        DeflateCompressUs, "deflate_compress_us", "Microseconds spent compressing messages (divide by deflate_messages_compressed + deflate_messages_incompressible for the CPU per message)";
        DeflateFrames, "deflate_frames", "Compressed frames queued (broadcasts and echoes to connections that negotiated permessage-deflate)";
        DeflateUncompressedBytes, "deflate_uncompressed_bytes", "Bytes those compressed frames would have been uncompressed";
        DeflateSavedBytes, "deflate_saved_bytes", "Bytes permessage-deflate saved on the wire (uncompressed minus compressed frame bytes)";
        FramesWritten, "frames_written", "Frames completely written to sockets (broadcasts, pings, pongs, echoes, closes, 101s)";
        WriteCalls, "write_calls", "Write system calls (or io_uring send entries) to WebSocket sockets";
        WrittenBytes, "written_bytes", "Bytes written to WebSocket sockets";
        PingsSent, "pings_sent", "Heartbeat pings sent";
        ClientMessagesIgnored, "client_messages_ignored", "Data messages from subscribers that ringcast does not act on";
        ClientEvents, "pusher_client_events", "Pusher client events accepted for relay";
        ClientEventsRefused, "pusher_client_events_refused", "Pusher client events refused (feature off, channel, size, rate limit)";
        ClientEventsDropped, "pusher_client_events_dropped", "Pusher client events accepted but not published (no room or Redis unavailable)";
        PresenceJoins, "pusher_presence_joins", "Pusher presence channel joins completed";
        PresenceMemberEventsHeld, "pusher_member_events_held", "member_added/member_removed held for a connection whose presence join was in flight (sent after its subscription_succeeded unless its member list covers them)";
        PresenceMemberEventsDropped, "pusher_member_events_dropped", "member_added/member_removed dropped because a joining connection already held the most it may (256)";
        PusherWorkRefused, "pusher_work_refused", "Pusher subscribes or client events refused because too much work was waiting on the shard";
        HandlerPanics, "handler_panics", "Connections closed because their handler panicked (a bug: please report it)";
        UringRingsRetired, "uring_rings_retired", "io_uring write rings given up after an error (the shard writes with sendmsg from then on)";
        IdleInputWaiting, "idle_input_waiting", "Connections quiet past --idle-timeout whose socket held unread input (the shard was late, not the client): read instead of closed (should stay 0)";
        ReactorWakeupsMissed, "reactor_wakeups_missed", "Reactor rounds that found ready sockets after waiting out the wake-up bound (1 s) with no wake-up: a lost or late wake-up, recovered by re-arming (should stay 0)";
        WritesUnknown, "writes_unknown", "Connections closed because a retired ring could not say how much of their write left";
    }
}

counter_table! {
    /// The Redis subscriber core's counters (node-wide).
    RedisCounter {
        Reconnects, "redis_reconnects", "Reconnections to Redis";
        MessagesReceived, "redis_messages_received", "Messages received from Redis";
        MessagesDropped, "redis_messages_dropped", "Messages from Redis not handed to a shard (full shard channel or receive buffer), per shard";
        MessagesInvalid, "redis_messages_invalid", "Messages on the broadcast prefix with an invalid channel name or value";
        MessagesOversized, "redis_messages_oversized", "Messages from Redis over --max-message-bytes: dropped, never sent to a client";
        Published, "redis_published", "PUBLISH commands that succeeded";
        PublishFailures, "redis_publish_failures", "PUBLISH commands refused or failed (answered 503)";
        Resubscriptions, "redis_resubscriptions", "Channels subscribed again after a reconnect, a failover or a slot migration";
        ServerUnsubscribes, "redis_server_unsubscribes", "Channels a cluster master dropped by itself (its slot moved away); subscribed again on the new owner";
        TopologyChanges, "redis_topology_changes", "Cluster slot maps that differed from the previous one (failovers, slot migrations)";
        OccupancyWrites, "redis_occupancy_writes", "Channel counts of this node written to Redis (reports and lease refreshes)";
        OccupancyFailures, "redis_occupancy_failures", "Channel-count writes or questions that failed (a question then answers 503, or this node's counts only for a trigger's info)";
    }
}

counter_table! {
    /// The webhook sender's counters (node-wide; `broker::webhook`). An event sent to two
    /// targets counts twice in the delivered and failed rows.
    WebhookCounter {
        Queued, "webhook_events_queued", "Webhook events accepted into the sender's queue";
        DeliveredEvents, "webhook_events_delivered", "Webhook events in bodies a target answered with 2xx (per target)";
        Posts, "webhook_posts", "Webhook POST requests sent (every attempt counts)";
        Retries, "webhook_retries", "Webhook POSTs sent again after a 5xx, 408, 429, timeout or connection error";
        FailedEvents, "webhook_events_failed", "Webhook events given up on (per target): another 4xx, or every attempt failed";
        DroppedEvents, "webhook_events_dropped", "Webhook events dropped because the sender's queue was full (the caller never waits)";
    }
}

/// Why a WebSocket connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The connection's handler panicked, or its write was lost with a retired ring: closed
    /// without a close frame.
    InternalError,
    /// Its subscription token expired (close code 4009).
    TokenExpired,
    /// Its protocol closed it with a code of its own (Pusher's 4001 unknown app, 4201 pong
    /// not received, ...).
    ProtocolRefused,
}

impl CloseReason {
    /// Every reason, in the order of [`ShardStats`]' close counts.
    pub const ALL: [CloseReason; 11] = [
        CloseReason::Normal,
        CloseReason::ProtocolError,
        CloseReason::InvalidPayload,
        CloseReason::MessageTooBig,
        CloseReason::SlowConsumer,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
        CloseReason::ConnectionLost,
        CloseReason::InternalError,
        CloseReason::TokenExpired,
        CloseReason::ProtocolRefused,
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
            CloseReason::InternalError => "internal_error",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::ProtocolRefused => "protocol_refused",
        }
    }

    /// The close code ringcast sends for this reason (`None`: it echoes the client's, or sends
    /// none).
    pub fn close_code(self) -> Option<u16> {
        match self {
            CloseReason::Normal
            | CloseReason::ConnectionLost
            | CloseReason::InternalError
            | CloseReason::ProtocolRefused => None,
            CloseReason::ProtocolError => Some(1002),
            CloseReason::InvalidPayload => Some(1007),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::SlowConsumer => Some(1008),
            CloseReason::IdleTimeout | CloseReason::Shutdown => Some(1001),
            CloseReason::TokenExpired => Some(4009),
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
        self as usize
    }
}

/// Latencies up to this many microseconds are recorded exactly (to 3 significant digits).
const LATENCY_HISTOGRAM_MAX_US: u64 = 60_000_000;

/// Most distinct HTTP statuses counted (a handful exist; the list never grows past this).
const HTTP_STATUSES_MAX: usize = 32;

/// One shard's counters since start.
#[derive(Debug, Clone)]
pub struct ShardStats {
    /// The values of [`Counter`], indexed by [`Counter::index`].
    counts: [u64; Counter::COUNT],
    /// WebSocket connections closed, by reason (indexed like [`CloseReason::ALL`]).
    closes: [u64; CloseReason::ALL.len()],
    /// HTTP requests refused, by status code (a short list: at most `HTTP_STATUSES_MAX`).
    http_rejections: Vec<(u16, u64)>,
    /// Publication received by this shard -> its frames written to every local subscriber, µs.
    pub fanout_latency_us: Histogram<u64>,
}

impl Default for ShardStats {
    fn default() -> ShardStats {
        ShardStats {
            counts: [0; Counter::COUNT],
            closes: [0; CloseReason::ALL.len()],
            http_rejections: Vec::new(),
            fanout_latency_us: Histogram::new_with_max(LATENCY_HISTOGRAM_MAX_US, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl ShardStats {
    /// Adds `amount` to `counter`.
    pub fn add(&mut self, counter: Counter, amount: u64) {
        self.counts[counter.index()] += amount;
    }

    /// Adds one to `counter`.
    pub fn count(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    /// How many times smaller permessage-deflate made the frames it compressed (their
    /// uncompressed bytes over their compressed bytes); 1 when nothing was compressed.
    pub fn deflate_ratio(&self) -> f64 {
        let uncompressed = self.get(Counter::DeflateUncompressedBytes);
        let compressed = uncompressed.saturating_sub(self.get(Counter::DeflateSavedBytes));
        if compressed == 0 {
            return 1.0;
        }
        uncompressed as f64 / compressed as f64
    }

    /// The value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counts[counter.index()]
    }

    /// Counts a closed connection.
    pub fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason.index()] += 1;
    }

    /// Closes counted under `reason`.
    pub fn closes_for(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }

    /// Counts an HTTP refusal with `status`.
    pub fn count_http_rejection(&mut self, status: u16) {
        add_status(&mut self.http_rejections, status, 1);
    }

    /// Refusals by status, in status order.
    pub fn http_rejections(&self) -> Vec<(u16, u64)> {
        let mut statuses = self.http_rejections.clone();
        statuses.sort_unstable();
        statuses
    }

    /// Records one publication's fan-out latency.
    pub fn record_fanout_latency(&mut self, latency_us: u64) {
        self.fanout_latency_us
            .saturating_record(latency_us.clamp(1, LATENCY_HISTOGRAM_MAX_US));
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &ShardStats) {
        for (total, value) in self.counts.iter_mut().zip(other.counts) {
            *total += value;
        }
        for (total, value) in self.closes.iter_mut().zip(other.closes) {
            *total += value;
        }
        for &(status, count) in &other.http_rejections {
            add_status(&mut self.http_rejections, status, count);
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.fanout_latency_us.add(&other.fanout_latency_us);
    }
}

fn add_status(statuses: &mut Vec<(u16, u64)>, status: u16, count: u64) {
    if let Some((_, total)) = statuses.iter_mut().find(|(known, _)| *known == status) {
        *total += count;
    } else if statuses.len() < HTTP_STATUSES_MAX {
        statuses.push((status, count));
    } else if let Some((_, total)) = statuses.last_mut() {
        // Bounded: an unexpected status beyond the list is folded into the last row.
        *total += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_rows_are_in_index_order() {
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.extend(RedisCounter::ALL.iter().map(|c| c.name()));
        names.extend(WebhookCounter::ALL.iter().map(|c| c.name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "every counter has one distinct name");
        for (index, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), index);
        }
        for (index, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index);
        }
    }

    #[test]
    fn merge_adds_every_row() {
        let mut first = ShardStats::default();
        let mut second = ShardStats::default();
        for (value, counter) in Counter::ALL.iter().enumerate() {
            first.add(*counter, value as u64);
            second.add(*counter, 1);
        }
        first.count_close(CloseReason::Normal);
        second.count_close(CloseReason::Normal);
        first.count_http_rejection(404);
        second.count_http_rejection(404);
        second.count_http_rejection(400);
        second.record_fanout_latency(10);
        first.merge(&second);
        for (value, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(first.get(*counter), value as u64 + 1);
        }
        assert_eq!(first.closes_for(CloseReason::Normal), 2);
        assert_eq!(first.http_rejections(), vec![(400, 1), (404, 2)]);
        assert_eq!(first.fanout_latency_us.len(), 1);
    }

    #[test]
    fn http_statuses_stay_bounded() {
        let mut stats = ShardStats::default();
        for status in 0..100 {
            stats.count_http_rejection(status);
        }
        assert_eq!(stats.http_rejections().len(), HTTP_STATUSES_MAX);
        let total: u64 = stats.http_rejections().iter().map(|(_, c)| c).sum();
        assert_eq!(total, 100);
    }
}
