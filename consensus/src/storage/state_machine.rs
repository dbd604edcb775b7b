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

use crate::cluster_state::ClusterState;
use crate::encoding::{decode, encode};
use crate::raft_types::{
    ApplyOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::storage::{begin_durable, blocking, Db, StoreError};

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT: &str = "snapshot";

/// Version of the snapshot payload layout.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Everything the state machine must remember across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedRecord {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

/// What a snapshot's bytes contain.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    state: ClusterState,
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
            let value = table.get(KEY_APPLIED)?;
            match value {
                Some(v) => decode::<AppliedRecord>(v.value())?,
                None => AppliedRecord::default(),
            }
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
        let record = encode(&self.record)?;
        let snapshot = snapshot.map(|s| encode(&s)).transpose()?;
        blocking(move || {
            let txn = begin_durable(&db)?;
            {
                let mut table = txn.open_table(STATE)?;
                table.insert(KEY_APPLIED, record.as_slice())?;
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
        let payload = SnapshotPayload {
            format: SNAPSHOT_FORMAT,
            state: self.record.state.clone(),
        };
        let data = encode(&payload).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
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
        let payload: SnapshotPayload =
            decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        if payload.format != SNAPSHOT_FORMAT {
            let e = StoreError::SnapshotFormat(payload.format);
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &e).into());
        }
        self.record = AppliedRecord {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state: payload.state,
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
