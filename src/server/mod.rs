//! The runtime: starting the shards, and stopping them on SIGTERM/SIGINT.
//!
//! The main thread raises the open-file limit, binds two SO_REUSEPORT listeners per shard (the
//! public one and the API one; the first of each resolves port 0, the others bind the same
//! port), starts one glommio executor per shard pinned to its core, waits until every shard is
//! ready, logs `listening on ADDR (api on ADDR; ...)`, and then only waits: for a signal (which
//! sets the shared shutdown flag that every shard's ticker watches) and for the shards to finish
//! draining.
//!
//! Inside a shard (see `shard.rs`): `accept` serves sockets until they upgrade, the `registry`
//! owns every WebSocket connection's state (`state` holds its machines), the `reactor` reads
//! them, `fanout` queues publications, and `write` is the one write path.
//!
//! A shard whose executor dies (a panic outside a connection's handler, which would be a bug)
//! takes only its own connections with it: its death guard marks it dead, shuts its listener
//! down so the kernel routes new connections to the other shards, and publishes leave it out.

mod accept;
mod centrifugo;
mod deflate;
mod event;
mod fanout;
mod history;
mod listen;
mod occupancy;
mod outbound;
mod poller;
mod pusher;
mod pusher_state;
mod reactor;
mod registry;
mod shard;
mod shared;
mod state;
mod write;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use futures::channel::mpsc as bounded;
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::net::TcpListener;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};

use crate::apps::{Apps, SubscriptionCountEvents};
use crate::broker::redis::{self, RedisLink, RedisSettings, RedisTarget};
use crate::broker::webhook::{WebhookQueue, WebhookSettings};
use crate::config::Config;
use crate::http::Listener;
use crate::publication::Publication;
use crate::telemetry::ShardId;
pub use shard::ShardMessage;
pub use shared::{ShardLife, Shared};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or configuring a listener failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A shard could not start, or died.
    #[error("shard {shard} failed: {reason}")]
    Shard {
        /// Which shard.
        shard: ShardId,
        /// The cause.
        reason: String,
    },
    /// The Redis subscriber core could not start.
    #[error("{0}")]
    Redis(String),
    /// Installing the signal handler failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Longest wait for every shard to join the mesh at start.
const MESH_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A shard's answer to "are you ready?".
type ReadyReport = Result<ShardId, ServerError>;

/// Runs the server until SIGTERM/SIGINT, then drains. `config` must be validated.
pub fn run(config: Config, apps: Apps) -> Result<(), ServerError> {
    let open_files = listen::raise_open_file_limit();
    let cores = listen::choose_cores(&config);
    let shard_count = cores.len();
    let max_sockets = listen::sockets_per_shard(open_files, shard_count);
    let max_connections = listen::connections_per_shard(&config, max_sockets);
    log::info!(
        "open-file limit {open_files}: up to {max_connections} WebSocket connections per shard, {} in all",
        max_connections * shard_count
    );
    let (address, public_listeners) = listen::bind_listeners(config.listen, shard_count)?;
    let (api_address, api_listeners) = listen::bind_listeners(config.api_listen, shard_count)?;
    let apps = Arc::new(apps);
    // Webhooks are sent from their own thread; shards and the Redis core only queue them.
    let webhooks = WebhookQueue::start(apps.clone(), WebhookSettings::default());
    let RedisStart { link, mut inboxes } = start_redis(&config, &apps, &cores, &webhooks)?;
    let mut shared = Shared::new(
        shard_count,
        max_connections,
        max_sockets,
        config.mesh_capacity,
    );
    shared.redis = link.as_ref().map(|link| link.status.clone());
    shared.webhooks = webhooks;
    shared.count_app_connections(apps.len());
    if config.max_connections_per_ip > 0 {
        shared.address_limit = Some(Arc::new(shared::AddressLimit::new(
            config.max_connections_per_ip,
        )));
    }
    let shared = Arc::new(shared);
    let config = Arc::new(config);
    let mesh = (shard_count > 1).then(|| MeshBuilder::full(shard_count, config.mesh_capacity));
    let (ready_sender, ready) = mpsc::channel::<ReadyReport>();

    let mut handles = Vec::with_capacity(shard_count);
    let listeners = public_listeners.into_iter().zip(api_listeners);
    for (index, (core, (public, api))) in cores.iter().copied().zip(listeners).enumerate() {
        let start = ShardStart {
            shard_id: ShardId(index),
            core,
            config: config.clone(),
            shared: shared.clone(),
            listeners: Listeners { public, api },
            mesh: mesh.clone(),
            redis: link.clone(),
            from_redis: inboxes.get_mut(index).and_then(Option::take),
            apps: apps.clone(),
        };
        let ready_sender = ready_sender.clone();
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("ringcast-shard-{index}"))
            .io_memory(config.io_memory)
            .spawn(move || run_shard(start, ready_sender))
            .map_err(|error| ServerError::Shard {
                shard: ShardId(index),
                reason: error.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_sender);
    for _ in 0..shard_count {
        match ready.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(ServerError::Shard {
                    shard: ShardId(0),
                    reason: "a shard exited during start".into(),
                });
            }
        }
    }
    install_signal_handlers(shared.clone())?;
    // Printed whatever the log level: scripts and the harness wait for this line.
    eprintln!(
        "ringcast: listening on {address} (api on {api_address}; {shard_count} shards on cores {cores:?}, write path {:?})",
        config.write_path
    );
    let mut died = None;
    for (index, handle) in handles.into_iter().enumerate() {
        if let Err(error) = handle.join() {
            log::error!("shard {index} ended with an error: {error}");
            died.get_or_insert(ShardId(index));
        }
    }
    log::info!("stopped");
    match died {
        Some(shard) => Err(ServerError::Shard {
            shard,
            reason: "its executor died".into(),
        }),
        None => Ok(()),
    }
}

