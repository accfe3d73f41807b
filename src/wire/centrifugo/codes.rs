//! Every code the Centrifugo client protocol carries, in one place: reply error codes, push
//! unsubscribe codes, disconnect codes (sent as the WebSocket close code), and the map from
//! each of ringcast's typed errors to the code it ends in.
//!
//! Source of truth: `centrifugal/centrifuge` `errors.go` (client errors), `disconnect.go`
//! (disconnects), `unsubscribe.go` (unsubscribes), as documented in `centrifugal/centrifugal.dev`
//! `docs/server/codes.md`. Each row below is copied from there.

use bytes::Bytes;

use super::command::{CommandError, FrameError};
use super::data::InappropriateProtocol;
use super::session::{FinishError, SessionError};
use crate::history::UnrecoverableReason;
use crate::history::recovery::InsufficientState;
use crate::protocol::close::encode_close_frame;

/// An error in a reply to a command (`{"id":1,"error":{"code":..,"message":..}}`); the
/// connection stays. errors.go: "codes in interval 0-399 reserved by Centrifuge".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientError {
    /// 100 "internal server error", temporary.
    Internal,
    /// 101 "unauthorized".
    Unauthorized,
    /// 102 "unknown channel".
    UnknownChannel,
    /// 103 "permission denied".
    PermissionDenied,
    /// 104 "method not found".
    MethodNotFound,
    /// 105 "already subscribed".
    AlreadySubscribed,
    /// 106 "limit exceeded".
    LimitExceeded,
    /// 107 "bad request".
    BadRequest,
    /// 108 "not available".
    NotAvailable,
    /// 109 "token expired".
    TokenExpired,
    /// 110 "expired".
    Expired,
    /// 111 "too many requests", temporary.
    TooManyRequests,
    /// 112 "unrecoverable position".
    UnrecoverablePosition,
    /// 113 "token revoked".
    TokenRevoked,
}

impl ClientError {
    /// The table: (code, message, temporary), as errors.go defines them.
    const fn row(self) -> (u32, &'static str, bool) {
        match self {
            ClientError::Internal => (100, "internal server error", true),
            ClientError::Unauthorized => (101, "unauthorized", false),
            ClientError::UnknownChannel => (102, "unknown channel", false),
            ClientError::PermissionDenied => (103, "permission denied", false),
            ClientError::MethodNotFound => (104, "method not found", false),
            ClientError::AlreadySubscribed => (105, "already subscribed", false),
            ClientError::LimitExceeded => (106, "limit exceeded", false),
            ClientError::BadRequest => (107, "bad request", false),
            ClientError::NotAvailable => (108, "not available", false),
            ClientError::TokenExpired => (109, "token expired", false),
            ClientError::Expired => (110, "expired", false),
            ClientError::TooManyRequests => (111, "too many requests", true),
            ClientError::UnrecoverablePosition => (112, "unrecoverable position", false),
            ClientError::TokenRevoked => (113, "token revoked", false),
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u32 {
        self.row().0
    }

    /// The message.
    pub const fn message(self) -> &'static str {
        self.row().1
    }

    /// Whether a client may retry (`"temporary": true` on the wire).
    pub const fn temporary(self) -> bool {
        self.row().2
    }
}

/// Why the server closes a connection: the WebSocket close code and reason (the WebSocket
/// transport sends no disconnect push: it "arrives via Close(Disconnect)").
///
/// disconnect.go: "Client should reconnect upon receiving code in range 3000-3499, 4000-4499,
/// >=5000 ... Codes in range 3500-3999 and 4500-4999 are application terminal codes".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectCode {
    /// 3000 "connection closed" (closed without advice; never sent).
    ConnectionClosed,
    /// 3001 "shutdown".
    Shutdown,
    /// 3004 "internal server error".
    ServerError,
    /// 3005 "connection expired".
    Expired,
    /// 3006 "subscription expired".
    SubExpired,
    /// 3008 "slow".
    Slow,
    /// 3009 "write error".
    WriteError,
    /// 3010 "insufficient state".
    InsufficientState,
    /// 3011 "force reconnect".
    ForceReconnect,
    /// 3012 "no pong".
    NoPong,
    /// 3013 "too many requests".
    TooManyRequests,
    /// 3500 "invalid token" (terminal).
    InvalidToken,
    /// 3501 "bad request" (terminal).
    BadRequest,
    /// 3502 "stale" (terminal).
    Stale,
    /// 3503 "force disconnect" (terminal).
    ForceNoReconnect,
    /// 3504 "connection limit" (terminal).
    ConnectionLimit,
    /// 3505 "channel limit" (terminal).
    ChannelLimit,
    /// 3506 "inappropriate protocol" (terminal).
    InappropriateProtocol,
    /// 3507 "permission denied" (terminal).
    PermissionDenied,
    /// 3508 "not available" (terminal).
    NotAvailable,
    /// 3509 "too many errors" (terminal).
    TooManyErrors,
}

