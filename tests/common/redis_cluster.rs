//! A real Redis Cluster for tests: three masters and three replicas (`redis-server
//! --cluster-enabled yes`, Redis >= 7.0 for sharded pub/sub) on twelve free loopback ports (each
//! node's client port and its cluster-bus port, `--cluster-port`; picked below the ephemeral
//! range, and picked again if a node cannot bind them), joined with
//! `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`.
//!
//! Helpers answer the questions a cluster test asks: which master owns a slot or a channel (in
//! that master's own view, which is the one that decides), kill -9 a master and wait for its
//! replica's promotion, move a slot to another master (`CLUSTER SETSLOT` IMPORTING, MIGRATING,
//! NODE), list a node's shard channels (`PUBSUB SHARDCHANNELS`), `SPUBLISH` through
//! `redis-cli -c` as a user would.
//!
//! It deliberately does not restart killed nodes (a test that needs it can start a fresh
//! cluster) and never talks to anything but 127.0.0.1.
//!
//! Invariants: every wait is bounded (`CLUSTER_PATIENCE`, or the `redis-cli` timeout); every
//! process is killed and reaped on drop, also when a test panics (and, if the test thread dies
//! without unwinding, by `PR_SET_PDEATHSIG`), and the temporary directory is removed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the harness waits for the cluster to form, heal or agree.
pub const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);
/// How long one command to a node may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Nodes in the cluster: three masters, each with one replica.
const NODE_COUNT: usize = 6;
/// Slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;
/// `--cluster-node-timeout`: short, so a failover takes seconds, not the default 15 s; not
/// shorter, so a node starved of CPU on a busy 2-core machine is not failed over by mistake.
const NODE_TIMEOUT_MS: u64 = 1500;

/// Attempts to start one node on fresh ports.
const SPAWN_ATTEMPTS: usize = 5;
/// Ports are picked in [PORT_FIRST, PORT_FIRST + PORT_SPAN): below Linux's ephemeral range
/// (32768-60999), so the test's own outgoing connections cannot take them meanwhile.
const PORT_FIRST: u16 = 20000;
/// See `PORT_FIRST`.
const PORT_SPAN: u16 = 12000;

/// Numbers the temporary directories of the clusters of one test process.
static CLUSTER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A RESP2 reply, as read by the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple, bulk or error), for assertions.
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(text) | Reply::Error(text) => text.clone(),
            Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).to_string(),
            Reply::Integer(value) => value.to_string(),
            other => format!("{other:?}"),
        }
    }

    /// The integer of an integer reply.
    pub fn integer(&self) -> i64 {
        match self {
            Reply::Integer(value) => *value,
            other => panic!("not an integer reply: {other:?}"),
        }
    }

    /// The texts of an array of bulk strings.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Reply::Array(Some(items)) => items.iter().map(Reply::text).collect(),
            other => panic!("not an array reply: {other:?}"),
        }
    }
}

/// Reads one RESP2 reply (recursively for arrays; the harness trusts Redis's framing).
pub fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    let number = || rest.parse::<i64>().unwrap_or(-1);
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(number()),
        "$" if number() < 0 => Reply::Bulk(None),
        "$" => {
            let mut bytes = vec![0u8; number() as usize + 2];
            reader.read_exact(&mut bytes)?;
            bytes.truncate(bytes.len() - 2);
            Reply::Bulk(Some(bytes))
        }
        "*" if number() < 0 => Reply::Array(None),
        "*" => {
            let mut items = Vec::new();
            for _ in 0..number() {
                items.push(read_reply(reader)?);
            }
            Reply::Array(Some(items))
        }
        _ => return Err(std::io::ErrorKind::InvalidData.into()),
    })
}

