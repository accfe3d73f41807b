//! Channel names and the policy that decides which names are allowed.
//!
//! A channel name is 1-164 bytes of `[A-Za-z0-9_\-=@,.;:#]`: ws4redis's names (with `:`) and
//! Pusher's (`[A-Za-z0-9_\-=@,.;]`, up to 164 characters, and `#server-to-user-{id}`) in one
//! namespace, all safe in a Redis channel name and a URL path without escaping (`#` only ever
//! in names a Pusher client uses). With `--strict`, only the names listed in `--channels` are
//! allowed (ws4redis's "facilities").
//!
//! Each application has a namespace of its own ([`AppSlot`]): app A's clients never see app
//! B's channels.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Longest channel name accepted, in bytes (Pusher's limit: "up to 164 characters").
pub const MAX_CHANNEL_NAME_BYTES: usize = 164;

/// Which application's namespace a channel is in: the index of the app in the configuration.
/// Slot 0 is the default namespace: the one `/ws/{channel}`, `POST /publish/{channel}` and
/// ws4redis Redis messages use (the first or only configured app, or the raw-only namespace
/// when no app is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AppSlot(pub u16);

impl AppSlot {
    /// The default namespace.
    pub const DEFAULT: AppSlot = AppSlot(0);
}

/// A validated channel name. Cheap to clone and to send to another shard.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

impl ChannelName {
    /// Validates `name`; `None` if it is empty, too long or has a character outside the set.
    pub fn new(name: &str) -> Option<ChannelName> {
        let valid_length = (1..=MAX_CHANNEL_NAME_BYTES).contains(&name.len());
        let valid_bytes = name.bytes().all(|byte| {
            byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';' | b':' | b'#'
                )
        });
        (valid_length && valid_bytes).then(|| ChannelName(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are one shared name (then they are equal without reading the text).
    pub fn shares(&self, other: &ChannelName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Equality that skips reading the text when both share it (the fan-out's check per
    /// subscriber: after the first publication a subscription holds the registry's name).
    pub fn same(&self, other: &ChannelName) -> bool {
        self.shares(other) || self.0 == other.0
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", &*self.0)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Empty, too long, or a character outside the allowed set.
    #[error("channel names are 1-164 bytes of [A-Za-z0-9_-=@,.;:#]")]
    InvalidName,
    /// `--strict` is on and the name is not in `--channels`.
    #[error("channel not allowed")]
    Forbidden,
}

/// Which channel names clients and publishers may use.
#[derive(Debug, Clone, Default)]
pub struct ChannelPolicy {
    /// When `Some`, only these names are allowed (`--strict --channels a,b`).
    allowed: Option<HashSet<String>>,
}

impl ChannelPolicy {
    /// Every valid name is allowed.
    pub fn open() -> ChannelPolicy {
        ChannelPolicy { allowed: None }
    }

    /// Only `names` are allowed.
    pub fn strict(names: impl IntoIterator<Item = String>) -> ChannelPolicy {
        ChannelPolicy {
            allowed: Some(names.into_iter().collect()),
        }
    }

    /// Validates `name` and checks it against the whitelist.
    pub fn check(&self, name: &str) -> Result<ChannelName, ChannelError> {
        let channel = ChannelName::new(name).ok_or(ChannelError::InvalidName)?;
        match &self.allowed {
            Some(allowed) if !allowed.contains(name) => Err(ChannelError::Forbidden),
            _ => Ok(channel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(ChannelName::new("news").is_some());
        assert!(ChannelName::new("a.b:c-d_E9").is_some());
        assert!(ChannelName::new(&"x".repeat(164)).is_some());
        assert!(ChannelName::new(&"x".repeat(165)).is_none());
        assert!(ChannelName::new("").is_none());
        assert!(ChannelName::new("presence-room=1@a,b;c").is_some());
        assert!(ChannelName::new("#server-to-user-42").is_some());
        for bad in ["a b", "a/b", "a%20", "é", "a?b", "a\0", "a\"b", "a&b"] {
            assert!(ChannelName::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn strict_policy_forbids_unlisted_names() {
        let policy = ChannelPolicy::strict(["launcher".to_string()]);
        assert!(policy.check("launcher").is_ok());
        assert_eq!(policy.check("other"), Err(ChannelError::Forbidden));
        assert_eq!(policy.check("bad name"), Err(ChannelError::InvalidName));
    }
}