/// The Redis subscriber core's link for the shards, and one receiving end per shard.
struct RedisStart {
    link: Option<RedisLink>,
    inboxes: Vec<Option<bounded::Receiver<Publication>>>,
}

/// Starts the Redis subscriber core if `--redis` or `--redis-cluster` is set.
fn start_redis(
    config: &Config,
    apps: &Apps,
    cores: &[usize],
    webhooks: &Option<WebhookQueue>,
) -> Result<RedisStart, ServerError> {
    let target = match (&config.redis, config.redis_cluster.is_empty()) {
        (Some(url), _) => RedisTarget::Single { url: url.clone() },
        (None, false) => RedisTarget::Cluster {
            seeds: config.redis_cluster.clone(),
        },
        (None, true) => {
            return Ok(RedisStart {
                link: None,
                inboxes: cores.iter().map(|_| None).collect(),
            });
        }
    };
    let (senders, receivers): (Vec<_>, Vec<_>) = cores
        .iter()
        .map(|_| bounded::channel(config.mesh_capacity))
        .unzip();
    let available = core_affinity::get_core_ids().unwrap_or_default();
    // The core after the last shard's: a dedicated core when there are spare ones.
    let default_core = available
        .iter()
        .map(|core| core.id)
        .find(|id| !cores.contains(id))
        .or_else(|| cores.last().copied());
    let described = match &target {
        RedisTarget::Single { url } => redis::redacted_url(url),
        RedisTarget::Cluster { seeds } => format!("cluster (seeds {})", seeds.join(",")),
    };
    let settings = RedisSettings {
        target,
        webhooks: webhooks.clone(),
        subscription_counts: apps
            .iter()
            .map(|app| app.limits.subscription_count_events == SubscriptionCountEvents::On)
            .collect(),
        prefix: config.redis_prefix.clone(),
        app_ids: apps.iter().map(|app| app.id.clone()).collect(),
        forward_timeout: config.redis_forward_timeout,
        max_message_bytes: config.max_message_bytes,
        buffer_bytes: config.redis_buffer_bytes,
        core: config.redis_core.or(default_core),
    };
    log::info!(
        "redis: {described}, channels {}:broadcast:*, subscriber core {:?}",
        settings.prefix,
        settings.core
    );
    let link = redis::start(settings, senders).map_err(ServerError::Redis)?;
    Ok(RedisStart {
        link: Some(link),
        inboxes: receivers.into_iter().map(Some).collect(),
    })
}

