//! Hot restart: which maps are pinned and where, the checks before adopting
//! the pins of a previous process, rebuilding the userspace view from them,
//! and removing them on a full stop. (Attaching through a pinned link is in
//! `attach`.)
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use aya::maps::{Array, HashMap as BpfHashMap, MapInfo};
use xdp_fwd_common::{map_name, words_addr, BackendEntry, VipEpoch, VipMapKey, VipMeta};

use super::{Forwarder, VipState};
use crate::{config::vip_from_map_key, Error, Result, PROGRAM_OBJECT};

/// Maps pinned for hot restart: all state and counters survive; only the
/// next-hop cache (refilled within 100 ms) starts empty.
const PINNED_MAPS: [&str; 13] = [
    map_name::SETTINGS,
    map_name::VIPS,
    map_name::VIP_EPOCHS,
    map_name::VIP_ADDRS,
    map_name::RING,
    map_name::BACKENDS,
    map_name::CONN_CACHE,
    map_name::CONN_PREV,
    map_name::STATS,
    map_name::VIP_STATS,
    map_name::BACKEND_STATS,
    map_name::TX_PORTS,
    map_name::VIP_FILTER,
];

/// The pin path of each of [`PINNED_MAPS`] in `dir`, creating `dir`.
pub(super) fn map_pins(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    Ok(PINNED_MAPS.iter().map(|n| (*n, dir.join(n))).collect())
}

/// The pin path of the XDP link on `interface` in `dir`.
pub(super) fn link_pin(dir: &Path, interface: &str) -> PathBuf {
    dir.join(format!("link_{interface}"))
}

