//! Hot restart: rebuilding the userspace view from adopted pinned maps.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::Instant,
};

use aya::maps::{Array, HashMap as BpfHashMap};
use xdp_fwd_common::{map_name, words_addr, Backend, VipEpoch, VipKey, VipMeta};

use super::{Forwarder, VipState};
use crate::{Error, Result, Vip};

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
        let backends: Vec<Backend> = {
            let map: Array<_, Backend> = Array::try_from(self.map(map_name::BACKENDS)?)?;
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
        let entries: Vec<(VipKey, VipMeta)> = {
            let map: BpfHashMap<_, VipKey, VipMeta> =
                BpfHashMap::try_from(self.map(map_name::VIPS)?)?;
            map.iter().collect::<std::result::Result<_, _>>()?
        };
        let by_id: HashMap<u32, IpAddr> = self.backends.iter().map(|(a, i)| (i, a)).collect();
        for (key, meta) in entries {
            let Some(vip) = Vip::from_key(&key) else {
                continue;
            };
            let stride = settings.ring_stride;
            let base = (meta.index * 2 + u32::from(meta.active_half & 1)) * stride;
            let table: Vec<u32> = {
                let ring: Array<_, u32> = Array::try_from(self.map(map_name::RING)?)?;
                (0..meta.table_size)
                    .map(|i| ring.get(&(base + i), 0))
                    .collect::<std::result::Result<_, _>>()?
            };
            let mut used: Vec<IpAddr> = Vec::new();
            for id in table.iter().collect::<BTreeSet<_>>() {
                if let Some(addr) = by_id.get(id) {
                    used.push(*addr);
                    self.backends.add_ref(addr);
                }
            }
            let mut halves = [None, None];
            halves[meta.active_half as usize & 1] = Some(table);
            self.free_vip_indices.remove(&meta.index);
            self.vips.insert(
                vip,
                VipState {
                    meta,
                    backends: used,
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
}
