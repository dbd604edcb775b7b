//! Durable Raft log and vote, in a redb database.
//!
//! Every mutation is one redb write transaction committed with
//! `Durability::Immediate` (fsync before returning), so an entry reported as
//! flushed to openraft — and therefore possibly counted towards a commit
//! quorum — survives a crash. redb checksums its pages, so a torn write is
//! detected on open instead of being read back as garbage.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{StorageIOError, Vote};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::encoding::{decode, encode};
use crate::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::{begin_durable, blocking, Db, StoreError};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// The committed index as last persisted by the log store.
#[derive(Debug, Clone)]
pub struct CommittedIndex(Arc<Mutex<Option<LogId>>>);

impl CommittedIndex {
    /// Index of the last committed entry, if any.
    pub fn index(&self) -> Option<u64> {
        self.0.lock().map(|c| c.map(|id| id.index)).unwrap_or(None)
    }
}

/// The durable Raft log store (log entries, vote, committed and purged ids).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    /// Last committed log id seen, for status reporting.
    committed: Arc<Mutex<Option<LogId>>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = begin_durable(&db)?;
        let committed = {
            txn.open_table(LOG)?;
            let meta = txn.open_table(META)?;
            let value = meta.get(KEY_COMMITTED)?;
            match value {
                Some(v) => decode::<Option<LogId>>(v.value())?,
                None => None,
            }
        };
        txn.commit()?;
        Ok(LogStore {
            db: Arc::new(Db::new(db)),
            committed: Arc::new(Mutex::new(committed)),
        })
    }

    /// Index of the last committed entry this node knows of.
    pub fn committed_index(&self) -> Option<u64> {
        self.committed_watch().index()
    }

    /// A handle reading the committed index without keeping the database open.
    pub fn committed_watch(&self) -> CommittedIndex {
        CommittedIndex(self.committed.clone())
    }

    /// Tells when every handle to the database file has been dropped.
    pub(crate) fn release_probe(&self) -> std::sync::Weak<()> {
        self.db.probe()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        db: &Database,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        match meta.get(key)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(
        db: &Database,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value)?;
        let txn = begin_durable(db)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(key, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn owned_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        let bounds = owned_bounds(&range);
        blocking(move || -> Result<Vec<Entry>, StoreError> {
            let txn = db.begin_read()?;
            let log = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for item in log.range::<u64>(bounds)? {
                let (_, value) = item?;
                entries.push(decode::<Entry>(value.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || -> Result<LogState<TypeConfig>, StoreError> {
            // Stored as `Option<LogId>`; absent before the first purge.
            let last_purged: Option<LogId> =
                LogStore::read_meta::<Option<LogId>>(&db, KEY_PURGED)?.flatten();
            let txn = db.begin_read()?;
            let log = txn.open_table(LOG)?;
            let last = match log.last()? {
                Some((_, value)) => Some(decode::<Entry>(value.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last.or(last_purged),
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || LogStore::write_meta(&db, KEY_VOTE, &vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let db = self.db.clone();
        blocking(move || LogStore::read_meta(&db, KEY_VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Ok(mut c) = self.committed.lock() {
            *c = committed;
        }
        let db = self.db.clone();
        blocking(move || LogStore::write_meta(&db, KEY_COMMITTED, &committed))
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        let committed: Option<Option<LogId>> =
            blocking(move || LogStore::read_meta(&db, KEY_COMMITTED))
                .await
                .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let db = self.db.clone();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = blocking(move || -> Result<(), StoreError> {
            let txn = begin_durable(&db)?;
            {
                let mut log = txn.open_table(LOG)?;
                for entry in &entries {
                    let bytes = encode(entry)?;
                    log.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || -> Result<(), StoreError> {
            let txn = begin_durable(&db)?;
            {
                let mut log = txn.open_table(LOG)?;
                log.retain_in(log_id.index.., |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || -> Result<(), StoreError> {
            let purged = encode(&Some(log_id))?;
            let txn = begin_durable(&db)?;
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(KEY_PURGED, purged.as_slice())?;
                let mut log = txn.open_table(LOG)?;
                log.retain_in(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

impl LogStore {
    /// Number of entries currently held in the log (after purges).
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        Ok(log.len()?)
    }

    /// Whether the log holds no entries.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}
