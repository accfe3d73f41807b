//! Two ringcast nodes on a real 3-master / 3-replica Redis Cluster (`--redis-cluster`), with
//! WebSocket clients on both: delivery from every master, exactly once and in order
//! (`POST /publish` and `redis-cli -c SPUBLISH`), demand-driven SSUBSCRIBE per master
//! (`PUBSUB SHARDCHANNELS`), kill -9 of a master while publishing (failover, `/readyz` 503 and
//! back, the undelivered messages counted and printed), and a slot migration while publishing.
//!
//! Redis pub/sub is at-most-once: a message published while its channel's master is failing
//! over, or while its slot moves, may be lost; the tests count such messages and print them
//! (`cargo test ... -- --nocapture`), and assert only what the design promises: nothing lost on
//! the masters that did not change, nothing delivered twice or out of order, delivery resumed
//! within a bound. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::redis_cluster::{RedisCluster, wait_for};
use common::{Server, assert_nothing_more, http_to};
use tungstenite::{Message, WebSocket};

/// Prefix of the Redis channels (`--redis-prefix` default).
const PREFIX: &str = "ws:broadcast:";
/// Bound on "delivery resumes" after a master is killed (promotion takes ~2-4 s with the
/// harness's 1.5 s node timeout; the node then needs one topology refresh and one SSUBSCRIBE).
const RESUME_BOUND: Duration = Duration::from_secs(15);
/// How long a client read waits before the test gives up on a message.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// A ringcast node on the cluster, ready.
fn node(cluster: &RedisCluster) -> Server {
    let seeds = cluster.seeds().join(",");
    let server = Server::start(&["--redis-cluster", &seeds]);
    wait_for("the node to be ready", || {
        server.http("GET", "/readyz", b"").0 == 200
    });
    server
}

/// The ringcast channel name of a Redis channel `ws:broadcast:{name}`.
fn local(channel: &str) -> &str {
    channel.strip_prefix(PREFIX).expect("a broadcast channel")
}

