//! Decisions on well-formed client requests: may this connection subscribe, sign in, or send
//! this client event? Pure functions of the application, the connection's identity and the
//! request; the server keeps the state (subscriptions, signed-in user, rate limiter) and
//! passes it in.
//!
//! Subscriptions (auth-signatures.md, presence-channels.md, user-authentication):
//! - public and `cache-` channels: granted;
//! - private and encrypted channels: `auth` over `socket_id:channel`;
//! - presence channels: `auth` over `socket_id:channel:channel_data`, the member from
//!   `channel_data`; without `channel_data`, `auth` over `socket_id:channel` and the member is
//!   the signed-in user (pusher-js: "If the user is signed in, get the id of the authenticated
//!   user and allow the presence authorization to continue");
//! - `#server-to-user-{id}`: only a connection signed in as `{id}` (pusher-js subscribes
//!   without auth after `pusher:signin_success`).
//!
//! Client events (events.md): enabled for the app, a private or presence channel (not
//! encrypted), subscribed, within the payload limit, and at most `client_event_rate_per_s` per
//! connection (token bucket, burst = rate).
//!
//! Deliberately not here: the replies (`error.rs`), member storage and the presence member
//! count (the broker: pass it to [`check_presence_capacity`]).

use super::channel::{ChannelKind, PusherChannel};
use super::error::{ClientEventError, SigninError, SubscribeError};
use super::incoming::{ClientEvent, Signin, Subscribe};
use super::presence::{PresenceMember, SignedInUser, parse_channel_data, parse_user_data};
use super::socket_id::SocketId;
use crate::apps::{App, AppLimits, ClientEvents};
use crate::auth::pusher::{verify_channel_auth, verify_user_auth};

/// What a granted subscription is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionGrant {
    /// Join the channel; answer `subscription_succeeded` (and replay the cached event or
    /// `cache_miss` on a cache channel).
    Channel,
    /// Join the presence channel as this member; answer `subscription_succeeded` with the
    /// member list, and `member_added` to the others if the user is new to the channel.
    Presence(PresenceMember),
    /// Join the user's own `#server-to-user-{id}` channel.
    ServerToUser,
}

/// Decides a `pusher:subscribe` from the connection `socket_id`, signed in as `signed_in`.
pub fn authorize_subscribe(
    app: &App,
    socket_id: SocketId,
    request: &Subscribe,
    signed_in: Option<&SignedInUser>,
) -> Result<SubscriptionGrant, SubscribeError> {
    let channel = request.channel.as_str();
    let auth = request.auth.as_deref();
    match request.channel.kind() {
        ChannelKind::Public | ChannelKind::PublicCache => Ok(SubscriptionGrant::Channel),
        ChannelKind::ServerToUser => match (request.channel.server_to_user_id(), signed_in) {
            (Some(id), Some(user)) if id == user.id => Ok(SubscriptionGrant::ServerToUser),
            _ => Err(SubscribeError::ServerToUserForbidden),
        },
        ChannelKind::Private
        | ChannelKind::PrivateCache
        | ChannelKind::PrivateEncrypted
        | ChannelKind::PrivateEncryptedCache => {
            verify_channel_auth(app, &socket_id.to_string(), channel, None, auth)?;
            Ok(SubscriptionGrant::Channel)
        }
        ChannelKind::Presence | ChannelKind::PresenceCache => {
            let channel_data = request.channel_data.as_deref();
            verify_channel_auth(app, &socket_id.to_string(), channel, channel_data, auth)?;
            let member = match (channel_data, signed_in) {
                (Some(data), _) => parse_channel_data(data, &app.limits)
                    .map_err(SubscribeError::InvalidChannelData)?,
                (None, Some(user)) => user.as_member(),
                (None, None) => return Err(SubscribeError::PresenceDataMissing),
            };
            Ok(SubscriptionGrant::Presence(member))
        }
    }
}

/// Whether a user is already counted in a presence channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The user has another connection in the channel.
    AlreadyMember,
    /// The user would be a new member.
    NewMember,
}

/// presence-channels.md: "100 members maximum". `member_count` is the number of distinct users
/// in the channel now; a user already counted may always add a connection.
pub fn check_presence_capacity(
    limits: &AppLimits,
    member_count: usize,
    membership: Membership,
) -> Result<(), SubscribeError> {
    match membership {
        Membership::NewMember if member_count >= limits.max_presence_members => {
            Err(SubscribeError::PresenceFull {
                limit: limits.max_presence_members,
            })
        }
        _ => Ok(()),
    }
}

