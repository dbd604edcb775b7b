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
    /// Returns the number of slots written. The VIP has no previous table
    /// afterwards (see [`Forwarder::set_table_with_previous`]).
    pub fn set_table(&mut self, vip: &VipKey, backends: &[IpAddr], slots: &[u32]) -> Result<usize> {
        self.set_table_with_previous(vip, backends, slots, None)
    }

    /// As [`Forwarder::set_table`], and makes `previous` (same form: backend
    /// addresses + slot -> index) the VIP's previous table for second-hop
    /// lookups; `None` = no previous table.
    ///
    /// The previous table lives in the inactive RING half. After a normal
    /// change (`previous` is the table that was live) the flip leaves it
    /// there and nothing more is written. Otherwise (a restart, or a
    /// `previous` the forwarder never had live) it is written into the
    /// inactive half after the flip, with no previous table announced
    /// meanwhile, so a packet never reads a half being rewritten.
    pub fn set_table_with_previous(
        &mut self,
        vip: &VipKey,
        backends: &[IpAddr],
        slots: &[u32],
        previous: Option<(&[IpAddr], &[u32])>,
    ) -> Result<usize> {
        self.check_table(backends, slots)?;
        if let Some((pb, ps)) = previous {
            self.check_table(pb, ps)
                .map_err(|e| Error::Invalid(format!("previous table: {e}")))?;
        }
        let (meta, old_backends, old_prev_backends, live) = {
            let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
            let active = (state.meta.active_half & 1) as usize;
            (
                state.meta,
                state.backends.clone(),
                state.prev_backends.clone(),
                state.halves[active].clone(),
            )
        };

        let ids = self.acquire_backends(backends)?;
        let table = table_ids(&ids, slots);
        let (prev_addrs, prev_table) = match previous {
            Some((pb, ps)) => match self.acquire_backends(pb) {
                Ok(pids) => (pb.to_vec(), Some(table_ids(&pids, ps))),
                Err(e) => {
                    self.release_backends(backends)?;
                    return Err(e);
                }
            },
            None => (Vec::new(), None),
        };
        let taken: Vec<IpAddr> = backends.iter().chain(&prev_addrs).copied().collect();
        let (written, pending) = match self.install(vip, meta, live, table, prev_table) {
            Ok(done) => done,
            Err(e) => {
                // Nothing went live: what is live keeps the references it had.
                self.release_backends(&taken)?;
                return Err(e);
            }
        };
        // The new table is live (with or without its previous table).
        if let Some(state) = self.vips.get_mut(vip) {
            state.backends = backends.to_vec();
            state.prev_backends = prev_addrs.clone();
        }
        self.release_backends(&old_backends)?;
        self.release_backends(&old_prev_backends)?;
        let Some(prev) = pending else {
            return Ok(written);
        };
        match self.install_previous(vip, &prev) {
            Ok(n) => Ok(written + n),
            Err(e) => {
                // Live without a previous table: drop its references.
                if let Some(state) = self.vips.get_mut(vip) {
                    state.prev_backends.clear();
                }
                self.release_backends(&prev_addrs)?;
                Err(e)
            }
        }
    }

    /// Drops `vip`'s previous table (second-hop window over): one VipMeta
    /// update; its backends are released.
    pub fn clear_previous(&mut self, vip: &VipKey) -> Result<()> {
        let (meta, prev) = {
            let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
            (state.meta, state.prev_backends.clone())
        };
        if meta.prev_table_size != 0 {
            self.publish(
                vip,
                VipMeta {
                    prev_table_size: 0,
                    ..meta
                },
            )?;
        }
        if let Some(state) = self.vips.get_mut(vip) {
            state.prev_backends.clear();
        }
        self.release_backends(&prev)
    }

    /// Makes `table` live and, when that is possible without rewriting
    /// the half being flipped away from, `prev` its previous table. Returns
    /// the RING slots written and the previous table still to be written
    /// into the now inactive half ([`Forwarder::install_previous`]).
    fn install(
        &mut self,
        vip: &VipKey,
        meta: VipMeta,
        live: Option<Vec<u32>>,
        table: Vec<u32>,
        prev: Option<Vec<u32>>,
    ) -> Result<(usize, Option<Vec<u32>>)> {
        let active = meta.active_half & 1;
        let prev_len = prev.as_ref().map_or(0, |p| p.len() as u32);
        if live.as_ref() == Some(&table) && prev.is_some() {
            // The table is live already: only the previous one may change.
            let mut written = 0;
            if self.half_table(vip, 1 - active) != prev {
                self.retire_previous(vip, meta)?;
                written =
                    self.write_half(vip, meta.index, 1 - active, prev.as_deref().unwrap_or(&[]))?;
            }
            self.publish(
                vip,
                VipMeta {
                    prev_table_size: prev_len,
                    ..meta
                },
            )?;
            return Ok((written, None));
        }
        let half = 1 - active;
        // After a normal change the half that stops being live holds `prev`.
        let prev_in_place = prev.is_some() && live == prev;
        // The half about to be rewritten may be serving as previous table.
        self.retire_previous(vip, meta)?;
        let written = self.write_half(vip, meta.index, half, &table)?;
        let flipped = VipMeta {
            table_size: table.len() as u32,
            active_half: half,
            prev_table_size: if prev_in_place { prev_len } else { 0 },
            ..meta
        };
        self.publish(vip, flipped)?;
        if let Some(state) = self.vips.get_mut(vip) {
            state.flipped_at = Some(Instant::now());
        }
        let pending = if prev_in_place { None } else { prev };
        Ok((written, pending))
    }

    /// Writes `prev` into `vip`'s inactive half (after the grace) and
    /// announces it as the previous table.
    fn install_previous(&mut self, vip: &VipKey, prev: &[u32]) -> Result<usize> {
        let meta = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?.meta;
        let inactive = 1 - (meta.active_half & 1);
        let written = self.write_half(vip, meta.index, inactive, prev)?;
        self.publish(
            vip,
            VipMeta {
                prev_table_size: prev.len() as u32,
                ..meta
            },
        )?;
        Ok(written)
    }

    /// Stops packets reading `vip`'s inactive half as previous table before
    /// it is rewritten: the half then waits out [`HALF_REUSE_GRACE`].
    fn retire_previous(&mut self, vip: &VipKey, meta: VipMeta) -> Result<()> {
        if meta.prev_table_size == 0 {
            return Ok(());
        }
        self.publish(
            vip,
            VipMeta {
                prev_table_size: 0,
                ..meta
            },
        )?;
        if let Some(state) = self.vips.get_mut(vip) {
            state.flipped_at = Some(Instant::now());
        }
        Ok(())
    }

    /// What RING half `half` of `vip` holds, if known.
    fn half_table(&self, vip: &VipKey, half: u8) -> Option<Vec<u32>> {
        self.vips.get(vip)?.halves[half as usize & 1].clone()
    }

    /// Writes `table` into RING half `half` of VIP index `index` (only the
    /// slots that differ from what it holds), once the half has been out
    /// of use for [`HALF_REUSE_GRACE`].
    fn write_half(&mut self, vip: &VipKey, index: u32, half: u8, table: &[u32]) -> Result<usize> {
        let (shadow, flipped_at) = {
            let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
            (state.halves[half as usize & 1].clone(), state.flipped_at)
        };
        if let Some(t) = flipped_at {
            if let Some(wait) = HALF_REUSE_GRACE.checked_sub(t.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let stride = self.options.capacity.table_size;
        let base = (index * 2 + u32::from(half & 1)) * stride;
        // The half is not live and out of its grace: plain stores, made
        // live by the caller's VipMeta update (see `RingMapping`).
        let result = self.ring.write(base, table, shadow.as_deref());
        if let Some(s) = self.vips.get_mut(vip) {
            // Unknown after a failed write.
            s.halves[half as usize & 1] = result.as_ref().ok().map(|_| table.to_vec());
        }
        result
    }

    /// Writes `meta` for `vip` into the VIPS map and the shadow.
    fn publish(&mut self, vip: &VipKey, meta: VipMeta) -> Result<()> {
        self.write_vip(vip, meta)?;
        if let Some(state) = self.vips.get_mut(vip) {
            state.meta = meta;
        }
        Ok(())
    }

    /// Checks a table's form: size within capacity, slots referring to
    /// `backends`, no duplicate address.
    fn check_table(&self, backends: &[IpAddr], slots: &[u32]) -> Result<()> {
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
        Ok(())
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

    /// Current owner of a flow and, when it differs, the previous owner a
    /// non-SYN cache miss would carry (as the program computes them: the
    /// previous owner only if it has the current owner's family).
    pub fn owners_for(
        &self,
        vip: &VipKey,
        src: IpAddr,
        sport: u16,
    ) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
        let current = self.backend_for(vip, src, sport)?;
        let state = self.vips.get(vip).ok_or(Error::UnknownVip(*vip))?;
        if state.meta.prev_table_size == 0 {
            return Ok((current, None));
        }
        let settings = self.settings()?;
        let key = flow_key(
            src,
            vip.address,
            sport,
            vip.port,
            protocol_number(vip.protocol),
        );
        let hash = flow_hash(&key, settings.hash_seed, state.meta.flags);
        let inactive = 1 - (state.meta.active_half as usize & 1);
        let Some(table) = &state.halves[inactive] else {
            return Ok((current, None));
        };
        let size = (state.meta.prev_table_size as usize).min(table.len());
        if size == 0 {
            return Ok((current, None));
        }
        let slot = maglev_slot(hash, size as u32) as usize;
        let prev = table
            .get(slot)
            .and_then(|&id| self.backends.iter().find(|(_, i)| *i == id))
            .map(|(a, _)| a);
        let differs = match (current, prev) {
            (Some(c), Some(p)) => c != p && c.is_ipv4() == p.is_ipv4(),
            _ => false,
        };
        Ok((current, if differs { prev } else { None }))
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

/// Backend ids of a table given as slot -> index into `ids`.
fn table_ids(ids: &[u32], slots: &[u32]) -> Vec<u32> {
    slots
        .iter()
        .map(|&s| {
            if s == NO_BACKEND {
                NO_BACKEND
            } else {
                ids[s as usize]
            }
        })
        .collect()
}
