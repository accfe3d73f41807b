//! Pusher applications: who may connect (`/app/{key}`), who may call the HTTP API
//! (`/apps/{id}/...`), and each application's limits and webhooks.
//!
//! An application is an `id` (in REST paths), a public `key` (in WebSocket paths and auth
//! strings) and a `secret` (signs everything; never printed: its `Debug` and `Display` say
//! `[redacted]`). Applications are isolated: the server keys every channel by application.
//!
//! Sources: `--app-id/--app-key/--app-secret` ([`Apps::single`]) or `--apps FILE`
//! ([`Apps::from_toml_str`]), a TOML file with one `[[app]]` table per application:
//!
//! ```toml
//! [[app]]
//! id = "1"                 # 1-64 bytes of [A-Za-z0-9_-]
//! key = "app-key"          # 1-64 bytes of [A-Za-z0-9_-]; public (in the WebSocket URL)
//! secret = "app-secret"    # 1-256 bytes; never logged
//! enabled = true           # optional (default true); false: 4003 on connect, 403 on the API
//!
//! [app.limits]             # optional; every field optional, defaults below
//! max_connections = 0                  # 0 = unlimited (4004 over it)
//! max_event_payload_bytes = 10240      # `data` of one event (413 over it)
//! max_channels_per_event = 100         # `channels` of one trigger
//! max_batch_events = 10                # events in one batch_events call
//! max_event_name_bytes = 200           # `name` of one event
//! client_events = "off"                # "on" or "off"
//! client_event_rate_per_s = 10         # per connection (pusher:error 4301 over it)
//! max_presence_members = 100           # distinct users in one presence channel
//! max_presence_user_info_bytes = 2048  # `user_info` of one member, as JSON text
//! max_user_id_chars = 128              # `user_id` of one member or signed-in user
//! subscription_count_events = "off"    # "on": pusher_internal:subscription_count
//! cache_ttl_s = 1800                   # how long a cache channel keeps its last event
//!
//! [[app.webhooks]]         # optional, at most 16 per app
//! url = "https://backend.example/pusher/webhooks"
//! events = ["channel_occupied", "channel_vacated"]   # optional; default: every kind
//! ```
//!
//! Defaults follow the Pusher docs: "The event data should not be larger than 10KB"
//! (rest-api.md), "limited to 100 channels" (rest-api.md), batches "up to 10 per call"
//! (rest-api.md), "Publish no more than 10 messages per second per client" (events.md),
//! "100 members maximum, 1KB limit for user object, and maximum 128 characters for user id"
//! (presence-channels.md; the user object limit here is 2 KB), cache TTL "up to 30 minutes"
//! (cache-channels.md). Client events and subscription counting are off by default, as on a
//! new Pusher app.
//!
//! Deliberately not here: connection counting, rate-limiter state, webhook delivery (the server
//! and the broker own those); this file only describes and validates.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::channel::AppSlot;

use serde::Deserialize;

/// Most applications one process serves (bounds the lookup maps).
pub const MAX_APPS: usize = 1024;
/// Most webhook targets one application may have.
pub const MAX_WEBHOOKS_PER_APP: usize = 16;
/// Longest application id, in bytes.
pub const MAX_APP_ID_BYTES: usize = 64;
/// Longest application key, in bytes.
pub const MAX_APP_KEY_BYTES: usize = 64;
/// Longest application secret, in bytes.
pub const MAX_APP_SECRET_BYTES: usize = 256;
/// Longest webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// An application secret. Compared and used only by `auth`; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret(Arc<str>);

impl AppSecret {
    /// Wraps `secret` (validated by [`App::new`]).
    pub fn new(secret: &str) -> AppSecret {
        AppSecret(Arc::from(secret))
    }

    /// The secret's bytes, for HMAC keys only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl fmt::Display for AppSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// Whether an application accepts connections and API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppStatus {
    /// Serves normally.
    Enabled,
    /// Connections are closed with 4003 ("Application disabled"), API calls answered 403.
    Disabled,
}

