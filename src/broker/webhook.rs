//! The webhook sender: a bounded queue that the shards (or whoever detects the events) fill
//! without ever waiting, and one thread (`ringcast-webhooks`, a current-thread tokio runtime)
//! that batches the events per application and POSTs them to the application's targets.
//!
//! webhooks.md: a webhook is a POST of `{"time_ms": .., "events": [..]}` with
//! `Content-Type: application/json`, `X-Pusher-Key` (the app key) and `X-Pusher-Signature`
//! ("A HMAC SHA256 hex digest formed by signing the POST payload (body) with the token's
//! secret"). Pusher "will retry for 5 minutes" when the endpoint does not answer 2xx.
//!
//! What this file owns:
//! - Batching: one application's events collected for at most `batch_window`, or until
//!   [`MAX_WEBHOOK_EVENTS_PER_BODY`] of them, go out as one body per target, holding only the
//!   kinds that target wants (a target that wants none of them gets nothing).
//! - Retries: 2xx is delivered; 5xx, 408, 429, a timeout or a connection error is retried after
//!   `first_backoff * 2^n` (plus up to 20 % jitter), up to `max_attempts` attempts in all; any
//!   other answer is a failure at once. A retried body keeps its bytes, so its `time_ms` and
//!   signature do not change; [`WebhookSettings::validate`] keeps the worst case under the
//!   300 s that pusher-http-python's `validate_webhook` allows a `time_ms` to age.
//! - Limits: the queue holds at most `queue_capacity` events (full: the event is dropped and
//!   counted, the caller never waits); at most `in_flight_max` deliveries (a request and its
//!   retries) run at once, each holding only its own body; one pending batch per application.
//!   A delivery keeps its slot through its backoff waits, so a dead target slows the others
//!   (and then fills the queue) rather than growing memory.
//! - Shutdown: once every [`WebhookQueue`] is dropped, the last batches are sent and the thread
//!   ends when their deliveries have.
//! - Secrets: the app secret only signs; it is never logged. URLs are logged without their
//!   userinfo and query string ([`loggable_url`]).
//!
//! Deliberately not here: deciding which events happen (occupied/vacated transitions across
//! nodes, members, client events, cache misses) and the 3 s delay of `channel_vacated` and
//! `member_removed`; both belong to the caller. Nothing is persisted: events queued or in
//! flight when the process ends are lost.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Url};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, sleep, sleep_until};

use crate::apps::{App, Apps, WebhookEventKind, WebhookEvents};
use crate::auth::pusher::webhook_headers;
use crate::channel::AppSlot;
use crate::telemetry::WebhookReadings;
use crate::telemetry::counters::WebhookCounter;
use crate::wire::pusher::webhook::{MAX_WEBHOOK_EVENTS_PER_BODY, WebhookEvent, webhook_body};

/// How old a body's `time_ms` may be when a receiver checks it: pusher-http-python's
/// `validate_webhook` refuses a body more than 300 s from its clock. Every attempt of one body
/// must end within this ([`WebhookSettings::validate`]).
pub const WEBHOOK_BODY_MAX_AGE: Duration = Duration::from_secs(300);
/// Most attempts per body a configuration may ask for (the backoff doubles each time).
pub const WEBHOOK_ATTEMPTS_MAX: u32 = 16;
/// Most concurrent deliveries a configuration may ask for (each holds one body and, while it
/// waits for an answer, one connection).
pub const WEBHOOK_IN_FLIGHT_MAX: usize = 4096;
/// Most events the queue may be sized for.
pub const WEBHOOK_QUEUE_CAPACITY_MAX: usize = 1 << 20;
/// Longest batch window a configuration may ask for: an event waits at most this long before
/// its body is sent (Pusher's own deliberate delay, for vacated and removed, is 3 s).
pub const WEBHOOK_BATCH_WINDOW_MAX: Duration = Duration::from_secs(3);
/// A backoff is lengthened by up to this fraction, so targets that failed together are not
/// retried together.
const BACKOFF_JITTER_FRACTION: f64 = 0.2;

/// The sender's limits. Every field says its default and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Events the queue holds before new ones are dropped (and counted). Default 10 000: a
    /// burst of occupied/vacated transitions of a large node fits; at a few hundred bytes an
    /// event that is a few MiB at most. Range 1..=[`WEBHOOK_QUEUE_CAPACITY_MAX`].
    pub queue_capacity: usize,
    /// How long one application's events are collected before they go out. Default 50 ms:
    /// short next to Pusher's own delays (3 s for vacated), long enough to fold a burst into
    /// one request. Range 0..=[`WEBHOOK_BATCH_WINDOW_MAX`].
    pub batch_window: Duration,
    /// How long one POST may take, connection included. Default 5 s: a receiver should answer
    /// at once and do its work later.
    pub request_timeout: Duration,
    /// Attempts per body, the first included. Default 5. Range 1..=[`WEBHOOK_ATTEMPTS_MAX`].
    pub max_attempts: u32,
    /// The wait before the first retry; each further retry waits twice as long. Default
    /// 250 ms (then 0.5, 1, 2 s: about 4 s of waiting over 5 attempts).
    pub first_backoff: Duration,
    /// Deliveries (a body's attempts and the waits between them) running at once. Default 32.
    /// When all are busy the batcher waits, the queue fills and further events are dropped:
    /// a dead target slows every target down but never grows memory.
    /// Range 1..=[`WEBHOOK_IN_FLIGHT_MAX`].
    pub in_flight_max: usize,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            queue_capacity: 10_000,
            batch_window: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            max_attempts: 5,
            first_backoff: Duration::from_millis(250),
            in_flight_max: 32,
        }
    }
}

