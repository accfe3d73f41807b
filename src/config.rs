//! Command line and environment configuration, and the limits every shard enforces.
//!
//! Every flag can also be set from an environment variable `RINGCAST_<FLAG>`. Every limit names
//! its unit and default, and says what it trades. [`Config::validate`] checks the relations
//! between them once at start, so the shards can rely on them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::apps::Apps;
use crate::auth::Secret;
use crate::channel::ChannelPolicy;
use crate::history::memory::HistoryLimits;
use crate::history::policy::{ChannelHistory, HistoryPolicy};
use crate::protocol::deflate::CompressionLevel;
use crate::protocol::frame::MAX_SERVER_HEADER_BYTES;

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (write e.g. 10s, 500ms, 2m)"))
}

fn parse_secret(text: &str) -> Result<Secret, String> {
    Ok(Secret::new(text))
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (text, 1),
        Some((index, _)) => {
            let multiplier = match text[index..].trim().to_ascii_lowercase().as_str() {
                "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                unit => return Err(format!("unknown unit {unit:?} (use B, KiB, MiB, GiB)")),
            };
            (&text[..index], multiplier)
        }
    };
    let value: usize = digits
        .parse()
        .map_err(|_| format!("not a byte size: {text:?}"))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("byte size too large: {text:?}"))
}

/// How the fan-out writes queued frames to sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WritePath {
    /// One `sendmsg` system call per connection with all its queued frames as an iovec array.
    Sendmsg,
    /// The same `sendmsg`s submitted as a batch of io_uring SQEs: one `io_uring_enter` for up to
    /// a few hundred connections.
    Uring,
}

/// Whether permessage-deflate is negotiated (`--compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Never: the extension offer is ignored and every frame goes out uncompressed.
    Off,
    /// When the client offers it.
    On,
}

/// ringcast: a thread-per-core io_uring WebSocket push server.
///
/// Clients connect to `ws://HOST:PORT/ws/{channel}`; a backend publishes with
/// `POST /publish/{channel}`; every subscriber of the channel receives the message.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None, max_term_width = 100)]
pub struct Config {
    /// Public address: WebSocket upgrades, `/healthz`, `/readyz` (every shard binds it with
    /// SO_REUSEPORT). Safe to expose: nothing here changes or reveals state without a
    /// credential.
    #[arg(long, env = "RINGCAST_LISTEN", default_value = "0.0.0.0:9050")]
    pub listen: SocketAddr,

    /// API address: `POST /publish/{channel}`, `/stat`, `/metrics`. Without `--api-key` it must
    /// be a loopback address (ringcast refuses to start otherwise).
    #[arg(long, env = "RINGCAST_API_LISTEN", default_value = "127.0.0.1:9051")]
    pub api_listen: SocketAddr,

    /// Key every API-listener request must carry (`Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`); compared in constant time, never logged.
    #[arg(long, env = "RINGCAST_API_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub api_key: Option<Secret>,

    /// Serve `/echo` (a WebSocket endpoint that sends every message back; for conformance
    /// tests such as Autobahn).
    #[arg(long, env = "RINGCAST_ECHO", default_value_t = false)]
    pub echo: bool,

    /// Secret of the HS256 tokens that sign subscriptions (`?token=` on the upgrade URL);
    /// `private-` channels need a token listing them.
    #[arg(long, env = "RINGCAST_TOKEN_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub token_secret: Option<Secret>,

    /// Every channel needs a token that lists it (not only `private-` ones).
    #[arg(long, env = "RINGCAST_REQUIRE_TOKEN", default_value_t = false)]
    pub require_token: bool,

    /// Origins allowed to open WebSockets (comma-separated, exact, e.g.
    /// `https://app.example.com`). An upgrade with another `Origin` gets 403; one without an
    /// `Origin` (not a browser) is allowed. Empty: every origin.
    #[arg(long, env = "RINGCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// WebSocket connections one client IP address may hold on this node; beyond it, 503.
    /// 0 = no limit. Behind a NAT or a proxy many users share an address: size it for that.
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// Pusher application id (with `--app-key` and `--app-secret`: one application; use
    /// `--apps` for several).
    #[arg(long, env = "RINGCAST_APP_ID")]
    pub app_id: Option<String>,