/// Whether clients may trigger `client-` events (Pusher: off until enabled in the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientEvents {
    /// Relayed on private and presence channels, rate limited per connection.
    On,
    /// Refused with `pusher:error`.
    Off,
}

/// Whether subscribers get `pusher_internal:subscription_count` (Pusher: opt-in per app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionCountEvents {
    /// Sent to every subscriber when the count changes.
    On,
    /// Never sent.
    Off,
}

/// Per-application limits. Every field documents its default, its source and its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLimits {
    /// Concurrent WebSocket connections; 0 = unlimited. Over it: close 4004.
    pub max_connections: u32,
    /// Bytes of one event's `data` (REST trigger or client event). Default 10240: "The event
    /// data should not be larger than 10KB ... you will receive a 413". Range 1..=1 MiB.
    pub max_event_payload_bytes: usize,
    /// Channels in one trigger. Default 100: "limited to 100 channels". Range 1..=1000.
    pub max_channels_per_event: usize,
    /// Events in one `batch_events` call. Default 10: "up to 10 per call". Range 1..=1000.
    pub max_batch_events: usize,
    /// Bytes of one event name. Default 200, as the official SDKs check. Range 1..=1000.
    pub max_event_name_bytes: usize,
    /// Whether `client-` events are relayed. Default off.
    pub client_events: ClientEvents,
    /// Client events per second per connection. Default 10: "Publish no more than 10
    /// messages per second per client (connection)". Range 1..=10000.
    pub client_event_rate_per_s: u32,
    /// Distinct users in one presence channel. Default 100. Range 1..=10000 (the whole member
    /// list travels in one `subscription_succeeded`).
    pub max_presence_members: usize,
    /// Bytes of one member's `user_info` JSON. Default 2048: presence-channels.md says "1KB
    /// limit for user object"; ringcast accepts every object Pusher accepts, and twice that.
    /// Range 1..=64 KiB.
    pub max_presence_user_info_bytes: usize,
    /// Characters of one user id. Default 128 ("maximum 128 characters for user id").
    /// Range 1..=1024.
    pub max_user_id_chars: usize,
    /// Whether `pusher_internal:subscription_count` is sent. Default off.
    pub subscription_count_events: SubscriptionCountEvents,
    /// Seconds a cache channel keeps its last event. Default 1800 ("up to 30 minutes").
    /// Range 1..=86400.
    pub cache_ttl_s: u64,
}

impl Default for AppLimits {
    fn default() -> AppLimits {
        AppLimits {
            max_connections: 0,
            max_event_payload_bytes: 10 * 1024,
            max_channels_per_event: 100,
            max_batch_events: 10,
            max_event_name_bytes: 200,
            client_events: ClientEvents::Off,
            client_event_rate_per_s: 10,
            max_presence_members: 100,
            max_presence_user_info_bytes: 2048,
            max_user_id_chars: 128,
            subscription_count_events: SubscriptionCountEvents::Off,
            cache_ttl_s: 30 * 60,
        }
    }
}

/// The kinds of webhook event (webhooks.md, cache-channels.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventKind {
    /// A channel got its first subscriber.
    ChannelOccupied,
    /// A channel lost its last subscriber.
    ChannelVacated,
    /// A user joined a presence channel (first connection).
    MemberAdded,
    /// A user left a presence channel (last connection).
    MemberRemoved,
    /// A client sent a `client-` event.
    ClientEvent,
    /// A client subscribed to a cache channel with nothing cached.
    CacheMiss,
}