/// One line of `CLUSTER NODES`, as much of it as tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    /// The node id (40 hex characters).
    pub id: String,
    /// Its client port.
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail`, ...
    pub flags: Vec<String>,
    /// Its config epoch.
    pub config_epoch: u64,
    /// Slot ranges it serves (inclusive), migration markers left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?;
        let port = address
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let slots = fields
            .iter()
            .skip(8)
            .filter(|field| !field.starts_with('['))
            .filter_map(|field| match field.split_once('-') {
                Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                None => field.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        Some(NodeLine {
            id: fields.first()?.to_string(),
            port,
            flags: fields.get(2)?.split(',').map(str::to_string).collect(),
            config_epoch: fields.get(6)?.parse().ok()?,
            slots,
        })
    }

    /// Has this flag.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|candidate| candidate == flag)
    }

    /// Serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }
}

/// One `redis-server` of the cluster.
struct ClusterNode {
    /// Its client port.
    port: u16,
    /// The process, `None` once killed.
    child: Option<Child>,
}

/// A running 3-master / 3-replica Redis Cluster, torn down on drop.
pub struct RedisCluster {
    /// The six nodes (the first three start as masters).
    nodes: Vec<ClusterNode>,
    /// Holds every node's `nodes-{port}.conf` and log; removed on drop.
    directory: PathBuf,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok` and agrees on three masters covering every slot.
    pub fn start() -> RedisCluster {
        let directory = std::env::temp_dir().join(format!(
            "ringcast-cluster-{}-{}",
            std::process::id(),
            CLUSTER_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            directory,
        };
        for _ in 0..NODE_COUNT {
            let node = cluster.spawn_node();
            cluster.nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(
            cluster
                .ports()
                .iter()
                .map(|port| format!("127.0.0.1:{port}")),
        );
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = run_bounded(&mut create, CLUSTER_PATIENCE);
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_healthy();
        cluster.wait_replicas_in_sync();
        cluster
    }

    /// Waits until every node sees three replicas and every replica's link to its master is up
    /// (a replica that never synced would not be promoted).
    fn wait_replicas_in_sync(&self) {
        wait_for("the replicas to attach and sync", || {
            self.live_ports().iter().all(|&port| {
                let replicas = self
                    .view(port)
                    .iter()
                    .filter(|line| line.has_flag("slave"))
                    .count();
                let info = self.command(port, &["INFO", "replication"]).text();
                let synced = info.contains("role:master") || info.contains("master_link_status:up");
                replicas == NODE_COUNT / 2 && synced
            })
        });
    }

    /// Starts one node and waits for its PING; a node that cannot bind its ports (another
    /// process took them since they were picked) is started again on other ports.
    fn spawn_node(&self) -> ClusterNode {
        // Bounded: a few attempts.
        for _ in 0..SPAWN_ATTEMPTS {
            let (port, bus_port) = (unused_port(), unused_port());
            let mut child = self.spawn_redis(port, bus_port);
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            // Bounded by the deadline.
            while Instant::now() < deadline {
                if try_command(port, &["PING"]).is_some_and(|reply| reply.text() == "PONG") {
                    return ClusterNode {
                        port,
                        child: Some(child),
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "no redis-server started in {SPAWN_ATTEMPTS} attempts (see the logs in {:?})",
            self.directory
        );
    }

    fn spawn_redis(&self, port: u16, bus_port: u16) -> Child {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &bus_port.to_string()])
            .arg("--cluster-config-file")
            .arg(self.directory.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.directory)
            .arg("--logfile")
            .arg(self.directory.join(format!("redis-{port}.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        command
            .spawn()
            .expect("redis-server is installed (bash tests/run.sh installs it)")
    }

    /// The client ports of all six nodes (killed ones included).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The client ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// `127.0.0.1:{port}` of every running node: seeds for a client.
    pub fn seeds(&self) -> Vec<String> {
        self.live_ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// Sends one command to the node on `port`; panics if it does not answer.
    pub fn command(&self, port: u16, args: &[&str]) -> Reply {
        try_command(port, args).unwrap_or_else(|| panic!("node {port} answers {args:?}"))
    }

    /// `CLUSTER KEYSLOT channel`.
    pub fn keyslot(&self, channel: &str) -> u16 {
        let port = self.live_ports()[0];
        self.command(port, &["CLUSTER", "KEYSLOT", channel])
            .integer() as u16
    }

    /// `CLUSTER NODES` as seen by the node on `port`.
    pub fn view(&self, port: u16) -> Vec<NodeLine> {
        self.command(port, &["CLUSTER", "NODES"])
            .text()
            .lines()
            .filter_map(NodeLine::parse)
            .collect()
    }

    /// The node's own line of its view.
    fn myself(&self, port: u16) -> Option<NodeLine> {
        try_command(port, &["CLUSTER", "NODES"])?
            .text()
            .lines()
            .filter_map(NodeLine::parse)
            .find(|line| line.has_flag("myself"))
    }

    /// `CLUSTER MYID`.
    pub fn node_id(&self, port: u16) -> String {
        self.command(port, &["CLUSTER", "MYID"]).text()
    }

    /// Ports of the running masters that serve at least one slot, each by its own view.
    pub fn masters(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&port| {
                self.myself(port)
                    .is_some_and(|line| line.has_flag("master") && !line.slots.is_empty())
            })
            .collect()
    }

    /// The running master that serves `slot` by its own view (the view that decides whether it
    /// answers a command or `MOVED`).
    pub fn owner_of_slot(&self, slot: u16) -> Option<u16> {
        self.live_ports().into_iter().find(|&port| {
            self.myself(port)
                .is_some_and(|line| line.has_flag("master") && line.owns(slot))
        })
    }

    /// The master that serves `channel`'s slot.
    pub fn owner_of_channel(&self, channel: &str) -> u16 {
        let slot = self.keyslot(channel);
        self.owner_of_slot(slot)
            .unwrap_or_else(|| panic!("no running master serves slot {slot}"))
    }

    /// The first name `{stem}-{i}` whose slot `master` serves (at most 1000 tries).
    pub fn channel_on(&self, master: u16, stem: &str) -> String {
        let line = self.myself(master).expect("the master answers");
        // Bounded: a third of the slots is a master's, so a few tries find one.
        (0..1000)
            .map(|index| format!("{stem}-{index}"))
            .find(|name| line.owns(self.keyslot(name)))
            .unwrap_or_else(|| panic!("no channel {stem}-* on master {master}"))
    }

    /// `PUBSUB SHARDCHANNELS` on the node on `port`, sorted.
    pub fn shard_channels(&self, port: u16) -> Vec<String> {
        let mut channels = self.command(port, &["PUBSUB", "SHARDCHANNELS"]).strings();
        channels.sort();
        channels
    }

    /// `redis-cli -c SPUBLISH channel payload` against a running node, as a user would (it
    /// follows MOVED); returns the receiver count, or the error text.
    pub fn spublish_cli(&self, channel: &str, payload: &str) -> Result<i64, String> {
        let port = self.live_ports()[0];
        let mut command = Command::new("redis-cli");
        command.args(["-c", "-h", "127.0.0.1", "-p", &port.to_string()]);
        command.args(["SPUBLISH", channel, payload]);
        let output = run_bounded(&mut command, COMMAND_TIMEOUT);
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        text.parse().map_err(|_| text)
    }

    /// `SPUBLISH` straight to the node on `port` (no redirection followed).
    pub fn spublish_on(&self, port: u16, channel: &str, payload: &str) -> Reply {
        self.command(port, &["SPUBLISH", channel, payload])
    }

    /// Kills the node on `port` with SIGKILL (a crash, not a shutdown).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the master on `port` and waits until a replica has taken over all its slots and the
    /// cluster is healthy again; returns the new master's port and how long it took.
    pub fn kill_master_and_wait_for_promotion(&mut self, port: u16) -> (u16, Duration) {
        let slots = self.myself(port).expect("the master answers").slots;
        let (first_slot, _) = *slots.first().expect("the master serves slots");
        let started = Instant::now();
        self.kill(port);
        wait_for("a replica to be promoted", || {
            self.owner_of_slot(first_slot)
                .is_some_and(|owner| owner != port)
        });
        let promoted = self.owner_of_slot(first_slot).expect("just seen");
        let took = started.elapsed();
        self.wait_healthy();
        (promoted, took)
    }

    /// Moves `slot` (and its keys) to the master on `target` with `CLUSTER SETSLOT`, as
    /// `redis-cli --cluster reshard` does, then waits until every running master agrees.
    pub fn migrate_slot(&self, slot: u16, target: u16) {
        let source = self.owner_of_slot(slot).expect("the slot has an owner");
        assert_ne!(source, target, "slot {slot} already on {target}");
        let source_id = self.node_id(source);
        let target_id = self.node_id(target);
        let slot_text = slot.to_string();
        let set_slot = |port: u16, args: &[&str]| {
            let mut full = vec!["CLUSTER", "SETSLOT", slot_text.as_str()];
            full.extend_from_slice(args);
            let reply = self.command(port, &full);
            assert_eq!(reply.text(), "OK", "CLUSTER SETSLOT {full:?} on {port}");
        };
        set_slot(target, &["IMPORTING", &source_id]);
        set_slot(source, &["MIGRATING", &target_id]);
        self.migrate_keys(slot, source, target);
        set_slot(target, &["NODE", &target_id]);
        set_slot(source, &["NODE", &target_id]);
        for master in self.masters() {
            if master != source && master != target {
                set_slot(master, &["NODE", &target_id]);
            }
        }
        wait_for("every master to agree on the slot's new owner", || {
            self.masters().iter().all(|&master| {
                self.view(master)
                    .iter()
                    .any(|line| line.port == target && line.owns(slot))
            })
        });
    }

    fn migrate_keys(&self, slot: u16, source: u16, target: u16) {
        let slot_text = slot.to_string();
        let target_port = target.to_string();
        // Bounded: 1000 rounds of 100 keys.
        for _ in 0..1000 {
            let keys = self
                .command(source, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"])
                .strings();
            if keys.is_empty() {
                return;
            }
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                "5000",
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            assert_eq!(self.command(source, &args).text(), "OK");
        }
        panic!("slot {slot} still has keys after 100000 migrated");
    }

    /// Waits until every running node reports `cluster_state:ok` and sees, among running
    /// nodes, masters that cover all slots.
    pub fn wait_healthy(&self) {
        wait_for("the cluster to be healthy", || {
            self.live_ports().iter().all(|&port| {
                let info = try_command(port, &["CLUSTER", "INFO"]).map(|reply| reply.text());
                let ok = info.is_some_and(|info| info.contains("cluster_state:ok"));
                ok && self.covers_all_slots(port)
            })
        });
    }

    fn covers_all_slots(&self, port: u16) -> bool {
        let live = self.live_ports();
        let served: u32 = self
            .view(port)
            .iter()
            .filter(|line| line.has_flag("master") && !line.has_flag("fail"))
            .filter(|line| live.contains(&line.port))
            .flat_map(|line| line.slots.iter())
            .map(|&(first, last)| u32::from(last - first) + 1)
            .sum();
        served == u32::from(SLOT_COUNT)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails();
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

impl RedisCluster {
    fn print_log_tails(&self) {
        if let Some(port) = self.live_ports().first()
            && let Some(nodes) = try_command(*port, &["CLUSTER", "NODES"])
        {
            eprintln!("--- CLUSTER NODES as {port} sees it ---\n{}", nodes.text());
        }
        for port in self.ports() {
            let path = self.directory.join(format!("redis-{port}.log"));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- redis {port} (last 15 lines) ---");
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// A port in [PORT_FIRST, PORT_FIRST + PORT_SPAN) that nobody listens on right now.
fn unused_port() -> u16 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 20);
    // Bounded: 1000 draws.
    for _ in 0..1000 {
        let draw = seed.wrapping_add(DRAWS.fetch_add(7919, Ordering::Relaxed));
        let port = PORT_FIRST + (draw % u64::from(PORT_SPAN)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_FIRST}..{}", PORT_FIRST + PORT_SPAN);
}

/// The child gets SIGKILL when the thread that spawned it ends (a test thread that dies without
/// unwinding leaves no redis-server behind).
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and only changes the child's own death signal.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Sends one command to 127.0.0.1:`port`; `None` if the node cannot be reached or answer.
pub fn try_command(port: u16, args: &[&str]) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).ok()?;
    stream.write_all(&super::resp_command(args)).ok()?;
    read_reply(&mut BufReader::new(stream)).ok()
}

/// Runs `command` to completion, killing it after `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed");
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline.
    while child.try_wait().expect("waitable").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().expect("output")
}

/// Waits until `condition` holds (polling every 20 ms), or panics after CLUSTER_PATIENCE.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CLUSTER_PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