/// Decides a `pusher:signin` from `socket_id`, already signed in as `current`.
pub fn authorize_signin(
    app: &App,
    socket_id: SocketId,
    request: &Signin,
    current: Option<&SignedInUser>,
) -> Result<SignedInUser, SigninError> {
    verify_user_auth(
        app,
        &socket_id.to_string(),
        &request.user_data,
        Some(&request.auth),
    )?;
    let user =
        parse_user_data(&request.user_data, &app.limits).map_err(SigninError::InvalidUserData)?;
    match current {
        Some(existing) if existing.id != user.id => Err(SigninError::AlreadySignedIn),
        _ => Ok(user),
    }
}

/// Whether the sender is subscribed to the client event's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderSubscription {
    /// Subscribed (the subscription succeeded).
    Subscribed,
    /// Not subscribed, or the subscription is still pending.
    NotSubscribed,
}

/// Decides a client event. On success the caller relays
/// `outgoing::event(channel, &event.event, &event.data_as_str(), user_id)` to the channel's
/// other subscribers (never the sender), with `user_id` on presence channels.
pub fn authorize_client_event(
    limits: &AppLimits,
    event: &ClientEvent<'_>,
    subscription: SenderSubscription,
    limiter: &mut ClientEventRateLimiter,
    now_ms: u64,
) -> Result<(), ClientEventError> {
    if limits.client_events == ClientEvents::Off {
        return Err(ClientEventError::Disabled);
    }
    let channel: &PusherChannel = &event.channel;
    if !channel.kind().allows_client_events() {
        return Err(ClientEventError::ChannelNotAllowed(channel.to_string()));
    }
    if subscription == SenderSubscription::NotSubscribed {
        return Err(ClientEventError::NotSubscribed(channel.to_string()));
    }
    if event.event.len() > limits.max_event_name_bytes {
        return Err(ClientEventError::NameTooLong {
            length_bytes: event.event.len(),
            limit_bytes: limits.max_event_name_bytes,
        });
    }
    let length_bytes = event.data_as_str().len();
    if length_bytes > limits.max_event_payload_bytes {
        return Err(ClientEventError::PayloadTooLarge {
            length_bytes,
            limit_bytes: limits.max_event_payload_bytes,
        });
    }
    if !limiter.try_acquire(limits.client_event_rate_per_s, now_ms) {
        return Err(ClientEventError::RateLimited);
    }
    Ok(())
}

/// A token bucket per connection: capacity `rate` events, refilled at `rate` per second.
/// Integer arithmetic in thousandths of a token; 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEventRateLimiter {
    /// Tokens available, in thousandths.
    milli_tokens: u64,
    /// When the bucket was last refilled.
    last_refill_ms: u64,
}

impl ClientEventRateLimiter {
    /// A full bucket at `now_ms` (a new connection may send a burst of `rate` at once).
    pub fn new(rate_per_s: u32, now_ms: u64) -> ClientEventRateLimiter {
        ClientEventRateLimiter {
            milli_tokens: u64::from(rate_per_s) * 1000,
            last_refill_ms: now_ms,
        }
    }