impl WebhookEventKind {
    /// Every kind, in declaration order.
    pub const ALL: [WebhookEventKind; 6] = [
        WebhookEventKind::ChannelOccupied,
        WebhookEventKind::ChannelVacated,
        WebhookEventKind::MemberAdded,
        WebhookEventKind::MemberRemoved,
        WebhookEventKind::ClientEvent,
        WebhookEventKind::CacheMiss,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of webhook event kinds (a bit set: six kinds fit in a byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookEvents(u8);

impl WebhookEvents {
    /// Every kind.
    pub fn all() -> WebhookEvents {
        WebhookEvents::from_kinds(WebhookEventKind::ALL)
    }

    /// Exactly `kinds`.
    pub fn from_kinds(kinds: impl IntoIterator<Item = WebhookEventKind>) -> WebhookEvents {
        WebhookEvents(kinds.into_iter().fold(0, |bits, kind| bits | kind.bit()))
    }

    /// Is `kind` in the set?
    pub fn contains(self, kind: WebhookEventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// Is the set empty?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Where an application's webhooks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// `http://` or `https://` URL, at most [`MAX_WEBHOOK_URL_BYTES`].
    pub url: String,
    /// Which event kinds this target receives.
    pub events: WebhookEvents,
}

/// One application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The id in REST paths (`/apps/{id}/events`).
    pub id: String,
    /// The public key in WebSocket paths (`/app/{key}`) and auth strings (`key:signature`).
    pub key: String,
    /// The secret every signature is made with.
    pub secret: AppSecret,
    /// Enabled or disabled.
    pub status: AppStatus,
    /// Limits.
    pub limits: AppLimits,
    /// Webhook targets (at most [`MAX_WEBHOOKS_PER_APP`]).
    pub webhooks: Vec<WebhookTarget>,
}

impl App {
    /// An enabled application with default limits and no webhooks, validated.
    pub fn new(id: &str, key: &str, secret: &str) -> Result<App, AppsError> {
        check_token(id, MAX_APP_ID_BYTES).map_err(|reason| AppsError::InvalidAppId {
            id: id.to_string(),
            reason,
        })?;
        check_token(key, MAX_APP_KEY_BYTES).map_err(|reason| AppsError::InvalidAppKey {
            app_id: id.to_string(),
            key: key.to_string(),
            reason,
        })?;
        let secret_reason = if secret.is_empty() {
            Some("is empty")
        } else if secret.len() > MAX_APP_SECRET_BYTES {
            Some("is longer than 256 bytes")
        } else {
            None
        };
        if let Some(reason) = secret_reason {
            return Err(AppsError::InvalidSecret {
                app_id: id.to_string(),
                reason,
            });
        }
        Ok(App {
            id: id.to_string(),
            key: key.to_string(),
            secret: AppSecret::new(secret),
            status: AppStatus::Enabled,
            limits: AppLimits::default(),
            webhooks: Vec::new(),
        })
    }
}

/// Ids and keys are path segments and the key is the part before `:` in an auth string, so
/// both are restricted to `[A-Za-z0-9_-]`.
fn check_token(token: &str, max_bytes: usize) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("is empty");
    }
    if token.len() > max_bytes {
        return Err("is longer than 64 bytes");
    }
    let valid = token
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err("has a character outside [A-Za-z0-9_-]")
    }
}

