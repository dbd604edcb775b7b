//! Keeps this node's admin address in the replicated state, so `lbctl
//! status` on any node reaches nodes added at runtime.

use std::{sync::Arc, time::Duration};

use edgelb_consensus::Command;
use tokio::sync::watch;

use super::Shared;

/// Records this node's admin address in the replicated state (once it is a
/// member and whenever the record differs), retrying every 2 s.
pub async fn register_admin_addr(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let addr = shared.config.admin_advertise_addr();
    let id = shared.config.node.id;
    loop {
        let status = shared.consensus.status();
        let recorded = shared.consensus.state().admin_addrs.get(&id).copied();
        if recorded != Some(addr) && status.nodes.contains_key(&id) && status.leader.is_some() {
            match shared
                .consensus
                .write(Command::SetAdminAddr { node: id, addr })
                .await
            {
                Ok(_) => tracing::info!(%addr, "admin address registered"),
                Err(e) => tracing::debug!(error = %e, "registering the admin address; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.changed() => if *stop.borrow() { return },
        }
    }
}
