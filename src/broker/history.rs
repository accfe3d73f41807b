//! Channel history in Redis (`--history` with `--redis` or `--redis-cluster`): one Redis Stream
//! per channel plus a small hash with the stream's epoch and top offset, both under the hash
//! tag of the channel's pub/sub channel (`{prefix}:history:{{prefix}:broadcast:{channel}}:s`
//! and `:m`), so on a cluster a channel's keys and its SPUBLISH are in one slot.
//!
//! A publication to a channel with history is one Lua script (atomic in Redis): take the
//! epoch (made on first use), increment the top offset, XADD the message under the id
//! `OFFSET-1` (trimmed to the channel's size), refresh the keys' expiry, and PUBLISH the
//! message with its position in front (`\0ringcast2\n OFFSET EPOCH`), so stream order and
//! pub/sub order are the same and every node stamps the same position. Reading (a subscribe's
//! top or recovery, a history page) is one script too: the epoch and top, and the entries after
//! a position, in one consistent view. Whether a position is recovered is decided by
//! [`crate::history::check_recovery`], the same rule as the in-memory store.
//!
//! Staleness and loss: everything is in Redis, so every node answers the same; a Redis that
//! restarts without persistence (or evicts the keys) makes a new epoch at the next use, and a
//! client holding the old one is told it cannot recover. With Redis, a channel's `TTL` is how
//! long its stream lives after its last publication (the stream expires as a whole, as in
//! Centrifugo); the epoch and offset live a day longer.

use std::sync::Arc;

use bytes::Bytes;
use fred::prelude::*;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};

use crate::channel::ChannelName;
use crate::history::policy::ChannelHistory;
use crate::history::recovery::HistoryRead;
use crate::history::{
    Epoch, HistoryAnswer, HistoryPage, HistoryPublication, HistoryQuestion, StreamPosition,
    Unrecoverable, UnrecoverableReason, check_recovery,
};
use crate::publication::REDIS_POSITIONED_MAGIC;

use super::scripts::{Attempts, Scripts};

/// How much longer than a stream its epoch and top offset are kept, ms.
const META_EXTRA_TTL_MS: u64 = 24 * 3600 * 1000;
/// History reads in flight at once on the publishing connection.
const READS_IN_FLIGHT_MAX: usize = 64;

/// Appends and publishes. KEYS: stream, meta. ARGV: pub/sub channel, message, size, stream ttl
/// ms, epoch if new, meta ttl ms, magic, publish command (`publish`, or `spublish` on a
/// cluster: the channel hashes to the keys' slot). Returns {offset, epoch, receivers}.
const PUBLISH_SCRIPT: &str = r#"
redis.call('hsetnx', KEYS[2], 'e', ARGV[5])
local epoch = redis.call('hget', KEYS[2], 'e')
local offset = redis.call('hincrby', KEYS[2], 's', 1)
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-1', 'd', ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[6])
local receivers = redis.call(ARGV[8], ARGV[1], ARGV[7] .. offset .. ' ' .. epoch .. '\n' .. ARGV[2])
return {offset, epoch, receivers}
"#;

/// Reads. KEYS: stream, meta. ARGV: epoch if new, meta ttl ms, mode (`after`, `before`,
/// `last`, `none`), offset, count. Returns {epoch, top, offset1, data1, offset2, data2, ...}: entries
/// after OFFSET ascending, or before OFFSET descending.
const READ_SCRIPT: &str = r#"
redis.call('hsetnx', KEYS[2], 'e', ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[2])
local epoch = redis.call('hget', KEYS[2], 'e')
local top = tonumber(redis.call('hget', KEYS[2], 's') or '0')
local out = {epoch, top}
local entries = {}
local count = tonumber(ARGV[5])
if count > 0 then
  if ARGV[3] == 'after' then
    entries = redis.call('xrange', KEYS[1], (tonumber(ARGV[4]) + 1) .. '-0', '+', 'COUNT', count)
  elseif ARGV[3] == 'last' then
    entries = redis.call('xrevrange', KEYS[1], '+', '-', 'COUNT', count)
  elseif ARGV[3] == 'before' then
    local before = tonumber(ARGV[4])
    if before > 1 then
      entries = redis.call('xrevrange', KEYS[1], (before - 1) .. '-1', '-', 'COUNT', count)
    end
  end
