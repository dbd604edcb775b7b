//! Backend id allocation: every distinct backend address gets a dense id
//! (its BACKENDS slot and counter index) while at least one VIP uses it.
//! Reusing an id bumps its generation, so connection-table entries of the
//! previous owner stop matching.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u32,
    refs: u32,
}

/// Outcome of [`BackendRegistry::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquired {
    /// The backend's id.
    pub id: u32,
    /// Generation to write if `fresh`.
    pub generation: u32,
    /// The id was just assigned to this address: write its BACKENDS entry.
    pub fresh: bool,
}

/// Ids in use, reference counts and generations.
#[derive(Debug)]
pub(crate) struct BackendRegistry {
    by_addr: HashMap<IpAddr, Entry>,
    generations: Vec<u32>,
    free: BTreeSet<u32>,
}

impl BackendRegistry {
    /// An empty registry of `capacity` ids.
    pub fn new(capacity: u32) -> Self {
        Self {
            by_addr: HashMap::new(),
            generations: vec![0; capacity as usize],
            free: (0..capacity).collect(),
        }
    }

    /// Restores an id found in use in the maps (hot restart).
    pub fn restore(&mut self, addr: IpAddr, id: u32, generation: u32) {
        if let Some(g) = self.generations.get_mut(id as usize) {
            *g = generation;
            self.free.remove(&id);
            self.by_addr.insert(addr, Entry { id, refs: 0 });
        }
    }

    /// Records the generation of an unused id found in the maps.
    pub fn restore_generation(&mut self, id: u32, generation: u32) {
        if let Some(g) = self.generations.get_mut(id as usize) {
            *g = generation;
        }
    }

    /// Takes a reference on `addr`'s id, assigning one if needed.
    pub fn acquire(&mut self, addr: IpAddr) -> Result<Acquired> {
        if let Some(e) = self.by_addr.get_mut(&addr) {
            e.refs += 1;
            let generation = self.generations[e.id as usize];
            return Ok(Acquired {
                id: e.id,
                generation,
                fresh: false,
            });
        }
        let id = self.free.pop_first().ok_or(Error::Capacity("backends"))?;
        let g = &mut self.generations[id as usize];
        // 0 is reserved: it is what a connection-table value nobody wrote holds.
        *g = g.checked_add(1).unwrap_or(1);
        self.by_addr.insert(addr, Entry { id, refs: 1 });
        Ok(Acquired {
            id,
            generation: *g,
            fresh: true,
        })
    }

    /// Drops a reference; returns the id if it is now unused (the caller
    /// clears its BACKENDS entry).
    pub fn release(&mut self, addr: &IpAddr) -> Option<u32> {
        let e = self.by_addr.get_mut(addr)?;
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return None;
        }
        let id = e.id;
        self.by_addr.remove(addr);
        self.free.insert(id);
        Some(id)
    }

    /// Takes a reference without allocating (hot restart bookkeeping).
    pub fn add_ref(&mut self, addr: &IpAddr) {
        if let Some(e) = self.by_addr.get_mut(addr) {
            e.refs += 1;
        }
    }

    /// Addresses with no references (after a restore), removed and returned
    /// with their ids.
    pub fn drain_unreferenced(&mut self) -> Vec<(IpAddr, u32)> {
        let dead: Vec<(IpAddr, u32)> = self
            .by_addr
            .iter()
            .filter(|(_, e)| e.refs == 0)
            .map(|(a, e)| (*a, e.id))
            .collect();
        for (a, id) in &dead {
            self.by_addr.remove(a);
            self.free.insert(*id);
        }
        dead
    }

    /// The id of `addr`, if it has one.
    #[cfg(test)]
    pub fn id(&self, addr: &IpAddr) -> Option<u32> {
        self.by_addr.get(addr).map(|e| e.id)
    }

    /// Every (address, id) in use.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        self.by_addr.iter().map(|(a, e)| (*a, e.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ids_are_shared_counted_and_reused_with_a_new_generation() {
        let mut r = BackendRegistry::new(2);
        let a = r.acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a,
            Acquired {
                id: 0,
                generation: 1,
                fresh: true
            }
        );
        let a2 = r.acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a2,
            Acquired {
                id: 0,
                generation: 1,
                fresh: false
            }
        );
        let b = r.acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(b.id, 1);
        assert!(matches!(
            r.acquire(ip("10.0.0.3")),
            Err(Error::Capacity("backends"))
        ));
        assert_eq!(r.release(&ip("10.0.0.1")), None, "still referenced once");
        assert_eq!(r.release(&ip("10.0.0.1")), Some(0));
        let c = r.acquire(ip("10.0.0.3")).unwrap();
        assert_eq!(
            c,
            Acquired {
                id: 0,
                generation: 2,
                fresh: true
            }
        );
        assert_eq!(r.id(&ip("10.0.0.3")), Some(0));
        assert_eq!(r.release(&ip("192.0.2.1")), None, "unknown address");
    }

    #[test]
    fn generation_skips_zero_on_wrap() {
        let mut r = BackendRegistry::new(1);
        r.restore_generation(0, u32::MAX);
        let a = r.acquire(ip("10.0.0.1")).unwrap();
        assert_eq!((a.id, a.generation), (0, 1));
    }

    #[test]
    fn restore_then_drain_unreferenced() {
        let mut r = BackendRegistry::new(4);
        r.restore(ip("10.0.0.1"), 2, 7);
        r.restore(ip("10.0.0.2"), 3, 1);
        r.add_ref(&ip("10.0.0.1"));
        assert_eq!(r.drain_unreferenced(), vec![(ip("10.0.0.2"), 3)]);
        let a = r.acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a,
            Acquired {
                id: 2,
                generation: 7,
                fresh: false
            }
        );
        // Id 3 is free again and comes back with a bumped generation.
        r.acquire(ip("10.0.0.9")).unwrap();
        r.acquire(ip("10.0.0.8")).unwrap();
        let d = r.acquire(ip("10.0.0.7")).unwrap();
        assert_eq!((d.id, d.generation), (3, 2));
    }
}