/// Why [`WebhookSettings`] cannot be used. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSettingsError {
    /// The queue must hold at least one event, and a bounded number.
    #[error("webhook queue_capacity must be 1..={WEBHOOK_QUEUE_CAPACITY_MAX}, got {0}")]
    QueueCapacity(usize),
    /// At least one delivery must be able to run, and a bounded number.
    #[error("webhook in_flight_max must be 1..={WEBHOOK_IN_FLIGHT_MAX}, got {0}")]
    InFlight(usize),
    /// At least one attempt, and a bounded number.
    #[error("webhook max_attempts must be 1..={WEBHOOK_ATTEMPTS_MAX}, got {0}")]
    Attempts(u32),
    /// A zero timeout would fail every request.
    #[error("webhook request_timeout must be above zero")]
    ZeroTimeout,
    /// Events would reach the receiver long after they happened.
    #[error("webhook batch_window must be at most {WEBHOOK_BATCH_WINDOW_MAX:?}, got {0:?}")]
    BatchWindow(Duration),
    /// The receiver would refuse the last attempts for their old `time_ms`.
    #[error(
        "webhook attempts could take {worst_case:?}, over the {WEBHOOK_BODY_MAX_AGE:?} a receiver \
         accepts a body's time_ms"
    )]
    RetriesOutliveBody {
        /// Every attempt timing out, with the longest waits between them.
        worst_case: Duration,
    },
}

impl WebhookSettings {
    /// Checks each field's range and that the last attempt of a body ends before the
    /// receiver would refuse its `time_ms` (stamped when the body's delivery starts).
    pub fn validate(&self) -> Result<(), WebhookSettingsError> {
        if !(1..=WEBHOOK_QUEUE_CAPACITY_MAX).contains(&self.queue_capacity) {
            return Err(WebhookSettingsError::QueueCapacity(self.queue_capacity));
        }
        if !(1..=WEBHOOK_IN_FLIGHT_MAX).contains(&self.in_flight_max) {
            return Err(WebhookSettingsError::InFlight(self.in_flight_max));
        }
        if !(1..=WEBHOOK_ATTEMPTS_MAX).contains(&self.max_attempts) {
            return Err(WebhookSettingsError::Attempts(self.max_attempts));
        }
        if self.request_timeout.is_zero() {
            return Err(WebhookSettingsError::ZeroTimeout);
        }
        if self.batch_window > WEBHOOK_BATCH_WINDOW_MAX {
            return Err(WebhookSettingsError::BatchWindow(self.batch_window));
        }
        let worst_case = self.worst_case_delivery();
        if worst_case > WEBHOOK_BODY_MAX_AGE {
            return Err(WebhookSettingsError::RetriesOutliveBody { worst_case });
        }
        Ok(())
    }

    /// The longest one body's delivery can take: every attempt times out and every wait has
    /// its full jitter.
    pub fn worst_case_delivery(&self) -> Duration {
        let attempts = self.max_attempts.min(WEBHOOK_ATTEMPTS_MAX);
        let waits = (0..attempts.saturating_sub(1)).fold(Duration::ZERO, |total, retry| {
            total.saturating_add(backoff(self.first_backoff, retry, 1.0))
        });
        self.request_timeout
            .saturating_mul(attempts)
            .saturating_add(waits)
    }
}

/// The sender's counters (one row each in [`WebhookCounter`]). Written by [`WebhookQueue::send`]
/// on the callers' threads and by the sender's thread; read by `/stat` and `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStatus {
    /// Indexed by [`WebhookCounter::index`].
    counters: [AtomicU64; WebhookCounter::COUNT],
}