impl DisconnectCode {
    /// The table: (code, reason), as disconnect.go defines them.
    const fn row(self) -> (u16, &'static str) {
        match self {
            DisconnectCode::ConnectionClosed => (3000, "connection closed"),
            DisconnectCode::Shutdown => (3001, "shutdown"),
            DisconnectCode::ServerError => (3004, "internal server error"),
            DisconnectCode::Expired => (3005, "connection expired"),
            DisconnectCode::SubExpired => (3006, "subscription expired"),
            DisconnectCode::Slow => (3008, "slow"),
            DisconnectCode::WriteError => (3009, "write error"),
            DisconnectCode::InsufficientState => (3010, "insufficient state"),
            DisconnectCode::ForceReconnect => (3011, "force reconnect"),
            DisconnectCode::NoPong => (3012, "no pong"),
            DisconnectCode::TooManyRequests => (3013, "too many requests"),
            DisconnectCode::InvalidToken => (3500, "invalid token"),
            DisconnectCode::BadRequest => (3501, "bad request"),
            DisconnectCode::Stale => (3502, "stale"),
            DisconnectCode::ForceNoReconnect => (3503, "force disconnect"),
            DisconnectCode::ConnectionLimit => (3504, "connection limit"),
            DisconnectCode::ChannelLimit => (3505, "channel limit"),
            DisconnectCode::InappropriateProtocol => (3506, "inappropriate protocol"),
            DisconnectCode::PermissionDenied => (3507, "permission denied"),
            DisconnectCode::NotAvailable => (3508, "not available"),
            DisconnectCode::TooManyErrors => (3509, "too many errors"),
        }
    }

    /// The close code.
    pub const fn code(self) -> u16 {
        self.row().0
    }

    /// The close reason (disconnect.go: "must be less than 127 bytes").
    pub const fn reason(self) -> &'static str {
        self.row().1
    }

    /// Whether the client reconnects by itself (disconnect.go `isReconnect`:
    /// `d.Code < 3500 || d.Code >= 5000 || (d.Code >= 4000 && d.Code < 4500)`).
    pub const fn reconnects(self) -> bool {
        let code = self.code();
        code < 3500 || code >= 5000 || (code >= 4000 && code < 4500)
    }

    /// The WebSocket close frame that carries it.
    pub fn close_frame(self) -> Bytes {
        encode_close_frame(self.code(), self.reason())
    }
}

/// Why the server unsubscribes a client from a channel (an `unsubscribe` push).
/// unsubscribe.go: "Unsubscribe codes >= 2500 coming from server to client result into
/// resubscribe attempt."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnsubscribeCode {
    /// 0 "client unsubscribed" (server-side bookkeeping; never pushed).
    Client,
    /// 1 "client disconnected" (server-side bookkeeping; never pushed).
    Disconnect,
    /// 2000 "server unsubscribe".
    Server,
    /// 2500 "insufficient state": the client resubscribes from its position.
    Insufficient,
    /// 2501 "subscription expired".
    Expired,
}

