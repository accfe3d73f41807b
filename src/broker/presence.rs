//! Presence channel membership, one list per channel for every node: who is a member, with
//! how many connections, and their `user_info`.
//!
//! Without Redis the list is this node's, in memory ([`MemoryPresence`], shared by the shards
//! under a lock that is held only for one map operation, never on the fan-out path). With
//! `--redis` / `--redis-cluster` it is in Redis, changed only by scripts that decide in one
//! atomic step whether a join is a user's first connection and a leave its last one, so
//! `member_added` / `member_removed` are sent exactly once across all nodes:
//!
//! - `{PREFIX:presence:APP_ID:CHANNEL}:conns`: field `NODE SOCKET_ID`, value the user id;
//! - `…:users`: user id to its number of connections;
//! - `…:info`: user id to its `user_info` JSON text (empty: none).
//!
//! Every node holds a lease (`{PREFIX:presence}:nodes`, a sorted set of lease ends in Redis
//! time) refreshed every [`REFRESH_PERIOD`] and lists the channels it has members in
//! (`{PREFIX:presence}:node:NODE`). Every node also sweeps: a lease that ended more than
//! [`LEASE`] ago is claimed by one sweeper (one script), whose members are removed channel by
//! channel, with a `member_removed` for each user left with no connection. So a node killed
//! without a word loses its members at most `LEASE + REFRESH_PERIOD` (6 s) after its last
//! refresh.
//!
//! Imports point down: channel names and the script runner, nothing of shards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use super::history::{as_u64, fresh_epoch as random_id};
use super::scripts::{Attempts, Scripts};
use crate::channel::{AppSlot, ChannelName};

/// How often a node refreshes its lease and sweeps for ended ones.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// How long a node's members outlive its last refresh.
pub const LEASE: Duration = Duration::from_secs(5);
/// How long a sweeper holds a claimed node before another may claim it again.
const CLAIM: Duration = Duration::from_secs(30);
/// Most connections of one channel a sweep looks at in one script.
const REAP_BATCH_MAX: usize = 10_000;
/// Requests answered at once.
const IN_FLIGHT_MAX: usize = 32;
/// How long a user's departure waits before its `member_removed` webhook, cancelled if the
/// user comes back meanwhile (Pusher: "delayed about 3 s").
pub const LEAVE_DELAY: Duration = Duration::from_secs(3);

/// A presence member as stored: the user id and the `user_info` JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// The user id.
    pub user_id: String,
    /// `user_info` JSON text (`None`: none given).
    pub user_info: Option<String>,
}

/// A join's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Joined: every member now (this one included), and whether this was the user's first
    /// connection (then the others get `member_added`).
    Joined {
        /// The members, distinct by user id (at most the channel's limit).
        members: Vec<StoredMember>,
        /// The user was not a member before.
        first_connection: bool,
        /// It was, until less than [`LEAVE_DELAY`] ago: its `member_removed` webhook is
        /// cancelled, and so is this `member_added` one.
        returning: bool,
    },
    /// The user is new and the channel already has its most members.
    Full,
}

/// A leave's outcome: the user id when it was that user's last connection.
pub type LeaveOutcome = Option<String>;

/// Which presence channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PresenceChannel {
    /// The application's namespace on this node.
    pub app: AppSlot,
    /// The application's id (the same on every node).
    pub app_id: Arc<str>,
    /// The channel.
    pub channel: ChannelName,
}

