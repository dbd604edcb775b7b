//! The node's data plane: programs the XDP forwarder from applied state.
//!
//! The only writer of the forwarder's maps. Each applied state becomes a
//! [`TableSet`]; only VIPs whose options or table changed are rewritten, and
//! each VIP's table flips atomically (the forwarder's double-buffered ring).

use std::{collections::BTreeMap, net::IpAddr};

use edgelb_consensus::{ClusterState, Encapsulation, Protocol, VipKey};
use xdp_fwd::{Encap, Forwarder, ForwarderSettings, HashFields, VipOptions};

use crate::tables::{self, TableSet};

/// Node-local data-plane settings (from the config file).
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Outer IPv4 source prefix for encapsulation (host bits carry entropy).
    pub source_v4: (std::net::Ipv4Addr, u8),
    /// Outer IPv6 source prefix.
    pub source_v6: (std::net::Ipv6Addr, u8),
    /// Idle time after which a UDP flow is re-hashed.
    pub udp_timeout: std::time::Duration,
}

/// Errors programming the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// Computing tables failed.
    #[error(transparent)]
    Tables(#[from] tables::TableError),
    /// A map update failed.
    #[error("programming the forwarder: {0}")]
    Forwarder(#[from] xdp_fwd::Error),
    /// The state needs more than the forwarder's maps hold.
    #[error("{0}")]
    Capacity(#[from] CapacityError),
}

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

/// The forwarder and what has been programmed into it.
pub struct DataPlane {
    forwarder: Forwarder,
    local: LocalSettings,
    programmed: TableSet,
    options: BTreeMap<VipKey, VipOptions>,
    settings: Option<ForwarderSettings>,
}

/// The forwarder's view of a replicated VIP key.
pub fn forwarder_vip(key: &VipKey) -> xdp_fwd::VipKey {
    let proto = match key.protocol {
        Protocol::Tcp => xdp_fwd::Protocol::Tcp,
        Protocol::Udp => xdp_fwd::Protocol::Udp,
    };
    xdp_fwd::VipKey::new(key.address, key.port, proto)
}

fn vip_options(vip: &edgelb_consensus::Vip) -> VipOptions {
    let hash = if vip.flags.hash_dst_port_only {
        HashFields::DestinationPortOnly
    } else if vip.flags.hash_without_source_port {
        HashFields::NoSourcePort
    } else {
        HashFields::FiveTuple
    };
    let encap = match vip.encapsulation {
        Encapsulation::IpIp => Encap::IpIp,
        Encapsulation::Gue { .. } => Encap::Gue,
    };
    VipOptions { hash, encap }
}

/// The forwarder's 32-bit seed from the replicated 64-bit one: the XOR of
/// its halves (pinned: every node and `lbctl lookup` use the same fold).
pub fn fold_seed(seed: u64) -> u32 {
    (seed as u32) ^ ((seed >> 32) as u32)
}

/// The GUE port the data plane uses: the forwarder has one GUE destination
/// port, and the replicated table allows GUE VIPs only one port between
/// them (`CommandError::GuePortConflict`); 6080 when no VIP uses GUE.
pub fn gue_port(state: &ClusterState) -> u16 {
    state
        .vips
        .values()
        .filter_map(|v| match v.encapsulation {
            Encapsulation::Gue { port } => Some(port),
            Encapsulation::IpIp => None,
        })
        .min()
        .unwrap_or(6080)
}

impl DataPlane {
    /// Wraps a loaded forwarder.
    pub fn new(forwarder: Forwarder, local: LocalSettings) -> Self {
        Self {
            forwarder,
            local,
            programmed: TableSet::default(),
            options: BTreeMap::new(),
            settings: None,
        }
    }

    /// The forwarder, for attach/detach and counters.
    pub fn forwarder(&mut self) -> &mut Forwarder {
        &mut self.forwarder
    }

    /// The forwarder's map capacities.
    pub fn capacity(&self) -> xdp_fwd::Capacity {
        self.forwarder.capacity()
    }

    /// What is programmed now.
    pub fn programmed(&self) -> &TableSet {
        &self.programmed
    }

    /// Brings the forwarder's maps to `state`. On error the previous tables
    /// stay programmed for the VIPs not yet rewritten; the next call retries.
    pub fn apply(&mut self, state: &ClusterState) -> Result<&TableSet, DataPlaneError> {
        check_capacity(state, self.forwarder.capacity())?;
        let next = tables::compute(state)?;
        let settings = ForwarderSettings {
            hash_seed: fold_seed(state.settings.hash_seed),
            default_encap: Encap::IpIp,
            gue_port: gue_port(state),
            udp_timeout: self.local.udp_timeout,
            source_v4: self.local.source_v4,
            source_v6: self.local.source_v6,
        };
        if self.settings.as_ref() != Some(&settings) {
            self.forwarder.set_settings(&settings)?;
            self.settings = Some(settings);
        }
        // Removed VIPs first, so their capacity is free for new ones.
        let gone: Vec<VipKey> = self
            .options
            .keys()
            .filter(|k| !state.vips.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.forwarder.remove_vip(&forwarder_vip(&key))?;
            self.options.remove(&key);
            self.programmed.tables.remove(&key);
        }
        for (key, vip) in &state.vips {
            let fvip = forwarder_vip(key);
            let options = vip_options(vip);
            if self.options.get(key) != Some(&options) {
                self.forwarder.set_vip(fvip, options)?;
                self.options.insert(*key, options);
            }
            let table = &next.tables[key];
            if self.programmed.tables.get(key) != Some(table) {
                self.forwarder
                    .set_table(&fvip, &table.backends, &table.slots)?;
                self.programmed.tables.insert(*key, table.clone());
            }
        }
        self.programmed.version = next.version;
        self.programmed.digest = next.digest;
        Ok(&self.programmed)
    }

    /// Where a new flow from `src:sport` to VIP `key` goes, computed with the
    /// program's own hash and read from the live maps.
    pub fn lookup(&self, key: &VipKey, src: IpAddr, sport: u16) -> Result<Lookup, DataPlaneError> {
        let fvip = forwarder_vip(key);
        let flags = self.options.get(key).map(vip_flags).unwrap_or(0);
        let seed = self.settings.as_ref().map_or(0, |s| s.hash_seed);
        let proto = xdp_fwd::protocol_number(fvip.protocol);
        let flow = xdp_fwd::flow_key(src, key.address, sport, key.port, proto);
        let hash = xdp_fwd::common::flow_hash(&flow, seed, flags);
        let size = self
            .programmed
            .tables
            .get(key)
            .map_or(0, |t| t.slots.len() as u32);
        let slot = xdp_fwd::common::maglev_slot(hash, size);
        let backend = self.forwarder.backend_for(&fvip, src, sport)?;
        Ok(Lookup {
            hash,
            slot,
            backend,
        })
    }

    /// Counters, summed over CPUs.
    pub fn stats(&self) -> Result<xdp_fwd::Stats, DataPlaneError> {
        Ok(self.forwarder.stats()?)
    }
}

/// Answer of [`DataPlane::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The flow hash.
    pub hash: u32,
    /// The Maglev slot.
    pub slot: u32,
    /// The backend the live table gives, if any.
    pub backend: Option<IpAddr>,
}

fn vip_flags(o: &VipOptions) -> u32 {
    use xdp_fwd::common::vip_flags;
    match o.hash {
        HashFields::FiveTuple => 0,
        HashFields::NoSourcePort => vip_flags::HASH_NO_SRC_PORT,
        HashFields::DestinationPortOnly => vip_flags::HASH_DST_PORT_ONLY,
    }
}

#[cfg(test)]
mod tests {
    use edgelb_consensus::{
        Backend, BackendState, ClusterSettings, Command, Encapsulation, VipFlags,
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
