//! The client side: thread-per-core WebSocket subscribers on epoll, and the merge of their results.
//!
//! `ClientPool::start` spawns `threads` event loops (`event_loop`), each owning every
//! `threads`-th connection. The scenario talks to them only through commands over channels and
//! reads their progress from `ThreadStatus` atomics; results come back per epoch as
//! `ThreadReport`s and are merged here into one `EpochReport` (histograms added, counters
//! summed, per-broadcast slowest receivers combined into the publish->last-receiver histogram).

pub mod accounting;
pub mod connection;
pub mod event_loop;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

use self::accounting::{BroadcastSlot, FrameCounters, LossCounters, ThreadReport};
use self::event_loop::{ClientThread, Command, ConnectionCounters};
use crate::error::{BenchError, BenchResult};
use crate::histogram::{new_latency_histogram, record_latency_ns};
use crate::sequence::SequenceCounters;
use crate::ws::frame::Opcode;

/// How long a thread may take to answer a command.
const COMMAND_REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// What every client thread needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where to connect.
    pub server_addr: SocketAddr,
    /// `Host` header value.
    pub host_header: String,
    /// Source addresses bound round-robin (empty: the kernel picks).
    pub source_ips: Vec<IpAddr>,
    /// Event-loop threads.
    pub threads: usize,
    /// CPUs to pin threads to, round-robin.
    pub cores: Option<Vec<usize>>,
    /// Connections in total.
    pub connections: usize,
    /// Connects per second, all threads together.
    pub ramp_rate_per_s: f64,
    /// Connect plus handshake timeout.
    pub connect_timeout: Duration,
    /// Attempts per connection.
    pub connect_attempts_max: u32,
    /// Request path per channel index (`/ws/<name>`).
    pub channel_paths: Vec<String>,
    /// Publishers (sequence streams per channel).
    pub publishers: usize,
    /// Expected payload size.
    pub payload_bytes: usize,
    /// Expected data opcode.
    pub expected_opcode: Opcode,
    /// Offer permessage-deflate (`--deflate`).
    pub deflate: bool,
    /// Broadcasts tracked per thread for the last-receiver histogram (16 bytes each).
    pub broadcasts_tracked_max: usize,
    /// `--protocol pusher`: the subscription of each channel index (then every path in
    /// `channel_paths` is the app's `/app/{key}`); `None` for raw subscribers.
    pub pusher_subscriptions: Option<Vec<PusherSubscription>>,
}

/// What a Pusher subscriber of one channel sends and waits for after the upgrade.
#[derive(Debug, Clone)]
pub struct PusherSubscription {
    /// The channel's name, as `pusher_internal:subscription_succeeded` must name it.
    pub channel: String,
    /// The `pusher:subscribe` message for it.
    pub subscribe_message: Vec<u8>,
}

/// Progress of one thread, read by the scenario while it waits.
#[derive(Debug, Default)]
pub struct ThreadStatus {
    /// Open connections.
    pub open: AtomicU64,
    /// Connections given up.
    pub failed: AtomicU64,
    /// Connects pending or in flight.
    pub in_flight: AtomicU64,
    /// Distinct accounted deliveries this epoch.
    pub deliveries: AtomicU64,
    /// Churn cycles completed (reconnected).
    pub churn_cycles: AtomicU64,
    /// Open connections lost without us asking.
    pub closed_unexpectedly: AtomicU64,
}

/// Sum of all threads' status.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusTotals {
    /// Open connections.
    pub open: u64,
    /// Connections given up.
    pub failed: u64,
    /// Connects pending or in flight.
    pub in_flight: u64,
    /// Distinct accounted deliveries this epoch.
    pub deliveries: u64,
    /// Churn cycles completed.
    pub churn_cycles: u64,
    /// Open connections lost without us asking.
    pub closed_unexpectedly: u64,
}

