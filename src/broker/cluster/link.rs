//! One subscriber connection to one cluster master: a task that owns the TCP stream, writes the
//! SSUBSCRIBE / SUNSUBSCRIBE commands the manager asks for (pipelined), and reports what the
//! server says, frame by frame: each channel confirmed, each channel dropped (by our request or
//! by the server because its slot moved away), each command refused (`MOVED`, `CLUSTERDOWN`),
//! and the connection going up or down. Messages go straight to the bounded output channel, in
//! the order the server sent them.
//!
//! It deliberately does not decide anything: which channels to subscribe where, and what a
//! `MOVED` means, is the manager's job (`super`). After a reconnect the server remembers no
//! subscription; the manager learns it from the `Connected` event and subscribes again.
//!
//! Invariants: commands in flight are bounded (`PENDING_COMMANDS_MAX`); an error reply
//! answers the oldest command not yet fully answered (Redis answers in order); the task ends
//! when the manager drops its command sender.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::resp::{self, Push, ReplyError, RespError};
use super::{ClusterMessage, ClusterStatus};

/// Most commands written and not yet fully answered on one connection before the link stops
/// taking more (a defensive bound: the manager already bounds channels in flight per link,
/// and one batch may pass it by at most one round's commands).
pub const PENDING_COMMANDS_MAX: usize = 65_536;
/// Read buffer reserved per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// First delay before reconnecting; doubles up to `LinkSettings::reconnect_delay_max`.
const RECONNECT_DELAY_FIRST: Duration = Duration::from_millis(50);

/// Identifies one link (a new link to the same address gets a new id, so events of a link
/// that was replaced are recognised and ignored).
pub type LinkId = u64;

/// What the manager asks a link to do: several commands, written at once (pipelined); every
/// channel of one command hashes to one slot (cluster spec: a multi-key command must not
/// cross slots).
#[derive(Debug)]
pub enum LinkCommand {
    /// One SSUBSCRIBE per list.
    Subscribe(Vec<Vec<String>>),
    /// One SUNSUBSCRIBE per list.
    Unsubscribe(Vec<Vec<String>>),
}

/// Why a subscriber connection ended (the link reconnects after any of them).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TCP connection took too long.
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The server closed the connection (or died).
    #[error("closed by the server")]
    Closed,
    /// Reading failed.
    #[error("read failed: {0}")]
    Read(std::io::Error),
    /// Writing failed.
    #[error("write failed: {0}")]
    Write(std::io::Error),
    /// A write did not finish within a ping interval.
    #[error("write blocked for {0:?}")]
    WriteBlocked(Duration),
    /// The previous PING is still unanswered after a ping interval.
    #[error("no answer to PING for {0:?}")]
    PingUnanswered(Duration),
    /// PING answered with an error.
    #[error("PING refused: {0}")]
    PingRefused(ReplyError),
    /// RESP: replies come in order, one per command; an error with no command waiting means
    /// the stream is out of step.
    #[error("an error reply with no command waiting: {0}")]
    UnaskedError(ReplyError),
    /// The server sent something that is not RESP2 or not for a subscriber.
    #[error(transparent)]
    Protocol(#[from] RespError),
    /// The receiver of messages is gone (the subscriber core stopped).
    #[error("the message receiver is gone")]
    OutputClosed,
    /// The manager is gone.
    #[error("the manager is gone")]
    ManagerGone,
}

/// Why a channel is no longer subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeCause {
    /// We sent SUNSUBSCRIBE.
    Requested,
    /// The server dropped it without being asked: its slot moved to another master.
    Server,
}

/// What a link reports to the manager.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected (again): nothing is subscribed on this connection.
    Connected(LinkId),
    /// The server confirmed the channel.
    Subscribed(LinkId, String),
    /// The channel is no longer subscribed on this connection.
    Unsubscribed(LinkId, String, UnsubscribeCause),
    /// A command was refused; these channels of it were not (un)subscribed.
    Refused(LinkId, Vec<String>, ReplyError),
    /// The connection failed or could not be made; commands in flight are lost.
    Down(LinkId, LinkError),
}

/// How a link connects.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// `host:port` of the master.
    pub address: String,
    /// Longest wait for the TCP connection.
    pub connect_timeout: Duration,
    /// A PING is sent this often; a connection that has not answered the previous one by
    /// then is declared dead.
    pub ping_interval: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_delay_max: Duration,
    /// Largest message payload accepted (a larger one ends the connection).
    pub message_bytes_max: usize,
}