    /// Pusher application key (what clients connect with: `/app/{key}`).
    #[arg(long, env = "RINGCAST_APP_KEY")]
    pub app_key: Option<String>,

    /// Pusher application secret (signs channel authorizations and REST requests).
    #[arg(long, env = "RINGCAST_APP_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub app_secret: Option<Secret>,

    /// A TOML file of Pusher applications, each with its own limits (format in
    /// `src/apps.rs`); the first one's namespace is shared with `/ws/{channel}` and
    /// `POST /publish`.
    #[arg(long, env = "RINGCAST_APPS")]
    pub apps: Option<std::path::PathBuf>,

    /// `activity_timeout` told to Pusher clients: they send `pusher:ping` after this long
    /// without a message.
    #[arg(long, env = "RINGCAST_PUSHER_ACTIVITY_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub pusher_activity_timeout: Duration,

    /// Channels one connection may be subscribed to (Pusher clients subscribe several).
    #[arg(long, env = "RINGCAST_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

    /// Frames one fragmented message may have; more get close 1009.
    #[arg(long, env = "RINGCAST_MAX_FRAGMENTS", default_value_t = 1024)]
    pub max_fragments: u32,

    /// permessage-deflate (RFC 7692): `on` answers a client's offer (browsers offer it on every
    /// WebSocket) and sends compressed frames to it; `off` never negotiates it. The server never
    /// keeps compression context (`server_no_context_takeover`), so a message is compressed
    /// once per shard and wire format, whatever the number of subscribers.
    #[arg(long, env = "RINGCAST_COMPRESSION", value_enum, default_value_t = Compression::On)]
    pub compression: Compression,

    /// Smallest message, in bytes, worth compressing: smaller ones go out uncompressed even to
    /// clients that negotiated permessage-deflate (a short JSON message saves a few bytes for a
    /// few microseconds of CPU). Units: B, KiB, MiB.
    #[arg(long, env = "RINGCAST_COMPRESS_MIN_BYTES", default_value = "256", value_parser = parse_bytes)]
    pub compress_min_bytes: usize,

    /// libdeflate compression level, 1 (fastest; on JSON about zlib's level 6) to 12 (smallest,
    /// several times slower). Paid once per message, not per subscriber.
    #[arg(long, env = "RINGCAST_COMPRESSION_LEVEL", default_value_t = 1)]
    pub compression_level: u8,

    /// Number of shards (one thread pinned per core); 0 = one per online core.
    #[arg(long, env = "RINGCAST_SHARDS", default_value_t = 0)]
    pub shards: usize,

    /// CPU cores to pin shards to, in order (e.g. `0,2`); default: the online cores in order.
    #[arg(long, env = "RINGCAST_CORES", value_delimiter = ',')]
    pub cores: Vec<usize>,

    /// WebSocket connections per shard; an upgrade beyond it gets HTTP 503. 0 = derived from the
    /// open-file limit: (RLIMIT_NOFILE - 64) / shards, which also bounds sockets of any kind.
    #[arg(long, env = "RINGCAST_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Largest message, in bytes, accepted from a client or a publisher (413 / close 1009 over
    /// it). Units: B, KiB, MiB.
    #[arg(long, env = "RINGCAST_MAX_MESSAGE_BYTES", default_value = "64KiB", value_parser = parse_bytes)]
    pub max_message_bytes: usize,

    /// Bytes queued for one connection before it is a slow consumer and is closed with 1008
    /// (counts frame bytes plus per-frame bookkeeping). Bigger tolerates slower readers and
    /// costs more memory per stalled connection.
    #[arg(long, env = "RINGCAST_OUTBOUND_QUEUE_BYTES", default_value = "256KiB", value_parser = parse_bytes)]
    pub outbound_queue_bytes: usize,

    /// Largest HTTP request head, in bytes (431 over it).
    #[arg(long, env = "RINGCAST_MAX_HEADER_BYTES", default_value = "8KiB", value_parser = parse_bytes)]
    pub max_header_bytes: usize,