/// Why an application list was refused. Secrets never appear in these messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppsError {
    /// The apps file is not valid TOML or does not have the documented shape.
    #[error("apps file, line {line}, column {column}: {message}")]
    Toml {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong (a secret's value is never quoted).
        message: String,
    },
    /// The apps file has no `[[app]]`.
    #[error("the apps file defines no [[app]]")]
    NoApps,
    /// More than [`MAX_APPS`] applications.
    #[error("{count} apps, at most {limit} allowed")]
    TooManyApps {
        /// How many were given.
        count: usize,
        /// [`MAX_APPS`].
        limit: usize,
    },
    /// An id is not 1-64 bytes of `[A-Za-z0-9_-]`.
    #[error("app id {id:?} {reason}")]
    InvalidAppId {
        /// The id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key is not 1-64 bytes of `[A-Za-z0-9_-]`.
    #[error("app {app_id}: key {key:?} {reason}")]
    InvalidAppKey {
        /// The application's id.
        app_id: String,
        /// The key (public, so it may be shown).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A secret is empty or longer than 256 bytes.
    #[error("app {app_id}: secret {reason}")]
    InvalidSecret {
        /// The application's id.
        app_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two applications share an id.
    #[error("app id {0:?} is used twice")]
    DuplicateAppId(String),
    /// Two applications share a key.
    #[error("app key {0:?} is used twice")]
    DuplicateAppKey(String),
    /// A limit is outside its documented range.
    #[error("app {app_id}: {field} = {value} is outside {min}..={max}")]
    LimitOutOfRange {
        /// The application's id.
        app_id: String,
        /// The `[app.limits]` field.
        field: &'static str,
        /// The given value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A webhook URL is not `http(s)://...` or is too long.
    #[error("app {app_id}: webhook url {url:?} {reason}")]
    InvalidWebhookUrl {
        /// The application's id.
        app_id: String,
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A webhook target lists no event kinds (`events = []`).
    #[error("app {app_id}: webhook {url:?} has an empty events list")]
    EmptyWebhookEvents {
        /// The application's id.
        app_id: String,
        /// The URL.
        url: String,
    },
    /// More than [`MAX_WEBHOOKS_PER_APP`] webhook targets.
    #[error("app {app_id}: {count} webhooks, at most {limit} allowed")]
    TooManyWebhooks {
        /// The application's id.
        app_id: String,
        /// How many were given.
        count: usize,
        /// [`MAX_WEBHOOKS_PER_APP`].
        limit: usize,
    },
}

/// Every configured application, found by key (WebSocket) or by id (REST). The first one's
/// namespace is the default one ([`AppSlot::DEFAULT`]): raw `/ws/{channel}` clients, `POST
/// /publish/{channel}` and ws4redis Redis messages share it.
#[derive(Debug, Clone, Default)]
pub struct Apps {
    /// The applications, in configuration order.
    apps: Vec<Arc<App>>,
    /// Key -> index into `apps`.
    by_key: HashMap<String, usize>,
    /// Id -> index into `apps`.
    by_id: HashMap<String, usize>,
}

impl Apps {
    /// No application: every Pusher endpoint answers as for an unknown application.
    pub fn none() -> Apps {
        Apps::default()
    }

    /// One application from `--app-id`, `--app-key`, `--app-secret`.
    pub fn single(id: &str, key: &str, secret: &str) -> Result<Apps, AppsError> {
        Apps::from_apps(vec![App::new(id, key, secret)?])
    }

    /// Validated applications: at most [`MAX_APPS`], ids and keys unique.
    pub fn from_apps(apps: Vec<App>) -> Result<Apps, AppsError> {
        if apps.len() > MAX_APPS {
            return Err(AppsError::TooManyApps {
                count: apps.len(),
                limit: MAX_APPS,
            });
        }
        let mut by_key = HashMap::with_capacity(apps.len());
        let mut by_id = HashMap::with_capacity(apps.len());
        // Bounded: at most MAX_APPS iterations.
        for (index, app) in apps.iter().enumerate() {
            if by_id.insert(app.id.clone(), index).is_some() {
                return Err(AppsError::DuplicateAppId(app.id.clone()));
            }
            if by_key.insert(app.key.clone(), index).is_some() {
                return Err(AppsError::DuplicateAppKey(app.key.clone()));
            }
        }
        Ok(Apps {
            apps: apps.into_iter().map(Arc::new).collect(),
            by_key,
            by_id,
        })
    }

    /// Parses and validates an apps file (format in this file's header).
    pub fn from_toml_str(text: &str) -> Result<Apps, AppsError> {
        let file: AppsFile = toml::from_str(text).map_err(|error| toml_error(text, &error))?;
        if file.app.is_empty() {
            return Err(AppsError::NoApps);
        }
        if file.app.len() > MAX_APPS {
            return Err(AppsError::TooManyApps {
                count: file.app.len(),
                limit: MAX_APPS,
            });
        }
        let apps = file
            .app
            .into_iter()
            .map(AppEntry::into_app)
            .collect::<Result<Vec<App>, AppsError>>()?;
        Apps::from_apps(apps)
    }

    /// The application whose key is `key`, with its namespace.
    pub fn slot_by_key(&self, key: &str) -> Option<(AppSlot, &Arc<App>)> {
        self.by_key
            .get(key)
            .map(|&index| (AppSlot(index as u16), &self.apps[index]))
    }

    /// The application whose id is `id`, with its namespace.
    pub fn slot_by_id(&self, id: &str) -> Option<(AppSlot, &Arc<App>)> {
        self.by_id
            .get(id)
            .map(|&index| (AppSlot(index as u16), &self.apps[index]))
    }

    /// The application of namespace `slot`.
    pub fn get(&self, slot: AppSlot) -> Option<&Arc<App>> {
        self.apps.get(usize::from(slot.0))
    }

    /// The application whose key is `key` (WebSocket `/app/{key}`).
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key).map(|&index| &self.apps[index])
    }

    /// The application whose id is `id` (REST `/apps/{id}/...`).
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id).map(|&index| &self.apps[index])
    }

    /// Every application, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }

    /// How many applications.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// No application configured?
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// Converts a TOML error to [`AppsError::Toml`] without ever quoting a secret: the TOML
/// library's messages can include the offending value.
fn toml_error(text: &str, error: &toml::de::Error) -> AppsError {
    let offset = error.span().map_or(0, |span| span.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = offset - line_start + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let message = if line_text.trim_start().starts_with("secret") {
        "invalid secret (value not shown)".to_string()
    } else {
        error.message().to_string()
    };
    AppsError::Toml {
        line,
        column,
        message,
    }
}

/// The apps file: `[[app]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    /// The applications.
    #[serde(default)]
    app: Vec<AppEntry>,
}

/// One `[[app]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppEntry {
    /// `id`.
    id: String,
    /// `key`.
    key: String,
    /// `secret`.
    secret: String,
    /// `enabled` (default true).
    #[serde(default)]
    enabled: Option<bool>,
    /// `[app.limits]`.
    #[serde(default)]
    limits: LimitsEntry,
    /// `[[app.webhooks]]`.
    #[serde(default)]
    webhooks: Vec<WebhookEntry>,
}

/// One `[app.limits]` table: every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    /// See [`AppLimits::max_connections`].
    max_connections: Option<u32>,
    /// See [`AppLimits::max_event_payload_bytes`].
    max_event_payload_bytes: Option<u64>,
    /// See [`AppLimits::max_channels_per_event`].
    max_channels_per_event: Option<u64>,
    /// See [`AppLimits::max_batch_events`].
    max_batch_events: Option<u64>,
    /// See [`AppLimits::max_event_name_bytes`].
    max_event_name_bytes: Option<u64>,
    /// See [`AppLimits::client_events`].
    client_events: Option<ClientEvents>,
    /// See [`AppLimits::client_event_rate_per_s`].
    client_event_rate_per_s: Option<u64>,
    /// See [`AppLimits::max_presence_members`].
    max_presence_members: Option<u64>,
    /// See [`AppLimits::max_presence_user_info_bytes`].
    max_presence_user_info_bytes: Option<u64>,
    /// See [`AppLimits::max_user_id_chars`].
    max_user_id_chars: Option<u64>,
    /// See [`AppLimits::subscription_count_events`].
    subscription_count_events: Option<SubscriptionCountEvents>,
    /// See [`AppLimits::cache_ttl_s`].
    cache_ttl_s: Option<u64>,
}

