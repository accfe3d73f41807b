//! Pusher channel names and what their prefixes mean.
//!
//! channels.md: "Channel names may contain a maximum of 164 characters. This limit includes
//! channel prefixes", "Channel names should only include lower and uppercase letters, numbers
//! and the following punctuation `_ - = @ , . ;`", and "`#` is a reserved character for
//! internal use by Pusher Channels. Applications can't create channel names containing `#`."
//! The one internal name is `#server-to-user-{user_id}` (pusher-js `user.ts` subscribes to it
//! after `pusher:signin_success`; the SDKs' `sendToUser` triggers on it).
//!
//! Prefixes (channels.md, cache-channels.md): `private-`, `private-encrypted-`, `presence-`,
//! and the cache variants `cache-`, `private-cache-`, `private-encrypted-cache-`,
//! `presence-cache-`. The longest matching prefix wins.
//!
//! Deliberately not here: who may subscribe (that is `authorize.rs`); the raw `/ws/{channel}`
//! names (`crate::channel`, a different alphabet).

use std::fmt;
use std::sync::Arc;

/// channels.md: "Channel names may contain a maximum of 164 characters."
pub const MAX_CHANNEL_NAME_BYTES: usize = 164;
/// The prefix of the per-user channel.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel's name makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// No prefix: anyone may subscribe.
    Public,
    /// `cache-`: public, last event replayed on subscribe.
    PublicCache,
    /// `private-`: subscription signed by the application server.
    Private,
    /// `private-cache-`.
    PrivateCache,
    /// `private-encrypted-`: private, payloads end-to-end encrypted (opaque to the server).
    PrivateEncrypted,
    /// `private-encrypted-cache-`.
    PrivateEncryptedCache,
    /// `presence-`: private plus a member list.
    Presence,
    /// `presence-cache-`.
    PresenceCache,
    /// `#server-to-user-{id}`: only connections signed in as `{id}` may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Classifies a name already known to be valid.
    fn of(name: &str) -> ChannelKind {
        // Longest prefix first: `private-encrypted-cache-` before `private-encrypted-` before
        // `private-cache-` before `private-`.
        const PREFIXES: [(&str, ChannelKind); 8] = [
            (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser),
            (
                "private-encrypted-cache-",
                ChannelKind::PrivateEncryptedCache,
            ),
            ("private-encrypted-", ChannelKind::PrivateEncrypted),
            ("private-cache-", ChannelKind::PrivateCache),
            ("private-", ChannelKind::Private),
            ("presence-cache-", ChannelKind::PresenceCache),
            ("presence-", ChannelKind::Presence),
            ("cache-", ChannelKind::PublicCache),
        ];
        PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map_or(ChannelKind::Public, |&(_, kind)| kind)
    }

    /// Does subscribing need a signed `auth` (private, encrypted, presence)?
    pub fn requires_auth(self) -> bool {
        !matches!(
            self,
            ChannelKind::Public | ChannelKind::PublicCache | ChannelKind::ServerToUser
        )
    }

    /// Is this a presence channel (member list, `channel_data`)?
    pub fn is_presence(self) -> bool {
        matches!(self, ChannelKind::Presence | ChannelKind::PresenceCache)
    }

    /// Is this an end-to-end encrypted channel?
    pub fn is_encrypted(self) -> bool {
        matches!(
            self,
            ChannelKind::PrivateEncrypted | ChannelKind::PrivateEncryptedCache
        )
    }

    /// Does this channel keep its last event (cache-channels.md)?
    pub fn is_cache(self) -> bool {
        matches!(
            self,
            ChannelKind::PublicCache
                | ChannelKind::PrivateCache
                | ChannelKind::PrivateEncryptedCache
                | ChannelKind::PresenceCache
        )
    }

    /// events.md: "Client events can only be triggered on private and presence channels";
    /// encrypted channels are refused too (the server cannot encrypt, and pusher-js "omit[s]
    /// the functionality to trigger client events in encrypted channels").
    pub fn allows_client_events(self) -> bool {
        matches!(
            self,
            ChannelKind::Private
                | ChannelKind::PrivateCache
                | ChannelKind::Presence
                | ChannelKind::PresenceCache
        )
    }
}