impl UnsubscribeCode {
    /// The table: (code, reason).
    const fn row(self) -> (u32, &'static str) {
        match self {
            UnsubscribeCode::Client => (0, "client unsubscribed"),
            UnsubscribeCode::Disconnect => (1, "client disconnected"),
            UnsubscribeCode::Server => (2000, "server unsubscribe"),
            UnsubscribeCode::Insufficient => (2500, "insufficient state"),
            UnsubscribeCode::Expired => (2501, "subscription expired"),
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u32 {
        self.row().0
    }

    /// The reason.
    pub const fn reason(self) -> &'static str {
        self.row().1
    }

    /// Whether the client subscribes again by itself.
    pub const fn resubscribes(self) -> bool {
        self.code() >= 2500
    }
}

impl FrameError {
    /// How the connection ends when a frame is refused.
    pub fn disconnect(&self) -> DisconnectCode {
        match self {
            // disconnect.go: DisconnectTooManyRequests "may be issued when client sends too
            // many commands to a server".
            FrameError::TooManyCommands { .. } => DisconnectCode::TooManyRequests,
            // client.go: every malformed frame ends in DisconnectBadRequest.
            FrameError::Empty
            | FrameError::TooLarge { .. }
            | FrameError::Malformed { .. }
            | FrameError::NoRequest { .. }
            | FrameError::MultipleRequests { .. }
            | FrameError::MissingId { .. }
            | FrameError::EmptyChannel { .. }
            | FrameError::EmptyToken { .. }
            | FrameError::UnknownDelta { .. }
            | FrameError::TooManyConnectSubs { .. } => DisconnectCode::BadRequest,
        }
    }
}

impl CommandError {
    /// The error the reply carries.
    pub fn client_error(&self) -> ClientError {
        match self {
            CommandError::InvalidChannel { .. }
            | CommandError::TagsFilter
            | CommandError::EmptySubRefreshToken => ClientError::BadRequest,
            CommandError::SubscriptionType { .. } => ClientError::NotAvailable,
        }
    }
}

impl SessionError {
    /// What happens: a reply error, or the end of the connection.
    pub fn verdict(&self) -> Verdict {
        match self {
            SessionError::BeforeConnect
            | SessionError::AfterRefusedConnect
            | SessionError::AlreadyConnected
            | SessionError::UnexpectedPong => Verdict::Disconnect(DisconnectCode::BadRequest),
            SessionError::AlreadySubscribed => Verdict::Reply(ClientError::AlreadySubscribed),
            SessionError::ChannelLimit => Verdict::Reply(ClientError::LimitExceeded),
            SessionError::NotSubscribed => Verdict::Reply(ClientError::PermissionDenied),
            SessionError::PresenceOff | SessionError::PingCommand => {
                Verdict::Reply(ClientError::NotAvailable)
            }
            SessionError::NoRpc => Verdict::Reply(ClientError::MethodNotFound),
            SessionError::NoAsyncMessages => Verdict::Disconnect(DisconnectCode::NotAvailable),
        }
    }
}

impl FinishError {
    /// How the connection ends when a subscribe cannot be completed.
    pub fn disconnect(&self) -> DisconnectCode {
        match self {
            FinishError::Insufficient(error) => insufficient_state(error),
            FinishError::NotSubscribing => DisconnectCode::ServerError,
        }
    }
}

/// What a refused command ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Reply with this error; the connection stays.
    Reply(ClientError),
    /// Close the connection with this code.
    Disconnect(DisconnectCode),
}

/// A failed recovery in the `history` call: error 112 (errors.go: "stream does not contain
/// required range of publications to fulfill a history query").
pub fn history_error(_reason: UnrecoverableReason) -> ClientError {
    ClientError::UnrecoverablePosition
}

/// A subscribe that cannot be synchronized: client.go `MergePublications` failure ends in
/// `DisconnectInsufficientState`.
pub fn insufficient_state(_error: &InsufficientState) -> DisconnectCode {
    DisconnectCode::InsufficientState
}

/// A live gap on a subscription: client.go `handleInsufficientState` unsubscribes a client-side
/// subscription with `UnsubscribeCodeInsufficient` (the client resubscribes and recovers).
pub const LIVE_GAP: UnsubscribeCode = UnsubscribeCode::Insufficient;

