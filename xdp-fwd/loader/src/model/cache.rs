//! The model's connection cache (FORWARDER.md, "Connection cache"): one
//! CPU's slice of sets of 4 ways, full-key lookup, insert into the flow's
//! own way, else the lowest empty way, else the least recently used one.
//! Recency is an order of touches (the program uses jiffies, where touches
//! in one tick tie and go to the lowest way: see [`super::Outcome`]).
use std::{collections::HashMap, net::IpAddr};

use xdp_fwd_common::{conn_index, CONN_WAYS};

use super::Flow;

/// What a way remembers of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub backend: IpAddr,
    pub hash: u32,
    /// Index of the VIP in the model's configuration.
    pub vip: usize,
    /// The previous owner the flow was cached with (second hop): carried
    /// by every hit until the entry goes.
    pub prev: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug)]
struct Way {
    flow: Flow,
    cached: Cached,
    established: bool,
    touched: u64,
}

/// One CPU's connection cache.
pub struct ConnModel {
    sets: HashMap<u32, [Option<Way>; CONN_WAYS]>,
    mask: u32,
    seed: u32,
    clock: u64,
}

impl ConnModel {
    /// An empty cache of `sets` sets (a power of two), placing flows with
    /// the hash seed `seed`.
    pub fn new(sets: u32, seed: u32) -> Self {
        Self {
            sets: HashMap::new(),
            mask: sets.wrapping_sub(1),
            seed,
            clock: 0,
        }
    }

    /// Empties every set.
    pub fn clear(&mut self) {
        self.sets.clear();
    }

    fn set_of(&self, flow: &Flow) -> u32 {
        conn_index(&flow.key(), self.seed) & self.mask
    }

    /// The flow's entry, touched (recency, established), if it has one.
    pub(crate) fn hit(&mut self, flow: &Flow) -> Option<Cached> {
        self.clock += 1;
        let now = self.clock;
        let set = self.sets.get_mut(&self.set_of(flow))?;
        let way = set.iter_mut().flatten().find(|w| w.flow == *flow)?;
        way.touched = now;
        way.established = true;
        Some(way.cached)
    }

    /// Caches `flow` as a new entry; if a live entry of another flow was
    /// evicted, `Some((established, tick_dependent))`: whether it was, and
    /// whether the program's choice could differ (the victim is not way 0,
    /// so a way below it touched in the same tick would tie and win).
    pub(crate) fn insert(&mut self, flow: &Flow, cached: Cached) -> Option<(bool, bool)> {
        self.clock += 1;
        let now = self.clock;
        let set = self.set_of(flow);
        let ways = self.sets.entry(set).or_insert([None; CONN_WAYS]);
        let new = Way {
            flow: *flow,
            cached,
            established: false,
            touched: now,
        };
        if let Some(w) = ways.iter_mut().find(|w| w.is_some_and(|w| w.flow == *flow)) {
            *w = Some(new);
            return None;
        }
        if let Some(w) = ways.iter_mut().find(|w| w.is_none()) {
            *w = Some(new);
            return None;
        }
        let (index, victim) = ways
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, w)| w.map_or(0, |w| w.touched))
            .expect("a set has ways");
        let established = victim.is_some_and(|w| w.established);
        *victim = Some(new);
        Some((established, index != 0))
    }
}
