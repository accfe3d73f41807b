//! Which channels keep history, and how much: a short list of channel patterns, first match
//! wins. A channel that matches no rule keeps nothing and costs nothing (one lookup per publish).
//!
//! Syntax (`--history`): comma-separated rules `PATTERN[@SIZE[/TTL]]`, where PATTERN is `*`
//! (every channel), `prefix*` (every channel starting with `prefix`, e.g. the namespace
//! `chat:*`) or an exact channel name; SIZE overrides `--history-size`, TTL (humantime, e.g.
//! `90s`, `5m`) overrides `--history-ttl`. `@` cannot appear in a channel name, so the syntax is
//! unambiguous. Example: `chat:*@50/10m,news,*@10`.
//!
//! Deliberately not here: storage (see [`super::memory`]), authorization.

use crate::channel::MAX_CHANNEL_NAME_BYTES;

/// Most rules in a policy (a lookup walks them all for a channel without history).
pub const RULES_MAX: usize = 64;
/// Largest per-channel size accepted, publications (a recovery reads at most this many).
pub const SIZE_MAX: usize = 1_000_000;
/// Longest per-publication ttl accepted, ms (30 days).
pub const TTL_MS_MAX: u64 = 30 * 24 * 3600 * 1000;

/// How much history one channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelHistory {
    /// Most publications kept (`--history-size`); older ones are dropped first.
    pub size: usize,
    /// How long a publication is kept, ms (`--history-ttl`).
    pub ttl_ms: u64,
}

/// Which channels a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChannelPattern {
    /// `*`: every channel.
    Any,
    /// `prefix*`: channels starting with the prefix.
    Prefix(String),
    /// A channel name.
    Exact(String),
}

impl ChannelPattern {
    fn matches(&self, channel: &str) -> bool {
        match self {
            ChannelPattern::Any => true,
            ChannelPattern::Prefix(prefix) => channel.starts_with(prefix.as_str()),
            ChannelPattern::Exact(name) => channel == name,
        }
    }
}

/// One rule: a pattern and what matching channels keep.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HistoryRule {
    /// The channels it covers.
    pattern: ChannelPattern,
    /// What they keep.
    history: ChannelHistory,
}

/// Why a `--history` specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// More rules than [`RULES_MAX`].
    #[error("at most {RULES_MAX} history rules")]
    TooManyRules,
    /// An empty rule (`a,,b`) or pattern (`@10`).
    #[error("empty history rule")]
    EmptyRule,
    /// A pattern with a character a channel name cannot hold, a `*` anywhere but at the end, or
    /// longer than a channel name.
    #[error("bad channel pattern {0:?}: `*`, `prefix*` or a channel name")]
    BadPattern(String),
    /// SIZE is not a number in 1..=SIZE_MAX.
    #[error("bad history size {0:?}: 1..={SIZE_MAX}")]
    BadSize(String),
    /// TTL is not a duration in 1ms..=30 days.
    #[error("bad history ttl {0:?}: a duration like 90s or 5m, at most 30 days")]
    BadTtl(String),
}

/// Which channels keep history (first matching rule wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// The rules, in the order given.
    rules: Vec<HistoryRule>,
}

impl HistoryPolicy {
    /// No channel keeps history.
    pub fn disabled() -> HistoryPolicy {
        HistoryPolicy { rules: Vec::new() }
    }

    /// Parses `--history` (see the module header); rules without SIZE or TTL take `defaults`.
    pub fn parse(spec: &str, defaults: ChannelHistory) -> Result<HistoryPolicy, PolicyError> {
        let mut rules = Vec::new();
        if spec.trim().is_empty() {
            return Ok(HistoryPolicy { rules });
        }
        // Bounded: by RULES_MAX (checked before each push).
        for rule in spec.split(',') {
            if rules.len() == RULES_MAX {
                return Err(PolicyError::TooManyRules);
            }
            rules.push(parse_rule(rule.trim(), defaults)?);
        }
        Ok(HistoryPolicy { rules })
    }

    /// What `channel` keeps, or `None` when it keeps no history.
    pub fn lookup(&self, channel: &str) -> Option<&ChannelHistory> {
        // Bounded: at most RULES_MAX rules.
        self.rules
            .iter()
            .find(|rule| rule.pattern.matches(channel))
            .map(|rule| &rule.history)
    }

    /// Whether no channel keeps history.
    pub fn is_disabled(&self) -> bool {
        self.rules.is_empty()
    }
}