/// One `[[app.webhooks]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEntry {
    /// `url`.
    url: String,
    /// `events` (default: every kind).
    #[serde(default)]
    events: Option<Vec<WebhookEventKind>>,
}

impl AppEntry {
    fn into_app(self) -> Result<App, AppsError> {
        let mut app = App::new(&self.id, &self.key, &self.secret)?;
        if self.enabled == Some(false) {
            app.status = AppStatus::Disabled;
        }
        app.limits = self.limits.into_limits(&app.id)?;
        if self.webhooks.len() > MAX_WEBHOOKS_PER_APP {
            return Err(AppsError::TooManyWebhooks {
                app_id: app.id.clone(),
                count: self.webhooks.len(),
                limit: MAX_WEBHOOKS_PER_APP,
            });
        }
        app.webhooks = self
            .webhooks
            .into_iter()
            .map(|entry| entry.into_target(&app.id))
            .collect::<Result<_, _>>()?;
        Ok(app)
    }
}

impl LimitsEntry {
    fn into_limits(self, app_id: &str) -> Result<AppLimits, AppsError> {
        let defaults = AppLimits::default();
        let ranged = |field: &'static str, value: Option<u64>, default: u64, max: u64| {
            let value = value.unwrap_or(default);
            if (1..=max).contains(&value) {
                Ok(value)
            } else {
                Err(AppsError::LimitOutOfRange {
                    app_id: app_id.to_string(),
                    field,
                    value,
                    min: 1,
                    max,
                })
            }
        };
        let as_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        Ok(AppLimits {
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_event_payload_bytes: as_usize(ranged(
                "max_event_payload_bytes",
                self.max_event_payload_bytes,
                defaults.max_event_payload_bytes as u64,
                1 << 20,
            )?),
            max_channels_per_event: as_usize(ranged(
                "max_channels_per_event",
                self.max_channels_per_event,
                defaults.max_channels_per_event as u64,
                1000,
            )?),
            max_batch_events: as_usize(ranged(
                "max_batch_events",
                self.max_batch_events,
                defaults.max_batch_events as u64,
                1000,
            )?),
            max_event_name_bytes: as_usize(ranged(
                "max_event_name_bytes",
                self.max_event_name_bytes,
                defaults.max_event_name_bytes as u64,
                1000,
            )?),
            client_events: self.client_events.unwrap_or(defaults.client_events),
            client_event_rate_per_s: ranged(
                "client_event_rate_per_s",
                self.client_event_rate_per_s,
                u64::from(defaults.client_event_rate_per_s),
                10_000,
            )? as u32,
            max_presence_members: as_usize(ranged(
                "max_presence_members",
                self.max_presence_members,
                defaults.max_presence_members as u64,
                10_000,
            )?),
            max_presence_user_info_bytes: as_usize(ranged(
                "max_presence_user_info_bytes",
                self.max_presence_user_info_bytes,
                defaults.max_presence_user_info_bytes as u64,
                64 * 1024,
            )?),
            max_user_id_chars: as_usize(ranged(
                "max_user_id_chars",
                self.max_user_id_chars,
                defaults.max_user_id_chars as u64,
                1024,
            )?),
            subscription_count_events: self
                .subscription_count_events
                .unwrap_or(defaults.subscription_count_events),
            cache_ttl_s: ranged(
                "cache_ttl_s",
                self.cache_ttl_s,
                defaults.cache_ttl_s,
                86_400,
            )?,
        })
    }
}

