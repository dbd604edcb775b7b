//! Installing Maglev tables (double-buffered RING halves) and the backend
//! ids they refer to.
use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::maps::Array;
use xdp_fwd_common::{
    addr_words, flow_hash, maglev_slot, map_name, BackendEntry, VipMeta, NO_BACKEND,
};

use super::{flow_key, Forwarder};
use crate::{protocol_number, Error, Result, VipKey};

/// A RING half that stopped being live is rewritten only after this long, so
/// a packet that read the old half index just before the flip has finished
/// (XDP runs to completion in microseconds).
const HALF_REUSE_GRACE: Duration = Duration::from_millis(20);

impl Forwarder {
    /// Installs a complete Maglev table for `vip`, atomically.
    ///
    /// `backends[i]` is the address of backend `i`; `slots[s]` is the index
    /// (into `backends`) owning slot `s`, or [`NO_BACKEND`]. `slots` may be
    /// empty (no usable backend: the VIP's packets drop). The table is
    /// written into the VIP's inactive RING half (only slots that differ
    /// from what that half holds), then one map update makes it live.
    /// Returns the number of slots written.
    pub fn set_table(&mut self, vip: &VipKey, backends: &[IpAddr], slots: &[u32]) -> Result<usize> {
        let max = self.options.capacity.table_size as usize;
        if slots.len() > max {
            return Err(Error::Invalid(format!(
                "table of {} slots exceeds the capacity of {max}",
                slots.len()
            )));
        }
        if let Some(bad) = slots
            .iter()
            .find(|&&s| s != NO_BACKEND && s as usize >= backends.len())
        {
            return Err(Error::Invalid(format!(
                "slot refers to backend {bad} of {}",
                backends.len()
            )));
        }
        let unique: BTreeSet<&IpAddr> = backends.iter().collect();
        if unique.len() != backends.len() {
            return Err(Error::Invalid("duplicate backend address".into()));
        }
        let (meta, old_backends, shadow, flipped_at) = {
            let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
            let inactive = (1 - (state.meta.active_half & 1)) as usize;
            (
                state.meta,
                state.backends.clone(),
                state.halves[inactive].clone(),
                state.flipped_at,
            )
        };

        let ids = self.acquire_backends(backends)?;
        let table: Vec<u32> = slots
            .iter()
            .map(|&s| {
                if s == NO_BACKEND {
                    NO_BACKEND
                } else {
                    ids[s as usize]
                }
            })
            .collect();

        let half = 1 - (meta.active_half & 1);
        if let Some(t) = flipped_at {
            if let Some(wait) = HALF_REUSE_GRACE.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let stride = self.options.capacity.table_size;
        let base = (meta.index * 2 + u32::from(half)) * stride;
        let write_result = (|| -> Result<usize> {
            let mut ring: Array<_, u32> = Array::try_from(self.map_mut(map_name::RING)?)?;
            let mut written = 0;
            for (i, &id) in table.iter().enumerate() {
                let known = shadow.as_ref().and_then(|s| s.get(i)).copied();
                if known != Some(id) {
                    ring.set(base + i as u32, id, 0)?;
                    written += 1;
                }
            }
            Ok(written)
        })();
        let written = match write_result {
            Ok(n) => n,
            Err(e) => {
                // Nothing went live; give back what was taken.
                self.release_backends(backends)?;
                if let Some(s) = self.vips.get_mut(vip) {
                    s.halves[half as usize] = None;
                }
                return Err(e);
            }
        };
        let new_meta = VipMeta {
            table_size: table.len() as u32,
            active_half: half,
            ..meta
        };
        self.write_vip(vip, new_meta)?;

        if let Some(state) = self.vips.get_mut(vip) {
            state.meta = new_meta;
            state.backends = backends.to_vec();
            state.halves[half as usize] = Some(table);
            state.flipped_at = Some(Instant::now());
        }
        self.release_backends(&old_backends)?;
        Ok(written)
    }

    /// The backend `vip`'s live table gives a flow, as the program computes
    /// it for a new flow (`lbctl lookup`). Established flows may differ:
    /// they keep their connection-table entry.
    pub fn backend_for(&self, vip: &VipKey, src: IpAddr, sport: u16) -> Result<Option<IpAddr>> {
        let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
        let settings = self.settings()?;
        let key = flow_key(
            src,
            vip.address,
            sport,
            vip.port,
            protocol_number(vip.protocol),
        );
        let hash = flow_hash(&key, settings.hash_seed, state.meta.flags);
        let active = state.meta.active_half as usize & 1;
        let Some(table) = &state.halves[active] else {
            return Ok(None);
        };
        let slot = maglev_slot(hash, table.len() as u32) as usize;
        let Some(&id) = table.get(slot) else {
            return Ok(None);
        };
        Ok(self.backends.iter().find(|(_, i)| *i == id).map(|(a, _)| a))
    }

    pub(super) fn acquire_backends(&mut self, addrs: &[IpAddr]) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(addrs.len());
        for (n, addr) in addrs.iter().enumerate() {
            let acquired = match self.backends.acquire(*addr) {
                Ok(a) => a,
                Err(e) => {
                    self.release_backends(&addrs[..n])?;
                    return Err(e);
                }
            };
            if acquired.fresh {
                let (words, family) = addr_words(*addr);
                let entry = BackendEntry {
                    addr: words,
                    generation: acquired.generation,
                    family,
                    _pad: [0; 3],
                };
                let mut map: Array<_, BackendEntry> =
                    Array::try_from(self.map_mut(map_name::BACKENDS)?)?;
                map.set(acquired.id, entry, 0)?;
                self.zero_traffic(map_name::BACKEND_STATS, acquired.id)?;
            }
            ids.push(acquired.id);
        }
        Ok(ids)
    }

    pub(super) fn release_backends(&mut self, addrs: &[IpAddr]) -> Result<()> {
        for addr in addrs {
            if let Some(id) = self.backends.release(addr) {
                self.clear_backend(id)?;
            }
        }
        Ok(())
    }

    /// Marks a backend id unused (keeping its generation).
    pub(super) fn clear_backend(&mut self, id: u32) -> Result<()> {
        let mut map: Array<_, BackendEntry> = Array::try_from(self.map_mut(map_name::BACKENDS)?)?;
        let old = map.get(&id, 0)?;
        map.set(
            id,
            BackendEntry {
                addr: [0; 4],
                family: 0,
                ..old
            },
            0,
        )?;
        Ok(())
    }
}
