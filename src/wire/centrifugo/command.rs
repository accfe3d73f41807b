//! Client frames to typed commands: protocol v2 JSON, as centrifuge-js 5 sends it.
//!
//! A frame (one WebSocket message) holds one or more commands, one JSON object per line
//! (`docs/transports/client_protocol.md`: "each individual `Command` encoded to JSON and then
//! commands joined together using new line symbol `\n`"). A command is `{"id": N, "<method>":
//! {...}}` with exactly one method field (`client.proto` `Command`); `{}` is the pong to a
//! server ping. Unknown fields are ignored (newer clients send `flag`, `tf`, `headers`...).
//!
//! Two kinds of refusal, as centrifuge's `client.go` does it:
//! - [`FrameError`]: the frame is malformed; the connection is closed (3501 "bad request", or
//!   3013 for too many commands). A frame is decoded whole before any command is acted on, so
//!   a bad line never leaves earlier commands half done.
//! - [`CommandError`]: one well-formed command is refused with an error reply carrying its id
//!   (see [`super::codes`] for the codes).
//!
//! Deliberately not here: rules that depend on the connection's state (connect first, already
//! subscribed: [`super::session`]), authentication, channel policy.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::channel::ChannelName;
use crate::history::{Epoch, StreamPosition};

/// Limits on what one client frame may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most bytes in a frame. Default 64 KiB; the WebSocket layer's `--max-message-bytes` also
    /// applies and is usually the tighter one.
    pub frame_bytes_max: usize,
    /// Most commands in a frame. Default 256: centrifuge-js sends one subscribe per
    /// subscription in one frame after a reconnect, so keep it at least `--max-channels` + 1.
    pub commands_per_frame_max: usize,
    /// Most entries in `connect.subs` (server-side subscriptions to recover). Default 64.
    pub connect_subs_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            frame_bytes_max: 64 << 10,
            commands_per_frame_max: 256,
            connect_subs_max: 64,
        }
    }
}

/// A credential from the client (connection or subscription JWT). Its `Debug` is redacted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token text, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the client sent none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            formatter.write_str("Token(none)")
        } else {
            formatter.write_str("Token(<redacted>)")
        }
    }
}

/// The method of a command (for errors, logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `connect`.
    Connect,
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
    /// `publish`.
    Publish,
    /// `presence`.
    Presence,
    /// `presence_stats`.
    PresenceStats,
    /// `history`.
    History,
    /// `ping`.
    Ping,
    /// `send`.
    Send,
    /// `rpc`.
    Rpc,
    /// `refresh`.
    Refresh,
    /// `sub_refresh`.
    SubRefresh,
}

/// A server-side subscription the client asks to recover in `connect.subs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSub {
    /// The channel, as the client sent it (ringcast has no server-side subscriptions yet).
    pub channel: String,
    /// Its position, when it asks to recover.
    pub recover: Option<StreamPosition>,
}

/// `connect` (client.proto `ConnectRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The connection JWT; empty for an anonymous connection.
    pub token: Token,
    /// Custom JSON data, raw.
    pub data: Option<Bytes>,
    /// Server-side subscriptions to recover, sorted by channel.
    pub subs: Vec<ConnectSub>,
    /// Client application name (docs: at most 16 symbols; informational).
    pub name: String,
    /// Client application version (docs: at most 64 symbols; informational).
    pub version: String,
}

/// `subscribe` (client.proto `SubscribeRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// The channel.
    pub channel: ChannelName,
    /// The subscription JWT (private channels).
    pub token: Token,
    /// The position to recover from, when the client asks (`recover: true`); centrifuge-js
    /// leaves `offset` out when 0 and `epoch` out when empty.
    pub recover: Option<StreamPosition>,
    /// Custom JSON data, raw.
    pub data: Option<Bytes>,
    /// `positioned` (ringcast positions every channel with history regardless).
    pub positioned: bool,
    /// `recoverable` (ringcast makes every channel with history recoverable regardless).
    pub recoverable: bool,
    /// `join_leave` (ringcast sends no join/leave pushes).
    pub join_leave: bool,
}