/// Checks, before adopting pinned maps, that each is the map this program
/// uses: the same type, key and value sizes and flags as in the object (a
/// pin left by another build of the program may differ, and the kernel
/// would accept it and the program misread it), and the entry count:
/// `sizes` for the maps sized by the node's capacities, else the object's
/// (e.g. the number of global counters).
pub(super) fn check_pinned_maps(
    pins: &[(&'static str, PathBuf)],
    sizes: &[(&'static str, u32)],
) -> Result<()> {
    let object = aya_obj::Object::parse(PROGRAM_OBJECT)
        .map_err(|e| Error::Invalid(format!("parsing the eBPF object: {e}")))?;
    for (name, path) in pins {
        if !path.exists() {
            continue;
        }
        let Some(want) = object.maps.get(*name) else {
            return Err(Error::Missing(name));
        };
        let have = MapInfo::from_pin(path)?;
        // An unknown type reads as u32::MAX: never equal.
        let have_type = have.map_type().map_or(u32::MAX, |t| t as u32);
        // The kernel adds BPF_F_RDONLY_PROG to device maps itself.
        const KERNEL_SET: u32 = 1 << 7;
        let have_shape = (
            have_type,
            have.key_size(),
            have.value_size(),
            have.map_flags() & !KERNEL_SET,
        );
        let want_shape = (
            want.map_type(),
            want.key_size(),
            want.value_size(),
            want.map_flags() & !KERNEL_SET,
        );
        if have_shape != want_shape {
            let (t, k, v, f) = have_shape;
            if (t, k, v) == (want_shape.0, want_shape.1, want_shape.2) {
                // Same layout, other flags: e.g. a RING pinned before it was
                // mmapable (BPF_F_MMAPABLE = 0x400), which cannot be mapped.
                return Err(Error::Invalid(format!(
                    "pinned map {name} has flags {f:#x}, this program's has {:#x} (0x400 = \
                     BPF_F_MMAPABLE): pinned by another build; a hot restart cannot adopt \
                     it, remove the pins and restart cold",
                    want_shape.3
                )));
            }
            let (wt, wk, wv, wf) = want_shape;
            return Err(Error::Invalid(format!(
                "pinned map {name} (type {t}, key {k} B, value {v} B, flags {f:#x}) is not \
                 the map this program uses (type {wt}, key {wk} B, value {wv} B, flags \
                 {wf:#x}): pinned by another build; remove the pins to start afresh"
            )));
        }
        match sizes.iter().find(|(n, _)| n == name) {
            Some((_, entries)) if have.max_entries() != *entries => {
                return Err(Error::Invalid(format!(
                    "pinned map {name} has {} entries, this process expects {entries}: \
                     restart with the same capacities, or remove the pins",
                    have.max_entries()
                )));
            }
            None if have.max_entries() != want.max_entries() => {
                return Err(Error::Invalid(format!(
                    "pinned map {name} has {} entries, this program's has {}: pinned by \
                     another build; remove the pins to start afresh",
                    have.max_entries(),
                    want.max_entries()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

impl Forwarder {
    /// Rebuilds the userspace view from adopted maps (hot restart).
    pub(super) fn recover(&mut self) -> Result<()> {
        let settings = self.settings()?;
        if settings.ring_stride != self.options.capacity.table_size {
            return Err(Error::Invalid(format!(
                "pinned maps use a table capacity of {}, this process {}",
                settings.ring_stride, self.options.capacity.table_size
            )));
        }
        if settings.conn_set_mask != self.conn_sets.wrapping_sub(1) {
            return Err(Error::Invalid(format!(
                "pinned settings use {} connection-cache sets, this process {}",
                settings.conn_set_mask.wrapping_add(1),
                self.conn_sets
            )));
        }
        let backends: Vec<BackendEntry> = {
            let map: Array<_, BackendEntry> = Array::try_from(self.map(map_name::BACKENDS)?)?;
            map.iter().collect::<std::result::Result<_, _>>()?
        };
        for (id, b) in backends.iter().enumerate() {
            if b.family == 0 {
                self.backends.restore_generation(id as u32, b.generation);
            } else {
                self.backends
                    .restore(words_addr(b.addr, b.family), id as u32, b.generation);
            }
        }
        let entries: Vec<(VipMapKey, VipMeta)> = {
            let map: BpfHashMap<_, VipMapKey, VipMeta> =
                BpfHashMap::try_from(self.map(map_name::VIPS)?)?;
            map.iter().collect::<std::result::Result<_, _>>()?
        };
        let by_id: HashMap<u32, IpAddr> = self.backends.iter().map(|(a, i)| (i, a)).collect();
        for (key, meta) in entries {
            let Some(vip) = vip_from_map_key(&key) else {
                continue;
            };
            let stride = settings.ring_stride;
            let base = (meta.index * 2 + u32::from(meta.active_half & 1)) * stride;
            let table = self.ring.read(base, meta.table_size as usize)?;
            let mut used: Vec<IpAddr> = Vec::new();
            for id in table.iter().collect::<BTreeSet<_>>() {
                if let Some(addr) = by_id.get(id) {
                    used.push(*addr);
                    self.backends.add_ref(addr);
                }
            }
            let mut halves = [None, None];
            halves[meta.active_half as usize & 1] = Some(table);
            // The previous table (second hop) keeps its backends referenced.
            let mut prev_backends: Vec<IpAddr> = Vec::new();
            if meta.prev_table_size != 0 {
                let inactive = 1 - (meta.active_half & 1);
                let base = (meta.index * 2 + u32::from(inactive)) * stride;
                let prev = self.ring.read(base, meta.prev_table_size as usize)?;
                for id in prev.iter().collect::<BTreeSet<_>>() {
                    if let Some(addr) = by_id.get(id) {
                        prev_backends.push(*addr);
                        self.backends.add_ref(addr);
                    }
                }
                halves[inactive as usize] = Some(prev);
            }
            self.free_vip_indices.remove(&meta.index);
            self.vips.insert(
                vip,
                VipState {
                    meta,
                    backends: used,
                    prev_backends,
                    halves,
                    flipped_at: Some(Instant::now()),
                },
            );
        }
        // Epochs continue above every epoch in the map, so no new one equals
        // an epoch a cached flow may hold.
        let last_epoch = {
            let epochs: Array<_, VipEpoch> = Array::try_from(self.map(map_name::VIP_EPOCHS)?)?;
            let mut last = 0;
            for e in epochs.iter() {
                last = e?.epoch.max(last);
            }
            last
        };
        self.last_vip_epoch = last_epoch;
        for (_, id) in self.backends.drain_unreferenced() {
            self.clear_backend(id)?;
        }
        Ok(())
    }

    /// Removes every pinned map and link of `pin_dir` (a full stop, as
    /// opposed to a restart). Programs attached through those links detach.
    pub fn remove_pins(pin_dir: &Path) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(pin_dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            std::fs::remove_file(&path)
                .map_err(|e| Error::Io(format!("removing {}", path.display()), e))?;
        }
        let _ = std::fs::remove_dir(pin_dir);
        Ok(())
    }
}
