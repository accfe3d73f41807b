//! The subscriber connection to one Redis (`--redis`), through our own RESP link
//! ([`crate::broker::cluster::link`], plain SUBSCRIBE / UNSUBSCRIBE): one TCP connection that
//! parses the `message` pushes itself and applies backpressure by not reading while the
//! subscriber core is behind (Redis buffers meanwhile, up to its `client-output-buffer-limit
//! pubsub`). It replaced fred's `SubscriberClient`, whose reader filled a broadcast buffer
//! faster than the core emptied it and dropped the overflow (`results/cluster/README.md`).
//!
//! This file holds the handle and a small task between it and the link: `subscribe` and
//! `unsubscribe` return once Redis confirmed every channel of the command (as fred's did), and
//! the connection's ups and downs go out as [`ConnectionEvent`]s. It deliberately does not
//! decide what to subscribe (the core's `manage_subscriptions` does, and subscribes everything
//! again after `ConnectionEvent::Up`), publish (fred does), or parse the URL (fred's
//! `Config::from_url` does, in [`LinkTarget::from_config`]).
//!
//! Invariants: commands are only sent while the link is up; every waiter is answered (by the
//! confirmations, a refusal, or the connection's loss); waiters are bounded (`WAITERS_MAX`).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::{Config, ServerConfig};
use futures::channel::oneshot;
use tokio::sync::mpsc;

use super::cluster::link::{self, Handshake, LinkCommand, LinkEvent, LinkSettings};
use super::cluster::resp::PubSubKind;
use super::cluster::{ClusterMessage, ClusterStatus};

/// Most subscribe / unsubscribe calls waiting for their confirmations (the core makes one at a
/// time; the bound is defensive).
const WAITERS_MAX: usize = 64;
/// Capacity of the channels from the handle to the task and from the link to the task.
const REQUEST_CAPACITY: usize = 64;
/// Capacity of the link's event channel (a confirmation per channel of a command).
const EVENT_CAPACITY: usize = 4096;
/// Capacity of the connection events channel (the core reads it at once).
const CONNECTION_EVENT_CAPACITY: usize = 16;
/// Largest message payload the link reads: larger ones are read and then dropped (and
/// counted) by the core's `--max-message-bytes` check, so a large message does not end the
/// connection; this only bounds one allocation.
const MESSAGE_BYTES_MAX: usize = 512 << 20;

/// Why a subscribe or unsubscribe did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SingleError {
    /// The connection is down (it reconnects by itself).
    #[error("the subscriber connection to Redis is down")]
    NotConnected,
    /// The connection was lost before Redis confirmed every channel.
    #[error("the subscriber connection to Redis was lost")]
    ConnectionLost,
    /// Redis refused the command.
    #[error("Redis refused: {0}")]
    Refused(String),
    /// Too many calls wait for confirmations.
    #[error("too many subscription commands in flight")]
    Busy,
    /// The task has stopped (the runtime is shutting down).
    #[error("the subscriber link has stopped")]
    Stopped,
}

/// A change of the subscriber connection, for the core's connection watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Connected (AUTH and SELECT done): nothing is subscribed on this connection.
    Up,
    /// Lost, or could not be made; why (never holding the password).
    Down(String),
}

/// Where the link connects and what it says first, from fred's checked configuration of the
/// `--redis` URL (host, port, user, password, database), so both clients read the URL alike.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    /// `host:port` (`[host]:port` for an IPv6 address).
    pub address: String,
    /// AUTH (when the URL has a password) and SELECT (when it names a database).
    pub handshake: Handshake,
}

