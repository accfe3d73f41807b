//! Socket ids: `^\d+\.\d+$`, one per connection.
//!
//! The id is sent in `pusher:connection_established`, signed into every channel and user
//! authorization (`socket_id:channel`), and given back by publishers to exclude one connection
//! from a trigger (`socket_id` in `POST /events`). The SDKs check the shape: pusher-http-python
//! and pusher-http-node refuse anything but `\A\d+\.\d+\z`.
//!
//! Generation: each shard owns a [`SocketIdGenerator`] seeded at start. The id is
//! `{tag}.{serial}`:
//! - `tag` is the generator's random 32-bit tag: different shards and nodes get different tags
//!   with high probability (two generators share a tag with probability 2^-32 per pair);
//! - `serial` is a keyed bijection of a per-generator counter (a SplitMix64 finaliser over
//!   `counter + key`): distinct for every id one generator makes (a bijection never repeats),
//!   and not predictable from the previous ids without the 64-bit key.
//!
//! So ids never repeat within a generator, collide across generators only if both the tag and
//! the serial collide, and cannot be enumerated. They are not a security boundary: a
//! subscription still needs the application server's signature, which authenticates the user.
//!
//! Deliberately not here: the randomness source for seeds beyond `std`'s `RandomState` (which
//! the OS seeds), and any clock.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

/// A socket id. Canonical decimal form only (no leading zeros), so two equal ids are equal as
/// text too and a signature over the text matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    /// Digits before the dot (the generator's tag).
    tag: u64,
    /// Digits after the dot (the serial).
    serial: u64,
}

/// Why a socket id given by a client or publisher is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocketIdError {
    /// Not `digits.digits`, a part over 20 digits or 2^64, or a leading zero.
    #[error("socket_id must match ^\\d+\\.\\d+$ (canonical decimal, each part < 2^64)")]
    Malformed,
}

impl SocketId {
    /// Parses `digits.digits`.
    pub fn parse(text: &str) -> Result<SocketId, SocketIdError> {
        let (tag, serial) = text.split_once('.').ok_or(SocketIdError::Malformed)?;
        Ok(SocketId {
            tag: parse_part(tag)?,
            serial: parse_part(serial)?,
        })
    }
}

fn parse_part(digits: &str) -> Result<u64, SocketIdError> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return Err(SocketIdError::Malformed);
    }
    digits.parse().map_err(|_| SocketIdError::Malformed)
}

impl FromStr for SocketId {
    type Err = SocketIdError;

    fn from_str(text: &str) -> Result<SocketId, SocketIdError> {
        SocketId::parse(text)
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}", self.tag, self.serial)
    }
}

/// Makes the socket ids of one shard.
#[derive(Debug, Clone)]
pub struct SocketIdGenerator {
    /// Random tag shared by every id this generator makes.
    tag: u32,
    /// Secret offset mixed into every serial.
    key: u64,
    /// How many ids were made.
    counter: u64,
}

impl SocketIdGenerator {
    /// A generator with an explicit tag and key (tests; a caller with its own entropy).
    pub fn new(tag: u32, key: u64) -> SocketIdGenerator {
        SocketIdGenerator {
            tag,
            key,
            counter: 0,
        }
    }

    /// A generator seeded from `std`'s OS-seeded `RandomState` (a fresh hasher per call).
    pub fn from_entropy() -> SocketIdGenerator {
        let random = || {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        SocketIdGenerator::new(random() as u32, random())
    }

    /// The next id. Never repeats for this generator (the serial is a bijection of a 64-bit
    /// counter; 2^64 ids would take centuries).
    pub fn next_id(&mut self) -> SocketId {
        self.counter = self.counter.wrapping_add(1);
        SocketId {
            tag: u64::from(self.tag),
            serial: mix(self.counter.wrapping_add(self.key)),
        }
    }
}

/// SplitMix64's finaliser: each step (xor with a right shift, multiply by an odd constant) is
/// invertible on u64, so the whole is a bijection.
fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_ids_match_the_documented_shape_and_never_repeat() {
        let mut generator = SocketIdGenerator::new(1234, 99);
        let mut seen = HashSet::new();
        // Bounded: 10 000 ids.
        for _ in 0..10_000 {
            let id = generator.next_id();
            let text = id.to_string();
            let (tag, serial) = text.split_once('.').unwrap();
            assert_eq!(tag, "1234");
            assert!(!serial.is_empty() && serial.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(SocketId::parse(&text), Ok(id));
            assert!(seen.insert(id), "repeated {id}");
        }
    }

    #[test]
    fn generators_with_different_keys_are_not_in_step() {
        let mut first = SocketIdGenerator::new(7, 1);
        let mut second = SocketIdGenerator::new(7, 2);
        let a: Vec<_> = (0..5).map(|_| first.next_id()).collect();
        let b: Vec<_> = (0..5).map(|_| second.next_id()).collect();
        assert_ne!(a, b);
        let entropy = SocketIdGenerator::from_entropy().next_id();
        assert!(SocketId::parse(&entropy.to_string()).is_ok());
    }

    #[test]
    fn parse_accepts_the_docs_examples_and_refuses_the_rest() {
        for good in ["1234.1234", "123.456", "0.0", "18446744073709551615.1"] {
            assert_eq!(SocketId::parse(good).unwrap().to_string(), good);
        }
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1",
            "1.2.3",
            "a.b",
            "1.2 ",
            " 1.2",
            "01.2",
            "1.02",
            "-1.2",
            "+1.2",
            "18446744073709551616.1",
            "1,2",
            "١.٢",
        ] {
            assert_eq!(
                SocketId::parse(bad),
                Err(SocketIdError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!("5.6".parse::<SocketId>().unwrap().to_string(), "5.6");
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(tag: u64, serial: u64) {
            let id = SocketId { tag, serial };
            prop_assert_eq!(SocketId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn mix_is_injective_on_samples(a: u64, b: u64) {
            prop_assume!(a != b);
            prop_assert_ne!(mix(a), mix(b));
        }
    }
}
