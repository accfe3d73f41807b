//! Channel occupancy across nodes (`--redis`): how many connections every node has on each
//! channel, kept in Redis so that any node answers the Pusher channel queries (`occupied`,
//! `subscription_count`, `GET /channels`, a trigger's `info`) for all of them.
//!
//! Each shard reports the channels whose local count changed, at most once per
//! [`REPORT_PERIOD`]; the subscriber core writes them into one hash per node and shard
//! (`{PREFIX:occupancy}:NODE:SHARD`, field `APP_ID \0 CHANNEL`, value the count) and keeps a
//! lease on it: the hash expires [`LEASE`] after its last refresh, and a sorted set
//! (`{PREFIX:occupancy}:nodes`) lists each hash with its lease's end, in Redis time. The core
//! refreshes every [`REFRESH_PERIOD`], and writes its whole mirror again when Redis lost the
//! hash (a Redis restarted without persistence).
//!
//! A question is answered with this node's own counts, asked from its shards at that moment,
//! plus the other nodes' counts read from Redis in one script (hashes whose lease ended are
//! skipped). So an answer is exact for this node and at most `REPORT_PERIOD` plus one Redis
//! round trip old for the others (about 1 s), and a node that died without a word stops being
//! counted at most `LEASE` (5 s) after its last refresh.
//!
//! Every key is under the one hash tag `{PREFIX:occupancy}`, so a script sees them all in one
//! slot (on a Redis Cluster, on the master that serves it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};

use super::history::{as_u64, fresh_epoch as random_id};
use super::redis::RedisStatus;
use super::scripts::{Attempts, Scripts};
use crate::channel::ChannelName;
use crate::telemetry::counters::RedisCounter;

/// How often a shard reports the channels whose count changed.
pub const REPORT_PERIOD: Duration = Duration::from_secs(1);
/// How often the core refreshes its leases.
const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// How long a node's counts outlive its last refresh.
const LEASE: Duration = Duration::from_secs(5);
/// Most entries in one report (a shard splits larger changes).
pub const ENTRIES_PER_REPORT_MAX: usize = 1000;
/// Questions answered at once.
const QUERIES_IN_FLIGHT_MAX: usize = 16;
/// How long a question may take before the shard gives up on the other nodes' counts.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Leases that ended longer ago than this are removed from the node set when a report is
/// written (keeps the set bounded by the live nodes).
const FORGET_AFTER_MS: u64 = 60_000;
/// How long a node's hash outlives its lease: long enough for a sweeper to read what a dead
/// node had.
const KEEP_AFTER_LEASE: Duration = Duration::from_secs(60);
/// How long a channel stays occupied after its last subscriber left, in case one comes back
/// (Pusher: `channel_vacated` "delayed about 3 s").
pub const VACATE_DELAY: Duration = Duration::from_secs(3);
/// Most vacates one sweep returns.
const VACATES_PER_SWEEP_MAX: usize = 1000;

