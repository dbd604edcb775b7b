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
mod second_hop;
mod sync;

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use edgelb_consensus::{ClusterState, Encapsulation, FloodAdmission, VipKey};
use xdp_fwd::{
    AttachMode, Encap, Forwarder, ForwarderSettings, HashFields, TestRunOutput, VipOptions,
};

pub use self::{
    capacity::{check_capacity, CapacityError},
    sync::{sync_loop, DataPlaneReader, Programmed},
};
use crate::tables::{self, TableSet, VipTable};

/// Node-local data-plane settings (from the config file).
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Outer IPv4 source prefix for encapsulation (host bits carry entropy).
    pub source_v4: (std::net::Ipv4Addr, u8),
    /// Outer IPv6 source prefix.
    pub source_v6: (std::net::Ipv6Addr, u8),
    /// Idle time after which a UDP flow is re-hashed.
    pub udp_timeout: std::time::Duration,
    /// New-flow rate above which the cache spares established flows: the
    /// node's default, used while the cluster setting
    /// (`ConnectionSettings::flood_threshold`) is `NodeConfig`; a cluster
    /// setting wins.
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
    /// Per VIP, the previous table programmed for second-hop lookups and
    /// the `since_version` it came from.
    previous: BTreeMap<VipKey, (u64, VipTable)>,
    windows: second_hop::Windows,
}

/// The flood threshold in force: the cluster's when set, else the node's.
pub fn flood_threshold(
    cluster: FloodAdmission,
    node: xdp_fwd::FloodThreshold,
) -> xdp_fwd::FloodThreshold {
    match cluster {
        FloodAdmission::NodeConfig => node,
        FloodAdmission::FromCapacity => xdp_fwd::FloodThreshold::FromCapacity,
        FloodAdmission::Off => xdp_fwd::FloodThreshold::Off,
        // Validated to 1..=MAX_FLOOD_THRESHOLD, which fits.
        FloodAdmission::PerSecond(rate) => {
            xdp_fwd::FloodThreshold::PerSecond(u32::try_from(rate).unwrap_or(u32::MAX))
        }
    }
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
            previous: BTreeMap::new(),
            windows: second_hop::Windows::default(),
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
            flood_threshold: flood_threshold(
                state.connection.flood_threshold,
                self.local.flood_threshold,
            ),
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
            self.previous.remove(&key);
        }
        let now = Instant::now();
        self.windows.observe(state, now);
        for (key, vip) in &state.vips {
            let options = vip_options(vip);
            if self.options.get(key) != Some(&options) {
                self.forwarder.set_vip(*key, options)?;
                self.options.insert(*key, options);
            }
            let table = &next.tables[key];
            let previous = self.previous_table(state, key, table, now)?;
            let table_changed = self.programmed.tables.get(key) != Some(table);
            if table_changed || self.previous.get(key) != previous.as_ref() {
                match &previous {
                    Some((_, p)) => self.forwarder.set_table_with_previous(
                        key,
                        &table.backends,
                        &table.slots,
                        Some((&p.backends, &p.slots)),
                    )?,
                    None if table_changed => {
                        self.forwarder
                            .set_table(key, &table.backends, &table.slots)?
                    }
                    None => {
                        self.forwarder.clear_previous(key)?;
                        0
                    }
                };
                self.programmed.tables.insert(*key, table.clone());
                match previous {
                    Some(p) => self.previous.insert(*key, p),
                    None => self.previous.remove(key),
                };
            }
        }
        self.programmed.version = next.version;
        self.programmed.digest = next.digest;
        Ok(&self.programmed)
    }

    /// The previous table `key` should have programmed at `now`: the
    /// replicated one while this node's window for it is open, unless it has
    /// no backend or equals the current table (then no flow moved).
    fn previous_table(
        &self,
        state: &ClusterState,
        key: &VipKey,
        current: &VipTable,
        now: Instant,
    ) -> Result<Option<(u64, VipTable)>, DataPlaneError> {
        let Some(previous) = self.windows.previous(state, key, now) else {
            return Ok(None);
        };
        let table = serving_owners(tables::build(key, &previous.input)?, state, key);
        if table.slots.is_empty()
            || table.slots == current.slots && table.backends == current.backends
        {
            return Ok(None);
        }
        Ok(Some((previous.since_version, table)))
    }

    /// When the next second-hop window closes (for [`sync_loop`]'s timer).
    pub fn next_window_close(&self) -> Option<Instant> {
        self.windows.next_close(Instant::now())
    }

    /// Drops the previous tables whose window has closed by now: one
    /// `clear_previous` each.
    pub fn close_windows(&mut self) -> Result<(), DataPlaneError> {
        let now = Instant::now();
        let closed: Vec<VipKey> = self
            .previous
            .iter()
            .filter(|(k, (since, _))| !self.windows.is_open(k, *since, now))
            .map(|(k, _)| *k)
            .collect();
        for key in closed {
            self.forwarder.clear_previous(&key)?;
            self.previous.remove(&key);
            tracing::info!(vip = %key, "second-hop window closed: previous table dropped");
        }
        Ok(())
    }

    /// VIPs with a previous table programmed now.
    pub fn previous_programmed(&self) -> impl Iterator<Item = &VipKey> {
        self.previous.keys()
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
        let (backend, previous_backend) = self.forwarder.owners_for(key, src, sport)?;
        Ok(Lookup {
            hash,
            slot,
            backend,
            previous_backend,
        })
    }

    /// Counters, summed over CPUs.
    pub fn stats(&self) -> Result<xdp_fwd::Stats, DataPlaneError> {
        Ok(self.forwarder.stats()?)
    }
}

/// `previous` with every slot whose owner no longer serves the VIP (removed,
/// or down) emptied ([`maglev::NO_BACKEND`]: no second hop there), so a
/// removed or down backend's connections end as they did without a previous
/// table, and its forwarder entry is released.
fn serving_owners(previous: VipTable, state: &ClusterState, key: &VipKey) -> VipTable {
    let serving: std::collections::BTreeSet<IpAddr> = state
        .maglev_input(key)
        .map(|i| i.backends.iter().map(|b| b.address).collect())
        .unwrap_or_default();
    let backends: Vec<IpAddr> = previous
        .backends
        .iter()
        .copied()
        .filter(|b| serving.contains(b))
        .collect();
    let slots = previous
        .slots
        .iter()
        .map(|&s| {
            previous
                .backends
                .get(s as usize)
                .and_then(|a| backends.iter().position(|b| b == a))
                .map_or(maglev::NO_BACKEND, |i| i as u32)
        })
        .collect();
    VipTable {
        backends,
        slots,
        fingerprint: previous.fingerprint,
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
    /// The previous table's owner of the slot, when it differs and the
    /// second-hop window is open.
    pub previous_backend: Option<IpAddr>,
}

fn vip_flags(o: &VipOptions) -> u32 {
    use xdp_fwd::common::vip_flags;
    match o.hash {
        HashFields::FiveTuple => 0,
        HashFields::NoSourcePort => vip_flags::HASH_NO_SRC_PORT,
        HashFields::DestinationPortOnly => vip_flags::HASH_DST_PORT_ONLY,
    }
}