impl WebhookStatus {
    /// Adds `amount` to `counter`.
    pub fn add(&self, counter: WebhookCounter, amount: u64) {
        self.counters[counter.index()].fetch_add(amount, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub fn get(&self, counter: WebhookCounter) -> u64 {
        self.counters[counter.index()].load(Ordering::Relaxed)
    }

    /// A copy for `/stat` and `/metrics`.
    pub fn readings(&self) -> WebhookReadings {
        WebhookReadings {
            counters: std::array::from_fn(|index| self.counters[index].load(Ordering::Relaxed)),
        }
    }
}

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookStartError {
    /// The settings break a rule.
    #[error(transparent)]
    Settings(#[from] WebhookSettingsError),
    /// The tokio runtime could not be built.
    #[error("cannot start the webhook runtime: {0}")]
    Runtime(std::io::Error),
    /// The HTTP client could not be built (its TLS configuration).
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(reqwest::Error),
    /// The thread could not be started.
    #[error("cannot start the webhook thread: {0}")]
    Thread(std::io::Error),
}

/// One event on its way to the sender's thread.
struct Queued {
    /// Whose event.
    app: AppSlot,
    /// The event.
    event: WebhookEvent,
}

/// The handle the event sources hold: cheap to clone (three `Arc`s), `Send + Sync`, and
/// [`send`](WebhookQueue::send) never waits. The sender stops once every clone is dropped and
/// its deliveries have ended.
#[derive(Clone)]
pub struct WebhookQueue {
    /// The bounded queue to the sender's thread.
    sender: mpsc::Sender<Queued>,
    /// Per application slot: the kinds at least one of its targets wants (empty: none).
    wanted: Arc<[WebhookEvents]>,
    /// The counters.
    status: Arc<WebhookStatus>,
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("WebhookQueue")
    }
}

impl WebhookQueue {
    /// Starts the sender on its own thread ("ringcast-webhooks", a current-thread tokio
    /// runtime), or returns None when no app has a webhook target. A failure to start is
    /// logged and also returns None; [`WebhookQueue::try_start`] returns it instead.
    pub fn start(apps: Arc<Apps>, settings: WebhookSettings) -> Option<WebhookQueue> {
        match WebhookQueue::try_start(apps, settings) {
            Ok(queue) => queue,
            Err(error) => {
                log::error!("webhooks disabled: {error}");
                None
            }
        }
    }

    /// [`WebhookQueue::start`], with the reason it could not start.
    pub fn try_start(
        apps: Arc<Apps>,
        settings: WebhookSettings,
    ) -> Result<Option<WebhookQueue>, WebhookStartError> {
        settings.validate()?;
        let targets = prepare_targets(&apps);
        if targets.iter().all(Option::is_none) {
            return Ok(None);
        }
        let wanted: Arc<[WebhookEvents]> = targets
            .iter()
            .map(|app| match app {
                Some(app) => app.wanted(),
                None => WebhookEvents::from_kinds([]),
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WebhookStartError::Runtime)?;
        let client = {
            let _context = runtime.enter();
            Client::builder()
                .timeout(settings.request_timeout)
                // A redirected POST would be re-sent somewhere the operator did not write down.
                .redirect(reqwest::redirect::Policy::none())
                // Targets are the operator's own URLs; no proxy read from the environment.
                .no_proxy()
                .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(WebhookStartError::Client)?
        };
        let status = Arc::new(WebhookStatus::default());
        let (sender, receiver) = mpsc::channel(settings.queue_capacity);
        let batcher = Batcher {
            in_flight: Arc::new(Semaphore::new(settings.in_flight_max)),
            targets,
            client,
            retry: RetryPolicy::from(&settings),
            batch_window: settings.batch_window,
            in_flight_max: settings.in_flight_max,
            status: status.clone(),
        };
        std::thread::Builder::new()
            .name("ringcast-webhooks".into())
            .spawn(move || runtime.block_on(batcher.run(receiver)))
            .map_err(WebhookStartError::Thread)?;
        Ok(Some(WebhookQueue {
            sender,
            wanted,
            status,
        }))
    }

    /// Never blocks, never awaits: queues `event` for `app`'s targets that want its kind; when
    /// the queue is full the event is dropped and counted. An event no target of `app` wants
    /// is not queued (and not counted).
    pub fn send(&self, app: AppSlot, event: WebhookEvent) {
        if !self.wants(app, event.kind()) {
            return;
        }
        match self.sender.try_send(Queued { app, event }) {
            Ok(()) => self.status.add(WebhookCounter::Queued, 1),
            // Closed: the sender's thread ended (it only does when every handle is gone, or
            // after a panic); the event is lost like a dropped one.
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.status.add(WebhookCounter::DroppedEvents, 1);
            }
        }
    }

    /// Does some target of `app` want events of `kind`? Lets a caller skip building an event
    /// nobody receives.
    pub fn wants(&self, app: AppSlot, kind: WebhookEventKind) -> bool {
        self.wanted
            .get(usize::from(app.0))
            .is_some_and(|kinds| kinds.contains(kind))
    }

    /// The counters.
    pub fn status(&self) -> &Arc<WebhookStatus> {
        &self.status
    }
}

/// One application's usable targets.
struct AppTargets {
    /// The application (its key and secret sign every body).
    app: Arc<App>,
    /// Its targets, in configuration order (at most `MAX_WEBHOOKS_PER_APP`).
    targets: Vec<Target>,
}

impl AppTargets {
    /// The kinds at least one target wants.
    fn wanted(&self) -> WebhookEvents {
        WebhookEvents::from_kinds(WebhookEventKind::ALL.into_iter().filter(|&kind| {
            self.targets
                .iter()
                .any(|target| target.events.contains(kind))
        }))
    }
}

/// One webhook target, its URL parsed once.
struct Target {
    /// Where to POST.
    url: Url,
    /// The URL without userinfo and query, for logs.
    log_url: String,
    /// Which kinds it receives (never empty).
    events: WebhookEvents,
}

/// Per application slot, its targets (None: it has none that can be used).
fn prepare_targets(apps: &Apps) -> Vec<Option<AppTargets>> {
    apps.iter()
        .map(|app| {
            let targets: Vec<Target> = app
                .webhooks
                .iter()
                .filter(|target| !target.events.is_empty())
                .filter_map(|target| match Url::parse(&target.url) {
                    Ok(url) => Some(Target {
                        log_url: loggable_url(&url),
                        url,
                        events: target.events,
                    }),
                    Err(error) => {
                        // The URL itself may hold credentials: not logged.
                        log::error!("webhook: app {}: a target URL is unusable: {error}", app.id);
                        None
                    }
                })
                .collect();
            (!targets.is_empty()).then(|| AppTargets {
                app: app.clone(),
                targets,
            })
        })
        .collect()
}

/// `url` without userinfo, query or fragment: `scheme://host[:port]/path`.
pub fn loggable_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// How a body is retried.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    /// Attempts in all.
    max_attempts: u32,
    /// Wait before the first retry.
    first_backoff: Duration,
}

impl From<&WebhookSettings> for RetryPolicy {
    fn from(settings: &WebhookSettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: settings.max_attempts,
            first_backoff: settings.first_backoff,
        }
    }
}