fn read_text(client: &mut WebSocket<TcpStream>) -> String {
    match client.read().expect("a message") {
        Message::Text(text) => text.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

/// `GET /readyz` status on a node, through its address (usable from other threads).
fn readyz(server: &Server) -> u16 {
    http_to(server.address, "GET", "/readyz", "", b"").0
}

/// `POST /publish/{channel}` from any thread; the status.
fn publish_status(server: &Server, channel: &str, payload: &str) -> u16 {
    http_to(
        server.api_address,
        "POST",
        &format!("/publish/{channel}"),
        "",
        payload.as_bytes(),
    )
    .0
}

#[test]
fn every_master_delivers_to_both_nodes_once_in_order_and_subscriptions_follow_demand() {
    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let channels: Vec<String> = masters
        .iter()
        .map(|&master| cluster.channel_on(master, "ws:broadcast:news"))
        .collect();
    let nodes = [node(&cluster), node(&cluster)];
    for &master in &masters {
        assert!(
            cluster.shard_channels(master).is_empty(),
            "nothing subscribed before anyone asks"
        );
    }
    // Two clients per channel per node.
    let mut clients: Vec<(usize, WebSocket<TcpStream>)> = Vec::new();
    for (index, channel) in channels.iter().enumerate() {
        for node in &nodes {
            for _ in 0..2 {
                let client = node.websocket(&format!("/ws/{}", local(channel)));
                clients.push((index, client));
            }
        }
    }
    for (master, channel) in masters.iter().zip(&channels) {
        wait_for("each master to hold its own channel only", || {
            cluster.shard_channels(*master) == vec![channel.clone()]
        });
    }
    for node in &nodes {
        assert_eq!(node.http("GET", "/readyz", b"").0, 200);
    }
    // POST /publish alternately on both nodes, then redis-cli -c SPUBLISH as a user would.
    for channel in &channels {
        for sequence in 0..10 {
            let answer =
                nodes[sequence % 2].publish(local(channel), format!("p{sequence}").as_bytes());
            assert!(
                answer.contains("\"redis_receivers\":2"),
                "one subscription per node: {answer}"
            );
        }
        for sequence in 0..10 {
            assert_eq!(
                cluster.spublish_cli(channel, &format!("c{sequence}")),
                Ok(2),
                "both nodes hold {channel}"
            );
        }
    }
    for (index, client) in &mut clients {
        client
            .get_mut()
            .set_read_timeout(Some(READ_PATIENCE))
            .unwrap();
        for sequence in 0..10 {
            assert_eq!(
                read_text(client),
                format!("p{sequence}"),
                "{}",
                channels[*index]
            );
        }
        for sequence in 0..10 {
            assert_eq!(
                read_text(client),
                format!("c{sequence}"),
                "{}",
                channels[*index]
            );
        }
    }
    for (_, client) in clients.iter_mut().step_by(3) {
        assert_nothing_more(client);
    }
    // /stat and /metrics show the three masters.
    let (status, stat) = nodes[0].http("GET", "/stat?format=json", b"");
    assert_eq!(status, 200);
    let stat: serde_json::Value = serde_json::from_str(&stat).unwrap();
    assert_eq!(stat["redis"]["mode"], "cluster");
    let reported: Vec<&serde_json::Value> = stat["redis"]["masters"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(reported.len(), 3, "{stat}");
    for master in &masters {
        let address = format!("127.0.0.1:{master}");
        assert!(
            reported
                .iter()
                .any(|entry| entry["address"] == address.as_str()
                    && entry["state"] == "up"
                    && entry["subscribed_channels"] == 1),
            "{address} in {stat}"
        );
    }
    let (_, metrics) = nodes[1].http("GET", "/metrics", b"");
    for master in &masters {
        let line = format!("ringcast_redis_master_up{{master=\"127.0.0.1:{master}\"}} 1");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    // Demand: when the last client of the first channel leaves both nodes, its master lets go.
    let (leaving, staying): (Vec<_>, Vec<_>) =
        clients.into_iter().partition(|(index, _)| *index == 0);
    drop(leaving);
    wait_for("the first master to drop the channel nobody wants", || {
        cluster.shard_channels(masters[0]).is_empty()
    });
    for (master, channel) in masters.iter().zip(&channels).skip(1) {
        assert_eq!(cluster.shard_channels(*master), vec![channel.clone()]);
    }
    drop(staying);
    for &master in &masters {
        wait_for("every master to let go", || {
            cluster.shard_channels(master).is_empty()
        });
    }
}

/// What one client received: (time, sequence), from a reader thread.
type Received = Vec<(Instant, u64)>;

/// Reads numbered messages until `stop`; a bounded loop (read timeout 100 ms).
fn read_numbers(mut client: WebSocket<TcpStream>, stop: &AtomicBool) -> Received {
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut received = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match client.read() {
            Ok(Message::Text(text)) => received.push((Instant::now(), text.parse().unwrap())),
            Ok(_) => {}
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(error) => panic!("client read: {error}"),
        }
    }
    received
}

/// One publish of the publisher thread: (channel index, sequence, HTTP status, when the
/// request was sent).
type Published = (usize, u64, u16, Instant);

/// Publishes `0, 1, 2, ...` on every channel in turn through both nodes (alternately) every
/// `gap`, until `stop`.
fn publish_numbers(
    nodes: &[Server; 2],
    channels: &[String],
    gap: Duration,
    stop: &AtomicBool,
) -> Vec<Published> {
    let mut records = Vec::new();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for (index, channel) in channels.iter().enumerate() {
            let node = &nodes[(sequence as usize + index) % 2];
            let sent_at = Instant::now();
            let status = publish_status(node, local(channel), &sequence.to_string());
            records.push((index, sequence, status, sent_at));
        }
        sequence += 1;
        std::thread::sleep(gap);
    }
    records
}

/// Watches `/readyz` of both nodes every 20 ms until `stop`: (node, time, status) at each
/// change.
fn watch_readiness(nodes: &[Server; 2], stop: &AtomicBool) -> Vec<(usize, Instant, u16)> {
    let mut last = [0u16; 2];
    let mut transitions = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for (index, node) in nodes.iter().enumerate() {
            let status = readyz(node);
            if status != last[index] {
                transitions.push((index, Instant::now(), status));
                last[index] = status;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    transitions
}

/// Asserts a client's sequence is strictly increasing (nothing twice, nothing out of order).
fn assert_in_order_once(what: &str, received: &Received) {
    for pair in received.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "{what}: {} then {} (duplicate or out of order)",
            pair[0].1,
            pair[1].1
        );
    }
}

/// Accepted (200) publishes on `channel` that `received` lacks.
fn undelivered(records: &[Published], channel: usize, received: &Received) -> Vec<u64> {
    let got: std::collections::BTreeSet<u64> = received.iter().map(|(_, s)| *s).collect();
    records
        .iter()
        .filter(|(index, _, status, _)| *index == channel && *status == 200)
        .map(|(_, sequence, _, _)| *sequence)
        .filter(|sequence| !got.contains(sequence))
        .collect()
}

/// What a run while publishing saw: the publishes, each client's messages (by channel index,
/// then node index), the `/readyz` transitions, and when the change began.
type Run = (
    Vec<Published>,
    BTreeMap<(usize, usize), Received>,
    Vec<(usize, Instant, u16)>,
    Instant,
);

/// Runs `change` on the cluster while publishing on `channels` through both nodes, with one
/// client per channel per node reading; returns the publishes, each client's messages
/// (indexed by channel, then node), the readiness transitions and when `change` began.
fn while_publishing(
    nodes: &[Server; 2],
    channels: &[String],
    change: impl FnOnce(),
    after: Duration,
) -> Run {
    let clients: Vec<((usize, usize), WebSocket<TcpStream>)> = channels
        .iter()
        .enumerate()
        .flat_map(|(index, channel)| {
            nodes.iter().enumerate().map(move |(node_index, node)| {
                (
                    (index, node_index),
                    node.websocket(&format!("/ws/{}", local(channel))),
                )
            })
        })
        .collect();
    let stop_publishing = AtomicBool::new(false);
    let stop_reading = AtomicBool::new(false);
    let stop_watching = AtomicBool::new(false);
    let changed_at = Mutex::new(Instant::now());
    std::thread::scope(|scope| {
        let readers: Vec<_> = clients
            .into_iter()
            .map(|(key, client)| {
                let stop = &stop_reading;
                (key, scope.spawn(move || read_numbers(client, stop)))
            })
            .collect();
        let watcher = scope.spawn(|| watch_readiness(nodes, &stop_watching));
        let publisher = scope
            .spawn(|| publish_numbers(nodes, channels, Duration::from_millis(5), &stop_publishing));
        std::thread::sleep(Duration::from_millis(500));
        *changed_at.lock().unwrap() = Instant::now();
        change();
        std::thread::sleep(after);
        stop_publishing.store(true, Ordering::Relaxed);
        let records = publisher.join().unwrap();
        // Let the last messages arrive.
        std::thread::sleep(Duration::from_millis(1000));
        stop_reading.store(true, Ordering::Relaxed);
        stop_watching.store(true, Ordering::Relaxed);
        let received = readers
            .into_iter()
            .map(|(key, reader)| (key, reader.join().unwrap()))
            .collect();
        let transitions = watcher.join().unwrap();
        let changed_at = *changed_at.lock().unwrap();
        (records, received, transitions, changed_at)
    })
}

#[test]
fn a_killed_master_fails_over_and_both_nodes_resubscribe_by_themselves() {
    let mut cluster = RedisCluster::start();
    let masters = cluster.masters();
    let channels: Vec<String> = masters
        .iter()
        .map(|&master| cluster.channel_on(master, "ws:broadcast:failover"))
        .collect();
    let nodes = [node(&cluster), node(&cluster)];
    let victim = masters[0];
    let promoted = Mutex::new(None);
    let (records, received, transitions, killed_at) = while_publishing(
        &nodes,
        &channels,
        || {
            let (port, took) = cluster.kill_master_and_wait_for_promotion(victim);
            eprintln!("failover: replica {port} promoted {took:?} after kill -9 of {victim}");
            *promoted.lock().unwrap() = Some(port);
            wait_for("both nodes ready again", || {
                nodes.iter().all(|node| readyz(node) == 200)
            });
        },
        Duration::from_millis(1500),
    );
    let promoted = promoted.lock().unwrap().expect("promoted");
    let refused = records
        .iter()
        .filter(|(_, _, status, _)| *status != 200)
        .count();
    let first_refused = records
        .iter()
        .filter(|(index, _, status, _)| *index == 0 && *status != 200)
        .map(|(_, sequence, _, _)| *sequence)
        .min();
    for ((channel, node_index), messages) in &received {
        let what = format!("{} on node {node_index}", channels[*channel]);
        assert_in_order_once(&what, messages);
        let lost = undelivered(&records, *channel, messages);
        eprintln!(
            "failover: {what}: {} received, {} accepted but not delivered (at-most-once window): {lost:?}",
            messages.len(),
            lost.len()
        );
        if *channel != 0 {
            assert!(
                lost.is_empty(),
                "{what}: other masters lose nothing: {lost:?}"
            );
        }
        // Delivery resumed within the bound: a message published after the outage began
        // arrived, and the last publishes all arrived.
        let resumed = messages
            .iter()
            .find(|(at, sequence)| {
                *at > killed_at && first_refused.is_none_or(|first| *sequence > first)
            })
            .map(|(at, _)| at.duration_since(killed_at));
        if *channel == 0 {
            eprintln!("failover: {what}: delivering again {resumed:?} after the kill");
            let resumed = resumed.expect("the victim's channel delivers again");
            assert!(resumed < RESUME_BOUND, "{what}: {resumed:?}");
        }
        let last = records
            .iter()
            .rfind(|(index, _, status, _)| index == channel && *status == 200)
            .map(|(_, sequence, _, _)| *sequence)
            .expect("published");
        assert!(
            messages.iter().any(|(_, sequence)| *sequence == last),
            "{what}: the last accepted publish {last} arrived"
        );
    }
    let readiness: Vec<String> = transitions
        .iter()
        .map(|(node, at, status)| {
            format!(
                "node{node}:{status}@{:?}",
                at.saturating_duration_since(killed_at)
            )
        })
        .collect();
    eprintln!(
        "failover: {refused} publishes refused (503, not published); /readyz transitions {readiness:?}"
    );
    for index in 0..2 {
        assert!(
            transitions
                .iter()
                .any(|(node, at, status)| *node == index && *at >= killed_at && *status == 503),
            "node {index}: /readyz went 503 after the kill: {readiness:?}"
        );
        let last = transitions.iter().rfind(|(node, _, _)| *node == index);
        assert_eq!(
            last.map(|(_, _, status)| *status),
            Some(200),
            "{readiness:?}"
        );
    }
    // The readers' clients are gone; new ones on both nodes: the promoted replica holds the
    // victim's channel (one connection per node) and a user's publish reaches both nodes.
    assert_user_publish_reaches_both_nodes(&cluster, &nodes, &channels[0], promoted);
    for node in &nodes {
        let (_, metrics) = node.http("GET", "/metrics", b"");
        let resubscribed = metrics
            .lines()
            .find(|line| line.starts_with("ringcast_redis_resubscriptions_total "))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(resubscribed >= 1.0, "{metrics}");
        let line = format!("ringcast_redis_master_up{{master=\"127.0.0.1:{promoted}\"}} 1");
        assert!(metrics.contains(&line), "{line} in {metrics}");
        assert!(
            node.http("GET", "/healthz", b"").0 == 200,
            "nothing crashed"
        );
    }
}

#[test]
fn a_slot_migrated_while_publishing_keeps_delivering() {
    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    let (source, target) = (masters[0], masters[1]);
    let channels = vec![
        cluster.channel_on(source, "ws:broadcast:moving"),
        cluster.channel_on(masters[2], "ws:broadcast:still"),
    ];
    let slot = cluster.keyslot(&channels[0]);
    let nodes = [node(&cluster), node(&cluster)];
    let (records, received, transitions, moved_at) = while_publishing(
        &nodes,
        &channels,
        || cluster.migrate_slot(slot, target),
        Duration::from_millis(1500),
    );
    for ((channel, node_index), messages) in &received {
        let what = format!("{} on node {node_index}", channels[*channel]);
        assert_in_order_once(&what, messages);
        let lost = undelivered(&records, *channel, messages);
        eprintln!(
            "migration: {what}: {} received, {} accepted but not delivered: {lost:?}",
            messages.len(),
            lost.len()
        );
        if *channel == 1 {
            assert!(lost.is_empty(), "{what}: an unmoved slot loses nothing");
        }
        // Delivery continued on the new owner: the last accepted publish arrived.
        let last = records
            .iter()
            .rfind(|(index, _, status, _)| index == channel && *status == 200)
            .map(|(_, sequence, _, _)| *sequence)
            .expect("published");
        assert!(
            messages.iter().any(|(_, sequence)| *sequence == last),
            "{what}: the last accepted publish {last} arrived"
        );
    }
    let refused = records
        .iter()
        .filter(|(_, _, status, _)| *status != 200)
        .count();
    eprintln!(
        "migration: {refused} publishes refused; /readyz transitions {:?}",
        transitions
            .iter()
            .map(|(node, at, status)| format!(
                "node{node}:{status}@{:?}",
                at.saturating_duration_since(moved_at)
            ))
            .collect::<Vec<_>>()
    );
    assert_user_publish_reaches_both_nodes(&cluster, &nodes, &channels[0], target);
    assert!(!cluster.shard_channels(source).contains(&channels[0]));
}

/// New clients of `channel` on both nodes: `master` holds it, and `redis-cli -c SPUBLISH`
/// reaches both nodes' clients.
fn assert_user_publish_reaches_both_nodes(
    cluster: &RedisCluster,
    nodes: &[Server; 2],
    channel: &str,
    master: u16,
) {
    let mut clients: Vec<_> = nodes
        .iter()
        .map(|node| node.websocket(&format!("/ws/{}", local(channel))))
        .collect();
    wait_for("the channel's master to hold it", || {
        cluster.shard_channels(master) == vec![channel.to_string()]
    });
    assert_eq!(cluster.spublish_cli(channel, "after"), Ok(2));
    for client in &mut clients {
        client
            .get_mut()
            .set_read_timeout(Some(READ_PATIENCE))
            .unwrap();
        assert_eq!(read_text(client), "after");
    }
}

/// A metric's value (the first sample whose line starts with `name`), 0 when absent.
fn metric(server: &Server, name: &str) -> f64 {
    let (_, text) = server.http("GET", "/metrics", b"");
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) used so far by the threads of process `pid` named `name`.
fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux.
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.ends_with(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    ticks as f64 / ticks_per_second
}

/// `redis-benchmark -q -c 4 -P {pipeline} -n {requests} {command...}` against `port`, started.
fn redis_benchmark(port: u16, requests: u64, pipeline: u32, args: &[&str]) -> std::process::Child {
    std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "-c", "4"])
        .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-benchmark is installed (redis-tools)")
}