    /// Most header fields in one request (431 over it).
    #[arg(long, env = "RINGCAST_MAX_HEADERS", default_value_t = 32)]
    pub max_headers: usize,

    /// Time a new connection has to send a complete request head (and an HTTP body); then it is
    /// closed (slowloris defence). Also the idle limit of a keep-alive HTTP connection.
    #[arg(long, env = "RINGCAST_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// A WebSocket ping is sent to a connection that has been quiet this long.
    #[arg(long, env = "RINGCAST_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A connection that sends nothing (not even a pong) for this long is closed with 1001.
    #[arg(long, env = "RINGCAST_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// After sending a close frame, how long to wait for the client's close (and for queued
    /// bytes to drain) before closing the TCP connection anyway.
    #[arg(long, env = "RINGCAST_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// On SIGTERM/SIGINT: how long to wait for clients to finish the closing handshake.
    #[arg(long, env = "RINGCAST_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Coalescing window: after the first message of a burst, wait this long for more before
    /// writing, so more frames share one send call. 0 = write at the end of every executor tick.
    #[arg(long, env = "RINGCAST_WRITE_COALESCE", default_value = "0s", value_parser = parse_duration)]
    pub write_coalesce: Duration,

    /// How the fan-out submits its writes (`uring` measured 1.15-1.2x the deliveries per CPU
    /// second of `sendmsg`; falls back to `sendmsg` if a ring cannot be created).
    #[arg(long, env = "RINGCAST_WRITE_PATH", value_enum, default_value_t = WritePath::Uring)]
    pub write_path: WritePath,

    /// Capacity, in messages, of each shard-to-shard channel and of each shard's inbox.
    #[arg(long, env = "RINGCAST_MESH_CAPACITY", default_value_t = 1024)]
    pub mesh_capacity: usize,

    /// How long a publish may wait for a full shard inbox before it is refused with 503.
    #[arg(long, env = "RINGCAST_PUBLISH_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub publish_timeout: Duration,

    /// Distinct channels per shard; a subscription to one more gets HTTP 503.
    #[arg(long, env = "RINGCAST_MAX_CHANNELS", default_value_t = 1_000_000)]
    pub max_channels: usize,

    /// Channel whitelist (comma-separated), enforced with `--strict`.
    #[arg(long, env = "RINGCAST_CHANNELS", value_delimiter = ',')]
    pub channels: Vec<String>,

    /// Allow only the channels listed in `--channels` (others get 403).
    #[arg(long, env = "RINGCAST_STRICT", default_value_t = false)]
    pub strict: bool,

    /// Memory each shard registers with io_uring for buffers, in bytes. Counts against the
    /// locked-memory limit (RLIMIT_MEMLOCK); a push server needs little.
    #[arg(long, env = "RINGCAST_IO_MEMORY", default_value = "64KiB", value_parser = parse_bytes)]
    pub io_memory: usize,

    /// Redis URL (e.g. `redis://127.0.0.1:6379/0`): join other nodes through Redis pub/sub.
    /// Without it, ringcast is a single node with no external dependency.
    #[arg(long, env = "RINGCAST_REDIS")]
    pub redis: Option<String>,

    /// Redis Cluster seed nodes (`HOST:PORT[,HOST:PORT...]`, Redis 7.0+): join other nodes
    /// through sharded pub/sub (SSUBSCRIBE on the master serving each channel's slot, SPUBLISH),
    /// following failovers and slot migrations. Excludes `--redis`.
    #[arg(long, env = "RINGCAST_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// Redis channel prefix: `PUBLISH {prefix}:broadcast:{channel}` reaches `/ws/{channel}`.
    #[arg(long, env = "RINGCAST_REDIS_PREFIX", default_value = "ws")]
    pub redis_prefix: String,

    /// Core the Redis subscriber thread is pinned to; default: the core after the last shard's.
    #[arg(long, env = "RINGCAST_REDIS_CORE")]
    pub redis_core: Option<usize>,

    /// How long the Redis reader waits for a full shard channel before it drops the message for
    /// that shard (counted).
    #[arg(long, env = "RINGCAST_REDIS_FORWARD_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub redis_forward_timeout: Duration,

