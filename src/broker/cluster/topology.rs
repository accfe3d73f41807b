//! Which master serves which hash slot: `CLUSTER NODES` parsed, and several nodes' views merged
//! into one slot map by the cluster's own rule (the claim with the greatest config epoch wins).
//!
//! Pure functions over text and typed values: no I/O. It deliberately does not follow replicas
//! (subscribers and publishers talk only to masters) and ignores migration markers
//! (`[slot->-node]`): a slot belongs to its owner until `CLUSTER SETSLOT ... NODE` moves it.
//!
//! Invariants: a slot has at most one owner; a master in the map owns at least one slot.

use std::collections::BTreeMap;

/// Hash slots in a Redis Cluster. Cluster spec: "The key space is split into 16384 slots".
pub const SLOT_COUNT: usize = 16384;
/// Most node lines read from one `CLUSTER NODES` reply (the spec suggests at most ~1000 nodes).
pub const NODES_MAX: usize = 1000;

/// The hash slot of a channel. Cluster spec: "HASH_SLOT = CRC16(key) mod 16384", hashing only
/// the part between the first `{` and the next `}` when that part is not empty (hash tags).
pub fn hash_slot(channel: &str) -> u16 {
    fred::util::redis_keyslot(channel.as_bytes())
}

/// A line of `CLUSTER NODES` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// `CLUSTER NODES`: each line is `<id> <ip:port@cport[,hostname]> <flags> <master>
    /// <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> <slot> ... <slot>`.
    #[error("a CLUSTER NODES line has fewer than 8 fields: {0:?}")]
    MissingFields(String),
    /// The address field is `ip:port@cport`.
    #[error("invalid node address {0:?}")]
    InvalidAddress(String),
    /// The config epoch is a decimal number.
    #[error("invalid config epoch {0:?}")]
    InvalidEpoch(String),
    /// A slot is a number below 16384, or a range `first-last` of them.
    #[error("invalid slot range {0:?}")]
    InvalidSlot(String),
    /// Our limit.
    #[error("more than {NODES_MAX} nodes")]
    TooManyNodes,
}

/// One node as one `CLUSTER NODES` reply describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node id (40 hex characters).
    pub id: String,
    /// `host:port` for clients (the bus port and hostname left out).
    pub address: String,
    /// Flagged `master`.
    pub is_master: bool,
    /// Flagged `fail` (the majority agreed it is down) or `fail?` (this view suspects it).
    pub is_failing: bool,
    /// Usable: not `handshake` and not `noaddr` (address unknown).
    pub is_usable: bool,
    /// Config epoch: a newer claim on a slot has a greater epoch.
    pub config_epoch: u64,
    /// Slot ranges served, inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// Parses a `CLUSTER NODES` reply.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeRecord>, TopologyError> {
    let mut records = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if records.len() == NODES_MAX {
            return Err(TopologyError::TooManyNodes);
        }
        records.push(parse_line(line)?);
    }
    Ok(records)
}

fn parse_line(line: &str) -> Result<NodeRecord, TopologyError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(TopologyError::MissingFields(line.into()));
    }
    // `ip:port@cport[,hostname]`: the client address is before the `@`.
    let address = fields[1].split('@').next().unwrap_or_default();
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok_and(|port| port > 0));
    let flags: Vec<&str> = fields[2].split(',').collect();
    let has = |flag: &str| flags.contains(&flag);
    let is_usable = !has("handshake") && !has("noaddr");
    if is_usable && !port_ok {
        return Err(TopologyError::InvalidAddress(fields[1].into()));
    }
    let config_epoch = fields[6]
        .parse()
        .map_err(|_| TopologyError::InvalidEpoch(fields[6].into()))?;
    let mut slots = Vec::new();
    // Migration markers `[slot->-id]` / `[slot-<-id]` are left out: the slot is still ours.
    for field in fields[8..].iter().filter(|field| !field.starts_with('[')) {
        slots.push(parse_slot_range(field)?);
    }
    Ok(NodeRecord {
        id: fields[0].into(),
        address: address.into(),
        is_master: has("master"),
        is_failing: has("fail") || has("fail?"),
        is_usable,
        config_epoch,
        slots,
    })
}

fn parse_slot_range(field: &str) -> Result<(u16, u16), TopologyError> {
    let slot = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|&slot| usize::from(slot) < SLOT_COUNT)
            .ok_or_else(|| TopologyError::InvalidSlot(field.into()))
    };
    let (first, last) = match field.split_once('-') {
        Some((first, last)) => (slot(first)?, slot(last)?),
        None => (slot(field)?, slot(field)?),
    };
    if first > last {
        return Err(TopologyError::InvalidSlot(field.into()));
    }
    Ok((first, last))
}