/// What a shard asks.
#[derive(Debug)]
pub enum PresenceCommand {
    /// A connection joins (idempotent per connection).
    Join {
        /// The channel.
        channel: PresenceChannel,
        /// The connection's socket id.
        socket_id: String,
        /// Who.
        member: StoredMember,
        /// The channel's most members.
        max_members: usize,
        /// The answer.
        reply: oneshot::Sender<Result<JoinOutcome, String>>,
    },
    /// A connection leaves (nothing if it was not a member).
    Leave {
        /// The channel.
        channel: PresenceChannel,
        /// The connection's socket id.
        socket_id: String,
        /// The answer.
        reply: oneshot::Sender<Result<LeaveOutcome, String>>,
    },
    /// After [`LEAVE_DELAY`]: is the user still gone (then its `member_removed` webhook goes
    /// out)? True once per departure, across every node.
    ConfirmLeft {
        /// The channel.
        channel: PresenceChannel,
        /// The user who left.
        user_id: String,
        /// The answer.
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// The members now.
    Members {
        /// The channel.
        channel: PresenceChannel,
        /// The answer.
        reply: oneshot::Sender<Result<Vec<StoredMember>, String>>,
    },
}

/// One channel's members on this node (no Redis).
#[derive(Debug, Default)]
struct ChannelMembers {
    /// Socket id to user id.
    connections: HashMap<String, String>,
    /// User id to (connections, user_info).
    users: HashMap<String, (usize, Option<String>)>,
}

/// Every presence channel's members on this node (no Redis). Bounded by the connections'
/// memberships: an entry exists only while a connection is a member.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    channels: HashMap<(AppSlot, ChannelName), ChannelMembers>,
    /// Users whose last connection left, until their departure is confirmed or cancelled
    /// (bounded: one entry per departure, removed by [`MemoryPresence::confirm_left`], which
    /// the leaving shard always calls).
    leaving: HashMap<(AppSlot, ChannelName, String), ()>,
}

impl MemoryPresence {
    /// See [`PresenceCommand::Join`].
    pub fn join(
        &mut self,
        channel: &PresenceChannel,
        socket_id: &str,
        member: StoredMember,
        max_members: usize,
    ) -> JoinOutcome {
        let key = (channel.app, channel.channel.clone());
        let members = self.channels.entry(key.clone()).or_default();
        let mut first_connection = false;
        let mut returning = false;
        if !members.connections.contains_key(socket_id) {
            if let Some((count, _)) = members.users.get_mut(&member.user_id) {
                *count += 1;
            } else if members.users.len() >= max_members {
                if members.connections.is_empty() {
                    self.channels.remove(&key);
                }
                return JoinOutcome::Full;
            } else {
                first_connection = true;
                members
                    .users
                    .insert(member.user_id.clone(), (1, member.user_info.clone()));
            }
            let leaving = (channel.app, channel.channel.clone(), member.user_id.clone());
            returning = first_connection && self.leaving.remove(&leaving).is_some();
            members
                .connections
                .insert(socket_id.to_string(), member.user_id);
        }
        let members = listed(self.channels.get(&key).expect("joined above"));
        JoinOutcome::Joined {
            members,
            first_connection,
            returning,
        }
    }

    /// See [`PresenceCommand::ConfirmLeft`].
    pub fn confirm_left(&mut self, channel: &PresenceChannel, user_id: &str) -> bool {
        let key = (channel.app, channel.channel.clone(), user_id.to_string());
        self.leaving.remove(&key).is_some()
    }

    /// See [`PresenceCommand::Leave`].
    pub fn leave(&mut self, channel: &PresenceChannel, socket_id: &str) -> LeaveOutcome {
        let key = (channel.app, channel.channel.clone());
        let members = self.channels.get_mut(&key)?;
        let user_id = members.connections.remove(socket_id)?;
        let last = match members.users.get_mut(&user_id) {
            Some((count, _)) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                members.users.remove(&user_id);
                true
            }
        };
        if members.connections.is_empty() {
            self.channels.remove(&key);
        }
        if last {
            self.leaving
                .insert((channel.app, channel.channel.clone(), user_id.clone()), ());
        }
        last.then_some(user_id)
    }

    /// See [`PresenceCommand::Members`].
    pub fn members(&self, channel: &PresenceChannel) -> Vec<StoredMember> {
        self.channels
            .get(&(channel.app, channel.channel.clone()))
            .map(listed)
            .unwrap_or_default()
    }
}

fn listed(members: &ChannelMembers) -> Vec<StoredMember> {
    members
        .users
        .iter()
        .map(|(user_id, (_, user_info))| StoredMember {
            user_id: user_id.clone(),
            user_info: user_info.clone(),
        })
        .collect()
}