/// The sender's side: collects batches and starts deliveries. Lives on the sender's thread.
struct Batcher {
    /// Per application slot, its targets.
    targets: Vec<Option<AppTargets>>,
    /// The HTTP client (one connection pool for every target).
    client: Client,
    /// How deliveries retry.
    retry: RetryPolicy,
    /// How long events are collected.
    batch_window: Duration,
    /// Deliveries running at once: a delivery holds a permit until its last attempt ends.
    in_flight: Arc<Semaphore>,
    /// The semaphore's size.
    in_flight_max: usize,
    /// The counters.
    status: Arc<WebhookStatus>,
}

impl Batcher {
    /// Collects events for a window, sends what was collected, and again, until every
    /// [`WebhookQueue`] is dropped; then waits for the deliveries still running.
    async fn run(self, mut queue: mpsc::Receiver<Queued>) {
        // Bounded: one pending batch per application slot, each under
        // MAX_WEBHOOK_EVENTS_PER_BODY events.
        let mut batches: HashMap<AppSlot, Vec<WebhookEvent>> = HashMap::new();
        let mut open = true;
        // Bounded: one iteration per batch window (each begins with an event).
        while open && let Some(first) = queue.recv().await {
            self.collect(&mut batches, first).await;
            let deadline = Instant::now() + self.batch_window;
            // Bounded: ends at the deadline, which comes first when both are ready.
            loop {
                tokio::select! {
                    biased;
                    () = sleep_until(deadline) => break,
                    next = queue.recv() => match next {
                        Some(queued) => self.collect(&mut batches, queued).await,
                        None => {
                            open = false;
                            break;
                        }
                    },
                }
            }
            let ready: Vec<(AppSlot, Vec<WebhookEvent>)> = batches.drain().collect();
            for (app, events) in ready {
                self.send_batch(app, events).await;
            }
        }
        let permits = u32::try_from(self.in_flight_max).expect("validate() bounds in_flight_max");
        // Every permit back: no delivery runs any more.
        let _ = self.in_flight.acquire_many(permits).await;
    }

    /// Adds one event to its application's batch; a full batch goes out at once.
    async fn collect(&self, batches: &mut HashMap<AppSlot, Vec<WebhookEvent>>, queued: Queued) {
        let batch = batches.entry(queued.app).or_default();
        batch.push(queued.event);
        if batch.len() >= MAX_WEBHOOK_EVENTS_PER_BODY {
            let events = batches
                .remove(&queued.app)
                .expect("the batch was just written");
            self.send_batch(queued.app, events).await;
        }
    }

