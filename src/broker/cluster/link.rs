//! One subscriber connection to one Redis server (a cluster master, or the one Redis of
//! `--redis`): a task that owns the TCP stream, writes the SSUBSCRIBE / SUNSUBSCRIBE (sharded)
//! or SUBSCRIBE / UNSUBSCRIBE (plain, [`PubSubKind`]) commands its manager asks for
//! (pipelined), and reports what the server says, frame by frame: each channel confirmed, each
//! channel dropped (by our request or by the server because its slot moved away), each command
//! refused (`MOVED`, `CLUSTERDOWN`, `NOAUTH`), and the connection going up or down. Messages go
//! straight to the bounded output channel, in the order the server sent them. On every new
//! connection it first sends the [`Handshake`] (AUTH, SELECT, then a PING) and reports
//! `Connected` only once the server answered each (`+OK`, `+PONG`).
//!
//! It deliberately does not decide anything: which channels to subscribe where, and what a
//! `MOVED` means, is its manager's job (`super`'s for a cluster, `broker::single` for one
//! Redis). After a reconnect the server remembers no subscription; the manager learns it from
//! the `Connected` event and subscribes again.
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

use super::resp::{self, PubSubKind, Push, ReplyError, RespError};
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

/// What the manager asks a link to do: several commands, written at once (pipelined); on a
/// cluster every channel of one command hashes to one slot (cluster spec: a multi-key command
/// must not cross slots).
#[derive(Debug)]
pub enum LinkCommand {
    /// One (S)SUBSCRIBE per list.
    Subscribe(Vec<Vec<String>>),
    /// One (S)UNSUBSCRIBE per list.
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
    /// AUTH, SELECT or the PING refused (a wrong or missing password, a database that does not
    /// exist). The command is not repeated here: it may hold the password.
    #[error("connection setup (AUTH / SELECT / PING) refused: {0}")]
    HandshakeRefused(ReplyError),
    /// AUTH, SELECT or the PING unanswered within the connect timeout.
    #[error("no answer to AUTH / SELECT / PING within {0:?}")]
    HandshakeTimeout(Duration),
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

/// Commands sent on every new connection before anything else, each answered `+OK` (AUTH,
/// SELECT). `Debug` shows only how many: AUTH holds the password, which must never reach a log.
#[derive(Clone, Default)]
pub struct Handshake(pub Vec<Vec<Bytes>>);

impl std::fmt::Debug for Handshake {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Handshake({} commands)", self.0.len())
    }
}

/// How a link connects.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// `host:port` of the server.
    pub address: String,
    /// Sharded (a cluster master) or plain (one Redis) pub/sub.
    pub kind: PubSubKind,
    /// Sent first on every connection (empty on a cluster).
    pub handshake: Handshake,
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
    /// (S)SUBSCRIBE: one `(s)subscribe` frame per channel, or one error.
    Subscribe(HashSet<String>),
    /// (S)UNSUBSCRIBE: one `(s)unsubscribe` frame per channel, or one error.
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
            Ok(Ok(mut stream)) => {
                let _ = stream.set_nodelay(true);
                match handshake(&mut stream, &settings).await {
                    Ok(buffer) => {
                        delay = RECONNECT_DELAY_FIRST;
                        if sinks.events.send(LinkEvent::Connected(id)).await.is_err() {
                            return;
                        }
                        match serve(stream, buffer, &settings, &mut commands, &sinks).await {
                            Ok(()) | Err(LinkError::OutputClosed | LinkError::ManagerGone) => {
                                return;
                            }
                            Err(reason) => reason,
                        }
                    }
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

/// Sends the handshake's commands and a PING (pipelined) and reads one `+OK` for each command
/// and `+PONG` for the PING, within the connect timeout; returns what was read past the answers
/// (nothing, normally: nothing is subscribed yet).
///
/// The PING proves the connection usable before `Connected` is reported: a server that wants a
/// password the URL does not give refuses it (`NOAUTH`) here, so the link backs off and the
/// refusal is said once, instead of connecting, losing the connection at the first PING and
/// reconnecting at once, over and over.
async fn handshake(stream: &mut TcpStream, settings: &LinkSettings) -> Result<BytesMut, LinkError> {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let commands = &settings.handshake.0;
    let exchange = async {
        let mut out = BytesMut::new();
        for command in commands {
            resp::encode_command(command, &mut out);
        }
        resp::encode_command(&["PING"], &mut out);
        stream.write_all(&out).await.map_err(LinkError::Write)?;
        let mut answered = 0;
        // Bounded: one answer per command and the PING's; the timeout around it bounds the
        // reads.
        while answered <= commands.len() {
            let Some(frame) = resp::decode(&mut buffer, settings.message_bytes_max)? else {
                match stream.read_buf(&mut buffer).await {
                    Ok(0) => return Err(LinkError::Closed),
                    Ok(_) => continue,
                    Err(error) => return Err(LinkError::Read(error)),
                }
            };
            let ping = answered == commands.len();
            match (resp::classify(frame, settings.kind)?, ping) {
                (resp::Push::Ok, false) | (resp::Push::Pong, true) => answered += 1,
                (resp::Push::Error(error), _) => return Err(LinkError::HandshakeRefused(error)),
                (other, _) => {
                    return Err(LinkError::Protocol(RespError::Unexpected(format!(
                        "{other:?} in answer to AUTH / SELECT / PING"
                    ))));
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(settings.connect_timeout, exchange).await {
        Ok(Ok(())) => Ok(buffer),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(LinkError::HandshakeTimeout(settings.connect_timeout)),
    }
}

/// Serves one connection (`buffer`: bytes already read from it); `Ok` when the manager let go
/// of the link, `Err(reason)` when the connection failed.
async fn serve(
    stream: TcpStream,
    mut buffer: BytesMut,
    settings: &LinkSettings,
    commands: &mut mpsc::Receiver<LinkCommand>,
    sinks: &Sinks,
) -> Result<(), LinkError> {
    let (mut reader, mut writer) = stream.into_split();
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
                    LinkCommand::Subscribe(groups) => {
                        (settings.kind.subscribe_command(), groups, true)
                    }
                    LinkCommand::Unsubscribe(groups) => {
                        (settings.kind.unsubscribe_command(), groups, false)
                    }
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
        let push = resp::classify(frame, settings.kind)?;
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
        // Only the handshake is answered `+OK`, and it is over.
        Push::Ok => {
            return Err(LinkError::Protocol(RespError::Unexpected(
                "+OK on a subscribed connection".into(),
            )));
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