impl WebhookEntry {
    fn into_target(self, app_id: &str) -> Result<WebhookTarget, AppsError> {
        let invalid = |reason| AppsError::InvalidWebhookUrl {
            app_id: app_id.to_string(),
            url: self.url.clone(),
            reason,
        };
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .ok_or_else(|| invalid("does not start with http:// or https://"))?;
        if self.url.len() > MAX_WEBHOOK_URL_BYTES {
            return Err(invalid("is longer than 2048 bytes"));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("has no host"));
        }
        if self.url.bytes().any(|byte| byte <= b' ' || byte == 0x7f) {
            return Err(invalid("contains whitespace or a control character"));
        }
        let events = match self.events {
            None => WebhookEvents::all(),
            Some(kinds) => WebhookEvents::from_kinds(kinds),
        };
        if events.is_empty() {
            return Err(AppsError::EmptyWebhookEvents {
                app_id: app_id.to_string(),
                url: self.url,
            });
        }
        Ok(WebhookTarget {
            url: self.url,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[app]]
id = "1"
key = "app-key"
secret = "app-secret"

[app.limits]
max_connections = 1000
client_events = "on"
max_presence_members = 50

[[app.webhooks]]
url = "https://backend.example/pusher/webhooks"
events = ["channel_occupied", "channel_vacated"]

[[app]]
id = "2"
key = "other-key"
secret = "other-secret"
enabled = false
"#;

    #[test]
    fn the_documented_example_parses() {
        let apps = Apps::from_toml_str(EXAMPLE).unwrap();
        assert_eq!(apps.len(), 2);
        let first = apps.by_key("app-key").unwrap();
        assert_eq!(first.id, "1");
        assert_eq!(first.status, AppStatus::Enabled);
        assert_eq!(first.limits.max_connections, 1000);
        assert_eq!(first.limits.client_events, ClientEvents::On);
        assert_eq!(first.limits.max_presence_members, 50);
        assert_eq!(first.limits.max_event_payload_bytes, 10240);
        assert_eq!(first.webhooks.len(), 1);
        let events = first.webhooks[0].events;
        assert!(events.contains(WebhookEventKind::ChannelOccupied));
        assert!(!events.contains(WebhookEventKind::MemberAdded));
        let second = apps.by_id("2").unwrap();
        assert_eq!(second.key, "other-key");
        assert_eq!(second.status, AppStatus::Disabled);
        assert!(apps.by_key("nope").is_none());
        assert!(apps.by_id("3").is_none());
    }

    #[test]
    fn the_header_example_parses() {
        let header = include_str!("apps.rs")
            .lines()
            .skip_while(|line| !line.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| line.strip_prefix("//! ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let apps = Apps::from_toml_str(&header).unwrap();
        let app = apps.by_id("1").unwrap();
        assert_eq!(app.limits, AppLimits::default());
        assert_eq!(
            app.webhooks[0].url,
            "https://backend.example/pusher/webhooks"
        );
    }

    #[test]
    fn defaults_follow_the_pusher_docs() {
        let limits = AppLimits::default();
        assert_eq!(limits.max_event_payload_bytes, 10 * 1024);
        assert_eq!(limits.max_channels_per_event, 100);
        assert_eq!(limits.max_batch_events, 10);
        assert_eq!(limits.client_event_rate_per_s, 10);
        assert_eq!(limits.max_presence_members, 100);
        // Pusher's 1 KB, doubled: every object Pusher accepts is accepted (issue 14's 2 KB).
        assert_eq!(limits.max_presence_user_info_bytes, 2048);
        assert_eq!(limits.max_user_id_chars, 128);
        assert_eq!(limits.cache_ttl_s, 1800);
        assert_eq!(limits.client_events, ClientEvents::Off);
    }

    #[test]
    fn single_app_and_no_app() {
        let apps = Apps::single("42", "key", "secret").unwrap();
        assert_eq!(apps.by_key("key").unwrap().id, "42");
        assert!(Apps::none().is_empty());
        assert!(Apps::none().by_key("key").is_none());
    }

    #[test]
    fn secrets_are_never_printed() {
        let app = App::new("1", "key", "hunter2-secret").unwrap();
        assert!(!format!("{app:?}").contains("hunter2"));
        assert_eq!(app.secret.to_string(), "[redacted]");
        assert_eq!(app.secret.expose(), b"hunter2-secret");
        let wrong_type = "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = 123456789\n";
        let error = Apps::from_toml_str(wrong_type).unwrap_err();
        assert!(!error.to_string().contains("123456789"), "{error}");
        assert!(
            matches!(error, AppsError::Toml { line: 4, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn one_test_per_error_variant() {
        let bad_toml = Apps::from_toml_str("[[app]\n").unwrap_err();
        assert!(matches!(bad_toml, AppsError::Toml { line: 1, .. }));
        let unknown_field = "[[app]]\nid=\"1\"\nkey=\"k\"\nsecret=\"s\"\ncolour=\"red\"\n";
        assert!(matches!(
            Apps::from_toml_str(unknown_field),
            Err(AppsError::Toml { line: 5, .. })
        ));
        assert_eq!(Apps::from_toml_str("").unwrap_err(), AppsError::NoApps);
        let many: Vec<App> = (0..=MAX_APPS)
            .map(|index| App::new(&index.to_string(), &format!("k{index}"), "s").unwrap())
            .collect();
        assert!(matches!(
            Apps::from_apps(many),
            Err(AppsError::TooManyApps { count: 1025, .. })
        ));
        for bad_id in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(matches!(
                App::new(bad_id, "key", "secret"),
                Err(AppsError::InvalidAppId { .. })
            ));
        }
        assert!(matches!(
            App::new("1", "key:with:colons", "secret"),
            Err(AppsError::InvalidAppKey { .. })
        ));
        assert!(matches!(
            App::new("1", "key", ""),
            Err(AppsError::InvalidSecret { .. })
        ));
        assert!(matches!(
            App::new("1", "key", &"s".repeat(257)),
            Err(AppsError::InvalidSecret { .. })
        ));
        let duplicate_id = vec![
            App::new("1", "a", "s").unwrap(),
            App::new("1", "b", "s").unwrap(),
        ];
        assert_eq!(
            Apps::from_apps(duplicate_id).unwrap_err(),
            AppsError::DuplicateAppId("1".into())
        );
        let duplicate_key = vec![
            App::new("1", "a", "s").unwrap(),
            App::new("2", "a", "s").unwrap(),
        ];
        assert_eq!(
            Apps::from_apps(duplicate_key).unwrap_err(),
            AppsError::DuplicateAppKey("a".into())
        );
    }

    fn with_app_table(extra: &str) -> Result<Apps, AppsError> {
        Apps::from_toml_str(&format!(
            "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n{extra}"
        ))
    }

    #[test]
    fn limits_are_range_checked() {
        for (field, value) in [
            ("max_event_payload_bytes", "0"),
            ("max_event_payload_bytes", "1048577"),
            ("max_channels_per_event", "1001"),
            ("max_batch_events", "0"),
            ("max_event_name_bytes", "0"),
            ("client_event_rate_per_s", "0"),
            ("max_presence_members", "10001"),
            ("max_presence_user_info_bytes", "65537"),
            ("max_user_id_chars", "0"),
            ("cache_ttl_s", "86401"),
        ] {
            let result = with_app_table(&format!("[app.limits]\n{field} = {value}\n"));
            match result {
                Err(AppsError::LimitOutOfRange { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field} = {value}: {other:?}"),
            }
        }
        assert!(with_app_table("[app.limits]\nclient_events = \"maybe\"\n").is_err());
    }

    #[test]
    fn webhooks_are_validated() {
        let target = |url: &str, events: &str| {
            with_app_table(&format!("[[app.webhooks]]\nurl = \"{url}\"\n{events}"))
        };
        assert!(target("http://127.0.0.1:9000/hook", "").is_ok());
        let all = target("http://h/x", "").unwrap();
        assert_eq!(
            all.by_id("1").unwrap().webhooks[0].events,
            WebhookEvents::all()
        );
        for bad in ["ftp://h/x", "http://", "https:///path", "http://h/a b"] {
            assert!(
                matches!(target(bad, ""), Err(AppsError::InvalidWebhookUrl { .. })),
                "{bad}"
            );
        }
        let long = format!("http://h/{}", "x".repeat(MAX_WEBHOOK_URL_BYTES));
        assert!(matches!(
            target(&long, ""),
            Err(AppsError::InvalidWebhookUrl { .. })
        ));
        assert!(matches!(
            target("http://h/x", "events = []\n"),
            Err(AppsError::EmptyWebhookEvents { .. })
        ));
        assert!(target("http://h/x", "events = [\"nope\"]\n").is_err());
        let seventeen = "[[app.webhooks]]\nurl = \"http://h/x\"\n".repeat(17);
        assert!(matches!(
            with_app_table(&seventeen),
            Err(AppsError::TooManyWebhooks { count: 17, .. })
        ));
    }
}
