//! One client WebSocket connection: its small state and what its bytes mean.
//!
//! A connection owns no read buffer: the thread reads into one shared buffer and only the bytes
//! of an unfinished frame (or response head) are kept in `partial`, which is empty — and holds no
//! allocation — most of the time. `outbound` holds what could not be written yet (the handshake
//! request, pongs, a close reply) and is bounded by `OUTBOUND_BYTES_MAX`.
//!
//! With `--protocol pusher` a connection passes two more phases after the upgrade (waiting for
//! `pusher:connection_established`, then for `pusher_internal:subscription_succeeded`) and is
//! open, and counted live, only once subscribed. An event's `data` is accounted exactly as a
//! raw frame's payload; `pusher:ping` is answered with `pusher:pong`.

use mio::net::TcpStream;
use thiserror::Error;

use super::PusherSubscription;
use super::accounting::{Accounting, Receiver};
use crate::pusher::{self, ServerMessage};
use crate::ws::frame::{FrameError, Opcode, encode_client_frame, parse_server_frame_with};
use crate::ws::handshake::{HEAD_BYTES_MAX, HandshakeError, parse_server_response};

/// Unsent bytes a connection may hold before it is closed (pongs the server does not read).
pub const OUTBOUND_BYTES_MAX: usize = 16 * 1024;
/// `partial` capacity kept across reads; larger buffers are freed once emptied.
const PARTIAL_CAPACITY_KEPT: usize = 512;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet, or waiting to retry.
    Waiting,
    /// Non-blocking connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for `101`.
    Handshaking,
    /// Pusher: upgraded, waiting for `pusher:connection_established`.
    PusherConnecting,
    /// Pusher: `pusher:subscribe` sent, waiting for `pusher_internal:subscription_succeeded`.
    PusherSubscribing,
    /// Receiving frames.
    Open,
    /// Done (failed for good, closed by the server, or closed by us).
    Closed,
}

/// Why a connection ended.
#[derive(Debug, Error)]
pub enum CloseReason {
    /// The TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The upgrade was refused or malformed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// Connect plus handshake took longer than the timeout.
    #[error("connect timed out")]
    Timeout,
    /// The server sent a close frame.
    #[error("server sent close")]
    CloseFrame,
    /// The server closed TCP without a close frame.
    #[error("server closed the TCP connection")]
    Eof,
    /// A read or write failed (reset).
    #[error("socket error: {0}")]
    Socket(std::io::Error),
    /// The server broke RFC 6455.
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),
    /// Our unsent bytes passed `OUTBOUND_BYTES_MAX`.
    #[error("outbound buffer overflow")]
    OutboundOverflow,
    /// Pusher: `pusher:error` or `pusher:subscription_error` before the subscription succeeded.
    #[error("pusher server refused the connection or the subscription")]
    PusherRefused,
}

/// The protocol a connection speaks on top of WebSocket.
#[derive(Debug, Clone, Copy)]
pub enum Wire<'a> {
    /// Every text or binary frame is a payload.
    Raw,
    /// Pusher protocol 7, subscribing as given.
    Pusher(&'a PusherSubscription),
}

impl Phase {
    /// Connect, upgrade or subscribe in progress (counted in flight, subject to the timeout).
    pub fn is_connecting(self) -> bool {
        matches!(
            self,
            Phase::Connecting
                | Phase::Handshaking
                | Phase::PusherConnecting
                | Phase::PusherSubscribing
        )
    }
}

/// Per-connection state (about 80 bytes plus whatever is buffered).
pub struct Connection {
    /// The socket, while connecting or open.
    pub stream: Option<TcpStream>,
    /// Life-cycle phase.
    pub phase: Phase,
    /// Connect attempts made.
    pub attempts: u8,
    /// Counts for loss (opened during the ramp, never churned).
    pub accounted: bool,
    /// Was replaced by churn: its deliveries no longer count for loss.
    pub churned: bool,
    /// Already in the thread's re-read list (edge-triggered reads were cut short).
    pub requeued: bool,
    /// Channel this connection subscribes to.
    pub channel_index: u32,
    /// Milliseconds since thread start when `phase` last changed (for the connect timeout).
    pub phase_since_ms: u32,
    /// Nonce of the current handshake's key (the accept value is recomputed from it).
    pub nonce: u64,
    /// Bytes of an unfinished frame or response head.
    pub partial: Vec<u8>,
    /// Bytes waiting to be written.
    pub outbound: Vec<u8>,
}