/// Joins. KEYS: conns, users, info, leaving. ARGV: `NODE SOCKET`, user id, user_info (empty:
/// none), most members. Returns `{'full'}` or `{first (0: no, 1: yes, 2: yes and returning
/// within the leave delay), info hash as a flat list}`.
const JOIN_SCRIPT: &str = r#"
local first = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
    if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then
      return {'full'}
    end
    first = 1
    if redis.call('HDEL', KEYS[4], ARGV[2]) == 1 then first = 2 end
    redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return {first, redis.call('HGETALL', KEYS[3])}
"#;

/// Leaves. KEYS: conns, users, info, leaving. ARGV: `NODE SOCKET`, leaving ttl ms. Returns
/// the user id when it was that user's last connection (then marked leaving), `''` when not,
/// nil when the connection was no member.
const LEAVE_SCRIPT: &str = r#"
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HINCRBY', KEYS[2], user, -1)
if left <= 0 then
  redis.call('HDEL', KEYS[2], user)
  redis.call('HDEL', KEYS[3], user)
  redis.call('HSET', KEYS[4], user, 1)
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
  return user
end
return ''
"#;

/// Removes a dead node's connections from one channel. KEYS: conns, users, info. ARGV: the
/// field prefix `NODE `, most fields looked at. Returns the users left with no connection.
const REAP_SCRIPT: &str = r#"
local gone = {}
local entries = redis.call('HGETALL', KEYS[1])
local prefix = ARGV[1]
local seen = 0
for i = 1, #entries, 2 do
  if seen >= tonumber(ARGV[2]) then break end
  seen = seen + 1
  if string.sub(entries[i], 1, #prefix) == prefix then
    local user = entries[i + 1]
    redis.call('HDEL', KEYS[1], entries[i])
    local left = redis.call('HINCRBY', KEYS[2], user, -1)
    if left <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call('HDEL', KEYS[3], user)
      gone[#gone + 1] = user
    end
  end
end
return gone
"#;

/// Refreshes this node's lease and claims at most one node whose lease ended. KEYS: node
/// set. ARGV: this node, lease ms, claim ms. Returns the claimed node's id or nil.
const LEASE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #ended == 0 then return false end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ended[1])
return ended[1]
"#;

/// The keys of one channel's membership.
fn channel_keys(prefix: &str, channel: &PresenceChannel) -> [String; 4] {
    let base = channel_base(prefix, &channel.app_id, channel.channel.as_str());
    [
        format!("{base}:conns"),
        format!("{base}:users"),
        format!("{base}:info"),
        format!("{base}:leaving"),
    ]
}

/// `{PREFIX:presence:APP_ID:CHANNEL}`: one hash tag, so a channel's keys share a slot.
fn channel_base(prefix: &str, app_id: &str, channel: &str) -> String {
    format!("{{{prefix}:presence:{app_id}:{channel}}}")
}

/// The node-level keys.
#[derive(Debug, Clone)]
struct NodeKeys {
    nodes: String,
    node_prefix: String,
}

impl NodeKeys {
    fn new(prefix: &str) -> NodeKeys {
        NodeKeys {
            nodes: format!("{{{prefix}:presence}}:nodes"),
            node_prefix: format!("{{{prefix}:presence}}:node:"),
        }
    }

    fn channels_of(&self, node: &str) -> String {
        format!("{}{node}", self.node_prefix)
    }
}

/// A channel's identity as the node's channel set lists it: `APP_ID \0 CHANNEL`.
fn listed_channel(app_id: &str, channel: &str) -> String {
    format!("{app_id}\0{channel}")
}

/// What the presence service tells the rest of the core: users removed by a sweep (their
/// `member_removed` must be published by the caller, on `(app id, channel)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptMember {
    /// The application's id.
    pub app_id: String,
    /// The channel.
    pub channel: String,
    /// The user who has no connection left.
    pub user_id: String,
}

/// The shards' end of the service.
pub type PresenceLink = mpsc::Sender<PresenceCommand>;

/// A link and its receiving end.
pub fn channel(capacity: usize) -> (PresenceLink, mpsc::Receiver<PresenceCommand>) {
    mpsc::channel(capacity)
}

/// Runs the Redis presence service until the shards hang up: commands (a bounded number at
/// once), and the lease with its sweep; `swept` takes the members a sweep removed.
pub async fn serve(
    scripts: Scripts,
    prefix: Arc<str>,
    commands: mpsc::Receiver<PresenceCommand>,
    swept: mpsc::Sender<SweptMember>,
) {
    let node = random_id();
    let keys = NodeKeys::new(&prefix);
    let local: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let answers = commands.for_each_concurrent(IN_FLIGHT_MAX, |command| {
        let (scripts, prefix, node, keys, local) = (
            scripts.clone(),
            prefix.clone(),
            node.clone(),
            keys.clone(),
            local.clone(),
        );
        async move { answer(&scripts, &prefix, &node, &keys, &local, command).await }
    });
    let sweeper = sweep(
        scripts.clone(),
        prefix.clone(),
        node.clone(),
        keys.clone(),
        swept,
    );
    futures::pin_mut!(answers);
    futures::pin_mut!(sweeper);
    // The sweeper never ends by itself; the service ends with the commands.
    futures::future::select(answers, sweeper).await;
}

async fn answer(
    scripts: &Scripts,
    prefix: &str,
    node: &str,
    keys: &NodeKeys,
    local: &std::sync::Mutex<HashMap<String, usize>>,
    command: PresenceCommand,
) {
    match command {
        PresenceCommand::Join {
            channel,
            socket_id,
            member,
            max_members,
            reply,
        } => {
            let listed = listed_channel(&channel.app_id, channel.channel.as_str());
            let first_here = {
                let mut local = local.lock().expect("never poisoned: no panics inside");
                let count = local.entry(listed.clone()).or_default();
                *count += 1;
                *count == 1
            };
            if first_here {
                // Listed before the join, so a sweep after this node's death finds it.
                let _ = scripts
                    .eval(
                        "return redis.call('SADD', KEYS[1], ARGV[1])",
                        vec![keys.channels_of(node)],
                        vec![Value::from(listed.clone())],
                        Attempts::Retried,
                    )
                    .await;
            }
            let result = join(
                scripts,
                prefix,
                node,
                &channel,
                &socket_id,
                member,
                max_members,
            )
            .await;
            if !matches!(result, Ok(JoinOutcome::Joined { .. })) {
                forget_local(scripts, keys, node, local, &listed).await;
            }
            let _ = reply.send(result);
        }
        PresenceCommand::Leave {
            channel,
            socket_id,
            reply,
        } => {
            let keys_of_channel = channel_keys(prefix, &channel).to_vec();
            let field = format!("{node} {socket_id}");
            // The leaving mark outlives the delay (the confirmation removes it).
            let mark_ms = (LEAVE_DELAY * 4).as_millis() as i64;
            let result = scripts
                .eval(
                    LEAVE_SCRIPT,
                    keys_of_channel,
                    vec![Value::from(field), Value::from(mark_ms)],
                    Attempts::Retried,
                )
                .await;
            let (was_member, outcome) = match result {
                Ok(Value::Null) => (false, Ok(None)),
                Ok(value) => (true, Ok(value.as_string().filter(|user| !user.is_empty()))),
                Err(error) => (false, Err(error)),
            };
            if was_member {
                let listed = listed_channel(&channel.app_id, channel.channel.as_str());
                forget_local(scripts, keys, node, local, &listed).await;
            }
            let _ = reply.send(outcome);
        }
        PresenceCommand::ConfirmLeft {
            channel,
            user_id,
            reply,
        } => {
            let [_, _, _, leaving] = channel_keys(prefix, &channel);
            let result = scripts
                .eval(
                    "return redis.call('HDEL', KEYS[1], ARGV[1])",
                    vec![leaving],
                    vec![Value::from(user_id)],
                    Attempts::Once,
                )
                .await
                .map(|value| as_u64(&value) == Some(1));
            let _ = reply.send(result);
        }
        PresenceCommand::Members { channel, reply } => {
            let [_, _, info, _] = channel_keys(prefix, &channel);
            let result = scripts
                .eval(
                    "return redis.call('HGETALL', KEYS[1])",
                    vec![info],
                    Vec::new(),
                    Attempts::Retried,
                )
                .await
                .map(members_of);
            let _ = reply.send(result);
        }
    }
}

/// One connection fewer of this node in a channel; the channel leaves the node's list with
/// the last.
async fn forget_local(
    scripts: &Scripts,
    keys: &NodeKeys,
    node: &str,
    local: &std::sync::Mutex<HashMap<String, usize>>,
    listed: &str,
) {
    let last = {
        let mut local = local.lock().expect("never poisoned: no panics inside");
        match local.get_mut(listed) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                local.remove(listed);
                true
            }
            None => false,
        }
    };
    if last {
        let _ = scripts
            .eval(
                "return redis.call('SREM', KEYS[1], ARGV[1])",
                vec![keys.channels_of(node)],
                vec![Value::from(listed.to_string())],
                Attempts::Retried,
            )
            .await;
    }
}