    /// One body per target of `app` that wants some of `events`, each a delivery of its own.
    /// Waits while `in_flight_max` deliveries run.
    async fn send_batch(&self, app: AppSlot, events: Vec<WebhookEvent>) {
        let Some(Some(targets)) = self.targets.get(usize::from(app.0)) else {
            // `send` queues only events some target of the app wants.
            return;
        };
        // Bounded: at most MAX_WEBHOOKS_PER_APP targets.
        for target in &targets.targets {
            let wanted: Vec<WebhookEvent> = events
                .iter()
                .filter(|event| target.events.contains(event.kind()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let permit = self
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            // Stamped once a delivery may start, so the wait for a permit does not age it.
            let body = webhook_body(unix_time_ms(), &wanted);
            let delivery = Delivery {
                url: target.url.clone(),
                log_url: target.log_url.clone(),
                headers: webhook_headers(&targets.app, &body),
                body,
                events: wanted.len() as u64,
            };
            tokio::spawn(deliver(
                self.client.clone(),
                delivery,
                self.retry,
                self.status.clone(),
                permit,
            ));
        }
    }
}

/// One body for one target: everything a delivery holds across its retries.
struct Delivery {
    /// Where.
    url: Url,
    /// Where, for logs.
    log_url: String,
    /// `X-Pusher-Key` and `X-Pusher-Signature`.
    headers: [(&'static str, String); 2],
    /// The exact bytes signed.
    body: Bytes,
    /// Events in the body.
    events: u64,
}

/// What one attempt's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Worth another attempt.
    Retry,
    /// Another attempt would get the same answer.
    Fail,
}

/// webhooks.md: a 2xx answer is a delivery. 5xx, 408 (request timeout) and 429 (too many
/// requests) say "later"; any other answer (4xx, or a 3xx, since redirects are not followed)
/// would be the same next time.
fn verdict_for_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// A request that never got an answer (timeout, refused or reset connection, TLS failure) is
/// retried; one that could not even be built is not.
fn verdict_for_error(error: &reqwest::Error) -> Verdict {
    if error.is_builder() {
        Verdict::Fail
    } else {
        Verdict::Retry
    }
}

/// Sends one body until it is delivered, refused, or out of attempts; counts the outcome.
/// `_permit` is one of `in_flight_max`, held until the last attempt ends.
async fn deliver(
    client: Client,
    delivery: Delivery,
    retry: RetryPolicy,
    status: Arc<WebhookStatus>,
    _permit: OwnedSemaphorePermit,
) {
    let mut last_problem = String::new();
    // Bounded: at most max_attempts attempts.
    for attempt in 0..retry.max_attempts {
        if attempt > 0 {
            sleep(backoff(retry.first_backoff, attempt - 1, jitter_unit())).await;
            status.add(WebhookCounter::Retries, 1);
        }
        status.add(WebhookCounter::Posts, 1);
        let [(key_name, key), (signature_name, signature)] = &delivery.headers;
        let answer = client
            .post(delivery.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(*key_name, key.as_str())
            .header(*signature_name, signature.as_str())
            .body(delivery.body.clone())
            .send()
            .await;
        let verdict = match answer {
            Ok(response) => {
                last_problem = format!("answered {}", response.status().as_u16());
                verdict_for_status(response.status().as_u16())
            }
            Err(error) => {
                last_problem = describe(&error);
                verdict_for_error(&error)
            }
        };
        match verdict {
            Verdict::Delivered => {
                status.add(WebhookCounter::DeliveredEvents, delivery.events);
                return;
            }
            Verdict::Retry => log::debug!(
                "webhook to {}: attempt {} {last_problem}",
                delivery.log_url,
                attempt + 1
            ),
            Verdict::Fail => break,
        }
    }
    status.add(WebhookCounter::FailedEvents, delivery.events);
    log::warn!(
        "webhook to {}: gave up on {} event(s): {last_problem}",
        delivery.log_url,
        delivery.events
    );
}

/// A transport error for logs: its kind and causes, never the URL (it may hold credentials).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(error);
    // Bounded: a few causes deep at most.
    for _ in 0..4 {
        let Some(cause) = source else { break };
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait before retry number `retry` (0 for the first): `first * 2^retry`, lengthened by
/// `jitter_unit` (0..=1) times 20 %.
fn backoff(first: Duration, retry: u32, jitter_unit: f64) -> Duration {
    let base = first.saturating_mul(1_u32 << retry.min(31));
    let jitter = base.mul_f64(BACKOFF_JITTER_FRACTION * jitter_unit.clamp(0.0, 1.0));
    base.saturating_add(jitter)
}

/// A number in 0..1 from std's randomly keyed hasher (jitter needs no cryptography).
fn jitter_unit() -> f64 {
    let random = RandomState::new().hash_one(0_u8);
    (random >> 11) as f64 / (1_u64 << 53) as f64
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use hmac::{Hmac, KeyInit, Mac};
    use serde_json::{Value, json};
    use sha2::Sha256;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
    use tokio::time::timeout;

    use super::*;
    use crate::apps::WebhookTarget;

    /// The Pusher docs' example credentials.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    /// Longest wait for anything in these tests.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// One request as the test receiver read it.
    #[derive(Debug)]
    struct Received {
        /// Request line's method.
        method: String,
        /// Request target.
        path: String,
        /// Headers, names lowercased.
        headers: Vec<(String, String)>,
        /// Exactly Content-Length bytes.
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(known, _)| known == name)
                .map(|(_, value)| value.as_str())
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("the body is JSON")
        }
    }

    /// How the test receiver answers.
    #[derive(Debug, Clone)]
    enum Answer {
        /// The n-th request gets the n-th status; the last one repeats.
        Statuses(Vec<u16>),
        /// Reads the request, never answers.
        Never,
    }

    /// A tiny HTTP/1.1 receiver on 127.0.0.1:0: reads each request's head and Content-Length
    /// body, reports it, answers as told. Keeps connections alive like reqwest expects.
    async fn receiver(answer: Answer) -> (SocketAddr, UnboundedReceiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (reports, received) = unbounded_channel();
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(
                    stream,
                    answer.clone(),
                    served.clone(),
                    reports.clone(),
                ));
            }
        });
        (address, received)
    }

    async fn serve(
        mut stream: TcpStream,
        answer: Answer,
        served: Arc<AtomicUsize>,
        reports: UnboundedSender<Received>,
    ) {
        let mut buffer = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = buffer.windows(4).position(|four| four == b"\r\n\r\n") {
                    break at + 4;
                }
                if !read_more(&mut stream, &mut buffer).await {
                    return;
                }
            };
            let (method, path, headers) = {
                let mut slots = [httparse::EMPTY_HEADER; 32];
                let mut request = httparse::Request::new(&mut slots);
                request.parse(&buffer[..head_end]).unwrap();
                let headers: Vec<(String, String)> = request
                    .headers
                    .iter()
                    .map(|header| {
                        (
                            header.name.to_ascii_lowercase(),
                            String::from_utf8(header.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
                (
                    request.method.unwrap().to_string(),
                    request.path.unwrap().to_string(),
                    headers,
                )
            };
            let length: usize = headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map_or(0, |(_, value)| value.parse().unwrap());
            while buffer.len() < head_end + length {
                if !read_more(&mut stream, &mut buffer).await {
                    return;
                }
            }
            let body = buffer[head_end..head_end + length].to_vec();
            buffer.drain(..head_end + length);
            let index = served.fetch_add(1, Ordering::SeqCst);
            let _ = reports.send(Received {
                method,
                path,
                headers,
                body,
            });
            let status = match &answer {
                Answer::Never => std::future::pending::<u16>().await,
                Answer::Statuses(statuses) => statuses[index.min(statuses.len() - 1)],
            };
            let answer = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
        let mut chunk = [0_u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                buffer.extend_from_slice(&chunk[..read]);
                true
            }
        }
    }

    /// The next request, within [`PATIENCE`].
    async fn next(received: &mut UnboundedReceiver<Received>) -> Received {
        timeout(PATIENCE, received.recv())
            .await
            .expect("a request within 5 s")
            .expect("the receiver runs")
    }

    /// Waits until `counter` reaches `value` (panics after [`PATIENCE`]).
    async fn wait_for(queue: &WebhookQueue, counter: WebhookCounter, value: u64) {
        let deadline = Instant::now() + PATIENCE;
        while queue.status().get(counter) < value {
            assert!(
                Instant::now() < deadline,
                "{} stayed below {value}: {:?}",
                counter.name(),
                queue.status().readings()
            );
            sleep(Duration::from_millis(5)).await;
        }
    }

    fn url(address: SocketAddr) -> String {
        format!("http://{address}/hooks?token=t")
    }

    /// One application (slot 0) with these targets.
    fn apps_with(targets: Vec<(String, WebhookEvents)>) -> Arc<Apps> {
        let mut app = App::new("1", KEY, SECRET).unwrap();
        app.webhooks = targets
            .into_iter()
            .map(|(url, events)| WebhookTarget { url, events })
            .collect();
        Arc::new(Apps::from_apps(vec![app]).unwrap())
    }

    /// Short waits so that every test ends within seconds.
    fn test_settings() -> WebhookSettings {
        WebhookSettings {
            queue_capacity: 1000,
            // Long enough that a loaded machine still sends a test's events in one batch.
            batch_window: Duration::from_millis(200),
            request_timeout: Duration::from_secs(2),
            max_attempts: 3,
            first_backoff: Duration::from_millis(10),
            in_flight_max: 4,
        }
    }

    fn start(apps: Arc<Apps>, settings: WebhookSettings) -> WebhookQueue {
        WebhookQueue::try_start(apps, settings)
            .expect("the sender starts")
            .expect("an app has a target")
    }

    fn occupied(channel: &str) -> WebhookEvent {
        WebhookEvent::ChannelOccupied {
            channel: channel.into(),
        }
    }

    fn member_added(user_id: &str) -> WebhookEvent {
        WebhookEvent::MemberAdded {
            channel: "presence-room".into(),
            user_id: user_id.into(),
        }
    }

    fn member_removed(user_id: &str) -> WebhookEvent {
        WebhookEvent::MemberRemoved {
            channel: "presence-room".into(),
            user_id: user_id.into(),
        }
    }

    /// HMAC-SHA256(secret, body) in lowercase hex, computed here rather than with `auth`.
    fn expected_signature(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    #[tokio::test]
    async fn a_batch_is_one_signed_body_with_time_ms_and_the_events() {
        let (address, mut received) = receiver(Answer::Statuses(vec![200])).await;
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            test_settings(),
        );
        let before_ms = unix_time_ms();
        queue.send(AppSlot(0), occupied("a"));
        queue.send(AppSlot(0), member_added("u1"));
        queue.send(AppSlot(0), occupied("b"));
        let request = next(&mut received).await;
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks?token=t");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-pusher-key"), Some(KEY));
        assert_eq!(
            request.header("x-pusher-signature"),
            Some(expected_signature(&request.body).as_str())
        );
        let body = request.json();
        let time_ms = body["time_ms"].as_u64().expect("time_ms is a number");
        assert!((before_ms..=unix_time_ms()).contains(&time_ms));
        assert_eq!(
            body["events"],
            json!([
                {"name": "channel_occupied", "channel": "a"},
                {"name": "member_added", "channel": "presence-room", "user_id": "u1"},
                {"name": "channel_occupied", "channel": "b"},
            ])
        );
        wait_for(&queue, WebhookCounter::DeliveredEvents, 3).await;
        let readings = queue.status().readings();
        assert_eq!(readings.get(WebhookCounter::Queued), 3);
        assert_eq!(readings.get(WebhookCounter::Posts), 1, "one body per batch");
        assert_eq!(readings.get(WebhookCounter::Retries), 0);
        assert_eq!(readings.get(WebhookCounter::FailedEvents), 0);
    }

    #[tokio::test]
    async fn more_than_a_body_holds_goes_out_in_full_bodies() {
        let (address, mut received) = receiver(Answer::Statuses(vec![200])).await;
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            test_settings(),
        );
        for index in 0..MAX_WEBHOOK_EVENTS_PER_BODY + 1 {
            queue.send(AppSlot(0), occupied(&format!("c{index}")));
        }
        let first = next(&mut received).await.json();
        let second = next(&mut received).await.json();
        assert_eq!(first["events"].as_array().unwrap().len(), 100);
        assert_eq!(second["events"].as_array().unwrap().len(), 1);
        assert_eq!(second["events"][0]["channel"], "c100");
    }

    #[tokio::test]
    async fn a_target_gets_only_the_kinds_it_wants() {
        let (every_address, mut every) = receiver(Answer::Statuses(vec![200])).await;
        let (members_address, mut members) = receiver(Answer::Statuses(vec![200])).await;
        let queue = start(
            apps_with(vec![
                (url(every_address), WebhookEvents::all()),
                (
                    url(members_address),
                    WebhookEvents::from_kinds([WebhookEventKind::MemberAdded]),
                ),
            ]),
            test_settings(),
        );
        queue.send(AppSlot(0), occupied("a"));
        queue.send(AppSlot(0), member_added("u1"));
        queue.send(AppSlot(0), member_removed("u1"));
        queue.send(AppSlot(0), member_added("u2"));
        assert_eq!(
            next(&mut every).await.json()["events"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        let body = next(&mut members).await.json();
        assert_eq!(
            body["events"],
            json!([
                {"name": "member_added", "channel": "presence-room", "user_id": "u1"},
                {"name": "member_added", "channel": "presence-room", "user_id": "u2"},
            ])
        );
        // A batch with nothing it wants: the first target gets a body, the second nothing.
        queue.send(AppSlot(0), occupied("b"));
        assert_eq!(next(&mut every).await.json()["events"][0]["channel"], "b");
        wait_for(&queue, WebhookCounter::DeliveredEvents, 4 + 2 + 1).await;
        sleep(Duration::from_millis(100)).await;
        assert!(
            members.try_recv().is_err(),
            "no body without a wanted event"
        );
        assert_eq!(queue.status().get(WebhookCounter::Posts), 3);
    }

    #[test]
    fn an_event_no_target_wants_is_not_queued() {
        let queue = start(
            apps_with(vec![(
                "http://127.0.0.1:9/".into(),
                WebhookEvents::from_kinds([WebhookEventKind::MemberAdded]),
            )]),
            test_settings(),
        );
        assert!(!queue.wants(AppSlot(0), WebhookEventKind::ChannelOccupied));
        assert!(queue.wants(AppSlot(0), WebhookEventKind::MemberAdded));
        assert!(!queue.wants(AppSlot(1), WebhookEventKind::MemberAdded));
        queue.send(AppSlot(0), occupied("a"));
        queue.send(AppSlot(1), member_added("u"));
        let readings = queue.status().readings();
        assert_eq!(readings.get(WebhookCounter::Queued), 0);
        assert_eq!(readings.get(WebhookCounter::DroppedEvents), 0);
    }

    #[test]
    fn no_target_starts_nothing() {
        let apps = Arc::new(Apps::single("1", KEY, SECRET).unwrap());
        assert!(
            WebhookQueue::try_start(apps, test_settings())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_500_is_retried_then_delivered_once() {
        let (address, mut received) = receiver(Answer::Statuses(vec![500, 200])).await;
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            test_settings(),
        );
        queue.send(AppSlot(0), occupied("a"));
        let first = next(&mut received).await;
        let second = next(&mut received).await;
        assert_eq!(first.body, second.body, "a retry sends the same bytes");
        assert_eq!(
            first.header("x-pusher-signature"),
            second.header("x-pusher-signature")
        );
        wait_for(&queue, WebhookCounter::DeliveredEvents, 1).await;
        sleep(Duration::from_millis(50)).await;
        assert!(received.try_recv().is_err(), "delivered once");
        let readings = queue.status().readings();
        assert_eq!(readings.get(WebhookCounter::Retries), 1);
        assert_eq!(readings.get(WebhookCounter::Posts), 2);
        assert_eq!(readings.get(WebhookCounter::DeliveredEvents), 1);
        assert_eq!(readings.get(WebhookCounter::FailedEvents), 0);
    }

    #[tokio::test]
    async fn a_400_is_a_failure_without_retry() {
        let (address, mut received) = receiver(Answer::Statuses(vec![400, 200])).await;
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            test_settings(),
        );
        queue.send(AppSlot(0), occupied("a"));
        queue.send(AppSlot(0), occupied("b"));
        next(&mut received).await;
        wait_for(&queue, WebhookCounter::FailedEvents, 2).await;
        sleep(Duration::from_millis(100)).await;
        assert!(received.try_recv().is_err(), "not retried");
        let readings = queue.status().readings();
        assert_eq!(readings.get(WebhookCounter::Posts), 1);
        assert_eq!(readings.get(WebhookCounter::Retries), 0);
        assert_eq!(readings.get(WebhookCounter::DeliveredEvents), 0);
    }

    #[tokio::test]
    async fn a_dead_port_is_tried_max_attempts_times_then_failed() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = dead.local_addr().unwrap();
        drop(dead);
        let settings = test_settings();
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            settings.clone(),
        );
        queue.send(AppSlot(0), occupied("a"));
        wait_for(&queue, WebhookCounter::FailedEvents, 1).await;
        let readings = queue.status().readings();
        assert_eq!(
            readings.get(WebhookCounter::Posts),
            u64::from(settings.max_attempts)
        );
        assert_eq!(
            readings.get(WebhookCounter::Retries),
            u64::from(settings.max_attempts - 1)
        );
        assert_eq!(readings.get(WebhookCounter::DeliveredEvents), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let (address, mut received) = receiver(Answer::Never).await;
        let queue = start(
            apps_with(vec![(url(address), WebhookEvents::all())]),
            WebhookSettings {
                queue_capacity: 2,
                in_flight_max: 1,
                batch_window: Duration::from_millis(1),
                request_timeout: Duration::from_secs(30),
                max_attempts: 1,
                ..test_settings()
            },
        );
        // The one delivery allowed hangs on the receiver.
        queue.send(AppSlot(0), occupied("a"));
        next(&mut received).await;
        // The batcher takes this one and waits for the delivery's permit.
        queue.send(AppSlot(0), occupied("b"));
        let deadline = Instant::now() + PATIENCE;
        while queue.sender.capacity() < 2 {
            assert!(Instant::now() < deadline, "the batcher takes the event");
            sleep(Duration::from_millis(1)).await;
        }
        // Past its 1 ms window: waiting for the permit, not reading the queue.
        sleep(Duration::from_millis(100)).await;
        // Two fit in the queue; the other three are dropped, and send() returns at once.
        let began = std::time::Instant::now();
        for index in 0..5 {
            queue.send(AppSlot(0), occupied(&format!("c{index}")));
        }
        assert!(
            began.elapsed() < Duration::from_millis(100),
            "send never waits"
        );
        let readings = queue.status().readings();
        assert_eq!(readings.get(WebhookCounter::Queued), 4);
        assert_eq!(readings.get(WebhookCounter::DroppedEvents), 3);
        assert_eq!(readings.get(WebhookCounter::Posts), 1);
    }

    #[test]
    fn statuses_are_delivered_retried_or_failed() {
        for status in [200, 201, 204, 299] {
            assert_eq!(verdict_for_status(status), Verdict::Delivered, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(verdict_for_status(status), Verdict::Retry, "{status}");
        }
        for status in [100, 301, 302, 400, 401, 403, 404, 410, 413] {
            assert_eq!(verdict_for_status(status), Verdict::Fail, "{status}");
        }
    }

    #[test]
    fn backoff_doubles_with_at_most_a_fifth_of_jitter() {
        let first = Duration::from_millis(250);
        assert_eq!(backoff(first, 0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(first, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(first, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(first, 3, 1.0), Duration::from_millis(2400));
        assert_eq!(
            backoff(first, 0, 7.0),
            Duration::from_millis(300),
            "clamped"
        );
        assert_eq!(backoff(Duration::MAX, 40, 1.0), Duration::MAX, "saturates");
        for _ in 0..100 {
            let unit = jitter_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn settings_keep_every_attempt_within_the_body_age() {
        let defaults = WebhookSettings::default();
        assert_eq!(defaults.validate(), Ok(()));
        // 5 timeouts of 5 s, waits of 0.25, 0.5, 1, 2 s with full jitter.
        assert_eq!(
            defaults.worst_case_delivery(),
            Duration::from_millis(29_500)
        );
        let slow = WebhookSettings {
            request_timeout: Duration::from_secs(60),
            ..WebhookSettings::default()
        };
        assert!(matches!(
            slow.validate(),
            Err(WebhookSettingsError::RetriesOutliveBody { .. })
        ));
        let cases = [
            (
                WebhookSettings {
                    queue_capacity: 0,
                    ..WebhookSettings::default()
                },
                WebhookSettingsError::QueueCapacity(0),
            ),
            (
                WebhookSettings {
                    in_flight_max: 0,
                    ..WebhookSettings::default()
                },
                WebhookSettingsError::InFlight(0),
            ),
            (
                WebhookSettings {
                    max_attempts: 0,
                    ..WebhookSettings::default()
                },
                WebhookSettingsError::Attempts(0),
            ),
            (
                WebhookSettings {
                    request_timeout: Duration::ZERO,
                    ..WebhookSettings::default()
                },
                WebhookSettingsError::ZeroTimeout,
            ),
            (
                WebhookSettings {
                    batch_window: Duration::from_secs(4),
                    ..WebhookSettings::default()
                },
                WebhookSettingsError::BatchWindow(Duration::from_secs(4)),
            ),
        ];
        for (settings, error) in cases {
            assert_eq!(settings.validate(), Err(error));
        }
    }

    #[test]
    fn logged_urls_carry_no_credentials_or_query() {
        let url = Url::parse("https://user:secret@example.com:8443/hooks/in?token=abc#x").unwrap();
        assert_eq!(loggable_url(&url), "https://example.com:8443/hooks/in");
        let url = Url::parse("http://[::1]/").unwrap();
        assert_eq!(loggable_url(&url), "http://[::1]/");
    }
}
