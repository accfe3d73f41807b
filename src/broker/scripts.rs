//! Where the Lua scripts of the state kept in Redis run (history streams, channel counts): on
//! the one Redis, or on the master of a cluster that serves the slot of the script's keys.
//! Every script names its keys under one hash tag, so it runs on one master. A script that
//! must not run twice or late (an append) is sent once, never retried.

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

use super::cluster::ClusterSubscriber;
use super::cluster::topology::hash_slot;
use super::redis::COMMAND_TIMEOUT;

/// Whether a script may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// At most once: an append that failed must not be made later, or twice.
    Once,
    /// The client may retry (reads, and writes that set a value).
    Retried,
}

/// The Redis the scripts run on.
#[derive(Clone)]
pub enum Scripts {
    /// One Redis (fred's client).
    Single(Client),
    /// A Redis Cluster: on the owner of the keys' slot, through the cluster component's
    /// connection to that master (it follows one `MOVED`).
    Cluster(ClusterSubscriber),
}

impl Scripts {
    /// Runs `script` with `keys` (all under one hash tag) and `args`. On a cluster every
    /// script is sent once (to the slot's owner, failing fast while it is down).
    pub async fn eval(
        &self,
        script: &'static str,
        keys: Vec<String>,
        args: Vec<Value>,
        attempts: Attempts,
    ) -> Result<Value, String> {
        let slot = keys.first().map_or(0, |key| hash_slot(key));
        let mut all = Vec::with_capacity(2 + keys.len() + args.len());
        all.push(Value::from(script));
        all.push(Value::from(keys.len() as i64));
        all.extend(keys.into_iter().map(Value::from));
        all.extend(args);
        match self {
            Scripts::Single(client) => {
                let command = CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false);
                if attempts == Attempts::Retried {
                    return crate::broker::redis::timed(
                        client.custom::<Value, Value>(command, all),
                    )
                    .await;
                }
                if !client.is_connected() {
                    return Err("Redis is not connected".into());
                }
                let options = Options {
                    max_attempts: Some(1),
                    fail_fast: true,
                    timeout: Some(COMMAND_TIMEOUT),
                    ..Options::default()
                };
                client
                    .with_options(&options)
                    .custom::<Value, Value>(command, all)
                    .await
                    .map_err(|error| error.to_string())
            }
            Scripts::Cluster(cluster) => cluster
                .eval(slot, all)
                .await
                .map_err(|error| error.to_string()),
        }
    }
}
