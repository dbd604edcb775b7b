//! Counters read from the per-CPU maps and summed over CPUs.
use std::{collections::BTreeMap, net::IpAddr};

use xdp_fwd_common::{
    stats::{stat, STAT_NAMES},
    Traffic,
};

use crate::VipKey;

/// A snapshot of the forwarder's counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Global counters indexed by [`xdp_fwd_common::stats::stat`].
    pub counters: [u64; stat::COUNT as usize],
    /// Traffic per configured VIP.
    pub vips: BTreeMap<VipKey, Traffic>,
    /// Traffic per backend in use.
    pub backends: BTreeMap<IpAddr, Traffic>,
}

impl Stats {
    /// The counter `index` (a [`stat`] constant); 0 if out of range.
    pub fn get(&self, index: u32) -> u64 {
        self.counters.get(index as usize).copied().unwrap_or(0)
    }

    /// (name, value) of every global counter, for metrics export.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        STAT_NAMES
            .iter()
            .copied()
            .zip(self.counters.iter().copied())
    }
}