/// `history` (client.proto `HistoryRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: ChannelName,
    /// `limit`: -1 all, 0 position only, N at most N (see [`crate::history::history_limit`]).
    pub limit: i32,
    /// `since`.
    pub since: Option<StreamPosition>,
    /// `reverse`.
    pub reverse: bool,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{}`: the answer to a server ping.
    Pong,
    /// `connect`.
    Connect(ConnectRequest),
    /// `subscribe`.
    Subscribe(SubscribeRequest),
    /// `unsubscribe`.
    Unsubscribe(ChannelName),
    /// `publish`, with its raw JSON `data` (`null` when absent).
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The data, raw JSON.
        data: Bytes,
    },
    /// `presence`.
    Presence(ChannelName),
    /// `presence_stats`.
    PresenceStats(ChannelName),
    /// `history`.
    History(HistoryRequest),
    /// `ping` (not part of protocol v2's ping/pong; see the session).
    Ping,
    /// `send`: an asynchronous message, no reply expected.
    Send {
        /// The data, raw JSON.
        data: Option<Bytes>,
    },
    /// `rpc`.
    Rpc {
        /// The RPC method name.
        method: String,
        /// The data, raw JSON.
        data: Option<Bytes>,
    },
    /// `refresh`: a new connection token.
    Refresh(Token),
    /// `sub_refresh`: a new subscription token.
    SubRefresh {
        /// The channel.
        channel: ChannelName,
        /// The new token.
        token: Token,
    },
}

impl Request {
    /// Its method (`None` for a pong).
    pub fn method(&self) -> Option<Method> {
        Some(match self {
            Request::Pong => return None,
            Request::Connect(_) => Method::Connect,
            Request::Subscribe(_) => Method::Subscribe,
            Request::Unsubscribe(_) => Method::Unsubscribe,
            Request::Publish { .. } => Method::Publish,
            Request::Presence(_) => Method::Presence,
            Request::PresenceStats(_) => Method::PresenceStats,
            Request::History(_) => Method::History,
            Request::Ping => Method::Ping,
            Request::Send { .. } => Method::Send,
            Request::Rpc { .. } => Method::Rpc,
            Request::Refresh(_) => Method::Refresh,
            Request::SubRefresh { .. } => Method::SubRefresh,
        })
    }
}

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The id its reply carries (0 for a pong and for `send`, which get no reply).
    pub id: u32,
    /// What it asks for.
    pub request: Request,
}

/// One line of a frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A command to act on.
    Command(Command),
    /// A command refused with an error reply (`id`, then `error.client_error()`).
    Refused {
        /// The command's id.
        id: u32,
        /// Its method.
        method: Method,
        /// Why.
        error: CommandError,
    },
}

/// A well-formed command refused with an error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A channel name ringcast cannot hold (1-164 bytes of `[A-Za-z0-9_-=@,.;:#]`); centrifuge
    /// answers a too long channel with `ErrorBadRequest`.
    #[error("invalid channel name {channel:?}")]
    InvalidChannel {
        /// The name as sent (at most `MAX_CHANNEL_NAME_BYTES` kept).
        channel: String,
    },
    /// A subscription type other than 0 (map, shared poll): client.go answers
    /// `ErrorNotAvailable` when that type is not configured.
    #[error("subscription type {kind} is not available")]
    SubscriptionType {
        /// The `type` sent.
        kind: i32,
    },
    /// A tags filter (`tf`): client.go "tags filter not allowed" -> `ErrorBadRequest`.
    #[error("tags filters are not allowed")]
    TagsFilter,
    /// `sub_refresh` without a token: client.go "subscription refresh token required" ->
    /// `ErrorBadRequest`.
    #[error("sub_refresh needs a token")]
    EmptySubRefreshToken,
}