/// A shard's two listeners.
struct Listeners {
    /// `--listen`.
    public: OwnedFd,
    /// `--api-listen`.
    api: OwnedFd,
}

/// What a shard starts with.
struct ShardStart {
    shard_id: ShardId,
    core: usize,
    config: Arc<Config>,
    shared: Arc<Shared>,
    listeners: Listeners,
    mesh: Option<MeshBuilder<ShardMessage, Full>>,
    redis: Option<RedisLink>,
    from_redis: Option<bounded::Receiver<Publication>>,
    apps: Arc<Apps>,
}

/// Marks its shard dead if the shard's thread ends while it is armed (its executor died), and
/// shuts the shard's listener down so the kernel stops routing new connections to it. Lives in
/// a thread-local so it runs however the thread ends.
struct DeathGuard {
    id: ShardId,
    shared: Arc<Shared>,
    /// Duplicates of the shard's listeners.
    listeners: Vec<OwnedFd>,
    /// The shard, to shut its clients' sockets down.
    shard: Option<Rc<shard::Shard>>,
    /// Cleared by a clean stop.
    armed: bool,
}

impl Drop for DeathGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        log::error!(
            "shard {}: its executor died; its connections are closed, the other shards go on",
            self.id
        );
        self.shared.shards[self.id.0].set_life(ShardLife::Dead);
        for listener in &self.listeners {
            let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Both);
        }
        if let Some(shard) = self.shard.take() {
            if let Ok(registry) = shard.registry.try_borrow() {
                registry.shutdown_all_sockets();
            }
            // Not dropped here: its glommio parts must not run their destructors outside the
            // executor. The memory of a dead shard is given up.
            std::mem::forget(shard);
        }
    }
}

thread_local! {
    /// The shard thread's death guard, armed while its executor runs.
    static DEATH_GUARD: RefCell<Option<DeathGuard>> = const { RefCell::new(None) };
}

/// The body of one shard's executor.
async fn run_shard(start: ShardStart, ready: mpsc::Sender<ReadyReport>) {
    let ShardStart {
        shard_id,
        core,
        config,
        shared,
        listeners,
        mesh,
        redis,
        from_redis,
        apps,
    } = start;
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        log::warn!("shard {shard_id}: could not pin to core {core}");
    }
    let fail = |reason: String| {
        let _ = ready.send(Err(ServerError::Shard {
            shard: shard_id,
            reason,
        }));
    };
    // Bounded: a shard whose executor could not even start (io_uring setup refused, e.g. by
    // RLIMIT_MEMLOCK) never joins, and the others must not wait for it forever.
    let joined = match mesh {
        Some(mesh) => Some(
            glommio::timer::timeout(MESH_JOIN_TIMEOUT, async {
                mesh.join().await.map_err(|_| {
                    glommio::GlommioError::<()>::Closed(glommio::ResourceType::Channel(()))
                })
            })
            .await,
        ),
        None => None,
    };
    let (senders, receivers) = match joined {
        Some(Ok((senders, mut receivers))) => {
            let streams = receivers
                .streams()
                .into_iter()
                .map(|(peer, stream)| (ShardId(peer), stream))
                .collect();
            (Some(senders), streams)
        }
        Some(Err(_)) => {
            return fail(format!(
                "the other shards did not join within {MESH_JOIN_TIMEOUT:?} (one could not start: see above)"
            ));
        }
        None => (None, Vec::new()),
    };
    let poller = match poller::Poller::new() {
        Ok(poller) => poller,
        Err(error) => return fail(format!("cannot create its epoll set: {error}")),
    };
    let eventfd = match poller.eventfd_for_glommio() {
        Ok(eventfd) => eventfd,
        Err(error) => return fail(format!("cannot duplicate its eventfd: {error}")),
    };
    let shard = Rc::new(shard::Shard::new(
        shard_id,
        config.clone(),
        shared.clone(),
        senders,
        redis,
        poller,
        apps,
    ));
    DEATH_GUARD.with(|guard| {
        *guard.borrow_mut() = Some(DeathGuard {
            id: shard_id,
            shared: shared.clone(),
            listeners: [&listeners.public, &listeners.api]
                .into_iter()
                .filter_map(|listener| listener.try_clone().ok())
                .collect(),
            shard: Some(shard.clone()),
            armed: true,
        });
    });
    // SAFETY: both are listening TCP sockets created by `bind_listeners` and handed to this
    // shard alone; glommio takes them over.
    let public = unsafe { TcpListener::from_raw_fd(listeners.public.into_raw_fd()) };
    // SAFETY: as above.
    let api = unsafe { TcpListener::from_raw_fd(listeners.api.into_raw_fd()) };
    if let Err(reason) = spawn_tasks(&shard, [public, api], receivers, from_redis, eventfd) {
        return fail(reason);
    }
    shard.slot().set_life(ShardLife::Running);
    shard.slot().beat(shared.now_ms());
    let _ = ready.send(Ok(shard_id));

    shard.draining.wait().await;
    let deadline = std::time::Instant::now() + config.drain_timeout;
    // Bounded by the drain timeout.
    while shard.open_sockets() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if shard.open_sockets() > 0 {
        log::warn!(
            "shard {shard_id}: drain timeout with {} sockets still open",
            shard.open_sockets()
        );
    }
    // A clean stop: disarm the death guard.
    let disarmed = DEATH_GUARD.with(|guard| guard.borrow_mut().take());
    if let Some(mut guard) = disarmed {
        guard.armed = false;
    }
    shard.slot().set_life(ShardLife::Stopped);
}