/// A master in the merged map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Node id.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Some view flags it `fail` or `fail?`.
    pub is_failing: bool,
}

/// The merged slot map: each slot's owner, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Masters that own at least one slot.
    masters: Vec<Master>,
    /// Index into `masters` per slot (`SLOT_COUNT` entries).
    owners: Vec<Option<u16>>,
}

impl Default for Topology {
    fn default() -> Topology {
        Topology {
            masters: Vec::new(),
            owners: vec![None; SLOT_COUNT],
        }
    }
}

impl Topology {
    /// Merges several nodes' views. Cluster spec: "if a hash slot is claimed by two nodes,
    /// the one with the greater configEpoch wins" (ties: the smaller node id, so the merge is
    /// deterministic).
    pub fn merge(views: &[Vec<NodeRecord>]) -> Topology {
        // slot -> (epoch, node id) of the winning claim so far.
        let mut claims: Vec<Option<(u64, &str)>> = vec![None; SLOT_COUNT];
        let mut nodes: BTreeMap<&str, &NodeRecord> = BTreeMap::new();
        let mut failing: BTreeMap<&str, bool> = BTreeMap::new();
        for record in views.iter().flatten() {
            *failing.entry(&record.id).or_default() |= record.is_failing;
            if !record.is_master || !record.is_usable {
                continue;
            }
            nodes.entry(&record.id).or_insert(record);
            for &(first, last) in &record.slots {
                let range = usize::from(first)..=usize::from(last);
                for claim in &mut claims[range] {
                    let wins = match *claim {
                        None => true,
                        Some((epoch, id)) => {
                            (record.config_epoch, std::cmp::Reverse(record.id.as_str()))
                                > (epoch, std::cmp::Reverse(id))
                        }
                    };
                    if wins {
                        *claim = Some((record.config_epoch, &record.id));
                    }
                }
            }
        }
        let mut topology = Topology::default();
        let mut index_of: BTreeMap<&str, u16> = BTreeMap::new();
        for (slot, claim) in claims.iter().enumerate() {
            let Some((_, id)) = claim else { continue };
            let index = *index_of.entry(id).or_insert_with(|| {
                let record = nodes[id];
                topology.masters.push(Master {
                    id: record.id.clone(),
                    address: record.address.clone(),
                    is_failing: failing.get(id).copied().unwrap_or(false),
                });
                (topology.masters.len() - 1) as u16
            });
            topology.owners[slot] = Some(index);
        }
        topology
    }

    /// The master that serves `slot`, if any claims it.
    pub fn owner(&self, slot: u16) -> Option<&Master> {
        let index = (*self.owners.get(usize::from(slot))?)?;
        self.masters.get(usize::from(index))
    }

    /// Masters that own at least one slot.
    pub fn masters(&self) -> &[Master] {
        &self.masters
    }

    /// Every slot has an owner.
    pub fn is_complete(&self) -> bool {
        self.owners.iter().all(Option::is_some)
    }