/// A malformed frame: the connection is closed (see [`FrameError::disconnect`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// client.go `Handle`: "empty client request received".
    #[error("empty frame")]
    Empty,
    /// More bytes than [`DecodeLimits::frame_bytes_max`].
    #[error("frame of {bytes} bytes (at most {max})")]
    TooLarge {
        /// The frame's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// More commands than [`DecodeLimits::commands_per_frame_max`].
    #[error("more than {max} commands in a frame")]
    TooManyCommands {
        /// The limit.
        max: usize,
    },
    /// client.go: "error decoding command" (not JSON, or a field of the wrong type).
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line in the frame.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// client.go `dispatchCommand`: a command with no known method field ends in
    /// `DisconnectBadRequest`.
    #[error("line {line}: no known method")]
    NoRequest {
        /// 1-based line in the frame.
        line: usize,
    },
    /// client.proto `Command`: the server "may return an error if client passed more than one
    /// request".
    #[error("line {line}: more than one method")]
    MultipleRequests {
        /// 1-based line in the frame.
        line: usize,
    },
    /// client.go: "make sure that command has id > 0 (except Send)".
    #[error("line {line}: a {method:?} command needs an id")]
    MissingId {
        /// 1-based line in the frame.
        line: usize,
        /// The method.
        method: Method,
    },
    /// client.go: "channel required for {method}" -> `DisconnectBadRequest`.
    #[error("line {line}: {method:?} needs a channel")]
    EmptyChannel {
        /// 1-based line in the frame.
        line: usize,
        /// The method.
        method: Method,
    },
    /// client.go: "client token required to refresh" -> `DisconnectBadRequest`.
    #[error("line {line}: refresh needs a token")]
    EmptyToken {
        /// 1-based line in the frame.
        line: usize,
    },
    /// client.go: "unknown delta type in subscribe request" -> `DisconnectBadRequest`.
    #[error("line {line}: unknown delta type")]
    UnknownDelta {
        /// 1-based line in the frame.
        line: usize,
    },
    /// More `connect.subs` than [`DecodeLimits::connect_subs_max`].
    #[error("line {line}: more than {max} subs in connect")]
    TooManyConnectSubs {
        /// 1-based line in the frame.
        line: usize,
        /// The limit.
        max: usize,
    },
}

/// Decodes a client frame into its commands, in order.
pub fn decode_frame(frame: &[u8], limits: &DecodeLimits) -> Result<Vec<Decoded>, FrameError> {
    if frame.len() > limits.frame_bytes_max {
        return Err(FrameError::TooLarge {
            bytes: frame.len(),
            max: limits.frame_bytes_max,
        });
    }
    let mut decoded = Vec::new();
    // Bounded: by the frame's lines, and at most commands_per_frame_max are decoded.
    for (index, line) in frame.split(|&byte| byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if decoded.len() == limits.commands_per_frame_max {
            return Err(FrameError::TooManyCommands {
                max: limits.commands_per_frame_max,
            });
        }
        decoded.push(decode_line(line, index + 1, limits)?);
    }
    if decoded.is_empty() {
        return Err(FrameError::Empty);
    }
    Ok(decoded)
}

/// client.proto `Command`, as it arrives: every method optional.
#[derive(Deserialize)]
struct WireCommand<'a> {
    #[serde(default)]
    id: u32,
    #[serde(borrow, default)]
    connect: Option<WireConnect<'a>>,
    #[serde(borrow, default)]
    subscribe: Option<WireSubscribe<'a>>,
    #[serde(default)]
    unsubscribe: Option<WireChannel>,
    #[serde(borrow, default)]
    publish: Option<WireData<'a>>,
    #[serde(default)]
    presence: Option<WireChannel>,
    #[serde(default)]
    presence_stats: Option<WireChannel>,
    #[serde(default)]
    history: Option<WireHistory>,
    #[serde(default)]
    ping: Option<IgnoredAny>,
    #[serde(borrow, default)]
    send: Option<WireData<'a>>,
    #[serde(borrow, default)]
    rpc: Option<WireRpc<'a>>,
    #[serde(default)]
    refresh: Option<WireToken>,
    #[serde(default)]
    sub_refresh: Option<WireSubRefresh>,
}

#[derive(Deserialize)]
struct WireConnect<'a> {
    #[serde(default)]
    token: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    subs: Option<BTreeMap<String, WirePosition>>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct WireSubscribe<'a> {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    recover: bool,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    positioned: bool,
    #[serde(default)]
    recoverable: bool,
    #[serde(default)]
    join_leave: bool,
    #[serde(default)]
    delta: String,
    #[serde(default, rename = "type")]
    kind: i32,
    #[serde(default)]
    tf: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct WirePosition {
    #[serde(default)]
    recover: bool,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Deserialize)]
struct WireChannel {
    #[serde(default)]
    channel: String,
}

#[derive(Deserialize)]
struct WireData<'a> {
    #[serde(default)]
    channel: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireHistory {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    limit: i32,
    #[serde(default)]
    since: Option<WireSince>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct WireSince {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize)]
