//! The runtime: starting the shards, and stopping them on SIGTERM/SIGINT.
//!
//! The main thread raises the open-file limit, binds one SO_REUSEPORT listener per shard (the
//! first resolves port 0, the others bind the same port), starts one glommio executor per shard
//! pinned to its core, waits until every shard is ready, logs `listening on ADDR`, and then only
//! waits: for a signal (which sets the shared shutdown flag that every shard's ticker watches)
//! and for the shards to finish draining.

mod connection;
mod event;
mod outbound;
mod registry;
mod shard;
mod shared;
pub mod stats;
mod uring;
mod websocket;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::redis::{self, RedisLink, RedisSettings};
pub use shard::{Publication, ShardMessage, ShardSnapshot};
pub use shared::Shared;

/// Descriptors kept free for everything that is not a client connection (listeners, io_uring
/// rings, eventfds, logs).
const RESERVED_FDS: u64 = 64;

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
    /// A shard could not start.
    #[error("shard {shard} failed to start: {reason}")]
    Shard {
        /// Shard index.
        shard: usize,
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

/// Runs the server until SIGTERM/SIGINT, then drains. `config` must be validated.
pub fn run(config: Config) -> Result<(), ServerError> {
    let open_files = raise_open_file_limit();
    let cores = choose_cores(&config);
    let shard_count = cores.len();
    let max_sockets = sockets_per_shard(open_files, shard_count);
    let max_connections = connections_per_shard(&config, max_sockets);
    log::info!(
        "open-file limit {open_files}: up to {max_connections} WebSocket connections per shard, {} in all",
        max_connections * shard_count
    );
    let (address, listeners) = bind_listeners(config.listen, shard_count)?;
    let (redis, mut from_redis) = start_redis(&config, &cores)?;
    let mut shared = Shared::new(shard_count, max_connections, max_sockets);
    shared.redis = redis.as_ref().map(|link| link.status.clone());
    let shared = Arc::new(shared);
    let config = Arc::new(config);
    let mesh = (shard_count > 1).then(|| MeshBuilder::full(shard_count, config.mesh_capacity));
    let (ready_sender, ready) = mpsc::channel::<Result<usize, String>>();

    let mut handles = Vec::with_capacity(shard_count);
    for (shard_id, (core, listener)) in cores.iter().copied().zip(listeners).enumerate() {
        let config = config.clone();
        let shared = shared.clone();
        let mesh = mesh.clone();
        let ready_sender = ready_sender.clone();
        let redis = redis.clone();
        let from_redis = from_redis.get_mut(shard_id).and_then(Option::take);
        let builder = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("ringcast-shard-{shard_id}"))
            .io_memory(config.io_memory);
        let handle = builder
            .spawn(move || async move {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("shard {shard_id}: could not pin to core {core}");
                }
                let shard = ShardStart {
                    shard_id,
                    config,
                    shared,
                    listener,
                    mesh,
                    redis,
                    from_redis,
                };
                run_shard(shard, ready_sender).await;
            })
            .map_err(|error| ServerError::Shard {
                shard: shard_id,
                reason: error.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_sender);
    for _ in 0..shard_count {
        match ready.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => return Err(ServerError::Shard { shard: 0, reason }),
            Err(_) => {
                return Err(ServerError::Shard {
                    shard: 0,
                    reason: "a shard exited during start".into(),
                });
            }
        }
    }
    install_signal_handlers(shared.clone())?;
    // Printed whatever the log level: scripts and the harness wait for this line.
    eprintln!(
        "ringcast: listening on {address} ({shard_count} shards on cores {cores:?}, write path {:?})",
        config.write_path
    );
    let mut failed = false;
    for (shard_id, handle) in handles.into_iter().enumerate() {
        if let Err(error) = handle.join() {
            log::error!("shard {shard_id} ended with an error: {error}");
            failed = true;
        }
    }
    log::info!("stopped");
    if failed {
        return Err(ServerError::Shard {
            shard: 0,
            reason: "a shard failed".into(),
        });
    }
    Ok(())
}

/// Starts the Redis subscriber core if `--redis` is set; returns the link for the shards and one
/// receiver per shard.
#[allow(clippy::type_complexity)]
fn start_redis(
    config: &Config,
    cores: &[usize],
) -> Result<
    (
        Option<RedisLink>,
        Vec<Option<futures::channel::mpsc::Receiver<Publication>>>,
    ),
    ServerError,
> {
    let Some(url) = &config.redis else {
        return Ok((None, cores.iter().map(|_| None).collect()));
    };
    let (senders, receivers): (Vec<_>, Vec<_>) = cores
        .iter()
        .map(|_| futures::channel::mpsc::channel(config.mesh_capacity))
        .unzip();
    let available = core_affinity::get_core_ids().unwrap_or_default();
    // The core after the last shard's: a dedicated core when there are spare ones.
    let default_core = available
        .iter()
        .map(|core| core.id)
        .find(|id| !cores.contains(id))
        .or_else(|| cores.last().copied());
    let settings = RedisSettings {
        url: url.clone(),
        prefix: config.redis_prefix.clone(),
        forward_timeout: config.redis_forward_timeout,
        core: config.redis_core.or(default_core),
    };
    log::info!(
        "redis: {url}, channels {}:broadcast:*, subscriber core {:?}",
        settings.prefix,
        settings.core
    );
    let link = redis::start(settings, senders).map_err(ServerError::Redis)?;
    Ok((Some(link), receivers.into_iter().map(Some).collect()))
}

