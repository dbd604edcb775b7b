//! openraft's own storage conformance suite, run against the redb stores,
//! plus corrupt-data checks the suite does not cover.

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

mod corrupt {
    use std::net::SocketAddr;

    use edgelb_consensus::storage::{self, StoreError, LOG_FILE, STATE_FILE};
    use edgelb_consensus::{ClusterSecret, ConsensusConfig, ConsensusError, ConsensusNode};

    fn config(dir: &std::path::Path) -> ConsensusConfig {
        ConsensusConfig::new(
            1,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            dir.to_path_buf(),
            ClusterSecret::new(b"0123456789abcdef".to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_garbage_log_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(storage::open(dir.path()).unwrap());
        std::fs::write(dir.path().join(LOG_FILE), vec![0x5a; 8192]).unwrap();
        match ConsensusNode::start(config(dir.path())).await {
            Err(ConsensusError::Storage(StoreError::Database(_))) => {}
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("started on a corrupt log"),
        }
    }

    #[tokio::test]
    async fn undecodable_stored_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(storage::open(dir.path()).unwrap());
        {
            let db = redb::Database::create(dir.path().join(STATE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let table: redb::TableDefinition<&str, &[u8]> =
                    redb::TableDefinition::new("state_machine");
                let mut t = txn.open_table(table).unwrap();
                t.insert("applied", b"\xff\xff\xff not a state".as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        match ConsensusNode::start(config(dir.path())).await {
            Err(ConsensusError::Storage(StoreError::Encoding(_))) => {}
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("started on an undecodable state"),
        }
    }
}
