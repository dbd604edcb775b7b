//! The durable state machine: applies committed commands to the
//! [`ClusterState`], persists it, builds and installs snapshots, and
//! publishes every new applied state to subscribers.
//!
//! The applied state (table, last applied log id, membership) is rewritten
//! in one fsynced redb transaction per applied batch; the table is small
//! (VIPs and backends), so this is cheaper than replaying the log on start
//! and means a restarted node comes back exactly where it was.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use std::collections::BTreeMap;

use crate::cluster_state::{ClusterState, PreviousTable, StateAdditions, VipKey};
use crate::encoding::{decode, decode_prefix, encode};
use crate::raft_types::{
    ApplyOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::storage::{begin_durable, blocking, Db, StoreError};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");
/// The format-1 applied record (read when no newer one exists).
const KEY_APPLIED: &str = "applied";
/// The format-2 applied record ([`AppliedRecordV2`], read when no newer one
/// exists).
const KEY_APPLIED_V2: &str = "applied.v2";
/// The applied record as written now ([`AppliedRecordV3`]).
const KEY_APPLIED_V3: &str = "applied.v3";
const KEY_SNAPSHOT: &str = "snapshot";

/// Version of the snapshot payload layout written: 3 carries each VIP's
/// history of previous inputs ([`StateAdditions`]) after the format-1
/// state. Formats 1 and 2 are still read.
pub const SNAPSHOT_FORMAT: u32 = 3;

/// The first snapshot format, still accepted when installing (its
/// additions take their defaults).
pub const SNAPSHOT_FORMAT_V1: u32 = 1;

/// The second snapshot format (one previous input per VIP), still accepted
/// when installing: each previous input becomes a one-entry history.
pub const SNAPSHOT_FORMAT_V2: u32 = 2;

/// Everything the state machine must remember across restarts (in memory:
/// the state with its additions).
#[derive(Debug, Clone, Default)]
struct AppliedRecord {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

/// The format-1 applied record as on disk (key [`KEY_APPLIED`]): the
/// state's serde form has no additions.
#[derive(Serialize, Deserialize)]
struct AppliedRecordV1 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

/// The additions as format 2 laid them out: one previous input per VIP.
#[derive(Serialize, Deserialize)]
struct StateAdditionsV2 {
    connection: crate::cluster_state::ConnectionSettings,
    previous: BTreeMap<VipKey, PreviousTable>,
}

impl From<StateAdditionsV2> for StateAdditions {
    fn from(a: StateAdditionsV2) -> Self {
        StateAdditions {
            connection: a.connection,
            history: a.previous.into_iter().map(|(k, p)| (k, vec![p])).collect(),
        }
    }
}

/// The format-2 applied record as on disk (key [`KEY_APPLIED_V2`]).
#[derive(Serialize, Deserialize)]
struct AppliedRecordV2 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    additions: StateAdditionsV2,
}

/// The applied record as written now (key [`KEY_APPLIED_V3`]).
#[derive(Serialize, Deserialize)]
struct AppliedRecordV3 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    additions: StateAdditions,
}

impl AppliedRecord {
    fn from_v1(r: AppliedRecordV1) -> Self {
        AppliedRecord {
            last_applied: r.last_applied,
            membership: r.membership,
            state: r.state,
        }
    }

    fn from_v2(r: AppliedRecordV2) -> Self {
        Self::from_v3(AppliedRecordV3 {
            last_applied: r.last_applied,
            membership: r.membership,
            state: r.state,
            additions: r.additions.into(),
        })
    }

    fn from_v3(r: AppliedRecordV3) -> Self {
        let mut state = r.state;
        state.set_additions(r.additions);
        AppliedRecord {
            last_applied: r.last_applied,
            membership: r.membership,
            state,
        }
    }

    fn to_v3(&self) -> AppliedRecordV3 {
        AppliedRecordV3 {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.state.clone(),
            additions: self.state.additions(),
        }
    }
}

/// What a format-1 snapshot's bytes contain.
#[derive(Serialize, Deserialize)]
struct SnapshotPayloadV1 {
    format: u32,
    state: ClusterState,
}

/// What a format-2 snapshot's bytes contain.
#[derive(Serialize, Deserialize)]
struct SnapshotPayloadV2 {
    format: u32,
    state: ClusterState,
    additions: StateAdditionsV2,
}

/// What a format-3 snapshot's bytes contain.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    state: ClusterState,
    additions: StateAdditions,
}