struct WireRpc<'a> {
    #[serde(default)]
    method: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireToken {
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
struct WireSubRefresh {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    token: String,
}

/// Where a line is, for errors.
struct Line {
    /// 1-based.
    number: usize,
    /// The command's id.
    id: u32,
}

fn decode_line(line: &[u8], number: usize, limits: &DecodeLimits) -> Result<Decoded, FrameError> {
    let wire: WireCommand<'_> =
        serde_json::from_slice(line).map_err(|error| FrameError::Malformed {
            line: number,
            reason: error.to_string(),
        })?;
    let at = Line {
        number,
        id: wire.id,
    };
    let method = single_method(&wire, number)?;
    let Some(method) = method else {
        if wire.id == 0 {
            return Ok(Decoded::Command(Command {
                id: 0,
                request: Request::Pong,
            }));
        }
        return Err(FrameError::NoRequest { line: number });
    };
    if wire.id == 0 && method != Method::Send {
        return Err(FrameError::MissingId {
            line: number,
            method,
        });
    }
    let request = match typed_request(wire, method, &at, limits)? {
        Ok(request) => request,
        Err(error) => {
            return Ok(Decoded::Refused {
                id: at.id,
                method,
                error,
            });
        }
    };
    Ok(Decoded::Command(Command { id: at.id, request }))
}

/// The one method field present, if any.
fn single_method(wire: &WireCommand<'_>, line: usize) -> Result<Option<Method>, FrameError> {
    let present = [
        (wire.connect.is_some(), Method::Connect),
        (wire.subscribe.is_some(), Method::Subscribe),
        (wire.unsubscribe.is_some(), Method::Unsubscribe),
        (wire.publish.is_some(), Method::Publish),
        (wire.presence.is_some(), Method::Presence),
        (wire.presence_stats.is_some(), Method::PresenceStats),
        (wire.history.is_some(), Method::History),
        (wire.ping.is_some(), Method::Ping),
        (wire.send.is_some(), Method::Send),
        (wire.rpc.is_some(), Method::Rpc),
        (wire.refresh.is_some(), Method::Refresh),
        (wire.sub_refresh.is_some(), Method::SubRefresh),
    ];
    let mut methods = present
        .iter()
        .filter(|(is, _)| *is)
        .map(|(_, method)| *method);
    let first = methods.next();
    if methods.next().is_some() {
        return Err(FrameError::MultipleRequests { line });
    }
    Ok(first)
}

/// The typed request; the outer error closes the connection, the inner one is a reply.
fn typed_request(
    wire: WireCommand<'_>,
    method: Method,
    at: &Line,
    limits: &DecodeLimits,
) -> Result<Result<Request, CommandError>, FrameError> {
    let channel = |name: String| channel_name(name, method, at);
    Ok(Ok(match wire {
        WireCommand {
            connect: Some(connect),
            ..
        } => Request::Connect(connect_request(connect, at, limits)?),
        WireCommand {
            subscribe: Some(subscribe),
            ..
        } => return subscribe_request(subscribe, at),
        WireCommand {
            unsubscribe: Some(WireChannel { channel: name }),
            ..
        } => Request::Unsubscribe(match channel(name)? {
            Ok(channel) => channel,
            Err(error) => return Ok(Err(error)),
        }),
        WireCommand {
            publish: Some(publish),
            ..
        } => Request::Publish {
            channel: match channel(publish.channel)? {
                Ok(channel) => channel,
                Err(error) => return Ok(Err(error)),
            },
            data: publish.data.map_or(Bytes::from_static(b"null"), raw_bytes),
        },
        WireCommand {
            presence: Some(WireChannel { channel: name }),
            ..
        } => Request::Presence(match channel(name)? {
            Ok(channel) => channel,
            Err(error) => return Ok(Err(error)),
        }),
        WireCommand {
            presence_stats: Some(WireChannel { channel: name }),
            ..
        } => Request::PresenceStats(match channel(name)? {
            Ok(channel) => channel,
            Err(error) => return Ok(Err(error)),
        }),
        WireCommand {
            history: Some(history),
            ..
        } => return history_request(history, at),
        WireCommand { ping: Some(_), .. } => Request::Ping,
        WireCommand {
            send: Some(send), ..
        } => Request::Send {
            data: send.data.map(raw_bytes),
        },
        WireCommand { rpc: Some(rpc), .. } => Request::Rpc {
            method: rpc.method,
            data: rpc.data.map(raw_bytes),
        },
        WireCommand {
            refresh: Some(WireToken { token }),
            ..
        } => {
            if token.is_empty() {
                return Err(FrameError::EmptyToken { line: at.number });
            }
            Request::Refresh(Token(token))
        }
        WireCommand {
            sub_refresh: Some(refresh),
            ..
        } => return sub_refresh_request(refresh, at),
        _ => return Err(FrameError::NoRequest { line: at.number }),
    }))
}

fn connect_request(
    connect: WireConnect<'_>,
    at: &Line,
    limits: &DecodeLimits,
) -> Result<ConnectRequest, FrameError> {
    let subs = connect.subs.unwrap_or_default();
    if subs.len() > limits.connect_subs_max {
        return Err(FrameError::TooManyConnectSubs {
            line: at.number,
            max: limits.connect_subs_max,
        });
    }
    let subs = subs
        .into_iter()
        .map(|(channel, position)| ConnectSub {
            channel,
            recover: position.recover.then(|| StreamPosition {
                offset: position.offset,
                epoch: Epoch::new(&position.epoch),
            }),
        })
        .collect();
    Ok(ConnectRequest {
        token: Token(connect.token),
        data: connect.data.map(raw_bytes),
        subs,
        name: connect.name,
        version: connect.version,
    })
}

fn subscribe_request(
    subscribe: WireSubscribe<'_>,
    at: &Line,
) -> Result<Result<Request, CommandError>, FrameError> {
    // client.go checks the delta type before anything but the channel.
    let channel = match channel_name(subscribe.channel, Method::Subscribe, at)? {
        Ok(channel) => channel,
        Err(error) => return Ok(Err(error)),
    };
    if !matches!(subscribe.delta.as_str(), "" | "fossil") {
        return Err(FrameError::UnknownDelta { line: at.number });
    }
    if subscribe.kind != 0 {
        return Ok(Err(CommandError::SubscriptionType {
            kind: subscribe.kind,
        }));
    }
    if subscribe.tf.is_some() {
        return Ok(Err(CommandError::TagsFilter));
    }
    Ok(Ok(Request::Subscribe(SubscribeRequest {
        channel,
        token: Token(subscribe.token),
        recover: subscribe.recover.then(|| StreamPosition {
            offset: subscribe.offset,
            epoch: Epoch::new(&subscribe.epoch),
        }),
        data: subscribe.data.map(raw_bytes),
        positioned: subscribe.positioned,
        recoverable: subscribe.recoverable,
        join_leave: subscribe.join_leave,
    })))
}

fn history_request(
    history: WireHistory,
    at: &Line,
) -> Result<Result<Request, CommandError>, FrameError> {
    let channel = match channel_name(history.channel, Method::History, at)? {
        Ok(channel) => channel,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Request::History(HistoryRequest {
        channel,
        limit: history.limit,
        since: history.since.map(|since| StreamPosition {
            offset: since.offset,
            epoch: Epoch::new(&since.epoch),
        }),
        reverse: history.reverse,
    })))
}