/// A payload JSON cannot carry: hub.go disconnects every JSON subscriber with
/// `DisconnectInappropriateProtocol`.
pub fn inappropriate(_error: &InappropriateProtocol) -> DisconnectCode {
    DisconnectCode::InappropriateProtocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_match_errors_go() {
        let table = [
            (ClientError::Internal, 100, "internal server error", true),
            (ClientError::Unauthorized, 101, "unauthorized", false),
            (ClientError::UnknownChannel, 102, "unknown channel", false),
            (
                ClientError::PermissionDenied,
                103,
                "permission denied",
                false,
            ),
            (ClientError::MethodNotFound, 104, "method not found", false),
            (
                ClientError::AlreadySubscribed,
                105,
                "already subscribed",
                false,
            ),
            (ClientError::LimitExceeded, 106, "limit exceeded", false),
            (ClientError::BadRequest, 107, "bad request", false),
            (ClientError::NotAvailable, 108, "not available", false),
            (ClientError::TokenExpired, 109, "token expired", false),
            (ClientError::Expired, 110, "expired", false),
            (ClientError::TooManyRequests, 111, "too many requests", true),
            (
                ClientError::UnrecoverablePosition,
                112,
                "unrecoverable position",
                false,
            ),
            (ClientError::TokenRevoked, 113, "token revoked", false),
        ];
        for (error, code, message, temporary) in table {
            assert_eq!(
                (error.code(), error.message(), error.temporary()),
                (code, message, temporary)
            );
        }
    }

    #[test]
    fn disconnects_match_disconnect_go() {
        let reconnecting = [
            (DisconnectCode::ConnectionClosed, 3000),
            (DisconnectCode::Shutdown, 3001),
            (DisconnectCode::ServerError, 3004),
            (DisconnectCode::Expired, 3005),
            (DisconnectCode::SubExpired, 3006),
            (DisconnectCode::Slow, 3008),
            (DisconnectCode::WriteError, 3009),
            (DisconnectCode::InsufficientState, 3010),
            (DisconnectCode::ForceReconnect, 3011),
            (DisconnectCode::NoPong, 3012),
            (DisconnectCode::TooManyRequests, 3013),
        ];
        let terminal = [
            (DisconnectCode::InvalidToken, 3500),
            (DisconnectCode::BadRequest, 3501),
            (DisconnectCode::Stale, 3502),
            (DisconnectCode::ForceNoReconnect, 3503),
            (DisconnectCode::ConnectionLimit, 3504),
            (DisconnectCode::ChannelLimit, 3505),
            (DisconnectCode::InappropriateProtocol, 3506),
            (DisconnectCode::PermissionDenied, 3507),
            (DisconnectCode::NotAvailable, 3508),
            (DisconnectCode::TooManyErrors, 3509),
        ];
        for (disconnect, code) in reconnecting {
            assert_eq!(disconnect.code(), code);
            assert!(disconnect.reconnects(), "{disconnect:?}");
        }
        for (disconnect, code) in terminal {
            assert_eq!(disconnect.code(), code);
            assert!(!disconnect.reconnects(), "{disconnect:?}");
            assert!(disconnect.reason().len() < 123);
        }
        assert_eq!(
            &DisconnectCode::BadRequest.close_frame()[..],
            b"\x88\x0d\x0d\xadbad request"
        );
    }

    #[test]
    fn unsubscribes_match_unsubscribe_go() {
        assert_eq!(UnsubscribeCode::Client.code(), 0);
        assert_eq!(UnsubscribeCode::Disconnect.code(), 1);
        assert_eq!(UnsubscribeCode::Server.code(), 2000);
        assert!(!UnsubscribeCode::Server.resubscribes());
        assert_eq!(LIVE_GAP.code(), 2500);
        assert_eq!(LIVE_GAP.reason(), "insufficient state");
        assert!(LIVE_GAP.resubscribes());
        assert_eq!(UnsubscribeCode::Expired.code(), 2501);
    }

    #[test]
    fn typed_errors_map_to_their_codes() {
        assert_eq!(history_error(UnrecoverableReason::Trimmed).code(), 112);
        assert_eq!(
            insufficient_state(&InsufficientState::BufferOverflow).code(),
            3010
        );
        assert_eq!(inappropriate(&InappropriateProtocol).code(), 3506);
    }
}