/// The channels of one command still waiting for their confirmation.
#[derive(Debug)]
enum Pending {
    /// SSUBSCRIBE: one `ssubscribe` frame per channel, or one error.
    Subscribe(HashSet<String>),
    /// SUNSUBSCRIBE: one `sunsubscribe` frame per channel, or one error.
    Unsubscribe(HashSet<String>),
    /// PING: one `pong`.
    Ping,
}

/// The channels (of a link) and sinks a connection reports to.
struct Sinks {
    /// This link.
    id: LinkId,
    /// Reports to the manager.
    events: mpsc::Sender<LinkEvent>,
    /// Messages to the subscriber core.
    output: mpsc::Sender<ClusterMessage>,
    /// Counters.
    status: Arc<ClusterStatus>,
}

/// Runs the link until the manager drops `commands`: connect, serve, reconnect with capped
/// backoff.
pub async fn run(
    id: LinkId,
    settings: LinkSettings,
    mut commands: mpsc::Receiver<LinkCommand>,
    events: mpsc::Sender<LinkEvent>,
    output: mpsc::Sender<ClusterMessage>,
    status: Arc<ClusterStatus>,
) {
    let sinks = Sinks {
        id,
        events,
        output,
        status,
    };
    let mut delay = RECONNECT_DELAY_FIRST;
    // Bounded: ends when the manager drops the command sender (checked while waiting).
    loop {
        let connected = tokio::time::timeout(
            settings.connect_timeout,
            TcpStream::connect(&settings.address),
        )
        .await;
        let reason = match connected {
            Ok(Ok(stream)) => {
                delay = RECONNECT_DELAY_FIRST;
                let _ = stream.set_nodelay(true);
                if sinks.events.send(LinkEvent::Connected(id)).await.is_err() {
                    return;
                }
                match serve(stream, &settings, &mut commands, &sinks).await {
                    Ok(()) | Err(LinkError::OutputClosed | LinkError::ManagerGone) => return,
                    Err(reason) => reason,
                }
            }
            Ok(Err(error)) => LinkError::Connect(error),
            Err(_) => LinkError::ConnectTimeout(settings.connect_timeout),
        };
        if sinks
            .events
            .send(LinkEvent::Down(id, reason))
            .await
            .is_err()
        {
            return;
        }
        // Commands that arrive while disconnected are dropped: the manager resends what is
        // still missing after `Connected`.
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                command = commands.recv() => if command.is_none() { return },
            }
        }
        delay = (delay * 2).min(settings.reconnect_delay_max);
    }
}

/// Serves one connection; `Ok` when the manager let go of the link, `Err(reason)` when the
/// connection failed.
async fn serve(
    stream: TcpStream,
    settings: &LinkSettings,
    commands: &mut mpsc::Receiver<LinkCommand>,
    sinks: &Sinks,
) -> Result<(), LinkError> {
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut ping_sent_at: Option<Instant> = None;
    let mut ping = tokio::time::interval(settings.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = BytesMut::new();
    // Bounded: each round reads, writes or pings once; ends on error or when released.
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buffer) => {
                match read {
                    Ok(0) => return Err(LinkError::Closed),
                    Ok(_) => {}
                    Err(error) => return Err(LinkError::Read(error)),
                }
                drain_frames(&mut buffer, settings, &mut pending, &mut ping_sent_at, sinks).await?;
                buffer.reserve(READ_CHUNK_BYTES.saturating_sub(buffer.capacity()));
            }
            command = commands.recv(), if pending.len() < PENDING_COMMANDS_MAX => {
                let Some(command) = command else { return Ok(()) };
                let (name, groups, subscribe) = match command {
                    LinkCommand::Subscribe(groups) => ("SSUBSCRIBE", groups, true),
                    LinkCommand::Unsubscribe(groups) => ("SUNSUBSCRIBE", groups, false),
                };
                for channels in groups {
                    let mut args: Vec<&[u8]> = vec![name.as_bytes()];
                    args.extend(channels.iter().map(|channel| channel.as_bytes()));
                    resp::encode_command(&args, &mut out);
                    let channels = channels.into_iter().collect();
                    pending.push_back(if subscribe {
                        Pending::Subscribe(channels)
                    } else {
                        Pending::Unsubscribe(channels)
                    });
                }
                write(&mut writer, &mut out, settings).await?;
            }
            _ = ping.tick() => {
                if let Some(sent_at) = ping_sent_at {
                    return Err(LinkError::PingUnanswered(sent_at.elapsed()));
                }
                if pending.len() < PENDING_COMMANDS_MAX {
                    resp::encode_command(&["PING"], &mut out);
                    pending.push_back(Pending::Ping);
                    ping_sent_at = Some(Instant::now());
                    write(&mut writer, &mut out, settings).await?;
                }
            }
        }
    }
}