end
for _, entry in ipairs(entries) do
  out[#out + 1] = tonumber(string.match(entry[1], '^(%d+)'))
  out[#out + 1] = entry[2][2]
end
return out
"#;

/// A question for the history in Redis.
#[derive(Debug)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: ChannelName,
    /// What it keeps.
    pub settings: ChannelHistory,
    /// What is asked.
    pub question: HistoryQuestion,
    /// The answer, or why there is none.
    pub reply: oneshot::Sender<Result<HistoryAnswer, String>>,
}

/// The keys of a channel's history: the stream and its metadata. Their hash tag is the
/// channel's pub/sub channel (`{prefix}:broadcast:{channel}`, which has no braces: channel
/// names cannot), so on a Redis Cluster both keys and the SPUBLISH of the publish script are
/// in one slot, on one master.
fn keys(prefix: &str, channel: &ChannelName) -> Vec<String> {
    let base = format!(
        "{prefix}:history:{{{prefix}:broadcast:{}}}",
        channel.as_str()
    );
    vec![format!("{base}:s"), format!("{base}:m")]
}

/// How the publish script publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishCommand {
    /// `PUBLISH` (one Redis).
    Publish,
    /// `SPUBLISH` (a Redis Cluster's sharded pub/sub).
    Spublish,
}

impl PublishCommand {
    fn name(self) -> &'static str {
        match self {
            PublishCommand::Publish => "publish",
            PublishCommand::Spublish => "spublish",
        }
    }
}

/// An epoch never used before (with overwhelming probability): 64 random bits, hex.
pub(super) fn fresh_epoch() -> String {
    format!(
        "{:016x}",
        crate::history::memory::random_seed() ^ rand_bits()
    )
}

fn rand_bits() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
        .rotate_left(29)
}

pub(super) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(number) => u64::try_from(*number).ok(),
        Value::String(text) => text.parse().ok(),
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_string()),
        Value::Bytes(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
        _ => None,
    }
}

fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        Value::String(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        _ => None,
    }
}

/// Appends `message` (as it goes on the pub/sub channel) to `channel`'s stream and PUBLISHes
/// it positioned; returns the receivers and the position. One attempt: a script that failed
/// is never run again later (its message would arrive late, or twice).
pub async fn publish_positioned(
    scripts: &Scripts,
    prefix: &str,
    redis_channel: String,
    channel: &ChannelName,
    settings: &ChannelHistory,
    message: Bytes,
    publish: PublishCommand,
) -> Result<(u64, StreamPosition), String> {
    let args = vec![
        Value::from(redis_channel),
        Value::Bytes(message),
        Value::from(settings.size as i64),
        Value::from(settings.ttl_ms as i64),
        Value::from(fresh_epoch()),
        Value::from((settings.ttl_ms + META_EXTRA_TTL_MS) as i64),
        Value::Bytes(Bytes::from_static(REDIS_POSITIONED_MAGIC)),
        Value::from(publish.name()),
    ];
    let reply = scripts
        .eval(PUBLISH_SCRIPT, keys(prefix, channel), args, Attempts::Once)
        .await?
        .into_array();
    let [offset, epoch, receivers] = reply.as_slice() else {
        return Err("unexpected answer from the history script".into());
    };
    let position = StreamPosition {
        offset: as_u64(offset).ok_or("bad offset from the history script")?,
        epoch: Epoch::new(&as_text(epoch).ok_or("bad epoch from the history script")?),
    };
    Ok((as_u64(receivers).unwrap_or(0), position))
}

/// What one read returned: the stream's top and entries.
struct Read {
    position: StreamPosition,
    publications: Vec<HistoryPublication>,
}

