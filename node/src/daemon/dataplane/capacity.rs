//! Whether a replicated state fits this node's forwarder maps.

use edgelb_consensus::ClusterState;

/// A replicated state this node's forwarder cannot hold. Every node has the
/// same capacities in a uniform deployment, so such a state would take the
/// whole cluster's announcements down: the admin API refuses the write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// More VIPs than the VIP map holds.
    #[error("{count} VIPs: this node's data plane holds at most {max}")]
    Vips {
        /// VIPs the state has.
        count: usize,
        /// The forwarder's VIP capacity.
        max: u32,
    },
    /// More distinct backend addresses than the backend map holds.
    #[error("{count} distinct backend addresses: this node's data plane holds at most {max}")]
    Backends {
        /// Distinct backend addresses over all VIPs.
        count: usize,
        /// The forwarder's backend capacity.
        max: u32,
    },
    /// A Maglev table larger than the table maps hold.
    #[error("table size {size}: this node's data plane holds tables of at most {max} slots")]
    TableSize {
        /// The cluster's table size.
        size: u32,
        /// The forwarder's largest table.
        max: u32,
    },
}

/// Checks that `state` fits a forwarder of `capacity`.
pub fn check_capacity(
    state: &ClusterState,
    capacity: xdp_fwd::Capacity,
) -> Result<(), CapacityError> {
    if state.vips.len() > capacity.vips as usize {
        return Err(CapacityError::Vips {
            count: state.vips.len(),
            max: capacity.vips,
        });
    }
    let backends = state.backend_addresses();
    if backends.len() > capacity.backends as usize {
        return Err(CapacityError::Backends {
            count: backends.len(),
            max: capacity.backends,
        });
    }
    if state.settings.table_size > capacity.table_size {
        return Err(CapacityError::TableSize {
            size: state.settings.table_size,
            max: capacity.table_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use edgelb_consensus::{
        Backend, BackendState, ClusterSettings, Command, Encapsulation, Protocol, VipFlags, VipKey,
    };

    use super::*;

    fn capacity() -> xdp_fwd::Capacity {
        xdp_fwd::Capacity {
            vips: 2,
            backends: 3,
            table_size: 65_537,
            flows: 1024,
        }
    }

    fn vip(n: u8) -> VipKey {
        VipKey {
            address: IpAddr::from([192, 0, 2, n]),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn state_with(vips: u8, backends: u8) -> ClusterState {
        let mut s = ClusterState::default();
        for v in 1..=vips {
            let add = Command::AddVip {
                key: vip(v),
                flags: VipFlags::default(),
                encapsulation: Encapsulation::IpIp,
            };
            s.apply(&add).unwrap();
            for b in 1..=backends {
                let backend = Backend {
                    address: IpAddr::from([10, 0, 0, b]),
                    weight: 1,
                    state: BackendState::Active,
                };
                s.apply(&Command::AddBackend {
                    vip: vip(v),
                    backend,
                })
                .unwrap();
            }
        }
        s
    }

    #[test]
    fn states_beyond_the_maps_are_named() {
        assert_eq!(check_capacity(&state_with(2, 3), capacity()), Ok(()));
        assert_eq!(
            check_capacity(&state_with(3, 1), capacity()),
            Err(CapacityError::Vips { count: 3, max: 2 })
        );
        // Backends are counted by distinct address over all VIPs.
        assert_eq!(
            check_capacity(&state_with(1, 4), capacity()),
            Err(CapacityError::Backends { count: 4, max: 3 })
        );
        let mut big = state_with(1, 1);
        big.apply(&Command::SetSettings(ClusterSettings {
            hash_seed: 1,
            table_size: 131_071,
        }))
        .unwrap();
        assert_eq!(
            check_capacity(&big, capacity()),
            Err(CapacityError::TableSize {
                size: 131_071,
                max: 65_537
            })
        );
    }
}