async fn join(
    scripts: &Scripts,
    prefix: &str,
    node: &str,
    channel: &PresenceChannel,
    socket_id: &str,
    member: StoredMember,
    max_members: usize,
) -> Result<JoinOutcome, String> {
    let keys_of_channel = channel_keys(prefix, channel).to_vec();
    let args = vec![
        Value::from(format!("{node} {socket_id}")),
        Value::from(member.user_id),
        Value::from(member.user_info.unwrap_or_default()),
        Value::from(max_members as i64),
    ];
    // Sent once: a join that timed out may have happened; the caller leaves again if it
    // gives up on the connection.
    let reply = scripts
        .eval(JOIN_SCRIPT, keys_of_channel, args, Attempts::Once)
        .await?;
    let Value::Array(parts) = reply else {
        return Err(format!("unexpected join answer: {reply:?}"));
    };
    match parts.as_slice() {
        [Value::String(full)] if &**full == "full" => Ok(JoinOutcome::Full),
        [first, hash] => Ok(JoinOutcome::Joined {
            first_connection: matches!(as_u64(first), Some(1 | 2)),
            returning: as_u64(first) == Some(2),
            members: members_of(hash.clone()),
        }),
        _ => Err(format!("unexpected join answer: {parts:?}")),
    }
}

/// An `info` hash's flat list as members.
fn members_of(value: Value) -> Vec<StoredMember> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .chunks_exact(2)
        .filter_map(|pair| {
            let user_id = pair[0].as_string()?;
            let info = pair[1].as_string().unwrap_or_default();
            Some(StoredMember {
                user_id,
                user_info: (!info.is_empty()).then_some(info),
            })
        })
        .collect()
}