/// One epoch's results over all threads.
#[derive(Debug)]
pub struct EpochReport {
    /// Publish->receive latency (ns).
    pub latency_ns: Histogram<u64>,
    /// Publish->last-receiver latency per complete broadcast (ns).
    pub last_receiver_ns: Histogram<u64>,
    /// Broadcasts every accounted subscriber of the channel received.
    pub broadcasts_complete: u64,
    /// Broadcasts some subscriber missed.
    pub broadcasts_incomplete: u64,
    /// Broadcasts not tracked (memory bound).
    pub broadcasts_untracked: u64,
    /// Sequence anomalies.
    pub sequence: SequenceCounters,
    /// Frame counters.
    pub frames: FrameCounters,
    /// Loss.
    pub loss: LossCounters,
    /// Connection life-cycle counters (cumulative).
    pub connections: ConnectionCounters,
    /// First error any thread saw.
    pub first_error: Option<String>,
}

/// A running thread.
struct ThreadHandle {
    /// Command channel.
    commands: Sender<Command>,
    /// Join handle.
    join: JoinHandle<()>,
}

/// The running client threads.
pub struct ClientPool {
    /// Threads.
    threads: Vec<ThreadHandle>,
    /// Their progress counters.
    status: Arc<Vec<ThreadStatus>>,
    /// Publishers per channel (to interpret stream ids).
    publishers: usize,
}