impl Connection {
    /// A connection slot that has not started.
    pub fn new(channel_index: u32) -> Self {
        Connection {
            stream: None,
            phase: Phase::Waiting,
            attempts: 0,
            accounted: false,
            churned: false,
            requeued: false,
            channel_index,
            phase_since_ms: 0,
            nonce: 0,
            partial: Vec::new(),
            outbound: Vec::new(),
        }
    }

    /// Stores the unconsumed tail of `data` as the partial frame, freeing large buffers.
    pub fn keep_partial(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            if self.partial.capacity() > PARTIAL_CAPACITY_KEPT {
                self.partial = Vec::new();
            } else {
                self.partial.clear();
            }
        } else {
            self.partial.clear();
            self.partial.extend_from_slice(rest);
        }
    }

    /// Queues a masked frame (control, or a short Pusher message); fails if the outbound
    /// bound would be passed.
    fn queue_control(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        mask_key: [u8; 4],
    ) -> Result<(), CloseReason> {
        if self.outbound.len() + payload.len() + 14 > OUTBOUND_BYTES_MAX {
            return Err(CloseReason::OutboundOverflow);
        }
        encode_client_frame(&mut self.outbound, opcode, payload, mask_key);
        Ok(())
    }
}

/// What processing a batch of bytes asks the thread to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep reading; `consumed` bytes were used, the rest is a partial frame or head.
    Consumed {
        /// Bytes fully processed.
        consumed: usize,
        /// The handshake completed in this batch.
        opened: bool,
    },
    /// The server sent close: flush `outbound` (our close reply) and close.
    Closing,
}

