//! Durable storage for Raft: the log store and the state machine, each in
//! its own redb database file under the node's data directory.
//!
//! Two files rather than one because openraft drives the log and the state
//! machine from different tasks, and redb allows one writer per database.

mod log_store;
mod state_machine;

use std::path::Path;
use std::sync::{Arc, Weak};

pub use log_store::{CommittedIndex, LogStore};
pub use state_machine::{
    decode_snapshot_state, encode_snapshot_state, StateMachineStore, SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_V1, SNAPSHOT_FORMAT_V2,
};

use crate::encoding::EncodingError;

/// File name of the log database inside the data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// File name of the state machine database inside the data directory.
pub const STATE_FILE: &str = "state-machine.redb";

/// Why the on-disk store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed (I/O error, corruption, lock).
    #[error("database: {0}")]
    Database(Box<redb::Error>),
    /// Stored bytes did not decode (corruption or incompatible format).
    #[error("stored data: {0}")]
    Encoding(Box<EncodingError>),
    /// The blocking I/O task died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// A snapshot written by an unknown format version.
    #[error(
        "snapshot format {0} is not supported (expected {SNAPSHOT_FORMAT_V1}, {SNAPSHOT_FORMAT_V2} or {SNAPSHOT_FORMAT})"
    )]
    SnapshotFormat(u32),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(Box::new(e.into()))
            }
        }
    )*};
}

impl From<EncodingError> for StoreError {
    fn from(e: EncodingError) -> Self {
        StoreError::Encoding(Box::new(e))
    }
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Starts a write transaction whose commit returns only once the data is on
/// stable storage (fsync). redb's default, made explicit: every Raft write
/// depends on it.
fn begin_durable(db: &redb::Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate);
    Ok(txn)
}

/// Runs blocking database work (which fsyncs) off the async worker threads.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// An open redb database plus a token that is dropped only after the
/// database itself is closed (fields drop in declaration order; closing
/// redb writes and syncs, so "last handle gone" is not yet "file closed").
pub(crate) struct Db {
    db: redb::Database,
    closed: Arc<()>,
}

impl Db {
    fn new(db: redb::Database) -> Self {
        Db {
            db,
            closed: Arc::new(()),
        }
    }

    fn probe(&self) -> Weak<()> {
        Arc::downgrade(&self.closed)
    }
}

impl std::ops::Deref for Db {
    type Target = redb::Database;

    fn deref(&self) -> &redb::Database {
        &self.db
    }
}

/// Tells when both database files have been closed by every user (Raft
/// tasks included), so the directory can be opened again.
#[derive(Debug, Clone)]
pub struct ReleaseProbe(Vec<Weak<()>>);

impl ReleaseProbe {
    /// A probe for the databases of these two stores.
    pub fn new(log: &LogStore, sm: &StateMachineStore) -> Self {
        ReleaseProbe(vec![log.release_probe(), sm.release_probe()])
    }

    /// Whether every handle to both databases has been dropped.
    pub fn is_released(&self) -> bool {
        self.0.iter().all(|w| w.strong_count() == 0)
    }
}

/// Opens both stores in `dir` (created if missing).
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(Box::new(e.into())))?;
    let log = LogStore::open(&dir.join(LOG_FILE))?;
    let sm = StateMachineStore::open(&dir.join(STATE_FILE))?;
    Ok((log, sm))
}
