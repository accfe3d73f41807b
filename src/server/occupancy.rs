//! A shard's part in the channel counts shared across nodes (`--redis`, see
//! [`crate::broker::occupancy`]): it reports the channels whose count changed, at most once per
//! `REPORT_PERIOD`, and adds the other nodes' counts to its own node's when the Pusher API asks.

use std::rc::Rc;
use std::sync::Arc;

use futures::SinkExt;
use futures::channel::oneshot;

use super::shard::Shard;
use std::time::Instant;

use crate::apps::{SubscriptionCountEvents, WebhookEventKind};
use crate::broker::occupancy::{
    ChannelTotal, ENTRIES_PER_REPORT_MAX, OccupancyEntry, OccupancyQuery, OccupancyQuestion,
    OccupancyReport, QUERY_TIMEOUT, REPORT_PERIOD, Transition,
};
use crate::channel::{AppSlot, ChannelName};

/// Reports this shard's changed channel counts every `REPORT_PERIOD`: to the subscriber core
/// with Redis; without it, into the node's ledger of channel transitions, when some
/// application wants `channel_occupied` / `channel_vacated` webhooks.
pub async fn run_reports(shard: Rc<Shard>) {
    let mut destination = match &shard.redis {
        Some(link) => Destination::Redis(link.occupancy.reports.clone()),
        None if wants_transitions(&shard) || wants_counts(&shard) => Destination::Ledger,
        None => return,
    };
    shard.registry.borrow_mut().track_occupancy();
    loop {
        glommio::timer::sleep(REPORT_PERIOD).await;
        // Bounded: each round takes up to ENTRIES_PER_REPORT_MAX changes out of a finite set.
        loop {
            let changes = shard
                .registry
                .borrow_mut()
                .take_occupancy_changes(ENTRIES_PER_REPORT_MAX);
            if changes.is_empty() {
                break;
            }
            let entries = changes
                .into_iter()
                .filter_map(|(app, channel, count)| {
                    Some(OccupancyEntry {
                        app_id: app_id(&shard, app)?,
                        channel,
                        count: count as u64,
                    })
                })
                .collect();
            let report = OccupancyReport {
                shard: shard.id.0,
                entries,
            };
            match &mut destination {
                Destination::Redis(reports) => {
                    if reports.send(report).await.is_err() {
                        log::error!("shard {}: the Redis core stopped", shard.id);
                        return;
                    }
                }
                Destination::Ledger => {
                    let (transitions, totals) = shard
                        .shared
                        .ledger
                        .lock()
                        .expect("never poisoned")
                        .apply(&report, Instant::now());
                    send_transitions(&shard, transitions);
                    publish_counts(&shard, totals).await;
                }
            }
        }
        if let Destination::Ledger = destination {
            let due = shard
                .shared
                .ledger
                .lock()
                .expect("never poisoned")
                .due(Instant::now());
            send_transitions(&shard, due);
        }
    }
}

/// Where a shard's reports go.
enum Destination {
    /// The subscriber core.
    Redis(futures::channel::mpsc::Sender<OccupancyReport>),
    /// This node's ledger.
    Ledger,
}

/// Does any application want channel transition webhooks?
fn wants_transitions(shard: &Shard) -> bool {
    let Some(webhooks) = &shard.shared.webhooks else {
        return false;
    };
    (0..shard.apps.len()).any(|slot| {
        let app = AppSlot(slot as u16);
        webhooks.wants(app, WebhookEventKind::ChannelOccupied)
            || webhooks.wants(app, WebhookEventKind::ChannelVacated)
    })
}

/// Does any application want `pusher_internal:subscription_count` events?
fn wants_counts(shard: &Shard) -> bool {
    shard
        .apps
        .iter()
        .any(|app| app.limits.subscription_count_events == SubscriptionCountEvents::On)
}

/// Publishes `pusher_internal:subscription_count` for the changed channels of the applications
/// that want it (to every shard of this node: without Redis there is no other node).
async fn publish_counts(shard: &Shard, totals: Vec<ChannelTotal>) {
    let publications: Vec<_> = totals
        .into_iter()
        .filter_map(|total| {
            let (slot, app) = shard.apps.slot_by_id(&total.app_id)?;
            if app.limits.subscription_count_events != SubscriptionCountEvents::On {
                return None;
            }
            let channel = ChannelName::new(&total.channel)?;
            crate::wire::pusher::subscription_count_publication(slot, &channel, total.count)
        })
        .collect();
    if publications.is_empty() {
        return;
    }
    if let Err(refused) = shard.publish_many(publications).await {
        log::debug!(
            "shard {}: subscription_count events not taken by {} shards",
            shard.id,
            refused.len()
        );
    }
}

fn send_transitions(shard: &Shard, transitions: Vec<Transition>) {
    let Some(webhooks) = &shard.shared.webhooks else {
        return;
    };
    if transitions.is_empty() {
        return;
    }
    let app_ids: Vec<String> = shard.apps.iter().map(|app| app.id.clone()).collect();
    for transition in transitions {
        crate::broker::redis::send_transition(webhooks, &app_ids, transition);
    }
}

/// The id of the application in `slot` (channels outside any application are not reported:
/// nothing asks for them).
fn app_id(shard: &Shard, slot: AppSlot) -> Option<Arc<str>> {
    shard.apps.get(slot).map(|app| Arc::from(app.id.as_str()))
}

/// The other nodes' counts for `question` about `slot`'s channels: empty without Redis, an
/// error when Redis could not answer in time.
pub async fn other_nodes(
    shard: &Shard,
    slot: AppSlot,
    question: OccupancyQuestion,
) -> Result<Vec<(ChannelName, u64)>, String> {
    let Some(mut queries) = shard
        .redis
        .as_ref()
        .map(|link| link.occupancy.queries.clone())
    else {
        return Ok(Vec::new());
    };
    let Some(app_id) = app_id(shard, slot) else {
        return Ok(Vec::new());
    };
    let (reply, answer) = oneshot::channel();
    let query = OccupancyQuery {
        app_id,
        question,
        reply,
    };
    let asked = async {
        queries
            .send(query)
            .await
            .map_err(|_| "the Redis core stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the Redis core stopped".to_string())?
    };
    glommio::timer::timeout(QUERY_TIMEOUT, async { Ok(asked.await) })
        .await
        .unwrap_or_else(|_| Err("Redis did not answer in time".into()))
}

/// `name`'s subscribers on every node: this node's now, the others' as last reported.
pub async fn subscription_count(
    shard: &Shard,
    slot: AppSlot,
    name: &ChannelName,
) -> Result<u64, String> {
    let here = shard.subscription_count(slot, name).await;
    let there = other_nodes(shard, slot, OccupancyQuestion::One(name.clone())).await?;
    Ok(here + there.iter().map(|(_, count)| count).sum::<u64>())
}

/// The channels of `slot` starting with `prefix` on every node, with their counts added up
/// (at most `limit`).
pub async fn channel_counts(
    shard: &Shard,
    slot: AppSlot,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(ChannelName, u64)>, String> {
    let here = shard.channel_counts(slot, prefix, limit).await;
    let question = OccupancyQuestion::Prefix {
        prefix: prefix.to_string(),
        limit,
    };
    let there = other_nodes(shard, slot, question).await?;
    let mut totals: std::collections::BTreeMap<ChannelName, u64> = here.into_iter().collect();
    for (name, count) in there {
        *totals.entry(name).or_default() += count;
    }
    Ok(totals
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .take(limit)
        .collect())
}