async fn write(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    out: &mut BytesMut,
    settings: &LinkSettings,
) -> Result<(), LinkError> {
    let written = tokio::time::timeout(settings.ping_interval, writer.write_all(out)).await;
    out.clear();
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(LinkError::Write(error)),
        Err(_) => Err(LinkError::WriteBlocked(settings.ping_interval)),
    }
}

/// Decodes and handles every complete frame in `buffer`.
async fn drain_frames(
    buffer: &mut BytesMut,
    settings: &LinkSettings,
    pending: &mut VecDeque<Pending>,
    ping_sent_at: &mut Option<Instant>,
    sinks: &Sinks,
) -> Result<(), LinkError> {
    // Bounded: each round consumes one frame from a finite buffer.
    loop {
        let Some(frame) = resp::decode(buffer, settings.message_bytes_max)? else {
            return Ok(());
        };
        let push = resp::classify(frame)?;
        handle(push, pending, ping_sent_at, sinks).await?;
    }
}

async fn handle(
    push: Push,
    pending: &mut VecDeque<Pending>,
    ping_sent_at: &mut Option<Instant>,
    sinks: &Sinks,
) -> Result<(), LinkError> {
    let id = sinks.id;
    let event = match push {
        Push::Message { channel, payload } => {
            sinks
                .status
                .messages_received
                .fetch_add(1, Ordering::Relaxed);
            // Waiting here is the backpressure: the socket is not read while the core is
            // behind; Redis buffers (up to its pubsub output limit) meanwhile.
            let message = ClusterMessage { channel, payload };
            return match sinks.output.send(message).await {
                Ok(()) => Ok(()),
                Err(_) => Err(LinkError::OutputClosed),
            };
        }
        Push::Subscribed(channel) => {
            let channel = text(channel);
            confirm(pending, &channel, true);
            LinkEvent::Subscribed(id, channel)
        }
        Push::Unsubscribed(channel) => {
            let channel = text(channel);
            let cause = if confirm(pending, &channel, false) {
                UnsubscribeCause::Requested
            } else {
                UnsubscribeCause::Server
            };
            LinkEvent::Unsubscribed(id, channel, cause)
        }
        Push::Pong => {
            if let Some(index) = pending.iter().position(|p| matches!(p, Pending::Ping)) {
                pending.remove(index);
            }
            *ping_sent_at = None;
            return Ok(());
        }
        Push::Error(error) => match pending.pop_front() {
            Some(Pending::Subscribe(channels) | Pending::Unsubscribe(channels)) => {
                LinkEvent::Refused(id, channels.into_iter().collect(), error)
            }
            Some(Pending::Ping) => return Err(LinkError::PingRefused(error)),
            None => return Err(LinkError::UnaskedError(error)),
        },
    };
    sinks
        .events
        .send(event)
        .await
        .map_err(|_| LinkError::ManagerGone)
}

/// Removes `channel` from the oldest pending command of its kind that waits for it; true if
/// one did (a frame nobody waited for is the server's own doing).
fn confirm(pending: &mut VecDeque<Pending>, channel: &str, subscribed: bool) -> bool {
    let position = pending.iter_mut().position(|entry| match entry {
        Pending::Subscribe(channels) if subscribed => channels.remove(channel),
        Pending::Unsubscribe(channels) if !subscribed => channels.remove(channel),
        _ => false,
    });
    let Some(index) = position else { return false };
    let done =
        matches!(&pending[index], Pending::Subscribe(c) | Pending::Unsubscribe(c) if c.is_empty());
    if done {
        pending.remove(index);
    }
    true
}

fn text(bytes: Bytes) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(channels: &[&str]) -> HashSet<String> {
        channels.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn confirmations_complete_commands_in_order() {
        let mut pending = VecDeque::from([
            Pending::Subscribe(set(&["a", "b"])),
            Pending::Unsubscribe(set(&["c"])),
            Pending::Ping,
        ]);
        assert!(confirm(&mut pending, "a", true));
        assert_eq!(pending.len(), 3);
        assert!(confirm(&mut pending, "b", true));
        assert_eq!(pending.len(), 2, "the SSUBSCRIBE is fully answered");
        // A sunsubscribe for a channel nobody asked about is the server's doing.
        assert!(!confirm(&mut pending, "z", false));
        assert!(confirm(&mut pending, "c", false));
        assert!(matches!(pending.front(), Some(Pending::Ping)));
    }
}