    /// Takes one token if there is one. `rate_per_s` tokens per second flow in, up to
    /// `rate_per_s`.
    pub fn try_acquire(&mut self, rate_per_s: u32, now_ms: u64) -> bool {
        let capacity = u64::from(rate_per_s) * 1000;
        let elapsed_ms = now_ms.saturating_sub(self.last_refill_ms);
        // `rate` tokens per second is `rate` thousandths per millisecond.
        let refill = elapsed_ms.saturating_mul(u64::from(rate_per_s));
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        self.last_refill_ms = self.last_refill_ms.max(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::auth::pusher::{AuthError, channel_auth, user_auth};
    use crate::wire::pusher::error::UserDataError;

    fn app() -> App {
        let mut app = App::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8").unwrap();
        app.limits.client_events = ClientEvents::On;
        app
    }

    fn socket() -> SocketId {
        SocketId::parse("1234.1234").unwrap()
    }

    fn subscribe(name: &str, auth: Option<String>, channel_data: Option<&str>) -> Subscribe {
        Subscribe {
            channel: PusherChannel::parse(name).unwrap(),
            auth,
            channel_data: channel_data.map(str::to_string),
        }
    }

    fn signed_in(id: &str) -> SignedInUser {
        let user_data = format!(r#"{{"id":"{id}","user_info":{{"name":"N"}}}}"#);
        parse_user_data(&user_data, &AppLimits::default()).unwrap()
    }

    #[test]
    fn public_channels_need_nothing() {
        for name in ["news", "cache-news"] {
            assert_eq!(
                authorize_subscribe(&app(), socket(), &subscribe(name, None, None), None),
                Ok(SubscriptionGrant::Channel)
            );
        }
    }

    #[test]
    fn private_channels_need_the_docs_signature() {
        let app = app();
        let good = Some(channel_auth(&app, "1234.1234", "private-foobar", None));
        assert_eq!(
            authorize_subscribe(
                &app,
                socket(),
                &subscribe("private-foobar", good, None),
                None
            ),
            Ok(SubscriptionGrant::Channel)
        );
        for name in [
            "private-cache-a",
            "private-encrypted-a",
            "private-encrypted-cache-a",
        ] {
            let auth = Some(channel_auth(&app, "1234.1234", name, None));
            assert!(
                authorize_subscribe(&app, socket(), &subscribe(name, auth, None), None).is_ok()
            );
        }
        assert_eq!(
            authorize_subscribe(
                &app,
                socket(),
                &subscribe("private-foobar", None, None),
                None
            ),
            Err(SubscribeError::Auth(AuthError::Missing))
        );
        let other_socket = SocketId::parse("1234.1235").unwrap();
        let good = Some(channel_auth(&app, "1234.1234", "private-foobar", None));
        assert!(matches!(
            authorize_subscribe(
                &app,
                other_socket,
                &subscribe("private-foobar", good, None),
                None
            ),
            Err(SubscribeError::Auth(AuthError::InvalidSignature { .. }))
        ));
    }

    #[test]
    fn presence_members_come_from_channel_data_or_the_signed_in_user() {
        let app = app();
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = Some(channel_auth(
            &app,
            "1234.1234",
            "presence-foobar",
            Some(data),
        ));
        let grant = authorize_subscribe(
            &app,
            socket(),
            &subscribe("presence-foobar", auth, Some(data)),
            None,
        );
        let Ok(SubscriptionGrant::Presence(member)) = grant else {
            panic!("{grant:?}");
        };
        assert_eq!(member.user_id, "10");
        let auth = Some(channel_auth(&app, "1234.1234", "presence-foobar", None));
        let request = subscribe("presence-foobar", auth, None);
        let user = signed_in("alice");
        let Ok(SubscriptionGrant::Presence(member)) =
            authorize_subscribe(&app, socket(), &request, Some(&user))
        else {
            panic!("signed-in presence refused");
        };
        assert_eq!(member.user_id, "alice");
        assert_eq!(member.user_info.unwrap().get(), r#"{"name":"N"}"#);
        assert_eq!(
            authorize_subscribe(&app, socket(), &request, None),
            Err(SubscribeError::PresenceDataMissing)
        );
        let bad = r#"{"user_info":{}}"#;
        let auth = Some(channel_auth(
            &app,
            "1234.1234",
            "presence-cache-x",
            Some(bad),
        ));
        assert_eq!(
            authorize_subscribe(
                &app,
                socket(),
                &subscribe("presence-cache-x", auth, Some(bad)),
                None
            ),
            Err(SubscribeError::InvalidChannelData(
                UserDataError::MissingUserId
            ))
        );
    }

    #[test]
    fn server_to_user_only_for_that_user() {
        let app = app();
        let request = subscribe("#server-to-user-alice", None, None);
        assert_eq!(
            authorize_subscribe(&app, socket(), &request, Some(&signed_in("alice"))),
            Ok(SubscriptionGrant::ServerToUser)
        );
        for user in [None, Some(signed_in("bob"))] {
            assert_eq!(
                authorize_subscribe(&app, socket(), &request, user.as_ref()),
                Err(SubscribeError::ServerToUserForbidden)
            );
        }
    }

    #[test]
    fn presence_capacity() {
        let limits = AppLimits::default();
        assert_eq!(
            check_presence_capacity(&limits, 99, Membership::NewMember),
            Ok(())
        );
        assert_eq!(
            check_presence_capacity(&limits, 100, Membership::NewMember),
            Err(SubscribeError::PresenceFull { limit: 100 })
        );
        assert_eq!(
            check_presence_capacity(&limits, 100, Membership::AlreadyMember),
            Ok(())
        );
    }

    #[test]
    fn signin_with_the_docs_user() {
        let app = app();
        let user_data = r#"{"id":"12345"}"#;
        let request = Signin {
            auth: user_auth(&app, "1234.1234", user_data),
            user_data: user_data.into(),
        };
        let user = authorize_signin(&app, socket(), &request, None).unwrap();
        assert_eq!(user.id, "12345");
        assert_eq!(
            authorize_signin(&app, socket(), &request, Some(&user)),
            Ok(user.clone())
        );
        assert_eq!(
            authorize_signin(&app, socket(), &request, Some(&signed_in("other"))),
            Err(SigninError::AlreadySignedIn)
        );
        let forged = Signin {
            auth: "278d425bdf160c739803:00".into(),
            user_data: user_data.into(),
        };
        assert!(matches!(
            authorize_signin(&app, socket(), &forged, None),
            Err(SigninError::Auth(AuthError::InvalidSignature { .. }))
        ));
        let numeric = r#"{"id":12345}"#;
        let request = Signin {
            auth: user_auth(&app, "1234.1234", numeric),
            user_data: numeric.into(),
        };
        assert_eq!(
            authorize_signin(&app, socket(), &request, None),
            Err(SigninError::InvalidUserData(UserDataError::InvalidUserId))
        );
    }

    fn client_event<'a>(channel: &str, data: &'a RawValue) -> ClientEvent<'a> {
        ClientEvent {
            event: "client-typing".into(),
            channel: PusherChannel::parse(channel).unwrap(),
            data,
        }
    }

    #[test]
    fn client_event_rules_in_order() {
        let mut limits = app().limits;
        let data: Box<RawValue> = serde_json::from_str(r#"{"x":1}"#).unwrap();
        let mut limiter = ClientEventRateLimiter::new(10, 0);
        let mut check = |limits: &AppLimits, channel: &str, subscription| {
            authorize_client_event(
                limits,
                &client_event(channel, &data),
                subscription,
                &mut limiter,
                0,
            )
        };
        use SenderSubscription::*;
        assert_eq!(check(&limits, "private-a", Subscribed), Ok(()));
        assert_eq!(check(&limits, "presence-a", Subscribed), Ok(()));
        for channel in ["news", "cache-a", "private-encrypted-a"] {
            assert_eq!(
                check(&limits, channel, Subscribed),
                Err(ClientEventError::ChannelNotAllowed(channel.into()))
            );
        }
        assert_eq!(
            check(&limits, "private-a", NotSubscribed),
            Err(ClientEventError::NotSubscribed("private-a".into()))
        );
        limits.max_event_payload_bytes = 6;
        assert_eq!(
            check(&limits, "private-a", Subscribed),
            Err(ClientEventError::PayloadTooLarge {
                length_bytes: 7,
                limit_bytes: 6
            })
        );
        limits.max_event_name_bytes = 5;
        assert!(matches!(
            check(&limits, "private-a", Subscribed),
            Err(ClientEventError::NameTooLong { .. })
        ));
        limits.client_events = ClientEvents::Off;
        assert_eq!(
            check(&limits, "private-a", Subscribed),
            Err(ClientEventError::Disabled)
        );
    }

    #[test]
    fn per_connection_state_sizes_are_pinned() {
        assert_eq!(std::mem::size_of::<ClientEventRateLimiter>(), 16);
        assert_eq!(std::mem::size_of::<SocketId>(), 16);
        assert_eq!(std::mem::size_of::<PusherChannel>(), 24);
        assert_eq!(std::mem::size_of::<Option<PusherChannel>>(), 24);
    }

    #[test]
    fn rate_limit_is_ten_per_second_with_a_burst_of_ten() {
        let limits = app().limits;
        let data: Box<RawValue> = serde_json::from_str("1").unwrap();
        let event = client_event("private-a", &data);
        let mut limiter = ClientEventRateLimiter::new(10, 1_000);
        let mut send = |now_ms| {
            authorize_client_event(
                &limits,
                &event,
                SenderSubscription::Subscribed,
                &mut limiter,
                now_ms,
            )
        };
        for _ in 0..10 {
            assert_eq!(send(1_000), Ok(()));
        }
        assert_eq!(send(1_000), Err(ClientEventError::RateLimited));
        assert_eq!(send(1_099), Err(ClientEventError::RateLimited));
        assert_eq!(send(1_100), Ok(()));
        assert_eq!(send(1_100), Err(ClientEventError::RateLimited));
        // A long pause refills to the burst, not beyond.
        let sent = (0..20).filter(|_| send(60_000).is_ok()).count();
        assert_eq!(sent, 10);
        // A clock going backwards does not mint tokens.
        assert_eq!(send(0), Err(ClientEventError::RateLimited));
    }
}