    /// Memory the node may hold in messages received from Redis and not yet handed to the
    /// shards: half for the Redis client's receive buffer (as many messages of
    /// `--max-message-bytes` as fit), half for the per-shard queues (counted in bytes). Beyond
    /// it, messages are dropped and counted (`redis_messages_dropped`). The default holds 8192
    /// messages of the default 64 KiB in the client's buffer: bursts of small messages that
    /// large are absorbed; the bound is the worst case.
    #[arg(long, env = "RINGCAST_REDIS_BUFFER_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub redis_buffer_bytes: usize,

    /// How long the first subscriber of a channel waits for the Redis subscription before its
    /// handshake completes anyway (so it misses nothing published after its 101 when Redis is up).
    #[arg(long, env = "RINGCAST_REDIS_SUBSCRIBE_WAIT", default_value = "2s", value_parser = parse_duration)]
    pub redis_subscribe_wait: Duration,

    /// Which channels keep history for recovery (Centrifugo `recover`, raw `?since=`):
    /// comma-separated rules `PATTERN[@SIZE[/TTL]]`, PATTERN `*`, `prefix*` or a channel name,
    /// first match wins (e.g. `chat:*@50/10m,news`). Empty: no channel keeps history, and
    /// publishing costs nothing more. With `--redis` history is kept in Redis Streams (shared
    /// by every node); refused with `--redis-cluster` for now.
    #[arg(long, env = "RINGCAST_HISTORY", default_value = "")]
    pub history: String,

    /// Publications each history channel keeps unless its rule says otherwise.
    #[arg(long, env = "RINGCAST_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// How long a kept publication stays unless its rule says otherwise.
    #[arg(long, env = "RINGCAST_HISTORY_TTL", default_value = "5m", value_parser = parse_duration)]
    pub history_ttl: Duration,

    /// Memory all history may take on this node (payloads plus bookkeeping), split evenly
    /// between the shards; the oldest publications go first when it is full.
    #[arg(long, env = "RINGCAST_HISTORY_MEMORY", default_value = "64MiB", value_parser = parse_bytes)]
    pub history_memory: usize,

    /// Let Centrifugo clients `connect` without a token (anonymous). Off: a connect without a
    /// token is refused (disconnect 3500).
    #[arg(long, env = "RINGCAST_CENTRIFUGO_ANONYMOUS", default_value_t = false)]
    pub centrifugo_anonymous: bool,

    /// Log filter (error, warn, info, debug, trace; or env_logger syntax).
    #[arg(long, env = "RINGCAST_LOG", default_value = "info")]
    pub log: String,

    /// Test-only fault injection (see `src/faults.rs`); exists only in builds with the
    /// `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    pub test_fault: Vec<String>,
}

/// Size of each shard's read scratch buffer: one recv() reads at most this much.
pub const READ_SCRATCH_BYTES: usize = 64 << 10;
/// Most frames handed to one `sendmsg` (well under IOV_MAX = 1024).
pub const MAX_IOVECS_PER_WRITE: usize = 64;
/// Most messages the fan-out takes from its inboxes before it writes.
pub const MAX_MESSAGES_PER_PASS: usize = 256;
/// Connections flushed between two checks for preemption during a fan-out.
pub const FLUSHES_PER_YIELD: usize = 256;
/// Memory charged to a queued frame on top of its bytes (the `Bytes` handle in the queue).
pub const FRAME_OVERHEAD_BYTES: usize = std::mem::size_of::<bytes::Bytes>();