impl ClientPool {
    /// Starts the threads; they begin ramping at once.
    pub fn start(config: ClientConfig) -> BenchResult<ClientPool> {
        if config.threads == 0 || config.channel_paths.is_empty() || config.publishers == 0 {
            return Err(BenchError::Config(
                "client threads, channels and publishers must be at least 1".into(),
            ));
        }
        let config = Arc::new(config);
        let status: Arc<Vec<ThreadStatus>> = Arc::new(
            (0..config.threads)
                .map(|_| ThreadStatus::default())
                .collect(),
        );
        let mut threads = Vec::with_capacity(config.threads);
        for thread_index in 0..config.threads {
            let (commands, receiver) = mpsc::channel();
            let (ready_tx, ready_rx) = mpsc::channel();
            let (config, status) = (Arc::clone(&config), Arc::clone(&status));
            let join = std::thread::Builder::new()
                .name(format!("client-{thread_index}"))
                .spawn(
                    move || match ClientThread::new(config, thread_index, status) {
                        Ok(thread) => {
                            let _ = ready_tx.send(Ok(()));
                            thread.run(receiver);
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                        }
                    },
                )
                .map_err(|error| BenchError::io("spawning a client thread", error))?;
            match ready_rx.recv_timeout(COMMAND_REPLY_TIMEOUT) {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    return Err(BenchError::io(
                        "starting a client thread (pinning or epoll)",
                        error,
                    ));
                }
                Err(_) => return Err(BenchError::Thread("client thread did not start".into())),
            }
            threads.push(ThreadHandle { commands, join });
        }
        Ok(ClientPool {
            threads,
            status,
            publishers: config.publishers,
        })
    }

    /// Sums the threads' progress counters.
    pub fn totals(&self) -> StatusTotals {
        let mut totals = StatusTotals::default();
        for status in self.status.iter() {
            totals.open += status.open.load(Ordering::Relaxed);
            totals.failed += status.failed.load(Ordering::Relaxed);
            totals.in_flight += status.in_flight.load(Ordering::Relaxed);
            totals.deliveries += status.deliveries.load(Ordering::Relaxed);
            totals.churn_cycles += status.churn_cycles.load(Ordering::Relaxed);
            totals.closed_unexpectedly += status.closed_unexpectedly.load(Ordering::Relaxed);
        }
        totals
    }

    /// Sends a command to every thread.
    fn broadcast(&self, make: impl Fn() -> Command) -> BenchResult<()> {
        for thread in &self.threads {
            thread
                .commands
                .send(make())
                .map_err(|_| BenchError::Thread("a client thread exited early".into()))?;
        }
        Ok(())
    }

    /// Ends the epoch on every thread and merges their reports; `expected` is messages sent per
    /// stream id (channel * publishers + publisher).
    pub fn snapshot(&self, expected: Vec<u64>, next_epoch: u8) -> BenchResult<EpochReport> {
        let expected = Arc::new(expected);
        let (reply, replies) = mpsc::channel();
        self.broadcast(|| Command::Snapshot {
            expected: Arc::clone(&expected),
            next_epoch,
            reply: reply.clone(),
        })?;
        let mut merged = EpochReport {
            latency_ns: new_latency_histogram(),
            last_receiver_ns: new_latency_histogram(),
            broadcasts_complete: 0,
            broadcasts_incomplete: 0,
            broadcasts_untracked: 0,
            sequence: SequenceCounters::default(),
            frames: FrameCounters::default(),
            loss: LossCounters::default(),
            connections: ConnectionCounters::default(),
            first_error: None,
        };
        let mut reports = Vec::with_capacity(self.threads.len());
        for _ in &self.threads {
            let answer = replies.recv_timeout(COMMAND_REPLY_TIMEOUT).map_err(|_| {
                BenchError::Thread("a client thread did not answer a snapshot".into())
            })?;
            merged.connections.add(&answer.connections);
            merged.first_error = merged.first_error.or(answer.first_error);
            reports.push(answer.report);
        }
        for report in &reports {
            merged
                .latency_ns
                .add(&report.latency_ns)
                .expect("histograms share their bounds");
            merged.sequence.add(&report.sequence);
            merged.frames.add(&report.frames);
            merged.loss.add(&report.loss);
            merged.broadcasts_untracked += report.broadcasts_untracked;
        }
        self.merge_last_receiver(&mut merged, reports, &expected);
        Ok(merged)
    }

    /// Combines per-thread slowest receivers into one latency per complete broadcast.
    fn merge_last_receiver(
        &self,
        merged: &mut EpochReport,
        reports: Vec<ThreadReport>,
        expected: &[u64],
    ) {
        let channels = expected.len() / self.publishers;
        let mut receivers_per_channel = vec![0u64; channels];
        for report in &reports {
            for (channel, count) in report.accounted_per_channel.iter().enumerate() {
                receivers_per_channel[channel] += u64::from(*count);
            }
        }
        let mut combined: Vec<Vec<BroadcastSlot>> = vec![Vec::new(); expected.len()];
        for report in reports {
            for (stream_id, slots) in report.last_receiver.into_iter().enumerate() {
                let target = &mut combined[stream_id];
                if target.len() < slots.len() {
                    target.resize(slots.len(), BroadcastSlot::default());
                }
                for (into, from) in target.iter_mut().zip(slots) {
                    into.latency_ns_max = into.latency_ns_max.max(from.latency_ns_max);
                    into.receivers += from.receivers;
                }
            }
        }
        for (stream_id, slots) in combined.iter().enumerate() {
            let receivers = receivers_per_channel[stream_id / self.publishers];
            if receivers == 0 {
                continue;
            }
            for sequence in 0..expected[stream_id] as usize {
                match slots.get(sequence) {
                    Some(slot) if u64::from(slot.receivers) == receivers => {
                        merged.broadcasts_complete += 1;
                        record_latency_ns(&mut merged.last_receiver_ns, slot.latency_ns_max);
                    }
                    _ => merged.broadcasts_incomplete += 1,
                }
            }
        }
    }

    /// Asks every thread to replace `cycles` connections in total at `rate_per_s` in total.
    pub fn start_churn(&self, rate_per_s: f64, cycles: u64) -> BenchResult<()> {
        let threads = self.threads.len() as u64;
        for (index, thread) in self.threads.iter().enumerate() {
            let share = cycles / threads + u64::from((index as u64) < cycles % threads);
            let command = Command::StartChurn {
                rate_per_s: rate_per_s / threads as f64,
                cycles: share,
            };
            thread
                .commands
                .send(command)
                .map_err(|_| BenchError::Thread("a client thread exited early".into()))?;
        }
        Ok(())
    }

    /// Closes every connection and waits until all threads did.
    pub fn close_all(&self) -> BenchResult<()> {
        let (reply, replies) = mpsc::channel();
        self.broadcast(|| Command::CloseAll {
            reply: reply.clone(),
        })?;
        for _ in &self.threads {
            replies.recv_timeout(COMMAND_REPLY_TIMEOUT).map_err(|_| {
                BenchError::Thread("a client thread did not close its connections".into())
            })?;
        }
        Ok(())
    }

    /// Stops and joins every thread (their sockets close with them).
    pub fn stop(self) -> BenchResult<()> {
        let _ = self.broadcast(|| Command::Stop);
        for thread in self.threads {
            thread
                .join
                .join()
                .map_err(|_| BenchError::Thread("a client thread panicked".into()))?;
        }
        Ok(())
    }
}