/// The requests per second a finished `redis-benchmark -q` printed.
fn requests_per_second(child: std::process::Child) -> f64 {
    let output = child.wait_with_output().expect("redis-benchmark ends");
    let text = String::from_utf8_lossy(&output.stdout);
    text.rsplit('\r')
        .next()
        .and_then(|line| line.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {text:?}"))
}

/// One forwarding measurement: `node` subscribed (one WebSocket client per channel that does
/// not read: its frames queue in the node, which costs the shard little, so the clients are not
/// what is measured) to `channels`; `publish` starts the publishers (one `redis-benchmark` per
/// channel). Prints and returns (Redis publish rate, node receive rate).
fn measure_forwarding(
    what: &str,
    node: &Server,
    channels: &[String],
    expected: u64,
    publish: impl FnOnce() -> Vec<std::process::Child>,
) -> (f64, f64) {
    let _clients: Vec<_> = channels
        .iter()
        .map(|channel| node.websocket(&format!("/ws/{}", local(channel))))
        .collect();
    let received_before = metric(node, "ringcast_redis_messages_received_total");
    let cpu_before = thread_cpu_seconds(node.pid(), "ringcast-redis");
    let started = Instant::now();
    let publishers = publish();
    let published_rate: f64 = publishers.into_iter().map(requests_per_second).sum();
    // Until everything arrived or nothing more arrives for 2 s (bounded: 60 s).
    let (mut last, mut last_change) = (received_before, Instant::now());
    while started.elapsed() < Duration::from_secs(60) {
        let now = metric(node, "ringcast_redis_messages_received_total");
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if now - received_before >= expected as f64
            || last_change.elapsed() > Duration::from_secs(2)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = last - received_before;
    let seconds = last_change.duration_since(started).as_secs_f64();
    let cpu = thread_cpu_seconds(node.pid(), "ringcast-redis") - cpu_before;
    let dropped = metric(node, "ringcast_redis_messages_dropped_total");
    let reconnects = metric(node, "ringcast_redis_reconnects_total");
    let resubscriptions = metric(node, "ringcast_redis_resubscriptions_total");
    let rate = received / seconds;
    eprintln!(
        "forwarding {what}: redis-benchmark published {published_rate:.0}/s (sum over \
         publishers); the node's subscriber core received {received:.0} of {expected} in \
         {seconds:.2} s = {rate:.0} messages/s into the shard (dropped for a shard: {dropped}); \
         core thread {cpu:.2} CPU s = {:.0} messages per CPU second; reconnects \
         {reconnects}, resubscriptions {resubscriptions}",
        received / cpu.max(0.01)
    );
    (published_rate, rate)
}

/// What one fixed-rate publisher did.
#[derive(Debug, Default, Clone, Copy)]
struct Paced {
    /// Commands answered by Redis.
    published: u64,
    /// Sum of the answers: subscribers Redis handed the messages to (its output buffers).
    receivers: u64,
    /// Seconds from the first command to the last written.
    seconds: f64,
}

/// Publishes `command channel payload` (PUBLISH or SPUBLISH; `channels` in turn) on one
/// connection to `port` at `rate` messages/s for `duration`: every millisecond it writes the
/// commands that bring it up to `rate * elapsed` (pipelined), and a second thread reads the
/// answers. When Redis is slower than `rate` the writes block and the publisher falls behind:
/// `Paced::seconds` then shows the rate it reached. Bounded: `duration`, then at most 20 s for
/// the answers.
fn publish_at_rate(
    port: u16,
    command: &'static str,
    channels: Vec<String>,
    payload: String,
    rate: u64,
    duration: Duration,
) -> std::thread::JoinHandle<Paced> {
    use std::io::{BufRead, Write};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    std::thread::spawn(move || {
        let mut writer = TcpStream::connect(("127.0.0.1", port)).expect("redis");
        writer.set_nodelay(true).unwrap();
        let reader = writer.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (sent_seen, done_seen) = (sent.clone(), done.clone());
        let answers = std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(reader);
            let (mut published, mut receivers) = (0u64, 0u64);
            let mut line = String::new();
            let mut done_at: Option<Instant> = None;
            // Bounded: ends when every command is answered, or 20 s after the last was sent.
            loop {
                if done_seen.load(Ordering::Acquire) {
                    let at = *done_at.get_or_insert_with(Instant::now);
                    if published == sent_seen.load(Ordering::Acquire)
                        || at.elapsed() > Duration::from_secs(20)
                    {
                        break;
                    }
                }
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) if line.ends_with('\n') => {
                        published += 1;
                        receivers += line.trim_end().trim_start_matches(':').parse().unwrap_or(0);
                        line.clear();
                    }
                    Ok(_) => {}
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            (published, receivers)
        });
        let encoded: Vec<Vec<u8>> = channels
            .iter()
            .map(|channel| common::resp_command(&[command, channel, &payload]))
            .collect();
        let started = Instant::now();
        let mut count = 0u64;
        let mut batch = Vec::new();
        while started.elapsed() < duration {
            let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
            batch.clear();
            // Bounded: at most 10 ms worth of commands in one write.
            while count < due && batch.len() < (rate as usize / 100 + 1) * 64 {
                batch.extend_from_slice(&encoded[count as usize % encoded.len()]);
                count += 1;
            }
            if !batch.is_empty() {
                writer.write_all(&batch).expect("redis takes the commands");
                sent.store(count, Ordering::Release);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let seconds = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Release);
        let (published, receivers) = answers.join().unwrap();
        Paced {
            published,
            receivers,
            seconds,
        }
    })
}

/// One fixed-rate measurement: `node` subscribed to `channels` (one non-reading client each,
/// as in `measure_forwarding`); `publish` starts the paced publishers (together `rate`
/// messages/s for `duration`). Prints published vs received, the drops and reconnects, and the
/// core's CPU per forwarded message.
fn measure_fixed_rate(
    what: &str,
    node: &Server,
    channels: &[String],
    rate: u64,
    duration: Duration,
    publish: impl FnOnce() -> Vec<std::thread::JoinHandle<Paced>>,
) {
    let _clients: Vec<_> = channels
        .iter()
        .map(|channel| node.websocket(&format!("/ws/{}", local(channel))))
        .collect();
    let counters = [
        "ringcast_redis_messages_received_total",
        "ringcast_redis_messages_dropped_total",
        "ringcast_redis_reconnects_total",
    ];
    let before: Vec<f64> = counters.iter().map(|name| metric(node, name)).collect();
    let cpu_before = thread_cpu_seconds(node.pid(), "ringcast-redis");
    let paced = publish()
        .into_iter()
        .map(|publisher| publisher.join().unwrap())
        .fold(Paced::default(), |sum, one| Paced {
            published: sum.published + one.published,
            receivers: sum.receivers + one.receivers,
            seconds: sum.seconds.max(one.seconds),
        });
    // Until everything arrived or nothing more arrives for 2 s (bounded: 60 s).
    let waited = Instant::now();
    let (mut last, mut last_change) = (before[0], Instant::now());
    while waited.elapsed() < Duration::from_secs(60) {
        let now = metric(node, counters[0]);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if now - before[0] >= paced.published as f64
            || last_change.elapsed() > Duration::from_secs(2)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after: Vec<f64> = counters.iter().map(|name| metric(node, name)).collect();
    let cpu = thread_cpu_seconds(node.pid(), "ringcast-redis") - cpu_before;
    let received = after[0] - before[0];
    let dropped = after[1] - before[1];
    let reconnects = after[2] - before[2];
    let published = paced.published as f64;
    eprintln!(
        "forwarding fixed-rate {what} at {rate}/s for {:.0} s: published {published:.0} in \
         {:.2} s ({:.0}/s; Redis handed {} to subscribers); the core received {received:.0} \
         = {:.2}% of published, dropped in the node {dropped:.0}, reconnects {reconnects:.0}; \
         core thread {cpu:.2} CPU s = {:.2} us per message ({:.0} messages per CPU second), \
         {:.0}% of one core",
        duration.as_secs_f64(),
        paced.seconds,
        published / paced.seconds.max(0.001),
        paced.receivers,
        100.0 * received / published.max(1.0),
        1e6 * cpu / received.max(1.0),
        received / cpu.max(0.01),
        100.0 * cpu / paced.seconds.max(0.001),
    );
}

/// The fixed rates (messages/s, all channels together) and how long each is held.
const FIXED_RATES: [u64; 4] = [50_000, 100_000, 200_000, 300_000];
const FIXED_RATE_DURATION: Duration = Duration::from_secs(5);

/// Benchmark (`bash bench/cluster-forwarding.sh`, or `cargo test --release --test
/// cluster_node -- --ignored forwarding_rate --nocapture`): the subscriber core's forwarding
/// rate (messages/s from Redis into the shards), one Redis vs the 3-master cluster, with
/// `redis-benchmark` PUBLISH / SPUBLISH as the publishers (16-byte payloads, 4 connections and
/// pipeline 32 per publisher, one publisher per channel, three channels): a burst as fast as
/// Redis takes it. Then fixed rates below Redis's own (`FIXED_RATES`, 5 s each; one paced
/// connection for one Redis, one per master for the cluster): received / published, drops,
/// and the core's CPU per forwarded message.
#[test]
#[ignore]
fn forwarding_rate() {
    const PER_CHANNEL: u64 = 300_000;
    const PIPELINE: u32 = 32;
    let payload = "x".repeat(16);
    let big_queues = ["--outbound-queue-bytes", "256MiB", "--shards", "1"];

    let single = common::RedisServer::start();
    let port = single.port;
    let alone_single = requests_per_second(redis_benchmark(
        port,
        PER_CHANNEL,
        PIPELINE,
        &["PUBLISH", "nobody", &payload],
    ));
    let url = single.url();
    let node_single = Server::start(&[&["--redis", &url], &big_queues[..]].concat());
    wait_for("the node to be ready", || readyz(&node_single) == 200);
    let channels: Vec<String> = (0..3).map(|i| format!("{PREFIX}bench-{i}")).collect();
    let (single_published, single_rate) = measure_forwarding(
        "one Redis (PUBLISH)",
        &node_single,
        &channels,
        PER_CHANNEL * 3,
        || {
            channels
                .iter()
                .map(|channel| {
                    redis_benchmark(port, PER_CHANNEL, PIPELINE, &["PUBLISH", channel, &payload])
                })
                .collect()
        },
    );
    for rate in FIXED_RATES {
        measure_fixed_rate(
            "one Redis (PUBLISH)",
            &node_single,
            &channels,
            rate,
            FIXED_RATE_DURATION,
            || {
                vec![publish_at_rate(
                    port,
                    "PUBLISH",
                    channels.clone(),
                    payload.clone(),
                    rate,
                    FIXED_RATE_DURATION,
                )]
            },
        );
    }
    drop(node_single);
    drop(single);

    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    let channels: Vec<String> = masters
        .iter()
        .map(|&master| cluster.channel_on(master, "ws:broadcast:bench"))
        .collect();
    let alone_cluster: f64 = masters
        .iter()
        .zip(&channels)
        .map(|(&master, channel)| {
            redis_benchmark(
                master,
                PER_CHANNEL,
                PIPELINE,
                &["SPUBLISH", channel, &payload],
            )
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(requests_per_second)
        .sum();
    let seeds = cluster.seeds().join(",");
    let node_cluster = Server::start(&[&["--redis-cluster", &seeds], &big_queues[..]].concat());
    wait_for("the node to be ready", || readyz(&node_cluster) == 200);
    let (cluster_published, cluster_rate) = measure_forwarding(
        "3-master cluster (SPUBLISH)",
        &node_cluster,
        &channels,
        PER_CHANNEL * 3,
        || {
            masters
                .iter()
                .zip(&channels)
                .map(|(&master, channel)| {
                    redis_benchmark(
                        master,
                        PER_CHANNEL,
                        PIPELINE,
                        &["SPUBLISH", channel, &payload],
                    )
                })
                .collect()
        },
    );
    for rate in FIXED_RATES {
        measure_fixed_rate(
            "3-master cluster (SPUBLISH)",
            &node_cluster,
            &channels,
            rate,
            FIXED_RATE_DURATION,
            || {
                masters
                    .iter()
                    .zip(&channels)
                    .map(|(&master, channel)| {
                        publish_at_rate(
                            master,
                            "SPUBLISH",
                            vec![channel.clone()],
                            payload.clone(),
                            rate / masters.len() as u64,
                            FIXED_RATE_DURATION,
                        )
                    })
                    .collect()
            },
        );
    }
    eprintln!(
        "forwarding summary: redis-benchmark alone (nobody subscribed): one Redis PUBLISH \
         {alone_single:.0}/s (one publisher), cluster SPUBLISH {alone_cluster:.0}/s (one \
         publisher per master, together); with the node subscribed: one Redis: Redis published \
         {single_published:.0}/s, core forwarded {single_rate:.0}/s; cluster: Redis published \
         {cluster_published:.0}/s, core forwarded {cluster_rate:.0}/s"
    );
}

/// Benchmark (`bash bench/cluster-forwarding.sh`, or `cargo test --release --test
/// cluster_node -- --ignored end_to_end_latency --nocapture`): two nodes on the 3-master
/// cluster, one channel per master, one client per channel on each node; `POST /publish`
/// alternately on both nodes, one request at a time with a 5 ms pause after each round of
/// three (a few hundred publishes per second), for 10 s: publish -> receive latency of every
/// delivery (the test's clock on both ends).
#[test]
#[ignore]
fn end_to_end_latency() {
    let cluster = RedisCluster::start();
    let masters = cluster.masters();
    let channels: Vec<String> = masters
        .iter()
        .map(|&master| cluster.channel_on(master, "ws:broadcast:latency"))
        .collect();
    let nodes = [node(&cluster), node(&cluster)];
    let (records, received, _, started) = while_publishing(
        &nodes,
        &channels,
        || std::thread::sleep(Duration::from_secs(10)),
        Duration::ZERO,
    );
    let sent: BTreeMap<(usize, u64), Instant> = records
        .iter()
        .filter(|(_, _, status, _)| *status == 200)
        .map(|(channel, sequence, _, at)| ((*channel, *sequence), *at))
        .collect();
    let mut latencies: Vec<Duration> = received
        .iter()
        .flat_map(|((channel, _), messages)| {
            let sent = &sent;
            messages.iter().filter_map(move |(at, sequence)| {
                sent.get(&(*channel, *sequence))
                    .map(|sent_at| at.saturating_duration_since(*sent_at))
            })
        })
        .collect();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let seconds = records
        .last()
        .map(|(_, _, _, at)| at.duration_since(started).as_secs_f64() + 0.5)
        .unwrap_or(1.0);
    eprintln!(
        "latency two nodes, 3-master cluster: {} publishes ({:.0}/s over 3 channels), {} \
         deliveries ({} expected); publish -> receive p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        records.len(),
        records.len() as f64 / seconds,
        latencies.len(),
        sent.len() * 2,
        percentile(0.5),
        percentile(0.99),
        percentile(0.999),
        latencies.last().unwrap()
    );
    assert_eq!(
        latencies.len(),
        sent.len() * 2,
        "every accepted publish reached both nodes"
    );
}