/// Why a channel name is invalid. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// An empty name.
    #[error("channel name is empty")]
    Empty,
    /// channels.md: "a maximum of 164 characters".
    #[error("channel name of {length_bytes} characters exceeds 164")]
    TooLong {
        /// The name's length.
        length_bytes: usize,
    },
    /// channels.md: "only ... letters, numbers and the following punctuation `_ - = @ , . ;`".
    #[error("channel name has {character:?} at {position}; allowed: [A-Za-z0-9_-=@,.;]")]
    InvalidCharacter {
        /// The first offending character.
        character: char,
        /// Its byte offset.
        position: usize,
    },
    /// channels.md: "`#` is a reserved character"; only `#server-to-user-{id}` uses it.
    #[error("'#' is reserved (only #server-to-user-{{id}} may use it)")]
    ReservedHash,
    /// `#server-to-user-` with no user id after it.
    #[error("#server-to-user- needs a user id")]
    EmptyServerToUserId,
}

/// A validated Pusher channel name and its kind. Cheap to clone (one `Arc`). Equality,
/// ordering and hashing look at the name only (the kind follows from it), so a map keyed by
/// `PusherChannel` can be searched with a `&str`.
#[derive(Clone)]
pub struct PusherChannel {
    /// The name, 1-164 bytes of the allowed alphabet.
    name: Arc<str>,
    /// What the prefix makes it (derived from `name`, kept to avoid re-matching prefixes).
    kind: ChannelKind,
}

impl PartialEq for PusherChannel {
    fn eq(&self, other: &PusherChannel) -> bool {
        self.name == other.name
    }
}

impl Eq for PusherChannel {}

impl std::hash::Hash for PusherChannel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for PusherChannel {
    fn partial_cmp(&self, other: &PusherChannel) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PusherChannel {
    fn cmp(&self, other: &PusherChannel) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl PusherChannel {
    /// Validates and classifies `name`.
    pub fn parse(name: &str) -> Result<PusherChannel, ChannelNameError> {
        validate(name)?;
        Ok(PusherChannel {
            name: Arc::from(name),
            kind: ChannelKind::of(name),
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// For `#server-to-user-{id}`, the `{id}`.
    pub fn server_to_user_id(&self) -> Option<&str> {
        match self.kind() {
            ChannelKind::ServerToUser => self.name.strip_prefix(SERVER_TO_USER_PREFIX),
            _ => None,
        }
    }

    /// The channel `#server-to-user-{user_id}`, if `user_id` makes a valid name.
    pub fn server_to_user(user_id: &str) -> Result<PusherChannel, ChannelNameError> {
        PusherChannel::parse(&format!("{SERVER_TO_USER_PREFIX}{user_id}"))
    }
}

fn is_allowed_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

fn validate(name: &str) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(ChannelNameError::TooLong {
            length_bytes: name.len(),
        });
    }
    let body = match name.strip_prefix(SERVER_TO_USER_PREFIX) {
        Some("") => return Err(ChannelNameError::EmptyServerToUserId),
        Some(user_id) => user_id,
        None => name,
    };
    let offset = name.len() - body.len();
    match body
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_allowed_byte(c as u8))
    {
        None => Ok(()),
        Some((_, '#')) => Err(ChannelNameError::ReservedHash),
        Some((position, character)) => Err(ChannelNameError::InvalidCharacter {
            character,
            position: offset + position,
        }),
    }
}

impl fmt::Debug for PusherChannel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", &*self.name)
    }
}

impl fmt::Display for PusherChannel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.name)
    }
}

