//! The node's data plane: programs the XDP forwarder from applied state.
//!
//! The only writer of the forwarder's maps. Each applied state becomes a
//! [`TableSet`]; only VIPs whose options or table changed are rewritten, and
//! each VIP's table flips atomically (the forwarder's double-buffered ring).
//!
//! [`DataPlane`] never hands out its [`Forwarder`]: the maps change through
//! [`DataPlane::apply`] only, which the daemon calls from [`sync_loop`]
//! alone; the other tasks hold a [`DataPlaneReader`].

mod capacity;
mod sync;

use std::{collections::BTreeMap, net::IpAddr};

use edgelb_consensus::{ClusterState, Encapsulation, VipKey};
use xdp_fwd::{
    AttachMode, Encap, Forwarder, ForwarderSettings, HashFields, TestRunOutput, VipOptions,
};

pub use self::{
    capacity::{check_capacity, CapacityError},
    sync::{sync_loop, DataPlaneReader, Programmed},
};
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
    /// New-flow rate above which the cache spares established flows.
    pub flood_threshold: xdp_fwd::FloodThreshold,
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

/// The forwarder and what has been programmed into it.
pub struct DataPlane {
    forwarder: Forwarder,
    local: LocalSettings,
    programmed: TableSet,
    options: BTreeMap<VipKey, VipOptions>,
    settings: Option<ForwarderSettings>,
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

    /// Attaches the forwarder to `interface` (which also lets it redirect
    /// there). Programs no table: the maps keep what they hold.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<(), xdp_fwd::Error> {
        self.forwarder.attach(interface, mode)
    }

    /// Detaches the forwarder from `interface` (and removes its pinned link).
    pub fn detach(&mut self, interface: &str) -> Result<(), xdp_fwd::Error> {
        self.forwarder.detach(interface)
    }

    /// Runs the forwarding program once on `frame` arriving on interface
    /// `ingress_ifindex` of the calling thread's namespace, `repeat` times
    /// (BPF_PROG_TEST_RUN): for tests that check what the programmed maps
    /// do to a packet.
    pub fn test_run_on(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<TestRunOutput, xdp_fwd::Error> {
        self.forwarder.test_run_on(frame, ingress_ifindex, repeat)
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
            flood_threshold: self.local.flood_threshold,
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
            self.forwarder.remove_vip(&key)?;
            self.options.remove(&key);
            self.programmed.tables.remove(&key);
        }
        for (key, vip) in &state.vips {
            let options = vip_options(vip);
            if self.options.get(key) != Some(&options) {
                self.forwarder.set_vip(*key, options)?;
                self.options.insert(*key, options);
            }
            let table = &next.tables[key];
            if self.programmed.tables.get(key) != Some(table) {
                self.forwarder
                    .set_table(key, &table.backends, &table.slots)?;
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
        let flags = self.options.get(key).map(vip_flags).unwrap_or(0);
        let seed = self.settings.as_ref().map_or(0, |s| s.hash_seed);
        let proto = xdp_fwd::protocol_number(key.protocol);
        let flow = xdp_fwd::flow_key(src, key.address, sport, key.port, proto);
        let hash = xdp_fwd::common::flow_hash(&flow, seed, flags);
        let size = self
            .programmed
            .tables
            .get(key)
            .map_or(0, |t| t.slots.len() as u32);
        let slot = xdp_fwd::common::maglev_slot(hash, size);
        let backend = self.forwarder.backend_for(key, src, sport)?;
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
