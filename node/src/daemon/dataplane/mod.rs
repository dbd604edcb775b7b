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
mod fold;
mod second_hop;
mod sync;

use std::{
    collections::{btree_map, BTreeMap},
    net::IpAddr,
    time::Instant,
};

use edgelb_consensus::{ClusterState, Encapsulation, FloodAdmission, VipKey};
use xdp_fwd::{
    AttachMode, Encap, Forwarder, ForwarderSettings, HashFields, TestRunOutput, VipOptions,
};

use self::fold::PreviousFold;
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
    /// Per VIP, the previous table programmed for second-hop lookups (the
    /// fold of its open history entries, [`fold`]).
    previous: BTreeMap<VipKey, PreviousFold>,
    /// Built tables of open history entries, by VIP and `since_version`
    /// (an entry's input never changes: built once per window).
    history_tables: BTreeMap<(VipKey, u64), VipTable>,
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
            history_tables: BTreeMap::new(),
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
        self.forget_closed_history(now);
        for (key, vip) in &state.vips {
            let options = vip_options(vip);
            if self.options.get(key) != Some(&options) {
                self.forwarder.set_vip(*key, options)?;
                self.options.insert(*key, options);
            }
            let table = &next.tables[key];
            let previous = self.previous_fold(state, key, table, now)?;
            self.program(key, table, previous)?;
        }
        self.programmed.version = next.version;
        self.programmed.digest = next.digest;
        Ok(&self.programmed)
    }

    /// Programs `key`'s current table and previous table, writing the maps
    /// only when either differs from what they hold.
    fn program(
        &mut self,
        key: &VipKey,
        table: &VipTable,
        previous: Option<PreviousFold>,
    ) -> Result<(), DataPlaneError> {
        let table_changed = self.programmed.tables.get(key) != Some(table);
        if table_changed || self.previous.get(key) != previous.as_ref() {
            match &previous {
                Some(p) => self.forwarder.set_table_with_previous(
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
        Ok(())
    }

    /// The previous table `key` should have programmed at `now`: the fold
    /// ([`fold::fold`]) of the history entries whose window is open on this
    /// node, against `current`.
    fn previous_fold(
        &mut self,
        state: &ClusterState,
        key: &VipKey,
        current: &VipTable,
        now: Instant,
    ) -> Result<Option<PreviousFold>, DataPlaneError> {
        let open = self.windows.open_entries(state, key, now);
        if open.is_empty() {
            return Ok(None);
        }
        for entry in &open {
            let id = (*key, entry.since_version);
            if let btree_map::Entry::Vacant(slot) = self.history_tables.entry(id) {
                slot.insert(tables::build(key, &entry.input)?);
            }
        }
        let entries: Vec<&VipTable> = open
            .iter()
            .filter_map(|e| self.history_tables.get(&(*key, e.since_version)))
            .collect();
        Ok(fold::fold(current, &entries))
    }

    /// Drops the built tables of history entries whose window is closed.
    fn forget_closed_history(&mut self, now: Instant) {
        let windows = &self.windows;
        self.history_tables
            .retain(|(key, since), _| windows.is_open(key, *since, now));
    }

    /// When the next second-hop window closes (for [`sync_loop`]'s timer).
    pub fn next_window_close(&self) -> Option<Instant> {
        self.windows.next_close(Instant::now())
    }

    /// Refolds the previous table of every VIP that has one programmed,
    /// against the entries still open now: a closed entry drops out, and the
    /// previous table is rewritten, or dropped (`clear_previous`) when no open
    /// entry is left to carry anything. The maps are written only for a VIP
    /// whose fold changed. (A VIP without a programmed previous table needs
    /// nothing: a fold over fewer entries carries nothing either.) `state`
    /// is the state last applied.
    pub fn close_windows(&mut self, state: &ClusterState) -> Result<(), DataPlaneError> {
        let now = Instant::now();
        self.forget_closed_history(now);
        let keys: Vec<VipKey> = self.previous.keys().copied().collect();
        for key in keys {
            let Some(table) = self.programmed.tables.get(&key).cloned() else {
                continue;
            };
            let previous = self.previous_fold(state, &key, &table, now)?;
            if self.previous.get(&key) == previous.as_ref() {
                continue;
            }
            let kept = previous.is_some();
            self.program(&key, &table, previous)?;
            if kept {
                tracing::info!(vip = %key, "second-hop window closed: previous table refolded without it");
            } else {
                tracing::info!(vip = %key, "second-hop window closed: previous table dropped");
            }
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

/// Answer of [`DataPlane::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The flow hash.
    pub hash: u32,
    /// The Maglev slot.
    pub slot: u32,
    /// The backend the live table gives, if any.
    pub backend: Option<IpAddr>,
    /// The slot's previous owner as programmed (the fold of the VIP's open
    /// history entries), when it differs from `backend`.
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

/// The data plane against the real forwarder's maps (loads the XDP
/// program: needs root): the history fold programmed, and refolded as each
/// entry's window closes.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edgelb_consensus::{
        Backend, BackendState, ClusterSettings, Command, ConnectionSettings, Protocol, VipFlags,
    };

    use super::*;

    /// Window of this test's cluster, and the gap between its two changes:
    /// wide margins around each close (no speed is asserted).
    const WINDOW_SECS: u32 = 4;
    const GAP: Duration = Duration::from_millis(1500);
    const MARGIN: Duration = Duration::from_millis(400);

    fn key() -> VipKey {
        VipKey {
            address: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn dataplane() -> DataPlane {
        let forwarder = Forwarder::load_with(xdp_fwd::LoadOptions {
            pin_dir: None,
            capacity: xdp_fwd::Capacity {
                vips: 4,
                backends: 16,
                table_size: 251,
                flows: 1024,
            },
        })
        .expect("load and verify the XDP program (needs root)");
        DataPlane::new(
            forwarder,
            LocalSettings {
                source_v4: ("172.16.0.0".parse().unwrap(), 16),
                source_v6: ("fd00:16::".parse().unwrap(), 96),
                udp_timeout: Duration::from_secs(30),
                flood_threshold: xdp_fwd::FloodThreshold::Off,
            },
        )
    }

    fn backend(n: u8) -> Backend {
        Backend {
            address: ip(n),
            weight: 1,
            state: BackendState::Active,
        }
    }

    /// A 251-slot VIP with backends 1..=4, set up in one batch (one
    /// history entry: the empty input, which owns nothing).
    fn four_backends() -> ClusterState {
        let mut commands = vec![
            Command::SetSettings(ClusterSettings {
                hash_seed: 7,
                table_size: 251,
            }),
            Command::SetConnectionSettings(ConnectionSettings {
                second_hop_window_secs: WINDOW_SECS,
                ..ConnectionSettings::default()
            }),
            Command::AddVip {
                key: key(),
                flags: VipFlags::default(),
                encapsulation: Encapsulation::IpIp,
            },
        ];
        commands.extend((1..=4).map(|n| Command::AddBackend {
            vip: key(),
            backend: backend(n),
        }));
        let mut s = ClusterState::default();
        s.apply(&Command::Batch {
            expect_version: None,
            commands,
        })
        .unwrap();
        s
    }

    /// Owner of `slot` in `state`'s current table.
    fn owner(state: &ClusterState, slot: u32) -> IpAddr {
        let t = tables::build(&key(), &state.maglev_input(&key()).unwrap()).unwrap();
        t.backends[t.slots[slot as usize] as usize]
    }

    /// Per flow (source ports covering every slot): (slot, previous owner
    /// `lbctl lookup` shows).
    fn previous_owners(dp: &DataPlane) -> Vec<(u32, Option<IpAddr>)> {
        let src: IpAddr = "198.51.100.7".parse().unwrap();
        (1000..4000)
            .map(|sport| {
                let l = dp.lookup(&key(), src, sport).unwrap();
                (l.slot, l.previous_backend)
            })
            .collect()
    }

    /// Add backend 5, then drain backend 2 inside the window: a slot that
    /// moved X -> 5 and stayed 5 carries X (the table before the drain
    /// alone would carry nothing there); a slot the drain moved carries 2.
    /// Then each entry's window closes in turn.
    #[test]
    fn the_history_fold_is_programmed_and_closes_entry_by_entry() {
        let mut dp = dataplane();
        let s1 = four_backends();
        dp.apply(&s1).unwrap();
        assert_eq!(dp.previous_programmed().count(), 0);
        let mut s2 = s1.clone();
        s2.apply(&Command::AddBackend {
            vip: key(),
            backend: backend(5),
        })
        .unwrap();
        dp.apply(&s2).unwrap();
        let added = Instant::now();
        std::thread::sleep(GAP);
        let mut s3 = s2.clone();
        s3.apply(&Command::SetBackendState {
            vip: key(),
            address: ip(2),
            state: BackendState::Draining,
        })
        .unwrap();
        dp.apply(&s3).unwrap();
        let drained = Instant::now();

        let (mut first_step, mut second_step) = (0, 0);
        for (slot, previous) in previous_owners(&dp) {
            let (a, b, c) = (owner(&s1, slot), owner(&s2, slot), owner(&s3, slot));
            let want = if b != c {
                second_step += 1;
                Some(b)
            } else if a != b {
                first_step += 1;
                Some(a)
            } else {
                None
            };
            assert_eq!(previous, want, "slot {slot}: {a} -> {b} -> {c}");
        }
        assert!(first_step > 0 && second_step > 0);

        // The add's window closes: the drain's entry alone is left.
        let wait =
            |until: Instant| std::thread::sleep(until.saturating_duration_since(Instant::now()));
        wait(added + Duration::from_secs(u64::from(WINDOW_SECS)) + MARGIN);
        dp.close_windows(&s3).unwrap();
        for (slot, previous) in previous_owners(&dp) {
            let (b, c) = (owner(&s2, slot), owner(&s3, slot));
            assert_eq!(previous, (b != c).then_some(b), "slot {slot}");
        }
        assert!(drained + Duration::from_secs(u64::from(WINDOW_SECS)) > Instant::now());

        // The drain's window closes: no previous table at all.
        wait(drained + Duration::from_secs(u64::from(WINDOW_SECS)) + MARGIN);
        dp.close_windows(&s3).unwrap();
        assert_eq!(dp.previous_programmed().count(), 0);
        assert!(previous_owners(&dp).iter().all(|(_, p)| p.is_none()));
        assert_eq!(dp.next_window_close(), None);
    }
}