impl Config {
    /// Checks the relations between settings; the error says which flag to change.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_security()?;
        if self.max_message_bytes == 0 {
            return Err("--max-message-bytes must be at least 1".into());
        }
        // A queue must hold at least one full frame, or every large message is a slow consumer.
        let largest_frame = self.max_message_bytes + MAX_SERVER_HEADER_BYTES + FRAME_OVERHEAD_BYTES;
        if self.outbound_queue_bytes < largest_frame {
            return Err(format!(
                "--outbound-queue-bytes ({}) must hold one frame of --max-message-bytes ({}): at least {largest_frame}",
                self.outbound_queue_bytes, self.max_message_bytes
            ));
        }
        if self.max_header_bytes < 256 {
            return Err("--max-header-bytes must be at least 256".into());
        }
        if self.max_headers == 0 || self.max_headers > 1024 {
            return Err("--max-headers must be between 1 and 1024".into());
        }
        if self.ping_interval.is_zero() || self.idle_timeout.is_zero() {
            return Err("--ping-interval and --idle-timeout must be positive".into());
        }
        if self.ping_interval >= self.idle_timeout {
            return Err(format!(
                "--ping-interval ({}) must be shorter than --idle-timeout ({}): a client answering pings would be closed as idle",
                humantime::format_duration(self.ping_interval),
                humantime::format_duration(self.idle_timeout)
            ));
        }
        for (name, value) in [
            ("--handshake-timeout", self.handshake_timeout),
            ("--close-timeout", self.close_timeout),
            ("--publish-timeout", self.publish_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.write_coalesce > Duration::from_secs(1) {
            return Err(
                "--write-coalesce above 1s is a latency bug, not a throughput setting".into(),
            );
        }
        if self.mesh_capacity == 0 {
            return Err("--mesh-capacity must be at least 1".into());
        }
        if self.max_channels == 0 {
            return Err("--max-channels must be at least 1".into());
        }
        if let Some(url) = &self.redis
            && url.starts_with("rediss://")
        {
            // fred is built without TLS: `rediss://` would send AUTH in plaintext.
            return Err("--redis rediss://...: TLS to Redis is not built in (AUTH would go out in plaintext); reach Redis over loopback or a private network with redis://, or put a TLS tunnel (stunnel, spiped) on this host and point --redis at its local end".into());
        }
        if let Some(url) = &self.redis
            && !url.starts_with("redis://")
        {
            // The URL is not repeated: it may hold a password.
            return Err("--redis: expected redis://[user:password@]host:port[/db]".into());
        }
        if self.redis.is_some() && !self.redis_cluster.is_empty() {
            return Err(
                "--redis and --redis-cluster exclude each other: give one Redis URL, or the seed nodes of one Redis Cluster".into(),
            );
        }
        if !self.redis_cluster.is_empty() {
            let settings = crate::broker::cluster::ClusterSettings {
                seeds: self.redis_cluster.clone(),
                ..Default::default()
            };
            settings.validate().map_err(|error| {
                format!("{error} (write --redis-cluster HOST:PORT[,HOST:PORT...])")
            })?;
        }
        if self.redis_buffer_bytes < 2 * self.max_message_bytes {
            return Err(format!(
                "--redis-buffer-bytes ({}) must hold two messages of --max-message-bytes ({})",
                self.redis_buffer_bytes, self.max_message_bytes
            ));
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(char::is_whitespace) {
            return Err("--redis-prefix must be a non-empty word".into());
        }
        self.validate_history()?;
        if self.strict && self.channels.is_empty() {
            return Err("--strict needs --channels".into());
        }
        if let Some(bad) = self
            .channels
            .iter()
            .find(|c| crate::channel::ChannelName::new(c).is_none())
        {
            return Err(format!("--channels: invalid channel name {bad:?}"));
        }
        Ok(())
    }

    /// The security settings: who may reach the API, with what.
    fn validate_security(&self) -> Result<(), String> {
        if self.api_key.is_none() && !self.api_listen.ip().is_loopback() {
            return Err(format!(
                "--api-listen {} is not a loopback address and no --api-key is set: anyone who reaches it could publish. Set --api-key (or RINGCAST_API_KEY), or listen on 127.0.0.1",
                self.api_listen
            ));
        }
        if self
            .api_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < 16)
        {
            return Err("--api-key must be at least 16 characters".into());
        }
        if self
            .token_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < 32)
        {
            return Err(
                "--token-secret must be at least 32 characters (HS256 wants 256 bits)".into(),
            );
        }
        if self.require_token && self.token_secret.is_none() {
            return Err("--require-token needs --token-secret".into());
        }
        if self.api_listen == self.listen && self.listen.port() != 0 {
            return Err("--api-listen must differ from --listen".into());
        }
        if let Some(origin) = self.allowed_origins.iter().find(|origin| {
            !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
        }) {
            return Err(format!(
                "--allowed-origins {origin:?}: write origins as scheme://host[:port], without a path"
            ));
        }
        if self.max_fragments == 0 {
            return Err("--max-fragments must be at least 1".into());
        }
        let single = [
            self.app_id.is_some(),
            self.app_key.is_some(),
            self.app_secret.is_some(),
        ];
        if single.iter().any(|set| *set) && !single.iter().all(|set| *set) {
            return Err("--app-id, --app-key and --app-secret go together".into());
        }
        if single[0] && self.apps.is_some() {
            return Err("--app-id/--app-key/--app-secret and --apps exclude each other".into());
        }
        if self.max_subscriptions == 0 {
            return Err("--max-subscriptions must be at least 1".into());
        }
        self.validate_compression()
    }