/// Refreshes the lease every `REFRESH_PERIOD`; removes the members of nodes whose lease ended.
async fn sweep(
    scripts: Scripts,
    prefix: Arc<str>,
    node: String,
    keys: NodeKeys,
    mut swept: mpsc::Sender<SweptMember>,
) {
    let mut tick = tokio::time::interval(REFRESH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let claimed = scripts
            .eval(
                LEASE_SCRIPT,
                vec![keys.nodes.clone()],
                vec![
                    Value::from(node.clone()),
                    Value::from(LEASE.as_millis() as i64),
                    Value::from(CLAIM.as_millis() as i64),
                ],
                Attempts::Retried,
            )
            .await;
        let dead = match claimed {
            Ok(value) => match value.as_string() {
                Some(dead) if dead != node => dead,
                _ => continue,
            },
            Err(error) => {
                log::debug!("redis: presence lease: {error}");
                continue;
            }
        };
        log::info!("redis: presence: node {dead}'s lease ended; removing its members");
        for member in reap(&scripts, &prefix, &keys, &dead).await {
            if swept.send(member).await.is_err() {
                return;
            }
        }
    }
}

/// Removes every member of `dead` channel by channel; then forgets the node.
async fn reap(scripts: &Scripts, prefix: &str, keys: &NodeKeys, dead: &str) -> Vec<SweptMember> {
    let mut gone = Vec::new();
    let listed = scripts
        .eval(
            "return redis.call('SMEMBERS', KEYS[1])",
            vec![keys.channels_of(dead)],
            Vec::new(),
            Attempts::Retried,
        )
        .await;
    let Ok(Value::Array(channels)) = listed else {
        return gone;
    };
    let field_prefix = format!("{dead} ");
    for listed in channels {
        let Some(listed) = listed.as_string() else {
            continue;
        };
        let Some((app_id, channel)) = listed.split_once('\0') else {
            continue;
        };
        let base = channel_base(prefix, app_id, channel);
        let reply = scripts
            .eval(
                REAP_SCRIPT,
                vec![
                    format!("{base}:conns"),
                    format!("{base}:users"),
                    format!("{base}:info"),
                ],
                vec![
                    Value::from(field_prefix.clone()),
                    Value::from(REAP_BATCH_MAX as i64),
                ],
                Attempts::Retried,
            )
            .await;
        if let Ok(Value::Array(users)) = reply {
            gone.extend(users.into_iter().filter_map(|user| {
                Some(SweptMember {
                    app_id: app_id.to_string(),
                    channel: channel.to_string(),
                    user_id: user.as_string()?,
                })
            }));
        }
    }
    let _ = scripts
        .eval(
            "redis.call('DEL', KEYS[2]) return redis.call('ZREM', KEYS[1], ARGV[1])",
            vec![keys.nodes.clone(), keys.channels_of(dead)],
            vec![Value::from(dead.to_string())],
            Attempts::Retried,
        )
        .await;
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> PresenceChannel {
        PresenceChannel {
            app: AppSlot::DEFAULT,
            app_id: Arc::from("1"),
            channel: ChannelName::new("presence-room").unwrap(),
        }
    }

    fn member(id: &str) -> StoredMember {
        StoredMember {
            user_id: id.into(),
            user_info: Some(format!("{{\"name\":\"{id}\"}}")),
        }
    }

    #[test]
    fn a_user_is_one_member_however_many_connections_it_has() {
        let mut book = MemoryPresence::default();
        let JoinOutcome::Joined {
            first_connection, ..
        } = book.join(&room(), "1.1", member("bob"), 100)
        else {
            panic!("joined")
        };
        assert!(first_connection);
        let JoinOutcome::Joined {
            first_connection,
            members,
            ..
        } = book.join(&room(), "1.2", member("bob"), 100)
        else {
            panic!("joined")
        };
        assert!(!first_connection);
        assert_eq!(members.len(), 1);
        // A repeated join of one connection changes nothing.
        book.join(&room(), "1.2", member("bob"), 100);
        assert_eq!(book.leave(&room(), "1.1"), None);
        assert_eq!(book.leave(&room(), "1.2"), Some("bob".to_string()));
        assert_eq!(book.leave(&room(), "1.2"), None);
        assert!(book.members(&room()).is_empty());
        assert!(
            book.channels.is_empty(),
            "nothing is kept for an empty channel"
        );
    }

    #[test]
    fn a_user_back_within_the_leave_delay_is_returning_and_its_departure_is_not_confirmed() {
        let mut book = MemoryPresence::default();
        book.join(&room(), "1.1", member("bob"), 100);
        assert_eq!(book.leave(&room(), "1.1"), Some("bob".to_string()));
        assert!(matches!(
            book.join(&room(), "1.2", member("bob"), 100),
            JoinOutcome::Joined {
                first_connection: true,
                returning: true,
                ..
            }
        ));
        assert!(
            !book.confirm_left(&room(), "bob"),
            "cancelled by the return"
        );
        assert_eq!(book.leave(&room(), "1.2"), Some("bob".to_string()));
        assert!(
            book.confirm_left(&room(), "bob"),
            "gone for good: confirmed once"
        );
        assert!(!book.confirm_left(&room(), "bob"));
        assert!(book.leaving.is_empty());
    }

    #[test]
    fn a_full_channel_refuses_new_users_but_not_their_other_connections() {
        let mut book = MemoryPresence::default();
        book.join(&room(), "1.1", member("a"), 2);
        book.join(&room(), "1.2", member("b"), 2);
        assert_eq!(book.join(&room(), "1.3", member("c"), 2), JoinOutcome::Full);
        assert!(matches!(
            book.join(&room(), "1.4", member("a"), 2),
            JoinOutcome::Joined {
                first_connection: false,
                ..
            }
        ));
    }

    #[test]
    fn keys_of_a_channel_share_one_hash_tag() {
        for key in &channel_keys("ws", &room()) {
            assert!(key.starts_with("{ws:presence:1:presence-room}:"), "{key}");
        }
    }
}