/// Encodes `state` as a snapshot payload of the current format.
pub fn encode_snapshot_state(state: &ClusterState) -> Result<Vec<u8>, StoreError> {
    Ok(encode(&SnapshotPayload {
        format: SNAPSHOT_FORMAT,
        state: state.clone(),
        additions: state.additions(),
    })?)
}

/// Decodes a snapshot payload of format 1, 2 or 3.
pub fn decode_snapshot_state(data: &[u8]) -> Result<ClusterState, StoreError> {
    let (mut state, additions) = match decode_prefix::<u32>(data)? {
        SNAPSHOT_FORMAT_V1 => return Ok(decode::<SnapshotPayloadV1>(data)?.state),
        SNAPSHOT_FORMAT_V2 => {
            let payload = decode::<SnapshotPayloadV2>(data)?;
            (payload.state, payload.additions.into())
        }
        SNAPSHOT_FORMAT => {
            let payload = decode::<SnapshotPayload>(data)?;
            (payload.state, payload.additions)
        }
        other => return Err(StoreError::SnapshotFormat(other)),
    };
    state.set_additions(additions);
    Ok(state)
}

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The durable state machine of one node.
pub struct StateMachineStore {
    db: Arc<Db>,
    record: AppliedRecord,
    publisher: watch::Sender<Arc<ClusterState>>,
    snapshots_built: u64,
}