/// What a shard starts with.
struct ShardStart {
    shard_id: usize,
    config: Arc<Config>,
    shared: Arc<Shared>,
    listener: RawFd,
    mesh: Option<MeshBuilder<ShardMessage, glommio::channels::channel_mesh::Full>>,
    redis: Option<RedisLink>,
    from_redis: Option<futures::channel::mpsc::Receiver<Publication>>,
}

/// The body of one shard's executor.
async fn run_shard(start: ShardStart, ready: mpsc::Sender<Result<usize, String>>) {
    let ShardStart {
        shard_id,
        config,
        shared,
        listener,
        mesh,
        redis,
        from_redis,
    } = start;
    let (senders, receivers) = match mesh {
        Some(mesh) => match mesh.join().await {
            Ok((senders, mut receivers)) => {
                let streams = receivers
                    .streams()
                    .into_iter()
                    .map(|(_, stream)| stream)
                    .collect();
                (Some(senders), streams)
            }
            Err(_) => {
                let _ = ready.send(Err(format!("shard {shard_id}: cannot join the mesh")));
                return;
            }
        },
        None => (None, Vec::new()),
    };
    let shard = Rc::new(shard::Shard::new(
        shard_id,
        config.clone(),
        shared.clone(),
        senders,
        redis,
    ));
    // SAFETY: `listener` is a listening TCP socket created by `bind_listeners` and handed to
    // this shard alone.
    let listener = unsafe { TcpListener::from_raw_fd(listener) };
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
    // at its next slice boundary and publishes, handshakes and pongs that arrived meanwhile are
    // served (readiness polls do not preempt by themselves: they live on glommio's main ring).
    let fanout_queue = executor.create_task_queue(
        Shares::Static(1000),
        Latency::Matters(Duration::from_millis(2)),
        "fanout",
    );

    let spawned = [
        glommio::spawn_local_into(
            shard.clone().run_fanout(shard::Sources {
                mesh: receivers,
                redis: from_redis,
            }),
            fanout_queue,
        ),
        glommio::spawn_local_into(shard.clone().run_redis_interest(), fanout_queue),
        glommio::spawn_local_into(shard.clone().run_ticker(), fanout_queue),
        glommio::spawn_local_into(
            connection::run_accept(shard.clone(), listener, connection_queue),
            accept_queue,
        ),
    ];
    for task in spawned {
        match task {
            Ok(task) => task.detach(),
            Err(error) => {
                let _ = ready.send(Err(format!("shard {shard_id}: cannot spawn: {error}")));
                return;
            }
        };
    }
    shard.slot().running.store(true, Ordering::Relaxed);
    shard
        .slot()
        .heartbeat_ms
        .store(shared.now_ms(), Ordering::Relaxed);
    let _ = ready.send(Ok(shard_id));

    shard.draining.wait().await;
    let deadline = std::time::Instant::now() + config.drain_timeout;
    // Bounded by the drain timeout.
    while shard.open_sockets.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if shard.open_sockets.get() > 0 {
        log::warn!(
            "shard {shard_id}: drain timeout with {} sockets still open",
            shard.open_sockets.get()
        );
    }
    shard.slot().running.store(false, Ordering::Relaxed);
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the resulting soft limit.
fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
            log::warn!("could not raise the open-file limit to {}", limit.rlim_max);
        }
        limit.rlim_cur
    }
}

fn sockets_per_shard(open_files: u64, shard_count: usize) -> usize {
    (open_files.saturating_sub(RESERVED_FDS) / shard_count as u64).max(1) as usize
}

fn connections_per_shard(config: &Config, by_descriptors: usize) -> usize {
    if config.max_connections == 0 {
        return by_descriptors;
    }
    if config.max_connections > by_descriptors {
        log::warn!(
            "--max-connections {} exceeds what the open-file limit allows ({by_descriptors} per shard)",
            config.max_connections
        );
    }
    config.max_connections
}

/// The cores to run shards on: `--cores`, else the first `--shards` of the cores this process
/// may run on.
fn choose_cores(config: &Config) -> Vec<usize> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    let mut cores = if config.cores.is_empty() {
        available.clone()
    } else {
        config.cores.clone()
    };
    if cores.is_empty() {
        cores.push(0);
    }
    let count = if config.shards == 0 {
        cores.len()
    } else {
        config.shards
    };
    // More shards than cores wrap around (useful for tests; pinned shards then share cores).
    (0..count).map(|index| cores[index % cores.len()]).collect()
}

/// The listen backlog: the kernel caps it at `net.core.somaxconn` anyway; ask for the most.
fn listen_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .unwrap_or(4096)
        .max(128)
}

/// Binds `count` SO_REUSEPORT listeners on the same address; returns the bound address (the
/// real port when 0 was asked) and the raw descriptors.
fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> Result<(SocketAddr, Vec<RawFd>), ServerError> {
    let listen_error = |source| ServerError::Listen { address, source };
    let mut bound = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(listen_error)?;
        socket.set_reuse_address(true).map_err(listen_error)?;
        set_reuse_port(&socket).map_err(listen_error)?;
        socket.set_nonblocking(true).map_err(listen_error)?;
        socket.bind(&bound.into()).map_err(listen_error)?;
        socket.listen(listen_backlog()).map_err(listen_error)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()
                .map_err(listen_error)?
                .as_socket()
                .ok_or_else(|| listen_error(std::io::Error::other("not an inet socket")))?;
        }
        listeners.push(socket.into_raw_fd());
    }
    Ok((bound, listeners))
}

fn set_reuse_port(socket: &Socket) -> std::io::Result<()> {
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to an int of the stated size.
    let result = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            &enable as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
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