    /// Nothing known yet.
    pub fn is_empty(&self) -> bool {
        self.masters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the `CLUSTER NODES` documentation.
    const DOC_EXAMPLE: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003,hostname3 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005,hostname5 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006,hostname6 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn hash_slots_follow_the_spec() {
        // Cluster spec: the CRC16 of "123456789" is 0x31C3; 0x31C3 mod 16384 = 12739.
        assert_eq!(hash_slot("123456789"), 12739);
        // Hash tags: only "user1000" is hashed.
        assert_eq!(
            hash_slot("{user1000}.following"),
            hash_slot("{user1000}.followers")
        );
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        // "foo{}{bar}": the first {} is empty, the whole key is hashed.
        assert_ne!(hash_slot("foo{}{bar}"), hash_slot("bar"));
        // "foo{{bar}}zap": the substring "{bar" is hashed.
        assert_eq!(hash_slot("foo{{bar}}zap"), hash_slot("{bar"));
        // "foo{bar}{zap}": "bar" is hashed.
        assert_eq!(hash_slot("foo{bar}{zap}"), hash_slot("bar"));
    }

    #[test]
    fn the_documentation_example_parses() {
        let records = parse_cluster_nodes(DOC_EXAMPLE).unwrap();
        assert_eq!(records.len(), 6);
        let myself = &records[5];
        assert_eq!(myself.address, "127.0.0.1:30001");
        assert!(myself.is_master && myself.is_usable && !myself.is_failing);
        assert_eq!(myself.slots, vec![(0, 5460)]);
        assert!(!records[0].is_master);
        let topology = Topology::merge(&[records]);
        assert!(topology.is_complete());
        assert_eq!(topology.masters().len(), 3);
        assert_eq!(topology.owner(0).unwrap().address, "127.0.0.1:30001");
        assert_eq!(topology.owner(5461).unwrap().address, "127.0.0.1:30002");
        assert_eq!(topology.owner(16383).unwrap().address, "127.0.0.1:30003");
    }

    #[test]
    fn migration_markers_and_single_slots_are_read() {
        let line = "e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-10 12 [11->-67ed] [13-<-292f]";
        let record = parse_line(line).unwrap();
        assert_eq!(record.slots, vec![(0, 10), (12, 12)]);
    }

    #[test]
    fn the_greater_config_epoch_wins_a_slot() {
        // A stale view still gives slot 100 to A (epoch 1); the source itself and the target
        // say B (epoch 7, bumped when it took the slot) serves it.
        let stale = parse_cluster_nodes(
            "a 127.0.0.1:1@2 master - 0 0 1 connected 0-200\nb 127.0.0.1:3@4 master - 0 0 2 connected 201-300\n",
        )
        .unwrap();
        let fresh = parse_cluster_nodes(
            "a 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-99 101-200\nb 127.0.0.1:3@4 master - 0 0 7 connected 100 201-300\n",
        )
        .unwrap();
        for views in [vec![stale.clone(), fresh.clone()], vec![fresh, stale]] {
            let topology = Topology::merge(&views);
            assert_eq!(topology.owner(100).unwrap().id, "b");
            assert_eq!(topology.owner(99).unwrap().id, "a");
            assert_eq!(topology.owner(301), None);
            assert!(!topology.is_complete());
        }
    }

    #[test]
    fn a_failed_master_keeps_its_slots_until_a_replica_takes_them() {
        let before = parse_cluster_nodes(
            "a 127.0.0.1:1@2 master,fail - 0 0 1 connected 0-16383\nr 127.0.0.1:3@4 slave a 0 0 1 connected\n",
        )
        .unwrap();
        let topology = Topology::merge(std::slice::from_ref(&before));
        assert_eq!(topology.owner(5).unwrap().address, "127.0.0.1:1");
        assert!(topology.owner(5).unwrap().is_failing);
        let after = parse_cluster_nodes(
            "a 127.0.0.1:1@2 master,fail - 0 0 1 connected\nr 127.0.0.1:3@4 master - 0 0 8 connected 0-16383\n",
        )
        .unwrap();
        let topology = Topology::merge(&[before, after]);
        assert_eq!(topology.owner(5).unwrap().address, "127.0.0.1:3");
        assert_eq!(topology.masters().len(), 1);
    }

    #[test]
    fn handshake_nodes_claim_nothing() {
        let records =
            parse_cluster_nodes("h :0@0 handshake,master - 0 0 9 connected 0-16383\n").unwrap();
        assert!(Topology::merge(&[records]).is_empty());
    }

    #[test]
    fn short_lines_are_refused() {
        assert!(matches!(
            parse_cluster_nodes("a 127.0.0.1:1@2 master"),
            Err(TopologyError::MissingFields(_))
        ));
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(matches!(
            parse_cluster_nodes("a nowhere master - 0 0 1 connected"),
            Err(TopologyError::InvalidAddress(_))
        ));
    }

    #[test]
    fn bad_epochs_are_refused() {
        assert!(matches!(
            parse_cluster_nodes("a 127.0.0.1:1@2 master - 0 0 x connected"),
            Err(TopologyError::InvalidEpoch(_))
        ));
    }

    #[test]
    fn bad_slots_are_refused() {
        for bad in ["16384", "5-3", "x", "1-"] {
            let line = format!("a 127.0.0.1:1@2 master - 0 0 1 connected {bad}");
            assert!(
                matches!(
                    parse_cluster_nodes(&line),
                    Err(TopologyError::InvalidSlot(_))
                ),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,300}") {
            if let Ok(records) = parse_cluster_nodes(&text) {
                let topology = Topology::merge(&[records]);
                let _ = topology.owner(0);
            }
        }
    }

    #[test]
    fn too_many_nodes_are_refused() {
        let text = "a 127.0.0.1:1@2 slave b 0 0 1 connected\n".repeat(NODES_MAX + 1);
        assert_eq!(parse_cluster_nodes(&text), Err(TopologyError::TooManyNodes));
    }
}