/// Writes a shard's changes and refreshes its lease. KEYS: node set, shard hash, occupied set,
/// vacating set. ARGV: lease ms, forget-after ms, how long the hash outlives its lease (so a
/// sweeper can still read a dead node's channels), what to find (`0` nothing, `1`
/// transitions, `2` totals, `3` both), vacate delay ms, then (field, count) pairs (count 0
/// deletes). Returns `{kept, {occupied fields...}, {field, total, ...}}`: kept is 1 if the hash
/// existed after the changes (0: Redis lost it, or it is empty); the occupied fields are the
/// channels this report made occupied on no node before; the totals are every changed
/// channel's count on every live node.
const REPORT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local lease = tonumber(ARGV[1])
local kept = redis.call('PEXPIRE', KEYS[2], lease + tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now + lease, KEYS[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local occupied = {}
local totals = {}
local mode = tonumber(ARGV[4])
if mode == 0 then return {kept, occupied, totals} end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
for i = 6, #ARGV, 2 do
  local field = ARGV[i]
  local total = 0
  for _, hash in ipairs(live) do
    local count = redis.call('HGET', hash, field)
    if count then total = total + tonumber(count) end
  end
  if mode >= 2 then
    totals[#totals + 1] = field
    totals[#totals + 1] = total
  end
  if mode % 2 == 1 then
    local was = redis.call('HEXISTS', KEYS[3], field) == 1
    if total > 0 and not was then
      redis.call('HSET', KEYS[3], field, 1)
      if redis.call('ZREM', KEYS[4], field) == 0 then occupied[#occupied + 1] = field end
    elseif total == 0 and was then
      redis.call('HDEL', KEYS[3], field)
      redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), field)
    end
  end
end
return {kept, occupied, totals}
"#;

/// Finds the transitions no report makes: a dead node's channels (its lease ended: its hash
/// is read, deleted, and every channel it had is counted again) and the vacates whose delay
/// passed. KEYS: node set, occupied set, vacating set. ARGV: vacate delay ms, most vacates
/// returned. Returns the vacated fields (each returned by exactly one sweeper).
const SWEEP_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
local fields = {}
for _, hash in ipairs(dead) do
  for _, field in ipairs(redis.call('HKEYS', hash)) do fields[#fields + 1] = field end
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], hash)
end
if #fields > 0 then
  local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
  for _, field in ipairs(fields) do
    local total = 0
    for _, hash in ipairs(live) do
      local count = redis.call('HGET', hash, field)
      if count then total = total + tonumber(count) end
    end
    if total == 0 and redis.call('HDEL', KEYS[2], field) == 1 then
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), field)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, field in ipairs(due) do redis.call('ZREM', KEYS[3], field) end
return due
"#;