impl std::borrow::Borrow<str> for PusherChannel {
    fn borrow(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_example_name_is_valid() {
        // channels.md: "As an example this is a valid channel name: foo-bar_1234@=,.;"
        let channel = PusherChannel::parse("foo-bar_1234@=,.;").unwrap();
        assert_eq!(channel.kind(), ChannelKind::Public);
        assert_eq!(channel.as_str(), "foo-bar_1234@=,.;");
    }

    #[test]
    fn each_allowed_punctuation_alone_and_in_names() {
        for punctuation in ["_", "-", "=", "@", ",", ".", ";"] {
            assert!(PusherChannel::parse(punctuation).is_ok(), "{punctuation}");
            assert!(PusherChannel::parse(&format!("a{punctuation}b")).is_ok());
        }
        for character in ['#', ':', '/', ' ', '?', '%', '+', '!', 'é', '\0', '"', '\\'] {
            let name = format!("ab{character}c");
            assert!(PusherChannel::parse(&name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn length_limit_is_164() {
        assert!(PusherChannel::parse(&"x".repeat(164)).is_ok());
        assert_eq!(
            PusherChannel::parse(&"x".repeat(165)),
            Err(ChannelNameError::TooLong { length_bytes: 165 })
        );
        let presence = format!("presence-{}", "x".repeat(164 - 9));
        assert_eq!(
            PusherChannel::parse(&presence).unwrap().kind(),
            ChannelKind::Presence
        );
        assert!(PusherChannel::parse(&format!("{presence}x")).is_err());
    }

    #[test]
    fn prefixes_classify() {
        let cases = [
            ("news", ChannelKind::Public),
            ("cache-news", ChannelKind::PublicCache),
            ("private-x", ChannelKind::Private),
            ("private-cache-x", ChannelKind::PrivateCache),
            ("private-encrypted-x", ChannelKind::PrivateEncrypted),
            (
                "private-encrypted-cache-x",
                ChannelKind::PrivateEncryptedCache,
            ),
            ("presence-x", ChannelKind::Presence),
            ("presence-cache-x", ChannelKind::PresenceCache),
            ("#server-to-user-42", ChannelKind::ServerToUser),
            ("privatex", ChannelKind::Public),
            ("presencecache-x", ChannelKind::Public),
            ("public-private-x", ChannelKind::Public),
            ("private-", ChannelKind::Private),
        ];
        for (name, kind) in cases {
            assert_eq!(PusherChannel::parse(name).unwrap().kind(), kind, "{name}");
        }
    }

    #[test]
    fn kind_predicates() {
        use ChannelKind::*;
        let all = [
            Public,
            PublicCache,
            Private,
            PrivateCache,
            PrivateEncrypted,
            PrivateEncryptedCache,
            Presence,
            PresenceCache,
            ServerToUser,
        ];
        let auth: Vec<_> = all.iter().filter(|k| k.requires_auth()).collect();
        assert_eq!(
            auth,
            [
                &Private,
                &PrivateCache,
                &PrivateEncrypted,
                &PrivateEncryptedCache,
                &Presence,
                &PresenceCache
            ]
        );
        let client: Vec<_> = all.iter().filter(|k| k.allows_client_events()).collect();
        assert_eq!(client, [&Private, &PrivateCache, &Presence, &PresenceCache]);
        assert_eq!(all.iter().filter(|k| k.is_cache()).count(), 4);
        assert_eq!(all.iter().filter(|k| k.is_presence()).count(), 2);
        assert_eq!(all.iter().filter(|k| k.is_encrypted()).count(), 2);
    }

    #[test]
    fn hash_is_only_valid_in_the_server_to_user_form() {
        let channel = PusherChannel::parse("#server-to-user-user@example.com").unwrap();
        assert_eq!(channel.server_to_user_id(), Some("user@example.com"));
        assert_eq!(
            PusherChannel::server_to_user("42")
                .unwrap()
                .server_to_user_id(),
            Some("42")
        );
        for name in [
            "#news",
            "a#b",
            "#server-to-user",
            "#Server-to-user-1",
            "#server-to-user-1#2",
        ] {
            assert_eq!(
                PusherChannel::parse(name),
                Err(ChannelNameError::ReservedHash),
                "{name}"
            );
        }
        assert_eq!(
            PusherChannel::parse("#server-to-user-"),
            Err(ChannelNameError::EmptyServerToUserId)
        );
        assert_eq!(
            PusherChannel::parse("#server-to-user-a b"),
            Err(ChannelNameError::InvalidCharacter {
                character: ' ',
                position: 17
            })
        );
        assert_eq!(
            PusherChannel::parse("news").unwrap().server_to_user_id(),
            None
        );
    }

    #[test]
    fn maps_keyed_by_channel_are_searchable_by_str() {
        let mut map = std::collections::HashMap::new();
        map.insert(PusherChannel::parse("presence-room").unwrap(), 1);
        assert_eq!(map.get("presence-room"), Some(&1));
        let mut sorted = [
            PusherChannel::parse("b").unwrap(),
            PusherChannel::parse("a").unwrap(),
        ];
        sorted.sort();
        assert_eq!(sorted[0].as_str(), "a");
    }

    #[test]
    fn one_test_per_error_variant() {
        assert_eq!(PusherChannel::parse(""), Err(ChannelNameError::Empty));
        assert!(matches!(
            PusherChannel::parse(&"a".repeat(200)),
            Err(ChannelNameError::TooLong { .. })
        ));
        assert_eq!(
            PusherChannel::parse("a:b"),
            Err(ChannelNameError::InvalidCharacter {
                character: ':',
                position: 1
            })
        );
        assert_eq!(
            PusherChannel::parse("#x"),
            Err(ChannelNameError::ReservedHash)
        );
        assert_eq!(
            PusherChannel::parse("#server-to-user-"),
            Err(ChannelNameError::EmptyServerToUserId)
        );
    }
}