    /// `--history*`: a policy that parses and limits that hold (with `--redis` or
    /// `--redis-cluster` the history lives in Redis Streams, the same on every node).
    fn validate_history(&self) -> Result<(), String> {
        let policy = self.history_policy()?;
        if policy.is_disabled() {
            return Ok(());
        }
        let shards = match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            shards => shards,
        };
        self.history_limits(shards)
            .validate()
            .map_err(|error| format!("--history-memory: {error}"))
    }

    /// The history policy `--history` describes.
    pub fn history_policy(&self) -> Result<HistoryPolicy, String> {
        if self.history_size == 0 || self.history_size > crate::history::policy::SIZE_MAX {
            return Err(format!(
                "--history-size must be in 1..={}",
                crate::history::policy::SIZE_MAX
            ));
        }
        let ttl_ms = self.history_ttl.as_millis() as u64;
        if ttl_ms == 0 || ttl_ms > crate::history::policy::TTL_MS_MAX {
            return Err("--history-ttl must be between 1ms and 30 days".into());
        }
        let defaults = ChannelHistory {
            size: self.history_size,
            ttl_ms,
        };
        HistoryPolicy::parse(&self.history, defaults).map_err(|error| format!("--history: {error}"))
    }

    /// Each shard's history store limits (`--history-memory` split between the shards).
    pub fn history_limits(&self, shards: usize) -> HistoryLimits {
        let shards = shards.max(1);
        let defaults = HistoryLimits::default();
        HistoryLimits {
            memory_bytes_max: self.history_memory / shards,
            channels_max: defaults.channels_max.min(
                self.history_memory
                    / shards
                    / 2
                    / (crate::history::memory::CHANNEL_OVERHEAD_BYTES
                        + crate::channel::MAX_CHANNEL_NAME_BYTES),
            ),
            ..defaults
        }
    }

    /// `--compression-level` within libdeflate's range, `--compress-min-bytes` below the
    /// largest message (or nothing would ever be compressed).
    fn validate_compression(&self) -> Result<(), String> {
        CompressionLevel::new(self.compression_level)
            .map_err(|error| format!("--compression-level: {error}"))?;
        if self.compression == Compression::On && self.compress_min_bytes > self.max_message_bytes {
            return Err(format!(
                "--compress-min-bytes ({}) is above --max-message-bytes ({}): nothing would be compressed; use --compression off",
                self.compress_min_bytes, self.max_message_bytes
            ));
        }
        Ok(())
    }

    /// The Pusher applications `--app-*` or `--apps` describe (none when neither is set).
    pub fn load_apps(&self) -> Result<Apps, String> {
        if let (Some(id), Some(key), Some(secret)) = (&self.app_id, &self.app_key, &self.app_secret)
        {
            let secret = std::str::from_utf8(secret.expose())
                .map_err(|_| "--app-secret must be UTF-8".to_string())?;
            return Apps::single(id, key, secret).map_err(|error| format!("--app-*: {error}"));
        }
        let Some(path) = &self.apps else {
            return Ok(Apps::none());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("--apps {}: {error}", path.display()))?;
        Apps::from_toml_str(&text).map_err(|error| format!("--apps {}: {error}", path.display()))
    }

    /// The compression level `--compression-level` names (checked by `validate`).
    pub fn deflate_level(&self) -> CompressionLevel {
        CompressionLevel::new(self.compression_level).unwrap_or_default()
    }

    /// The channel policy `--strict`/`--channels` describe.
    pub fn channel_policy(&self) -> ChannelPolicy {
        if self.strict {
            ChannelPolicy::strict(self.channels.iter().cloned())
        } else {
            ChannelPolicy::open()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("ringcast").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        config.validate().unwrap();
        assert_eq!(config.listen.port(), 9050);
        assert_eq!(config.max_message_bytes, 64 << 10);
        assert_eq!(config.ping_interval, Duration::from_secs(25));
    }

    #[test]
    fn units_parse() {
        let config = parse(&["--max-message-bytes", "16MiB", "--write-coalesce", "500us"]);
        assert_eq!(config.max_message_bytes, 16 << 20);
        assert_eq!(config.write_coalesce, Duration::from_micros(500));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn the_api_needs_a_key_off_loopback() {
        let config = parse(&["--api-listen", "0.0.0.0:9051"]);
        let error = config.validate().unwrap_err();
        assert!(error.contains("--api-key"), "{error}");
        let config = parse(&[
            "--api-listen",
            "0.0.0.0:9051",
            "--api-key",
            "0123456789abcdef",
        ]);
        config.validate().unwrap();
        let config = parse(&["--api-key", "short"]);
        assert!(config.validate().unwrap_err().contains("16"));
        let config = parse(&["--require-token"]);
        assert!(config.validate().unwrap_err().contains("--token-secret"));
        let config = parse(&["--allowed-origins", "https://a.example/"]);
        assert!(config.validate().is_err());
        let config = parse(&[
            "--allowed-origins",
            "https://a.example,http://b.example:8080",
        ]);
        config.validate().unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = parse(&[
            "--api-key",
            "key-0123456789abcdef",
            "--token-secret",
            "secret-0123456789abcdef0123456789abcdef",
        ]);
        let text = format!("{config:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }

    #[test]
    fn relations_are_checked() {
        let config = parse(&[
            "--max-message-bytes",
            "1MiB",
            "--outbound-queue-bytes",
            "64KiB",
        ]);
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("--outbound-queue-bytes")
        );
        let config = parse(&["--ping-interval", "1m", "--idle-timeout", "30s"]);
        assert!(config.validate().unwrap_err().contains("--ping-interval"));
        let config = parse(&["--strict"]);
        assert!(config.validate().is_err());
        let config = parse(&["--strict", "--channels", "a,b"]);
        config.validate().unwrap();
        let config = parse(&["--channels", "bad name"]);
        assert!(config.validate().is_err());
    }

    #[test]
    fn one_redis_or_a_cluster() {
        let config = parse(&["--redis-cluster", "127.0.0.1:7000,127.0.0.1:7001"]);
        config.validate().unwrap();
        assert_eq!(config.redis_cluster.len(), 2);
        let config = parse(&[
            "--redis",
            "redis://127.0.0.1:6379",
            "--redis-cluster",
            "127.0.0.1:7000",
        ]);
        let error = config.validate().unwrap_err();
        assert!(error.contains("exclude each other"), "{error}");
        let config = parse(&["--redis-cluster", "127.0.0.1"]);
        let error = config.validate().unwrap_err();
        assert!(error.contains("host:port"), "{error}");
    }

    #[test]
    fn compression_flags() {
        let config = parse(&[]);
        assert_eq!(config.compression, Compression::On);
        assert_eq!(config.compress_min_bytes, 256);
        assert_eq!(config.deflate_level(), CompressionLevel::FASTEST);
        let config = parse(&["--compression", "off", "--compress-min-bytes", "1KiB"]);
        assert_eq!(config.compression, Compression::Off);
        assert_eq!(config.compress_min_bytes, 1024);
        config.validate().unwrap();
        for level in ["0", "13"] {
            let config = parse(&["--compression-level", level]);
            assert!(
                config
                    .validate()
                    .unwrap_err()
                    .contains("--compression-level")
            );
        }
        assert_eq!(
            parse(&["--compression-level", "6"]).deflate_level().get(),
            6
        );
        let config = parse(&["--compress-min-bytes", "1MiB"]);
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("--compress-min-bytes")
        );
    }
}