/// Adds up the other nodes' counts. KEYS: node set. ARGV: this node's key prefix (skipped),
/// mode (`one` or `prefix`), the field or field prefix, the most fields returned. Returns the
/// sum (`one`) or a flat list of field, sum (`prefix`).
const COUNT_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hashes = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local own = ARGV[1]
local wanted = ARGV[3]
if ARGV[2] == 'one' then
  local total = 0
  for _, hash in ipairs(hashes) do
    if string.sub(hash, 1, #own) ~= own then
      local count = redis.call('HGET', hash, wanted)
      if count then total = total + tonumber(count) end
    end
  end
  return total
end
local limit = tonumber(ARGV[4])
local sums = {}
local names = {}
for _, hash in ipairs(hashes) do
  if string.sub(hash, 1, #own) ~= own then
    local entries = redis.call('HGETALL', hash)
    for i = 1, #entries, 2 do
      local field = entries[i]
      if string.sub(field, 1, #wanted) == wanted then
        if sums[field] == nil and #names < limit then
          names[#names + 1] = field
          sums[field] = 0
        end
        if sums[field] ~= nil then
          sums[field] = sums[field] + tonumber(entries[i + 1])
        end
      end
    end
  end
end
local out = {}
for _, field in ipairs(names) do
  out[#out + 1] = field
  out[#out + 1] = sums[field]
end
return out
"#;

/// One channel's count on one shard.
#[derive(Debug, Clone)]
pub struct OccupancyEntry {
    /// The application's id (the same on every node, unlike its slot).
    pub app_id: Arc<str>,
    /// The channel.
    pub channel: ChannelName,
    /// Connections subscribed on that shard now (0: none).
    pub count: u64,
}

/// A shard's changed counts.
#[derive(Debug)]
pub struct OccupancyReport {
    /// Which shard.
    pub shard: usize,
    /// At most [`ENTRIES_PER_REPORT_MAX`] entries.
    pub entries: Vec<OccupancyEntry>,
}

/// What a question asks about one application's channels.
#[derive(Debug, Clone)]
pub enum OccupancyQuestion {
    /// One channel's count.
    One(ChannelName),
    /// The channels whose names start with the prefix (at most `limit`).
    Prefix {
        /// The name prefix (may be empty).
        prefix: String,
        /// Most channels answered.
        limit: usize,
    },
}

/// A question about the other nodes' counts.
#[derive(Debug)]
pub struct OccupancyQuery {
    /// The application's id.
    pub app_id: Arc<str>,
    /// What is asked.
    pub question: OccupancyQuestion,
    /// The channels with the other nodes' counts added up (one entry for `One`, even at 0).
    pub reply: oneshot::Sender<Result<Vec<(ChannelName, u64)>, String>>,
}

/// What the shards hold to report and ask.
#[derive(Debug, Clone)]
pub struct OccupancyLink {
    /// Reports of changed counts.
    pub reports: mpsc::Sender<OccupancyReport>,
    /// Questions.
    pub queries: mpsc::Sender<OccupancyQuery>,
}

/// The core's ends of an [`OccupancyLink`].
pub struct OccupancyRequests {
    reports: mpsc::Receiver<OccupancyReport>,
    queries: mpsc::Receiver<OccupancyQuery>,
}

/// A link and its receiving ends; `capacity` bounds each queue.
pub fn channel(capacity: usize) -> (OccupancyLink, OccupancyRequests) {
    let (reports, report_receiver) = mpsc::channel(capacity);
    let (queries, query_receiver) = mpsc::channel(capacity);
    (
        OccupancyLink { reports, queries },
        OccupancyRequests {
            reports: report_receiver,
            queries: query_receiver,
        },
    )
}

/// The Redis key names of one node.
#[derive(Debug, Clone)]
struct Keys {
    /// The sorted set of every node's hashes with their lease's end.
    nodes: String,
    /// This node's hashes start with this.
    own_prefix: String,
    /// The channels occupied on some node (field to 1).
    occupied: String,
    /// Channels whose last subscriber left, with when they count as vacated.
    vacating: String,
}

impl Keys {
    fn new(prefix: &str, node: &str) -> Keys {
        let tag = format!("{{{prefix}:occupancy}}");
        Keys {
            nodes: format!("{tag}:nodes"),
            own_prefix: format!("{tag}:{node}:"),
            occupied: format!("{tag}:occupied"),
            vacating: format!("{tag}:vacating"),
        }
    }

    fn shard(&self, shard: usize) -> String {
        format!("{}{shard}", self.own_prefix)
    }
}

/// A field: `APP_ID \0 CHANNEL` (a NUL is in neither).
fn field(app_id: &str, channel: &str) -> Bytes {
    let mut out = Vec::with_capacity(app_id.len() + 1 + channel.len());
    out.extend_from_slice(app_id.as_bytes());
    out.push(0);
    out.extend_from_slice(channel.as_bytes());
    Bytes::from(out)
}

/// Runs the occupancy part of the core until the shards hang up: reports and lease refreshes
/// in one task, questions (a bounded number at once) in another.
pub async fn serve(
    scripts: Scripts,
    prefix: Arc<str>,
    status: Arc<RedisStatus>,
    requests: OccupancyRequests,
    sinks: Sinks,
) {
    let keys = Keys::new(&prefix, &random_id());
    let writer = write_reports(
        scripts.clone(),
        keys.clone(),
        status.clone(),
        requests.reports,
        sinks,
    );
    let answers = answer_queries(scripts, keys, status, requests.queries);
    futures::join!(writer, answers);
}

/// What this node wrote for one shard, to write it all again if Redis lost it.
#[derive(Default)]
struct Mirror {
    counts: HashMap<Bytes, u64>,
    /// The last write failed or found the hash gone: write everything at the next refresh.
    stale: bool,
}

async fn write_reports(
    scripts: Scripts,
    keys: Keys,
    status: Arc<RedisStatus>,
    mut reports: mpsc::Receiver<OccupancyReport>,
    mut sinks: Sinks,
) {
    let mut mirrors: HashMap<usize, Mirror> = HashMap::new();
    let mut refresh = tokio::time::interval(REFRESH_PERIOD);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mode = sinks.mode();
    loop {
        tokio::select! {
            report = reports.next() => {
                let Some(report) = report else { return };
                let mirror = mirrors.entry(report.shard).or_default();
                let mut changes = Vec::with_capacity(report.entries.len());
                for entry in report.entries {
                    let field = field(&entry.app_id, entry.channel.as_str());
                    if entry.count == 0 {
                        mirror.counts.remove(&field);
                    } else {
                        mirror.counts.insert(field.clone(), entry.count);
                    }
                    changes.push((field, entry.count));
                }
                let written = write(&scripts, &keys, report.shard, &changes, mode).await;
                note_write(&status, mirror, written, &mut sinks);
            }
            _ = refresh.tick() => {
                for (&shard, mirror) in mirrors.iter_mut() {
                    let changes: Vec<(Bytes, u64)> = if mirror.stale {
                        mirror.counts.iter().map(|(field, &count)| (field.clone(), count)).collect()
                    } else {
                        Vec::new()
                    };
                    let written = write(&scripts, &keys, shard, &changes, mode).await;
                    note_write(&status, mirror, written, &mut sinks);
                }
                if let Some(sink) = &mut sinks.transitions {
                    match sweep(&scripts, &keys).await {
                        Ok(vacated) => {
                            for field in vacated {
                                pass_on(sink, &field, TransitionKind::Vacated);
                            }
                        }
                        Err(error) => log::debug!("redis: occupancy sweep failed: {error}"),
                    }
                }
            }
        }
    }
}

/// Which way a channel's occupancy changed, across every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    /// Its first subscriber on any node.
    Occupied,
    /// No subscriber on any node for [`VACATE_DELAY`].
    Vacated,
}

/// A channel's occupancy transition (each is found by exactly one node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The application's id.
    pub app_id: String,
    /// The channel.
    pub channel: String,
    /// Which way.
    pub kind: TransitionKind,
}

/// Where transitions go (the webhook queue: it never waits).
pub type TransitionSink = Box<dyn FnMut(Transition)>;

/// A channel's count on every node after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTotal {
    /// The application's id.
    pub app_id: String,
    /// The channel.
    pub channel: String,
    /// Connections subscribed on every live node.
    pub count: u64,
}

/// Where changed channels' totals go (the `pusher_internal:subscription_count` publisher).
pub type TotalSink = Box<dyn FnMut(ChannelTotal)>;

/// What the occupancy service finds besides storing counts.
#[derive(Default)]
pub struct Sinks {
    /// Channel transitions (webhooks).
    pub transitions: Option<TransitionSink>,
    /// Changed channels' totals.
    pub totals: Option<TotalSink>,
}

impl Sinks {
    /// The report script's mode: bit 1 transitions, bit 2 totals.
    fn mode(&self) -> u8 {
        u8::from(self.transitions.is_some()) + 2 * u8::from(self.totals.is_some())
    }
}

fn total_of(field: &[u8], count: u64) -> Option<ChannelTotal> {
    let text = std::str::from_utf8(field).ok()?;
    let (app_id, channel) = text.split_once('\0')?;
    Some(ChannelTotal {
        app_id: app_id.to_string(),
        channel: channel.to_string(),
        count,
    })
}

/// Passes a transition of `field` on.
fn pass_on(sink: &mut TransitionSink, field: &[u8], kind: TransitionKind) {
    if let Some(transition) = transition_of(field, kind) {
        sink(transition);
    }
}

fn transition_of(field: &[u8], kind: TransitionKind) -> Option<Transition> {
    let text = std::str::from_utf8(field).ok()?;
    let (app_id, channel) = text.split_once('\0')?;
    Some(Transition {
        app_id: app_id.to_string(),
        channel: channel.to_string(),
        kind,
    })
}

/// The vacates due now, and a dead node's channels counted again.
async fn sweep(scripts: &Scripts, keys: &Keys) -> Result<Vec<Bytes>, String> {
    let reply = scripts
        .eval(
            SWEEP_SCRIPT,
            vec![
                keys.nodes.clone(),
                keys.occupied.clone(),
                keys.vacating.clone(),
            ],
            vec![
                Value::from(VACATE_DELAY.as_millis() as i64),
                Value::from(VACATES_PER_SWEEP_MAX as i64),
            ],
            Attempts::Once,
        )
        .await?;
    Ok(fields_of(reply))
}

/// The byte strings of a script's array answer.
fn fields_of(value: Value) -> Vec<Bytes> {
    let Value::Array(values) = value else {
        return Vec::new();
    };
    values
        .into_iter()
        .filter_map(|value| match value {
            Value::Bytes(bytes) => Some(bytes),
            Value::String(text) => Some(Bytes::from(text.to_string())),
            _ => None,
        })
        .collect()
}

/// Records how a write went: a failed write, or a hash Redis no longer has while this node
/// has counts in it, makes the mirror stale (written whole at the next refresh).
fn note_write(
    status: &RedisStatus,
    mirror: &mut Mirror,
    written: Result<Written, String>,
    sinks: &mut Sinks,
) {
    match written {
        Ok(written) => {
            mirror.stale = !written.kept && !mirror.counts.is_empty();
            status.add(RedisCounter::OccupancyWrites, 1);
            if let Some(sink) = &mut sinks.transitions {
                for field in written.occupied {
                    pass_on(sink, &field, TransitionKind::Occupied);
                }
            }
            if let Some(sink) = &mut sinks.totals {
                for (field, count) in written.totals {
                    if let Some(total) = total_of(&field, count) {
                        sink(total);
                    }
                }
            }
        }
        Err(error) => {
            log::debug!("redis: occupancy write failed: {error}");
            mirror.stale = true;
            status.add(RedisCounter::OccupancyFailures, 1);
        }
    }
}

/// What a report's script said.
struct Written {
    /// The hash exists afterwards.
    kept: bool,
    /// The channels it made occupied.
    occupied: Vec<Bytes>,
    /// The changed channels' totals (when asked).
    totals: Vec<(Bytes, u64)>,
}

/// One script: the changes, the lease (and the transitions, when `transitions`).
async fn write(
    scripts: &Scripts,
    keys: &Keys,
    shard: usize,
    changes: &[(Bytes, u64)],
    mode: u8,
) -> Result<Written, String> {
    let mut args = Vec::with_capacity(5 + 2 * changes.len());
    args.push(Value::from(LEASE.as_millis() as i64));
    args.push(Value::from(FORGET_AFTER_MS as i64));
    args.push(Value::from(KEEP_AFTER_LEASE.as_millis() as i64));
    args.push(Value::from(i64::from(mode)));
    args.push(Value::from(VACATE_DELAY.as_millis() as i64));
    for (field, count) in changes {
        args.push(Value::Bytes(field.clone()));
        args.push(Value::from(count.to_string()));
    }
    let reply = scripts
        .eval(
            REPORT_SCRIPT,
            vec![
                keys.nodes.clone(),
                keys.shard(shard),
                keys.occupied.clone(),
                keys.vacating.clone(),
            ],
            args,
            // Sent once: a report's transitions must not be found twice.
            if mode % 2 == 1 {
                Attempts::Once
            } else {
                Attempts::Retried
            },
        )
        .await?;
    let Value::Array(values) = reply else {
        return Err("unexpected answer from the occupancy script".into());
    };
    let mut values = values.into_iter();
    let kept = values.next().as_ref().and_then(as_u64) == Some(1);
    let occupied = values.next().map(fields_of).unwrap_or_default();
    let totals = match values.next() {
        Some(Value::Array(pairs)) => pairs
            .chunks_exact(2)
            .filter_map(|pair| {
                let field = fields_of(Value::Array(vec![pair[0].clone()])).pop()?;
                Some((field, as_u64(&pair[1])?))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Written {
        kept,
        occupied,
        totals,
    })
}

async fn answer_queries(
    scripts: Scripts,
    keys: Keys,
    status: Arc<RedisStatus>,
    queries: mpsc::Receiver<OccupancyQuery>,
) {
    queries
        .for_each_concurrent(QUERIES_IN_FLIGHT_MAX, |query| {
            let (scripts, keys, status) = (scripts.clone(), keys.clone(), status.clone());
            async move {
                let answer = count(&scripts, &keys, &query.app_id, &query.question).await;
                if answer.is_err() {
                    status.add(RedisCounter::OccupancyFailures, 1);
                }
                let _ = query.reply.send(answer);
            }
        })
        .await;
}

/// The other nodes' counts for `question`.
async fn count(
    scripts: &Scripts,
    keys: &Keys,
    app_id: &str,
    question: &OccupancyQuestion,
) -> Result<Vec<(ChannelName, u64)>, String> {
    let (mode, wanted, limit) = match question {
        OccupancyQuestion::One(channel) => ("one", field(app_id, channel.as_str()), 1),
        OccupancyQuestion::Prefix { prefix, limit } => ("prefix", field(app_id, prefix), *limit),
    };
    let args = vec![
        Value::from(keys.own_prefix.clone()),
        Value::from(mode),
        Value::Bytes(wanted),
        Value::from(limit.min(i64::MAX as usize) as i64),
    ];
    let reply = scripts
        .eval(
            COUNT_SCRIPT,
            vec![keys.nodes.clone()],
            args,
            Attempts::Retried,
        )
        .await?;
    match (question, reply) {
        (OccupancyQuestion::One(channel), total) => {
            let total = as_u64(&total).ok_or("unexpected answer from the occupancy script")?;
            Ok(vec![(channel.clone(), total)])
        }
        (OccupancyQuestion::Prefix { .. }, Value::Array(values)) => {
            let skip = app_id.len() + 1;
            let mut out = Vec::with_capacity(values.len() / 2);
            let mut values = values.into_iter();
            // Bounded: the script returns at most `limit` pairs.
            while let (Some(name), Some(total)) = (values.next(), values.next()) {
                let name = match &name {
                    Value::Bytes(bytes) => std::str::from_utf8(bytes).ok().map(str::to_string),
                    Value::String(text) => Some(text.to_string()),
                    _ => None,
                };
                let channel = name
                    .and_then(|name| name.get(skip..).and_then(ChannelName::new))
                    .ok_or("bad channel name from the occupancy script")?;
                let total = as_u64(&total).ok_or("bad count from the occupancy script")?;
                out.push((channel, total));
            }
            Ok(out)
        }
        (OccupancyQuestion::Prefix { .. }, Value::Null) => Ok(Vec::new()),
        _ => Err("unexpected answer from the occupancy script".into()),
    }
}

/// The transitions of one node's channels without Redis: the same rules as the scripts, over
/// the shards' reports (each shard's count of each channel).
#[derive(Debug, Default)]
pub struct Ledger {
    /// Each channel's count on each shard (only channels with subscribers).
    counts: HashMap<Bytes, HashMap<usize, u64>>,
    /// Channels whose last subscriber left, with when they count as vacated.
    vacating: HashMap<Bytes, std::time::Instant>,
}

impl Ledger {
    /// Applies a shard's report; returns the transitions it made (occupied only: vacates wait
    /// for [`Ledger::due`]) and the changed channels' totals on the node.
    pub fn apply(
        &mut self,
        report: &OccupancyReport,
        now: std::time::Instant,
    ) -> (Vec<Transition>, Vec<ChannelTotal>) {
        let mut out = Vec::new();
        let mut totals = Vec::new();
        for entry in &report.entries {
            let field = field(&entry.app_id, entry.channel.as_str());
            let was = self.counts.contains_key(&field);
            if entry.count > 0 {
                self.counts
                    .entry(field.clone())
                    .or_default()
                    .insert(report.shard, entry.count);
            } else if let Some(shards) = self.counts.get_mut(&field) {
                shards.remove(&report.shard);
                if shards.is_empty() {
                    self.counts.remove(&field);
                }
            }
            let is = self.counts.contains_key(&field);
            let total = self
                .counts
                .get(&field)
                .map_or(0, |shards| shards.values().sum());
            totals.extend(total_of(&field, total));
            match (was, is) {
                // Back within the vacate delay: neither vacated nor occupied again.
                (false, true) if self.vacating.remove(&field).is_some() => {}
                (false, true) => out.extend(transition_of(&field, TransitionKind::Occupied)),
                (true, false) => {
                    self.vacating.insert(field, now + VACATE_DELAY);
                }
                _ => {}
            }
        }
        (out, totals)
    }

    /// The vacates whose delay passed by `now`.
    pub fn due(&mut self, now: std::time::Instant) -> Vec<Transition> {
        let due: Vec<Bytes> = self
            .vacating
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(field, _)| field.clone())
            .collect();
        due.into_iter()
            .filter_map(|field| {
                self.vacating.remove(&field);
                transition_of(&field, TransitionKind::Vacated)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_node_shares_one_hash_tag() {
        let keys = Keys::new("ws", "n1");
        assert_eq!(keys.nodes, "{ws:occupancy}:nodes");
        assert_eq!(keys.shard(3), "{ws:occupancy}:n1:3");
        assert!(keys.shard(3).starts_with(&keys.own_prefix));
    }

    #[test]
    fn a_node_ledger_finds_each_transition_once_and_delays_vacates() {
        let report = |shard, count| OccupancyReport {
            shard,
            entries: vec![OccupancyEntry {
                app_id: Arc::from("1"),
                channel: ChannelName::new("room").unwrap(),
                count,
            }],
        };
        let occupied = |kind| {
            vec![Transition {
                app_id: "1".into(),
                channel: "room".into(),
                kind,
            }]
        };
        let mut ledger = Ledger::default();
        let t0 = std::time::Instant::now();
        assert_eq!(
            ledger.apply(&report(0, 1), t0).0,
            occupied(TransitionKind::Occupied)
        );
        // A second shard's subscriber changes nothing; the channel is vacated when both left,
        // VACATE_DELAY later.
        let (transitions, totals) = ledger.apply(&report(1, 2), t0);
        assert!(transitions.is_empty());
        assert_eq!(totals[0].count, 3, "both shards' subscribers");
        assert!(ledger.apply(&report(0, 0), t0).0.is_empty());
        assert!(ledger.apply(&report(1, 0), t0).0.is_empty());
        assert!(ledger.due(t0 + VACATE_DELAY / 2).is_empty());
        assert_eq!(
            ledger.due(t0 + VACATE_DELAY),
            occupied(TransitionKind::Vacated)
        );
        assert!(ledger.due(t0 + VACATE_DELAY * 2).is_empty(), "once");
        // Back within the delay: neither vacated nor occupied again.
        ledger.apply(&report(0, 1), t0);
        ledger.apply(&report(0, 0), t0);
        assert!(
            ledger
                .apply(&report(1, 1), t0 + VACATE_DELAY / 2)
                .0
                .is_empty()
        );
        assert!(ledger.due(t0 + VACATE_DELAY * 2).is_empty());
    }

    #[test]
    fn fields_separate_the_app_from_the_channel() {
        assert_eq!(&field("12", "news")[..], b"12\0news");
        // A prefix question on app "1" never matches app "12"'s channels.
        assert!(!field("12", "news").starts_with(&field("1", "")));
    }
}