impl LinkTarget {
    /// Reads a centralized configuration; `None` for a cluster or sentinel one (the core
    /// takes only `redis://` URLs, which are centralized).
    pub fn from_config(config: &Config) -> Option<LinkTarget> {
        let ServerConfig::Centralized { server } = &config.server else {
            return None;
        };
        // fred keeps an IPv6 address's brackets in the host.
        let host = server.host.trim_matches(['[', ']']);
        let address = if host.contains(':') {
            format!("[{host}]:{}", server.port)
        } else {
            format!("{host}:{}", server.port)
        };
        let mut commands = Vec::new();
        // As fred: AUTH only with a password, `AUTH user password` when a user is named.
        if let Some(password) = &config.password {
            let mut auth = vec![Bytes::from_static(b"AUTH")];
            if let Some(user) = &config.username {
                auth.push(Bytes::from(user.clone()));
            }
            auth.push(Bytes::from(password.clone()));
            commands.push(auth);
        }
        if let Some(database) = config.database {
            commands.push(vec![
                Bytes::from_static(b"SELECT"),
                Bytes::from(database.to_string()),
            ]);
        }
        Some(LinkTarget {
            address,
            handshake: Handshake(commands),
        })
    }
}

/// How the link behaves.
#[derive(Debug, Clone)]
pub struct SingleSettings {
    /// Where to connect and what to say first.
    pub target: LinkTarget,
    /// Longest wait for the TCP connection and for the answers to AUTH / SELECT.
    pub connect_timeout: Duration,
    /// PING period; a connection that has not answered the previous PING is declared dead.
    pub ping_interval: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_delay_max: Duration,
    /// Capacity of the channel of received messages (the link stops reading when it is full).
    pub output_capacity: usize,
}

/// A request from the handle to the task.
struct Request {
    /// SUBSCRIBE (true) or UNSUBSCRIBE.
    subscribe: bool,
    /// The channels of one command.
    channels: Vec<String>,
    /// Answered once Redis confirmed every channel, or why not.
    reply: oneshot::Sender<Result<(), SingleError>>,
}

/// A command waiting for its confirmations.
struct Waiter {
    /// SUBSCRIBE (true) or UNSUBSCRIBE.
    subscribe: bool,
    /// Channels not confirmed yet.
    channels: HashSet<String>,
    /// The answer.
    reply: oneshot::Sender<Result<(), SingleError>>,
}

/// The handle of the subscriber link. Cheap to clone; the link stops when the last handle is
/// dropped. Use it on the runtime that started it.
#[derive(Clone)]
pub struct SingleSubscriber {
    /// Requests to the task.
    requests: mpsc::Sender<Request>,
}

impl SingleSubscriber {
    /// Starts the link and its task on the current `LocalSet`; returns the handle, the received
    /// messages and the connection events. Never fails: a down Redis is retried forever.
    pub fn start(
        settings: SingleSettings,
    ) -> (
        SingleSubscriber,
        mpsc::Receiver<ClusterMessage>,
        mpsc::Receiver<ConnectionEvent>,
    ) {
        let (request_sender, requests) = mpsc::channel(REQUEST_CAPACITY);
        let (event_sender, events) = mpsc::channel(EVENT_CAPACITY);
        let (command_sender, commands) = mpsc::channel(REQUEST_CAPACITY);
        let (output, messages) = mpsc::channel(settings.output_capacity.max(1));
        let (connection_sender, connection_events) = mpsc::channel(CONNECTION_EVENT_CAPACITY);
        let link_settings = LinkSettings {
            address: settings.target.address,
            kind: PubSubKind::Plain,
            handshake: settings.target.handshake,
            connect_timeout: settings.connect_timeout,
            ping_interval: settings.ping_interval,
            reconnect_delay_max: settings.reconnect_delay_max,
            message_bytes_max: MESSAGE_BYTES_MAX,
        };
        // The link counts received messages in a cluster status; the core counts its own
        // (`redis_messages_received`), so this one is not read.
        let unread = Arc::new(ClusterStatus::default());
        tokio::task::spawn_local(link::run(
            0,
            link_settings,
            commands,
            event_sender,
            output,
            unread,
        ));
        tokio::task::spawn_local(serve(requests, events, command_sender, connection_sender));
        let handle = SingleSubscriber {
            requests: request_sender,
        };
        (handle, messages, connection_events)
    }

    /// SUBSCRIBE `channels` (one command); returns once Redis confirmed each.
    pub async fn subscribe(&self, channels: Vec<String>) -> Result<(), SingleError> {
        self.ask(true, channels).await
    }

