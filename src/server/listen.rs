//! Process-level resources the shards start with: the open-file limit, the cores, and the
//! SO_REUSEPORT listeners (owned descriptors, one per shard).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::ServerError;
use crate::config::Config;

/// Descriptors kept free for everything that is not a client connection (listeners, io_uring
/// rings, eventfds, epoll sets, logs).
const RESERVED_FDS: u64 = 64;

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the resulting soft limit.
pub fn raise_open_file_limit() -> u64 {
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

/// Sockets of any kind one shard may hold.
pub fn sockets_per_shard(open_files: u64, shard_count: usize) -> usize {
    (open_files.saturating_sub(RESERVED_FDS) / shard_count as u64).max(1) as usize
}

/// WebSocket connections one shard may hold.
pub fn connections_per_shard(config: &Config, by_descriptors: usize) -> usize {
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
pub fn choose_cores(config: &Config) -> Vec<usize> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    let mut cores = if config.cores.is_empty() {
        available
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
/// real port when 0 was asked) and the listeners.
pub fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> Result<(SocketAddr, Vec<OwnedFd>), ServerError> {
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
        socket.set_reuse_port(true).map_err(listen_error)?;
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
        listeners.push(OwnedFd::from(socket));
    }
    Ok((bound, listeners))
}