impl StateMachineStore {
    /// Opens (or creates) the state machine database at `path` and loads the
    /// last applied state.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = begin_durable(&db)?;
        let record = {
            let table = txn.open_table(STATE)?;
            // The newest record present wins (an older one is removed when
            // a newer one is written, in the same transaction).
            let record = if let Some(v) = table.get(KEY_APPLIED_V3)? {
                AppliedRecord::from_v3(decode::<AppliedRecordV3>(v.value())?)
            } else if let Some(v) = table.get(KEY_APPLIED_V2)? {
                AppliedRecord::from_v2(decode::<AppliedRecordV2>(v.value())?)
            } else if let Some(v) = table.get(KEY_APPLIED)? {
                AppliedRecord::from_v1(decode::<AppliedRecordV1>(v.value())?)
            } else {
                AppliedRecord::default()
            };
            record
        };
        txn.commit()?;
        let (publisher, _) = watch::channel(Arc::new(record.state.clone()));
        Ok(StateMachineStore {
            db: Arc::new(Db::new(db)),
            record,
            publisher,
            snapshots_built: 0,
        })
    }

    /// Tells when every handle to the database file has been dropped.
    pub(crate) fn release_probe(&self) -> std::sync::Weak<()> {
        self.db.probe()
    }

    /// A receiver of every applied state, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.publisher.subscribe()
    }

    fn publish(&self) {
        let state = &self.record.state;
        self.publisher.send_if_modified(|current| {
            if current.version == state.version && **current == *state {
                false
            } else {
                *current = Arc::new(state.clone());
                true
            }
        });
    }

    async fn persist(&self, snapshot: Option<StoredSnapshot>) -> Result<(), StoreError> {
        let db = self.db.clone();
        let record = encode(&self.record.to_v3())?;
        let snapshot = snapshot.map(|s| encode(&s)).transpose()?;
        blocking(move || {
            let txn = begin_durable(&db)?;
            {
                let mut table = txn.open_table(STATE)?;
                table.insert(KEY_APPLIED_V3, record.as_slice())?;
                // The older records are superseded: never read stale.
                table.remove(KEY_APPLIED_V2)?;
                table.remove(KEY_APPLIED)?;
                if let Some(s) = &snapshot {
                    table.insert(KEY_SNAPSHOT, s.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(STATE)?;
            let value = table.get(KEY_SNAPSHOT)?;
            match value {
                Some(v) => Ok(Some(decode::<StoredSnapshot>(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }
}

/// Builds a snapshot from a copy of the applied state taken when the
/// builder was created, so applying may continue meanwhile.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    record: AppliedRecord,
    snapshot_id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = encode_snapshot_state(&self.record.state)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = SnapshotMeta {
            last_log_id: self.record.last_applied,
            last_membership: self.record.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let db = self.db.clone();
        let bytes = encode(&stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        blocking(move || {
            let txn = begin_durable(&db)?;
            {
                let mut table = txn.open_table(STATE)?;
                table.insert(KEY_SNAPSHOT, bytes.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.record.last_applied, self.record.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            self.record.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => ApplyOutcome::Internal,
                EntryPayload::Normal(command) => match self.record.state.apply(&command) {
                    Ok(version) => ApplyOutcome::Applied { version },
                    Err(e) => ApplyOutcome::Rejected(e),
                },
                EntryPayload::Membership(m) => {
                    self.record.state.set_voters(m.voter_ids().collect());
                    self.record.membership = StoredMembership::new(Some(entry.log_id), m);
                    ApplyOutcome::Internal
                }
            };
            outcomes.push(outcome);
        }
        self.persist(None)
            .await
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.publish();
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let snapshot_id = match self.record.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.index, self.snapshots_built
            ),
            None => format!("0-0-{}", self.snapshots_built),
        };
        SnapshotBuilder {
            db: self.db.clone(),
            record: self.record.clone(),
            snapshot_id,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = decode_snapshot_state(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.record = AppliedRecord {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(Some(stored))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = self
            .load_snapshot()
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_state::{
        Backend, BackendState, ConnectionSettings, FloodAdmission, MaglevInput, PreviousTable,
        Protocol, VipKey,
    };

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The state of `cluster_state`'s golden vector, as format 1 shipped it.
    const V1_STATE: &str = "fb2c0100fc0100010000030102030000";

    /// A format-1 snapshot (format 1 | the format-1 state) still installs,
    /// with the additions at their defaults.
    #[test]
    fn format_1_snapshots_still_decode() {
        let state = decode_snapshot_state(&unhex(&("01".to_string() + V1_STATE))).unwrap();
        assert_eq!(state.version, 300);
        assert_eq!(state.voters, [1, 2, 3].into());
        assert_eq!(state.additions(), StateAdditions::default());
        assert_eq!(state.connection.second_hop_window_secs, 60);
    }

    fn key() -> VipKey {
        VipKey {
            address: "192.0.2.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    /// Since `since`, a 251-slot input with one active backend 10.0.0.`last`.
    fn previous(since: u64, last: u8) -> PreviousTable {
        PreviousTable {
            since_version: since,
            input: MaglevInput {
                table_size: 251,
                backends: vec![Backend {
                    address: std::net::IpAddr::from([10, 0, 0, last]),
                    weight: 1,
                    state: BackendState::Active,
                }],
            },
        }
    }

    /// The state of the golden vectors with `history` as the VIP's history.
    fn with_history(history: Vec<PreviousTable>) -> ClusterState {
        let mut state = ClusterState {
            version: 300,
            ..Default::default()
        };
        state.voters = [1, 2, 3].into();
        state.connection = ConnectionSettings {
            second_hop_window_secs: 0,
            flood_threshold: FloodAdmission::PerSecond(5000),
        };
        state.history.insert(key(), history);
        state
    }

    /// The state the format-2 golden vector holds: one previous input.
    fn with_additions() -> ClusterState {
        with_history(vec![previous(7, 1)])
    }

    /// The format-2 payload of `state` (one previous input per VIP: the
    /// newest), as format 2 wrote it.
    fn encode_format_2(state: &ClusterState) -> Vec<u8> {
        let previous = state
            .history
            .iter()
            .filter_map(|(k, h)| Some((*k, h.first()?.clone())))
            .collect();
        encode(&SnapshotPayloadV2 {
            format: SNAPSHOT_FORMAT_V2,
            state: state.clone(),
            additions: StateAdditionsV2 {
                connection: state.connection,
                previous,
            },
        })
        .unwrap()
    }

    /// Format 2: format | the format-1 state | the additions, pinned; it
    /// decodes to a one-entry history.
    #[test]
    fn golden_format_2_snapshot() {
        let state = with_additions();
        let bytes = encode_format_2(&state);
        // additions: window 0 | 5000/s | 1 previous table: 192.0.2.10:80/tcp,
        // since 7, size 251, 1 backend 10.0.0.1 weight 1 active
        let additions = "00".to_string()
            + "03fb8813"
            + "01"
            + "00c000020a"
            + "50"
            + "00"
            + "07"
            + "fbfb00"
            + "01"
            + "000a000001"
            + "01"
            + "00";
        assert_eq!(hex(&bytes), "02".to_string() + V1_STATE + &additions);
        assert_eq!(decode_snapshot_state(&bytes).unwrap(), state);
    }

    /// The format-3 additions of [`with_history`] with entries since 9
    /// (10.0.0.2) and since 7 (10.0.0.1), hand-derived.
    fn format_3_additions() -> String {
        // window 0 | 5000/s | 1 VIP: 192.0.2.10:80/tcp | a history of 2:
        // since 9, size 251, 1 backend 10.0.0.2 weight 1 active; then
        // since 7, the same with 10.0.0.1
        "00".to_string()
            + "03fb8813"
            + "01"
            + "00c000020a"
            + "50"
            + "00"
            + "02"
            + "09"
            + "fbfb00"
            + "01"
            + "000a000002"
            + "01"
            + "00"
            + "07"
            + "fbfb00"
            + "01"
            + "000a000001"
            + "01"
            + "00"
    }

    /// Format 3: format | the format-1 state | the additions with each
    /// VIP's history (newest first), pinned.
    #[test]
    fn golden_format_3_snapshot() {
        let state = with_history(vec![previous(9, 2), previous(7, 1)]);
        let bytes = encode_snapshot_state(&state).unwrap();
        assert_eq!(
            hex(&bytes),
            "03".to_string() + V1_STATE + &format_3_additions()
        );
        assert_eq!(decode_snapshot_state(&bytes).unwrap(), state);
    }

    /// The applied record `applied.v3`: last applied | membership | the
    /// format-1 state | the format-3 additions, pinned.
    #[test]
    fn golden_applied_record_v3() {
        let record = AppliedRecord {
            last_applied: None,
            membership: StoredMembership::default(),
            state: with_history(vec![previous(9, 2), previous(7, 1)]),
        };
        let bytes = encode(&record.to_v3()).unwrap();
        // no last applied | no membership log id, no configs, no nodes
        let head = "00".to_string() + "00" + "00" + "00";
        assert_eq!(hex(&bytes), head + V1_STATE + &format_3_additions());
        let back = AppliedRecord::from_v3(decode::<AppliedRecordV3>(&bytes).unwrap());
        assert_eq!(back.state, record.state);
    }

    #[test]
    fn unknown_or_truncated_snapshots_are_refused() {
        let bytes = encode_snapshot_state(&with_additions()).unwrap();
        let mut other = bytes.clone();
        other[0] = 4;
        assert!(matches!(
            decode_snapshot_state(&other),
            Err(StoreError::SnapshotFormat(4))
        ));
        for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_snapshot_state(&bytes[..len]).is_err(), "{len}");
        }
    }

    /// A node upgraded in place reads its format-1 applied record, and
    /// writes (and reads back) the record with the additions.
    #[tokio::test]
    async fn the_format_1_applied_record_is_read_then_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(STATE).unwrap();
                let v1 = AppliedRecordV1 {
                    last_applied: None,
                    membership: StoredMembership::default(),
                    state: ClusterState {
                        version: 42,
                        ..Default::default()
                    },
                };
                table
                    .insert(KEY_APPLIED, encode(&v1).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let mut store = StateMachineStore::open(&path).unwrap();
        assert_eq!(store.record.state.version, 42);
        assert_eq!(store.record.state.additions(), StateAdditions::default());
        store.record.state = with_additions();
        store.persist(None).await.unwrap();
        drop(store);
        let store = StateMachineStore::open(&path).unwrap();
        assert_eq!(store.record.state, with_additions());
    }

    /// A node upgraded from format 2 reads its `applied.v2` record (the
    /// previous input becomes a one-entry history), then writes
    /// `applied.v3` and drops the old record.
    #[tokio::test]
    async fn the_format_2_applied_record_is_read_then_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sm.redb");
        let state = with_additions();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(STATE).unwrap();
                let previous = [(key(), previous(7, 1))].into();
                let v2 = AppliedRecordV2 {
                    last_applied: None,
                    membership: StoredMembership::default(),
                    state: state.clone(),
                    additions: StateAdditionsV2 {
                        connection: state.connection,
                        previous,
                    },
                };
                table
                    .insert(KEY_APPLIED_V2, encode(&v2).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let mut store = StateMachineStore::open(&path).unwrap();
        assert_eq!(store.record.state, state);
        assert_eq!(store.record.state.history[&key()], vec![previous(7, 1)]);
        let longer = with_history(vec![previous(9, 2), previous(7, 1)]);
        store.record.state = longer.clone();
        store.persist(None).await.unwrap();
        drop(store);
        let store = StateMachineStore::open(&path).unwrap();
        assert_eq!(store.record.state, longer);
        let db = store.db.clone();
        drop(store);
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(STATE).unwrap();
        assert!(table.get(KEY_APPLIED_V2).unwrap().is_none());
        assert!(table.get(KEY_APPLIED_V3).unwrap().is_some());
    }
}