    /// UNSUBSCRIBE `channels` (one command); returns once Redis confirmed each.
    pub async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), SingleError> {
        self.ask(false, channels).await
    }

    async fn ask(&self, subscribe: bool, channels: Vec<String>) -> Result<(), SingleError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            subscribe,
            channels,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| SingleError::Stopped)?;
        answer.await.map_err(|_| SingleError::Stopped)?
    }
}

/// The task between the handle and the link: sends commands while the link is up, matches
/// confirmations to waiters, reports the connection's state. Ends when every handle is gone.
async fn serve(
    mut requests: mpsc::Receiver<Request>,
    mut events: mpsc::Receiver<LinkEvent>,
    commands: mpsc::Sender<LinkCommand>,
    connection: mpsc::Sender<ConnectionEvent>,
) {
    let mut up = false;
    let mut waiters: VecDeque<Waiter> = VecDeque::new();
    // Bounded: one request or event per round; ends when the handles or the link are gone.
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return };
                if let Some(waiter) = send(up, waiters.len(), &commands, request) {
                    waiters.push_back(waiter);
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                let change = apply_event(event, &mut up, &mut waiters);
                if let Some(change) = change
                    && connection.send(change).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Hands the command to the link and returns its waiter, or answers at once why not.
fn send(
    up: bool,
    waiting: usize,
    commands: &mpsc::Sender<LinkCommand>,
    request: Request,
) -> Option<Waiter> {
    let Request {
        subscribe,
        channels,
        reply,
    } = request;
    let refusal = if !up {
        Some(SingleError::NotConnected)
    } else if waiting >= WAITERS_MAX {
        Some(SingleError::Busy)
    } else {
        None
    };
    if let Some(error) = refusal {
        let _ = reply.send(Err(error));
        return None;
    }
    if channels.is_empty() {
        let _ = reply.send(Ok(()));
        return None;
    }
    let waiter_channels: HashSet<String> = channels.iter().cloned().collect();
    let command = if subscribe {
        LinkCommand::Subscribe(vec![channels])
    } else {
        LinkCommand::Unsubscribe(vec![channels])
    };
    if commands.try_send(command).is_err() {
        let _ = reply.send(Err(SingleError::Busy));
        return None;
    }
    Some(Waiter {
        subscribe,
        channels: waiter_channels,
        reply,
    })
}

/// Applies one link event; returns the connection change to report, if any.
fn apply_event(
    event: LinkEvent,
    up: &mut bool,
    waiters: &mut VecDeque<Waiter>,
) -> Option<ConnectionEvent> {
    match event {
        LinkEvent::Connected(_) => {
            *up = true;
            Some(ConnectionEvent::Up)
        }
        LinkEvent::Down(_, reason) => {
            *up = false;
            // Commands in flight are lost with the connection.
            for waiter in waiters.drain(..) {
                let _ = waiter.reply.send(Err(SingleError::ConnectionLost));
            }
            Some(ConnectionEvent::Down(reason.to_string()))
        }
        LinkEvent::Subscribed(_, channel) => {
            confirm(waiters, true, &channel);
            None
        }
        LinkEvent::Unsubscribed(_, channel, cause) => {
            if cause == link::UnsubscribeCause::Requested {
                confirm(waiters, false, &channel);
            }
            None
        }
        LinkEvent::Refused(_, channels, error) => {
            let position = waiters.iter().position(|waiter| {
                channels
                    .iter()
                    .any(|channel| waiter.channels.contains(channel))
            });
            if let Some(waiter) = position.and_then(|index| waiters.remove(index)) {
                let _ = waiter
                    .reply
                    .send(Err(SingleError::Refused(error.to_string())));
            }
            None
        }
    }
}

/// Marks `channel` confirmed in the oldest waiter of its kind that waits for it; answers the
/// waiter when it has nothing left to wait for.
fn confirm(waiters: &mut VecDeque<Waiter>, subscribe: bool, channel: &str) {
    let Some(index) = waiters
        .iter_mut()
        .position(|waiter| waiter.subscribe == subscribe && waiter.channels.remove(channel))
    else {
        return;
    };
    if waiters[index].channels.is_empty()
        && let Some(waiter) = waiters.remove(index)
    {
        let _ = waiter.reply.send(Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(
        subscribe: bool,
        channels: &[&str],
    ) -> (Waiter, oneshot::Receiver<Result<(), SingleError>>) {
        let (reply, answer) = oneshot::channel();
        let waiter = Waiter {
            subscribe,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            reply,
        };
        (waiter, answer)
    }

    #[test]
    fn a_waiter_is_answered_once_every_channel_is_confirmed() {
        let (first, mut first_answer) = waiter(true, &["a", "b"]);
        let (second, mut second_answer) = waiter(false, &["a"]);
        let mut waiters = VecDeque::from([first, second]);
        let mut up = true;
        // An unsubscribe confirmation goes to the UNSUBSCRIBE, not the SUBSCRIBE.
        assert_eq!(
            apply_event(
                LinkEvent::Unsubscribed(0, "a".into(), link::UnsubscribeCause::Requested),
                &mut up,
                &mut waiters
            ),
            None
        );
        assert_eq!(second_answer.try_recv().unwrap(), Some(Ok(())));
        apply_event(LinkEvent::Subscribed(0, "a".into()), &mut up, &mut waiters);
        assert_eq!(first_answer.try_recv().unwrap(), None);
        apply_event(LinkEvent::Subscribed(0, "b".into()), &mut up, &mut waiters);
        assert_eq!(first_answer.try_recv().unwrap(), Some(Ok(())));
        assert!(waiters.is_empty());
    }

    #[test]
    fn losing_the_connection_answers_every_waiter() {
        let (first, mut answer) = waiter(true, &["a"]);
        let mut waiters = VecDeque::from([first]);
        let mut up = true;
        let change = apply_event(
            LinkEvent::Down(0, link::LinkError::Closed),
            &mut up,
            &mut waiters,
        );
        assert_eq!(
            change,
            Some(ConnectionEvent::Down("closed by the server".into()))
        );
        assert!(!up);
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(Err(SingleError::ConnectionLost))
        );
    }

    #[test]
    fn a_refusal_answers_the_command_it_belongs_to() {
        let (first, mut answer) = waiter(true, &["a", "b"]);
        let mut waiters = VecDeque::from([first]);
        let mut up = true;
        let error =
            super::super::cluster::resp::ReplyError::parse(b"NOAUTH Authentication required.");
        apply_event(
            LinkEvent::Refused(0, vec!["b".into()], error),
            &mut up,
            &mut waiters,
        );
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(Err(SingleError::Refused(
                "NOAUTH Authentication required.".into()
            )))
        );
    }

    #[test]
    fn commands_wait_for_the_connection() {
        let (commands, mut sent) = mpsc::channel(4);
        let (reply, mut answer) = oneshot::channel();
        let request = Request {
            subscribe: true,
            channels: vec!["a".into()],
            reply,
        };
        assert!(send(false, 0, &commands, request).is_none());
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(Err(SingleError::NotConnected))
        );
        assert!(sent.try_recv().is_err(), "nothing is sent while down");
    }

    #[test]
    fn the_url_becomes_address_auth_and_select_and_debug_hides_the_password() {
        let config = Config::from_url("redis://user:s3cret@127.0.0.1:6380/2").unwrap();
        let target = LinkTarget::from_config(&config).unwrap();
        assert_eq!(target.address, "127.0.0.1:6380");
        assert_eq!(
            target.handshake.0,
            vec![
                vec![
                    Bytes::from_static(b"AUTH"),
                    Bytes::from_static(b"user"),
                    Bytes::from_static(b"s3cret")
                ],
                vec![Bytes::from_static(b"SELECT"), Bytes::from_static(b"2")],
            ]
        );
        assert!(!format!("{target:?}").contains("s3cret"));
        let plain = Config::from_url("redis://:pw@[::1]:6379").unwrap();
        let target = LinkTarget::from_config(&plain).unwrap();
        assert_eq!(target.address, "[::1]:6379");
        assert_eq!(
            target.handshake.0,
            vec![vec![Bytes::from_static(b"AUTH"), Bytes::from_static(b"pw")]]
        );
        let none = Config::from_url("redis://127.0.0.1").unwrap();
        assert!(
            LinkTarget::from_config(&none)
                .unwrap()
                .handshake
                .0
                .is_empty()
        );
    }
}