/// Interprets `data` (partial bytes followed by what was just read) for connection `slot`.
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
pub fn process_bytes(
    connection: &mut Connection,
    slot: usize,
    data: &[u8],
    now_ns: u64,
    accounting: &mut Accounting,
    payload_bytes_max: usize,
    mask_key: [u8; 4],
    wire: Wire<'_>,
) -> Result<Progress, CloseReason> {
    let mut offset = 0;
    let mut opened = false;
    if connection.phase == Phase::Handshaking {
        match parse_server_response(data, connection.nonce)? {
            None if data.len() > HEAD_BYTES_MAX => return Err(HandshakeError::HeadTooLarge.into()),
            None => {
                return Ok(Progress::Consumed {
                    consumed: 0,
                    opened: false,
                });
            }
            Some(head_bytes) => {
                offset = head_bytes;
                match wire {
                    Wire::Raw => {
                        connection.phase = Phase::Open;
                        opened = true;
                    }
                    Wire::Pusher(_) => connection.phase = Phase::PusherConnecting,
                }
            }
        }
    }
    let receiver = Receiver {
        slot,
        channel_index: connection.channel_index,
        accounted: connection.accounted,
    };
    // Bounded: every iteration consumes at least a 2-byte header.
    while offset < data.len() {
        let deflate = accounting.deflate();
        let Some(header) = parse_server_frame_with(&data[offset..], payload_bytes_max, deflate)?
        else {
            break;
        };
        if data.len() - offset < header.frame_bytes() {
            break;
        }
        let payload = &data[offset + header.header_bytes..offset + header.frame_bytes()];
        offset += header.frame_bytes();
        if let Wire::Pusher(subscription) = wire
            && header.opcode == Opcode::Text
            && header.fin
            && !header.compressed
        {
            opened |= on_pusher_message(
                connection,
                subscription,
                payload,
                receiver,
                now_ns,
                accounting,
                mask_key,
            )?;
            continue;
        }
        match header.opcode {
            Opcode::Text | Opcode::Binary if header.fin && header.compressed => {
                accounting.on_compressed_message(receiver, header.opcode, payload, now_ns);
            }
            Opcode::Text | Opcode::Binary if header.fin => {
                accounting.on_message(receiver, header.opcode, payload, now_ns);
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => accounting.count_fragment(),
            Opcode::Ping => {
                accounting.count_ping();
                // RFC 6455 §5.5.3: a Pong sent in response to a Ping MUST have the same payload.
                connection.queue_control(Opcode::Pong, payload, mask_key)?;
            }
            Opcode::Pong => {}
            Opcode::Close => {
                // RFC 6455 §5.5.1: the endpoint replies with a Close frame, echoing the status code.
                let status = &payload[..payload.len().min(2)];
                connection.queue_control(Opcode::Close, status, mask_key)?;
                return Ok(Progress::Closing);
            }
        }
    }
    Ok(Progress::Consumed {
        consumed: offset,
        opened,
    })
}

/// One Pusher text message on `connection`; true when it completed the subscription.
fn on_pusher_message(
    connection: &mut Connection,
    subscription: &PusherSubscription,
    frame: &[u8],
    receiver: Receiver,
    now_ns: u64,
    accounting: &mut Accounting,
    mask_key: [u8; 4],
) -> Result<bool, CloseReason> {
    match (pusher::classify(frame), connection.phase) {
        (ServerMessage::Event { data }, Phase::Open) => {
            accounting.on_message(receiver, Opcode::Text, data, now_ns);
        }
        (ServerMessage::Ping, _) => {
            accounting.count_ping();
            // protocol: "pusher:ping ... the client should respond with a pusher:pong".
            connection.queue_control(Opcode::Text, pusher::PONG_MESSAGE, mask_key)?;
        }
        (ServerMessage::ConnectionEstablished, Phase::PusherConnecting) => {
            connection.queue_control(Opcode::Text, &subscription.subscribe_message, mask_key)?;
            connection.phase = Phase::PusherSubscribing;
        }
        (ServerMessage::SubscriptionSucceeded { channel }, Phase::PusherSubscribing)
            if channel == subscription.channel.as_bytes() =>
        {
            connection.phase = Phase::Open;
            return Ok(true);
        }
        (ServerMessage::Error, Phase::PusherConnecting | Phase::PusherSubscribing) => {
            return Err(CloseReason::PusherRefused);
        }
        _ => accounting.count_other_message(),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{PayloadKind, Stamp, encode};
    use crate::ws::frame::encode_server_frame;
    use crate::ws::handshake::{client_key, server_response};

    fn accounting() -> Accounting {
        Accounting::new(1, 1, 1, 64, Opcode::Text, 100)
    }

    fn data_frame(sequence: u64) -> Vec<u8> {
        let mut payload = vec![0u8; 64];
        let stamp = Stamp {
            epoch: 0,
            channel_index: 0,
            publisher_index: 0,
            sequence,
            sent_ns: 1,
        };
        encode(&mut payload, &stamp, PayloadKind::Text);
        let mut frame = Vec::new();
        encode_server_frame(&mut frame, Opcode::Text, &payload);
        frame
    }

    #[test]
    fn handshake_then_frames_split_at_every_boundary_decode_the_same() {
        let mut stream = server_response(&client_key(5));
        for sequence in 0..3 {
            stream.extend_from_slice(&data_frame(sequence));
        }
        encode_server_frame(&mut stream, Opcode::Ping, b"hi");
        for cut in 0..stream.len() {
            let mut connection = Connection::new(0);
            connection.phase = Phase::Handshaking;
            connection.nonce = 5;
            connection.accounted = true;
            let mut accounting = accounting();
            let mut pending = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..]] {
                pending.extend_from_slice(chunk);
                let progress = process_bytes(
                    &mut connection,
                    0,
                    &pending,
                    2,
                    &mut accounting,
                    1 << 20,
                    [1, 2, 3, 4],
                    Wire::Raw,
                )
                .unwrap();
                let Progress::Consumed { consumed, .. } = progress else {
                    panic!("no close expected")
                };
                pending.drain(..consumed);
            }
            assert!(pending.is_empty(), "cut {cut}");
            assert_eq!(connection.phase, Phase::Open);
            assert_eq!(accounting.deliveries(), 3, "cut {cut}");
            // One masked pong echoing "hi".
            assert_eq!(&connection.outbound[..2], &[0x8A, 0x82]);
        }
    }

    fn text_frame(text: &str) -> Vec<u8> {
        let mut frame = Vec::new();
        encode_server_frame(&mut frame, Opcode::Text, text.as_bytes());
        frame
    }

    #[test]
    fn pusher_subscriber_opens_on_subscription_succeeded_and_accounts_event_data() {
        let subscription = PusherSubscription {
            channel: "bench-0".into(),
            subscribe_message: pusher::subscribe_message("bench-0"),
        };
        let mut stream = server_response(&client_key(5));
        stream.extend_from_slice(&text_frame(
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#,
        ));
        let established_end = stream.len();
        stream.extend_from_slice(&text_frame(
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"bench-0","data":"{}"}"#,
        ));
        let subscribed_end = stream.len();
        stream.extend_from_slice(&text_frame(r#"{"event":"pusher:ping","data":{}}"#));
        for sequence in 0..3 {
            let frame = data_frame(sequence);
            let payload = std::str::from_utf8(&frame[2..]).unwrap();
            stream.extend_from_slice(&text_frame(&format!(
                r#"{{"event":"m","channel":"bench-0","data":"{payload}"}}"#
            )));
        }
        let mut connection = Connection::new(0);
        connection.phase = Phase::Handshaking;
        connection.nonce = 5;
        let mut accounting = accounting();
        let run = |connection: &mut Connection, bytes: &[u8], accounting: &mut Accounting| {
            let progress = process_bytes(
                connection,
                0,
                bytes,
                2,
                accounting,
                1 << 20,
                [0; 4],
                Wire::Pusher(&subscription),
            )
            .unwrap();
            let Progress::Consumed { consumed, opened } = progress else {
                panic!("no close expected")
            };
            assert_eq!(consumed, bytes.len());
            opened
        };
        assert!(!run(
            &mut connection,
            &stream[..established_end],
            &mut accounting
        ));
        assert_eq!(connection.phase, Phase::PusherSubscribing);
        // The subscribe went out as one masked text frame (mask key 0: the text is readable).
        assert_eq!(connection.outbound[0], 0x81);
        assert!(
            connection
                .outbound
                .ends_with(&subscription.subscribe_message)
        );
        connection.outbound.clear();
        let opened = run(
            &mut connection,
            &stream[established_end..subscribed_end],
            &mut accounting,
        );
        assert!(opened);
        assert_eq!(connection.phase, Phase::Open);
        connection.accounted = true;
        run(&mut connection, &stream[subscribed_end..], &mut accounting);
        assert_eq!(accounting.deliveries(), 3);
        assert!(connection.outbound.ends_with(pusher::PONG_MESSAGE));
    }

    #[test]
    fn pusher_error_before_subscribing_fails_the_attempt() {
        let subscription = PusherSubscription {
            channel: "bench-0".into(),
            subscribe_message: pusher::subscribe_message("bench-0"),
        };
        let mut connection = Connection::new(0);
        connection.phase = Phase::PusherConnecting;
        let frame = text_frame(r#"{"event":"pusher:error","data":{"code":4001,"message":"x"}}"#);
        let result = process_bytes(
            &mut connection,
            0,
            &frame,
            0,
            &mut accounting(),
            1 << 20,
            [0; 4],
            Wire::Pusher(&subscription),
        );
        assert!(matches!(result, Err(CloseReason::PusherRefused)));
    }

    #[test]
    fn connection_state_stays_small() {
        // The C1M budget: the harness must not cost more memory per connection than the server.
        assert!(
            std::mem::size_of::<Connection>() <= 96,
            "{} bytes",
            std::mem::size_of::<Connection>()
        );
    }

    #[test]
    fn close_frame_is_answered() {
        let mut connection = Connection::new(0);
        connection.phase = Phase::Open;
        let mut frame = Vec::new();
        encode_server_frame(&mut frame, Opcode::Close, &[0x03, 0xE8]);
        let progress = process_bytes(
            &mut connection,
            0,
            &frame,
            0,
            &mut accounting(),
            1 << 20,
            [0; 4],
            Wire::Raw,
        )
        .unwrap();
        assert_eq!(progress, Progress::Closing);
        assert_eq!(connection.outbound, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
    }

    #[test]
    fn protocol_errors_end_the_connection() {
        let mut connection = Connection::new(0);
        connection.phase = Phase::Open;
        let result = process_bytes(
            &mut connection,
            0,
            &[0x81, 0x85, 0, 0, 0, 0, 1],
            0,
            &mut accounting(),
            1 << 20,
            [0; 4],
            Wire::Raw,
        );
        assert!(matches!(
            result,
            Err(CloseReason::Protocol(FrameError::MaskedFrameFromServer))
        ));
    }
}