/// Spawns the shard's tasks, each in its own task queue.
fn spawn_tasks(
    shard: &Rc<shard::Shard>,
    [public, api]: [TcpListener; 2],
    mesh: Vec<(
        ShardId,
        glommio::channels::shared_channel::ConnectedReceiver<ShardMessage>,
    )>,
    redis: Option<bounded::Receiver<Publication>>,
    eventfd: OwnedFd,
) -> Result<(), String> {
    let executor = glommio::executor();
    let accept_queue = executor.create_task_queue(
        Shares::Static(100),
        Latency::Matters(Duration::from_millis(10)),
        "accept",
    );
    let connection_queue = executor.create_task_queue(
        Shares::Static(1000),
        Latency::Matters(Duration::from_millis(1)),
        "connections",
    );
    // While a fan-out pass runs, glommio's preemption timer fires every 2 ms, so the pass yields
    // at its next slice boundary and publishes, handshakes and reads that arrived meanwhile are
    // served.
    let fanout_queue = executor.create_task_queue(
        Shares::Static(1000),
        Latency::Matters(Duration::from_millis(2)),
        "fanout",
    );
    let sources = fanout::Sources { mesh, redis };
    let spawned = [
        glommio::spawn_local_into(fanout::run_fanout(shard.clone(), sources), fanout_queue),
        glommio::spawn_local_into(shard.clone().run_redis_interest(), fanout_queue),
        glommio::spawn_local_into(occupancy::run_reports(shard.clone()), fanout_queue),
        glommio::spawn_local_into(pusher_state::run_departures(shard.clone()), fanout_queue),
        glommio::spawn_local_into(shard.clone().run_ticker(), fanout_queue),
        glommio::spawn_local_into(shard.clone().run_sequencer(), fanout_queue),
        glommio::spawn_local_into(
            reactor::run_reactor(shard.clone(), eventfd),
            connection_queue,
        ),
        glommio::spawn_local_into(
            accept::run_accept(shard.clone(), public, Listener::Public, connection_queue),
            accept_queue,
        ),
        glommio::spawn_local_into(
            accept::run_accept(shard.clone(), api, Listener::Api, connection_queue),
            accept_queue,
        ),
    ];
    for task in spawned {
        task.map_err(|error| format!("cannot spawn: {error}"))?
            .detach();
    }
    Ok(())
}

/// First SIGTERM/SIGINT: drain. A second one: exit at once.
fn install_signal_handlers(shared: Arc<Shared>) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(ServerError::Signals)?;
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if shared.shutdown.swap(true, Ordering::Relaxed) {
                    log::warn!("second signal {signal}: exiting without draining");
                    std::process::exit(130);
                }
                log::info!("signal {signal}: draining");
            }
        })
        .map_err(ServerError::Signals)?;
    Ok(())
}