fn parse_rule(rule: &str, defaults: ChannelHistory) -> Result<HistoryRule, PolicyError> {
    let (pattern, settings) = match rule.split_once('@') {
        Some((pattern, settings)) => (pattern, Some(settings)),
        None => (rule, None),
    };
    if pattern.is_empty() {
        return Err(PolicyError::EmptyRule);
    }
    let mut history = defaults;
    if let Some(settings) = settings {
        let (size, ttl) = match settings.split_once('/') {
            Some((size, ttl)) => (size, Some(ttl)),
            None => (settings, None),
        };
        history.size = parse_size(size)?;
        if let Some(ttl) = ttl {
            history.ttl_ms = parse_ttl(ttl)?;
        }
    }
    Ok(HistoryRule {
        pattern: parse_pattern(pattern)?,
        history,
    })
}

fn parse_pattern(pattern: &str) -> Result<ChannelPattern, PolicyError> {
    let bad = || PolicyError::BadPattern(pattern.to_string());
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    let valid_bytes = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-'));
    if !valid_bytes || name.len() > MAX_CHANNEL_NAME_BYTES {
        return Err(bad());
    }
    Ok(match (pattern.ends_with('*'), name.is_empty()) {
        (true, true) => ChannelPattern::Any,
        (true, false) => ChannelPattern::Prefix(name.to_string()),
        (false, _) => ChannelPattern::Exact(name.to_string()),
    })
}

fn parse_size(size: &str) -> Result<usize, PolicyError> {
    size.parse::<usize>()
        .ok()
        .filter(|size| (1..=SIZE_MAX).contains(size))
        .ok_or_else(|| PolicyError::BadSize(size.to_string()))
}

fn parse_ttl(ttl: &str) -> Result<u64, PolicyError> {
    humantime::parse_duration(ttl)
        .ok()
        .and_then(|duration| u64::try_from(duration.as_millis()).ok())
        .filter(|ttl_ms| (1..=TTL_MS_MAX).contains(ttl_ms))
        .ok_or_else(|| PolicyError::BadTtl(ttl.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: ChannelHistory = ChannelHistory {
        size: 100,
        ttl_ms: 300_000,
    };

    #[test]
    fn first_match_wins() {
        let policy = HistoryPolicy::parse("chat:*@50/10m, news ,*@10", DEFAULTS).unwrap();
        assert_eq!(
            policy.lookup("chat:room"),
            Some(&ChannelHistory {
                size: 50,
                ttl_ms: 600_000
            })
        );
        assert_eq!(policy.lookup("news"), Some(&DEFAULTS));
        assert_eq!(
            policy.lookup("other"),
            Some(&ChannelHistory {
                size: 10,
                ttl_ms: 300_000
            })
        );
    }

    #[test]
    fn unmatched_channels_keep_nothing() {
        let policy = HistoryPolicy::parse("chat:*,news", DEFAULTS).unwrap();
        assert_eq!(policy.lookup("newsroom"), None);
        assert_eq!(policy.lookup("chat"), None);
        assert!(HistoryPolicy::disabled().lookup("a").is_none());
        assert!(HistoryPolicy::parse(" ", DEFAULTS).unwrap().is_disabled());
    }

    #[test]
    fn every_error_has_its_variant() {
        let too_many = vec!["a"; RULES_MAX + 1].join(",");
        assert_eq!(
            HistoryPolicy::parse(&too_many, DEFAULTS),
            Err(PolicyError::TooManyRules)
        );
        assert_eq!(
            HistoryPolicy::parse("a,,b", DEFAULTS),
            Err(PolicyError::EmptyRule)
        );
        assert_eq!(
            HistoryPolicy::parse("@10", DEFAULTS),
            Err(PolicyError::EmptyRule)
        );
        for pattern in ["a*b", "$private", "a b", "**"] {
            assert_eq!(
                HistoryPolicy::parse(pattern, DEFAULTS),
                Err(PolicyError::BadPattern(pattern.to_string())),
            );
        }
        for size in ["0", "x", "1000001"] {
            assert_eq!(
                HistoryPolicy::parse(&format!("a@{size}"), DEFAULTS),
                Err(PolicyError::BadSize(size.to_string()))
            );
        }
        for ttl in ["soon", "0s", "31days"] {
            assert_eq!(
                HistoryPolicy::parse(&format!("a@1/{ttl}"), DEFAULTS),
                Err(PolicyError::BadTtl(ttl.to_string()))
            );
        }
    }
}