async fn read(
    scripts: &Scripts,
    prefix: &str,
    channel: &ChannelName,
    settings: &ChannelHistory,
    mode: &str,
    offset: u64,
    count: usize,
) -> Result<Read, String> {
    let args = vec![
        Value::from(fresh_epoch()),
        Value::from((settings.ttl_ms + META_EXTRA_TTL_MS) as i64),
        Value::from(mode.to_string()),
        Value::from(offset.min(i64::MAX as u64) as i64),
        Value::from(count.min(i64::MAX as usize) as i64),
    ];
    let reply = scripts
        .eval(READ_SCRIPT, keys(prefix, channel), args, Attempts::Retried)
        .await?
        .into_array();
    let mut values = reply.into_iter();
    let (Some(epoch), Some(top)) = (values.next(), values.next()) else {
        return Err("unexpected answer from the history script".into());
    };
    let position = StreamPosition {
        offset: as_u64(&top).ok_or("bad top from the history script")?,
        epoch: Epoch::new(&as_text(&epoch).ok_or("bad epoch from the history script")?),
    };
    let mut publications = Vec::new();
    // Bounded: the script returns at most `count` entries.
    while let (Some(offset), Some(data)) = (values.next(), values.next()) {
        publications.push(HistoryPublication {
            offset: as_u64(&offset).ok_or("bad entry id in the stream")?,
            payload: as_bytes(data).ok_or("bad entry in the stream")?,
        });
    }
    Ok(Read {
        position,
        publications,
    })
}

/// Answers one question from Redis.
async fn answer(
    scripts: &Scripts,
    prefix: &str,
    request: &HistoryRequest,
) -> Result<HistoryAnswer, String> {
    let (channel, settings) = (&request.channel, &request.settings);
    match &request.question {
        HistoryQuestion::Subscribe { recover: None } => {
            let top = read(scripts, prefix, channel, settings, "none", 0, 0).await?;
            Ok(HistoryAnswer::Subscribe(HistoryRead::Top(top.position)))
        }
        HistoryQuestion::Subscribe {
            recover: Some(since),
        } => {
            // One more than a recovery may return: enough to tell "too many" from "exact".
            let max = settings.size;
            let found = read(
                scripts,
                prefix,
                channel,
                settings,
                "after",
                since.offset,
                max + 1,
            )
            .await?;
            let read = match check_recovery(since, found.position, found.publications, max) {
                Ok(recovered) => HistoryRead::Recovered(recovered),
                Err(unrecoverable) => HistoryRead::Unrecoverable(unrecoverable),
            };
            Ok(HistoryAnswer::Subscribe(read))
        }
        HistoryQuestion::Page(query) => {
            let (mode, offset) = match (&query.since, query.reverse) {
                (Some(since), false) => ("after", since.offset),
                (None, false) => ("after", 0),
                (Some(since), true) => ("before", since.offset),
                (None, true) => ("last", 0),
            };
            let found = read(
                scripts,
                prefix,
                channel,
                settings,
                mode,
                offset,
                query.limit,
            )
            .await?;
            if let Some(since) = &query.since
                && since.epoch != found.position.epoch
            {
                return Ok(HistoryAnswer::Page(Err(Unrecoverable {
                    reason: UnrecoverableReason::EpochChanged,
                    position: found.position,
                })));
            }
            Ok(HistoryAnswer::Page(Ok(HistoryPage {
                publications: found.publications,
                position: found.position,
            })))
        }
    }
}

/// Answers history questions from the shards, a bounded number at once.
pub async fn serve(scripts: Scripts, prefix: Arc<str>, requests: mpsc::Receiver<HistoryRequest>) {
    requests
        .for_each_concurrent(READS_IN_FLIGHT_MAX, |request| {
            let scripts = scripts.clone();
            let prefix = prefix.clone();
            async move {
                let result = answer(&scripts, &prefix, &request).await;
                let _ = request.reply.send(result);
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_keys_share_one_hash_tag() {
        let channel = ChannelName::new("chat:room-1").unwrap();
        let [stream, meta] = <[String; 2]>::try_from(keys("ws", &channel)).unwrap();
        assert_eq!(stream, "ws:history:{ws:broadcast:chat:room-1}:s");
        assert_eq!(meta, "ws:history:{ws:broadcast:chat:room-1}:m");
        // The pub/sub channel is the keys' hash tag: one slot on a cluster.
        let tag = crate::broker::cluster::topology::hash_slot;
        assert_eq!(tag("ws:broadcast:chat:room-1"), tag(&stream));
        assert_eq!(tag(&stream), tag(&meta));
    }

    #[test]
    fn epochs_differ() {
        assert_ne!(fresh_epoch(), fresh_epoch());
    }
}