fn sub_refresh_request(
    refresh: WireSubRefresh,
    at: &Line,
) -> Result<Result<Request, CommandError>, FrameError> {
    let channel = match channel_name(refresh.channel, Method::SubRefresh, at)? {
        Ok(channel) => channel,
        Err(error) => return Ok(Err(error)),
    };
    if refresh.token.is_empty() {
        return Ok(Err(CommandError::EmptySubRefreshToken));
    }
    Ok(Ok(Request::SubRefresh {
        channel,
        token: Token(refresh.token),
    }))
}

/// An empty channel closes the connection; a name ringcast cannot hold is refused.
fn channel_name(
    name: String,
    method: Method,
    at: &Line,
) -> Result<Result<ChannelName, CommandError>, FrameError> {
    if name.is_empty() {
        return Err(FrameError::EmptyChannel {
            line: at.number,
            method,
        });
    }
    Ok(ChannelName::new(&name).ok_or_else(|| {
        let mut end = name.len().min(crate::channel::MAX_CHANNEL_NAME_BYTES);
        // Bounded: at most 3 steps back to a character boundary.
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        CommandError::InvalidChannel {
            channel: name[..end].to_string(),
        }
    }))
}

fn raw_bytes(raw: &RawValue) -> Bytes {
    Bytes::copy_from_slice(raw.get().as_bytes())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn decode(frame: &str) -> Result<Vec<Decoded>, FrameError> {
        decode_frame(frame.as_bytes(), &DecodeLimits::default())
    }

    fn one(frame: &str) -> Command {
        match decode(frame).unwrap().as_slice() {
            [Decoded::Command(command)] => command.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: Epoch::new(epoch),
        }
    }

    // Frames as centrifuge-js 5 writes them: `JSON.stringify` of `{<method>: req}` with the
    // id assigned afterwards (so it comes last), commands joined by "\n".

    #[test]
    fn connect_as_centrifuge_js_sends_it() {
        let command = one(
            r#"{"connect":{"token":"eyJhbGciOi","name":"js","subs":{"news":{"recover":true,"offset":5,"epoch":"abcd"}}},"id":1}"#,
        );
        assert_eq!(command.id, 1);
        let Request::Connect(connect) = command.request else {
            panic!("{command:?}")
        };
        assert_eq!(connect.token.expose(), "eyJhbGciOi");
        assert_eq!(format!("{:?}", connect.token), "Token(<redacted>)");
        assert_eq!(connect.name, "js");
        assert_eq!(
            connect.subs,
            [ConnectSub {
                channel: "news".into(),
                recover: Some(at(5, "abcd"))
            }]
        );
        let anonymous = one(r#"{"connect":{},"id":1}"#);
        let Request::Connect(connect) = anonymous.request else {
            panic!()
        };
        assert!(connect.token.is_empty());
        assert_eq!(format!("{:?}", connect.token), "Token(none)");
    }

    #[test]
    fn subscribes_batched_after_a_reconnect() {
        let frame = concat!(
            r#"{"subscribe":{"channel":"news","flag":1},"id":2}"#,
            "\n",
            r#"{"subscribe":{"channel":"chat:1","recoverable":true,"flag":1,"recover":true,"offset":7,"epoch":"xyz"},"id":3}"#
        );
        let commands = decode(frame).unwrap();
        let [Decoded::Command(first), Decoded::Command(second)] = commands.as_slice() else {
            panic!("{commands:?}")
        };
        let Request::Subscribe(first) = &first.request else {
            panic!()
        };
        assert_eq!(first.channel, channel("news"));
        assert_eq!(first.recover, None);
        assert_eq!(second.id, 3);
        let Request::Subscribe(second) = &second.request else {
            panic!()
        };
        assert_eq!(second.recover, Some(at(7, "xyz")));
        assert!(second.recoverable);
    }

    #[test]
    fn recover_without_offset_or_epoch_means_zero_and_empty() {
        let command = one(r#"{"subscribe":{"channel":"a","recover":true},"id":2}"#);
        let Request::Subscribe(subscribe) = command.request else {
            panic!()
        };
        assert_eq!(subscribe.recover, Some(at(0, "")));
    }

    #[test]
    fn every_other_method() {
        let cases: [(&str, Request); 10] = [
            (r#"{}"#, Request::Pong),
            (
                r#"{"unsubscribe":{"channel":"a"},"id":5}"#,
                Request::Unsubscribe(channel("a")),
            ),
            (
                r#"{"publish":{"channel":"a","data":{"input":"hi", "n": 1.50}},"id":5}"#,
                Request::Publish {
                    channel: channel("a"),
                    data: Bytes::from_static(br#"{"input":"hi", "n": 1.50}"#),
                },
            ),
            (
                r#"{"presence":{"channel":"a"},"id":5}"#,
                Request::Presence(channel("a")),
            ),
            (
                r#"{"presence_stats":{"channel":"a"},"id":5}"#,
                Request::PresenceStats(channel("a")),
            ),
            (
                r#"{"history":{"channel":"a","since":{"offset":3,"epoch":"e"},"limit":10,"reverse":true},"id":5}"#,
                Request::History(HistoryRequest {
                    channel: channel("a"),
                    limit: 10,
                    since: Some(at(3, "e")),
                    reverse: true,
                }),
            ),
            (r#"{"ping":{},"id":5}"#, Request::Ping),
            (
                r#"{"rpc":{"method":"m","data":[1]},"id":5}"#,
                Request::Rpc {
                    method: "m".into(),
                    data: Some(Bytes::from_static(b"[1]")),
                },
            ),
            (
                r#"{"refresh":{"token":"t"},"id":5}"#,
                Request::Refresh(Token("t".into())),
            ),
            (
                r#"{"sub_refresh":{"channel":"a","token":"t"},"id":5}"#,
                Request::SubRefresh {
                    channel: channel("a"),
                    token: Token("t".into()),
                },
            ),
        ];
        for (frame, request) in cases {
            let command = one(frame);
            assert_eq!(command.request, request, "{frame}");
        }
        let send = one(r#"{"send":{"data":{"x":1}}}"#);
        assert_eq!(
            send,
            Command {
                id: 0,
                request: Request::Send {
                    data: Some(Bytes::from_static(br#"{"x":1}"#))
                }
            }
        );
        assert_eq!(
            one(r#"{"publish":{"channel":"a"},"id":1}"#).request,
            Request::Publish {
                channel: channel("a"),
                data: Bytes::from_static(b"null"),
            }
        );
    }

    #[test]
    fn blank_lines_and_a_trailing_newline_are_skipped() {
        let commands = decode("{}\n\n{\"id\":1,\"ping\":{}}\r\n").unwrap();
        assert_eq!(commands.len(), 2);
    }

    #[test]
    fn methods_are_named() {
        assert_eq!(Request::Pong.method(), None);
        assert_eq!(Request::Ping.method(), Some(Method::Ping));
    }

    fn refused(frame: &str) -> CommandError {
        match decode(frame).unwrap().as_slice() {
            [Decoded::Refused { error, .. }] => error.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_command_error() {
        assert_eq!(
            refused(r#"{"subscribe":{"channel":"$private"},"id":1}"#),
            CommandError::InvalidChannel {
                channel: "$private".into()
            }
        );
        let long = "é".repeat(100);
        let CommandError::InvalidChannel { channel } = refused(&format!(
            r#"{{"unsubscribe":{{"channel":"{long}"}},"id":1}}"#
        )) else {
            panic!()
        };
        assert_eq!(channel.len(), crate::channel::MAX_CHANNEL_NAME_BYTES);
        assert_eq!(
            refused(r#"{"subscribe":{"channel":"a","type":4},"id":1}"#),
            CommandError::SubscriptionType { kind: 4 }
        );
        assert_eq!(
            refused(r#"{"subscribe":{"channel":"a","tf":{"op":"eq"}},"id":1}"#),
            CommandError::TagsFilter
        );
        assert_eq!(
            refused(r#"{"sub_refresh":{"channel":"a"},"id":1}"#),
            CommandError::EmptySubRefreshToken
        );
        let [Decoded::Refused { id, method, .. }] =
            decode(r#"{"history":{"channel":"a b"},"id":9}"#).unwrap()[..]
        else {
            panic!()
        };
        assert_eq!((id, method), (9, Method::History));
    }

    #[test]
    fn each_frame_error() {
        let limits = DecodeLimits {
            frame_bytes_max: 100,
            commands_per_frame_max: 2,
            connect_subs_max: 1,
        };
        let decode = |frame: &str| decode_frame(frame.as_bytes(), &limits).unwrap_err();
        assert_eq!(decode(""), FrameError::Empty);
        assert_eq!(decode(" \n "), FrameError::Empty);
        assert_eq!(
            decode(&"{}".repeat(51)),
            FrameError::TooLarge {
                bytes: 102,
                max: 100
            }
        );
        assert_eq!(decode("{}\n{}\n{}"), FrameError::TooManyCommands { max: 2 });
        assert!(matches!(
            decode("{}\nnot json"),
            FrameError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            decode(r#"{"id":-1}"#),
            FrameError::Malformed { line: 1, .. }
        ));
        assert!(matches!(
            decode(r#"{"subscribe":{"channel":1},"id":1}"#),
            FrameError::Malformed { .. }
        ));
        assert_eq!(decode(r#"{"id":1}"#), FrameError::NoRequest { line: 1 });
        assert_eq!(
            decode(r#"{"id":1,"foo":{}}"#),
            FrameError::NoRequest { line: 1 }
        );
        assert_eq!(
            decode(r#"{"id":1,"ping":{},"presence":{"channel":"a"}}"#),
            FrameError::MultipleRequests { line: 1 }
        );
        assert_eq!(
            decode(r#"{"subscribe":{"channel":"a"}}"#),
            FrameError::MissingId {
                line: 1,
                method: Method::Subscribe
            }
        );
        for (frame, method) in [
            (r#"{"subscribe":{},"id":1}"#, Method::Subscribe),
            (
                r#"{"unsubscribe":{"channel":""},"id":1}"#,
                Method::Unsubscribe,
            ),
            (r#"{"publish":{"data":1},"id":1}"#, Method::Publish),
            (r#"{"presence":{},"id":1}"#, Method::Presence),
            (r#"{"presence_stats":{},"id":1}"#, Method::PresenceStats),
            (r#"{"history":{},"id":1}"#, Method::History),
            (
                r#"{"sub_refresh":{"token":"t"},"id":1}"#,
                Method::SubRefresh,
            ),
        ] {
            assert_eq!(
                decode(frame),
                FrameError::EmptyChannel { line: 1, method },
                "{frame}"
            );
        }
        assert_eq!(
            decode(r#"{"refresh":{},"id":1}"#),
            FrameError::EmptyToken { line: 1 }
        );
        assert_eq!(
            decode(r#"{"subscribe":{"channel":"a","delta":"x"},"id":1}"#),
            FrameError::UnknownDelta { line: 1 }
        );
        assert_eq!(
            decode(r#"{"connect":{"subs":{"a":{},"b":{}}},"id":1}"#),
            FrameError::TooManyConnectSubs { line: 1, max: 1 }
        );
    }

    #[test]
    fn frame_errors_close_with_their_codes() {
        use crate::wire::centrifugo::codes::DisconnectCode;
        assert_eq!(FrameError::Empty.disconnect(), DisconnectCode::BadRequest);
        assert_eq!(
            FrameError::TooManyCommands { max: 1 }.disconnect(),
            DisconnectCode::TooManyRequests
        );
        assert_eq!(CommandError::TagsFilter.client_error().code(), 107);
        assert_eq!(
            CommandError::SubscriptionType { kind: 1 }
                .client_error()
                .code(),
            108
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.:-]{1,20}"
    }

    fn request() -> impl Strategy<Value = (serde_json::Value, Request)> {
        prop_oneof![
            (name(), any::<bool>(), any::<u64>(), "[a-z0-9]{0,8}").prop_map(
                |(name, recover, offset, epoch)| (
                    json!({"subscribe": {"channel": name, "recover": recover, "offset": offset, "epoch": epoch}}),
                    Request::Subscribe(SubscribeRequest {
                        channel: ChannelName::new(&name).unwrap(),
                        token: Token(String::new()),
                        recover: recover.then(|| StreamPosition { offset, epoch: Epoch::new(&epoch) }),
                        data: None,
                        positioned: false,
                        recoverable: false,
                        join_leave: false,
                    })
                )
            ),
            name().prop_map(|name| (
                json!({"unsubscribe": {"channel": name}}),
                Request::Unsubscribe(ChannelName::new(&name).unwrap())
            )),
            (name(), any::<i32>(), any::<bool>()).prop_map(|(name, limit, reverse)| (
                json!({"history": {"channel": name, "limit": limit, "reverse": reverse}}),
                Request::History(HistoryRequest {
                    channel: ChannelName::new(&name).unwrap(),
                    limit,
                    since: None,
                    reverse,
                })
            )),
            (name(), ".*").prop_map(|(name, text)| (
                json!({"publish": {"channel": name, "data": {"text": text}}}),
                Request::Publish {
                    channel: ChannelName::new(&name).unwrap(),
                    data: Bytes::from(serde_json::to_vec(&json!({"text": text})).unwrap()),
                }
            )),
        ]
    }

    proptest! {
        /// decode(encode(commands)) == commands, for a frame of several.
        #[test]
        fn decoding_what_a_client_encodes_is_identity(
            requests in proptest::collection::vec(request(), 1..10),
        ) {
            let mut lines = Vec::new();
            let mut expected = Vec::new();
            for (index, (mut value, request)) in requests.into_iter().enumerate() {
                let id = index as u32 + 1;
                value["id"] = json!(id);
                lines.push(serde_json::to_string(&value).unwrap());
                expected.push(Decoded::Command(Command { id, request }));
            }
            prop_assert_eq!(decode(&lines.join("\n")).unwrap(), expected);
        }

        /// Any bytes: a result, never a panic.
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame(&frame, &DecodeLimits::default());
        }
    }
}
