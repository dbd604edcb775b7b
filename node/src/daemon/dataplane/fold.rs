//! The previous table programmed for a VIP: a per-slot fold of the entries
//! of its history whose second-hop window is open, against its current
//! table.
//!
//! The forwarder holds one previous table per VIP and carries one previous
//! owner per packet (FORWARDER.md, "Second hop"). With two changes inside
//! one window, the table before the latest change alone would hand a slot
//! that moved X -> b5 and then stayed b5 the "previous owner" b5: no second
//! hop for X's flows. So each slot gets, from the entries newest first, the
//! first owner that differs from the slot's current owner and still serves
//! the VIP; the current owner if there is none (then the forwarder carries
//! nothing for that slot). X -> b5 -> b5 gives X, X -> b5 -> Y gives b5,
//! X -> Y -> X gives Y.
//!
//! Pure: tables in, table out (no maps, no clock).

use std::net::IpAddr;

use maglev::NO_BACKEND;

use crate::tables::VipTable;

/// A previous table ready for the forwarder, in its form: backend addresses
/// and slot -> index into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousFold {
    /// The backends some slot names: always a subset of the current table's
    /// backends (an owner that no longer serves the VIP is never carried),
    /// in the current table's order. So the fold fits wherever the current
    /// table fits (the loader's `check_table`, the backend map): no history
    /// entry ever has to be dropped to make it fit.
    pub backends: Vec<IpAddr>,
    /// Slot -> index into `backends`, or [`NO_BACKEND`].
    pub slots: Vec<u32>,
}

/// The previous table for `current` from `entries` (the open history
/// entries' tables, newest first); `None` when no slot's previous owner
/// differs from its current owner (nothing to carry), or the VIP has no
/// current table.
///
/// A per-slot fold needs one slot space: entries are folded while their
/// table size is the current one, up to the first that differs (a table
/// size change inside the window; older entries are left out). When the
/// newest entry already differs in size, it is programmed alone (with its
/// non-serving owners emptied), as the forwarder then compares owners per
/// packet across the two sizes. Entries without slots (no active backend
/// then) own nothing and are skipped.
pub fn fold(current: &VipTable, entries: &[&VipTable]) -> Option<PreviousFold> {
    let size = current.slots.len();
    if size == 0 {
        return None;
    }
    let mut owning = entries.iter().filter(|t| !t.slots.is_empty()).peekable();
    let newest = *owning.peek()?;
    if newest.slots.len() != size {
        let map = to_current(current, newest);
        let slots = newest
            .slots
            .iter()
            .map(|&s| owner(&map, s).unwrap_or(NO_BACKEND))
            .collect();
        return compact(current, slots);
    }
    let same: Vec<(&VipTable, Vec<Option<u32>>)> = owning
        .take_while(|t| t.slots.len() == size)
        .map(|t| (*t, to_current(current, t)))
        .collect();
    let mut differs = false;
    let slots = current
        .slots
        .iter()
        .enumerate()
        .map(|(s, &now)| {
            let before = same
                .iter()
                .find_map(|(t, map)| owner(map, t.slots[s]).filter(|&o| o != now));
            differs |= before.is_some();
            before.unwrap_or(now)
        })
        .collect();
    if !differs {
        return None;
    }
    compact(current, slots)
}

/// Per backend of `table`, its index in `current`'s backends (`None`: it
/// no longer serves the VIP).
fn to_current(current: &VipTable, table: &VipTable) -> Vec<Option<u32>> {
    table
        .backends
        .iter()
        .map(|a| {
            current
                .backends
                .iter()
                .position(|c| c == a)
                .map(|i| i as u32)
        })
        .collect()
}

/// The serving owner (as a current index) of slot value `slot`.
fn owner(map: &[Option<u32>], slot: u32) -> Option<u32> {
    map.get(slot as usize).copied().flatten()
}

/// `slots` (indices into `current`'s backends) with only the backends they
/// name; `None` when they name none.
fn compact(current: &VipTable, slots: Vec<u32>) -> Option<PreviousFold> {
    let mut used = vec![false; current.backends.len()];
    for &s in &slots {
        if let Some(u) = used.get_mut(s as usize) {
            *u = true;
        }
    }
    let mut index = vec![NO_BACKEND; current.backends.len()];
    let mut backends = Vec::new();
    for (i, address) in current.backends.iter().enumerate() {
        if used[i] {
            index[i] = backends.len() as u32;
            backends.push(*address);
        }
    }
    if backends.is_empty() {
        return None;
    }
    let slots = slots
        .iter()
        .map(|&s| index.get(s as usize).copied().unwrap_or(NO_BACKEND))
        .collect();
    Some(PreviousFold { backends, slots })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A table over backends `backends` (10.0.0.n) whose slot s is owned by
    /// 10.0.0.`owners[s]` (0 = no backend).
    fn table(backends: &[u8], owners: &[u8]) -> VipTable {
        let slots = owners
            .iter()
            .map(|&o| {
                backends
                    .iter()
                    .position(|&b| b == o)
                    .map_or(NO_BACKEND, |i| i as u32)
            })
            .collect();
        VipTable {
            backends: backends.iter().map(|&b| ip(b)).collect(),
            slots,
            fingerprint: 0,
        }
    }

    /// The fold's owner of each slot, as 10.0.0.n's n (0 = none).
    fn owners(fold: &PreviousFold) -> Vec<u8> {
        fold.slots
            .iter()
            .map(|&s| match fold.backends.get(s as usize) {
                Some(IpAddr::V4(a)) => a.octets()[3],
                _ => 0,
            })
            .collect()
    }

    /// The cases, one slot each (X = 1, b5 = 5, Y = 2): history
    /// X, then b5, now b5 -> X; X, b5, now Y -> b5; X, Y, now X -> Y.
    #[test]
    fn each_slot_gets_its_newest_differing_owner() {
        let oldest = table(&[1, 2, 5], &[1, 1, 1]);
        let newer = table(&[1, 2, 5], &[5, 5, 2]);
        let current = table(&[1, 2, 5], &[5, 2, 1]);
        let fold = fold(&current, &[&newer, &oldest]).unwrap();
        assert_eq!(owners(&fold), vec![1, 5, 2]);
    }

    /// Only the table before the latest change (the old behaviour) would
    /// carry b5 for the first slot, i.e. nothing: the fold carries X.
    #[test]
    fn a_slot_unchanged_by_the_latest_change_keeps_the_older_owner() {
        let before_add = table(&[1, 2, 3, 4], &[1, 2, 3, 4, 1, 2]);
        let before_drain = table(&[1, 2, 3, 4, 5], &[5, 2, 3, 5, 1, 2]);
        let now = table(&[1, 2, 3, 4, 5], &[5, 5, 3, 5, 1, 2]);
        let alone = fold(&now, &[&before_drain]).unwrap();
        assert_eq!(owners(&alone), vec![5, 2, 3, 5, 1, 2]);
        let folded = fold(&now, &[&before_drain, &before_add]).unwrap();
        assert_eq!(owners(&folded), vec![1, 2, 3, 4, 1, 2]);
    }

    #[test]
    fn no_differing_slot_means_no_previous_table() {
        let now = table(&[1, 2], &[1, 2, 1]);
        assert_eq!(fold(&now, &[&now.clone(), &now.clone()]), None);
        assert_eq!(fold(&now, &[]), None);
        // No current table: nothing is forwarded, nothing to carry.
        let empty = table(&[1], &[]);
        assert_eq!(fold(&empty, &[&now]), None);
    }

    /// A removed (or down) owner is never carried: the slot falls through
    /// to the next older entry, or to its current owner.
    #[test]
    fn owners_that_no_longer_serve_fall_through() {
        let oldest = table(&[1, 2, 3], &[1, 3, 2]);
        let newer = table(&[2, 3], &[3, 3, 3]);
        let now = table(&[1, 2], &[2, 1, 1]);
        let fold = fold(&now, &[&newer, &oldest]).unwrap();
        assert_eq!(owners(&fold), vec![1, 1, 2]);
        // Only current backends, in the current order.
        assert_eq!(fold.backends, vec![ip(1), ip(2)]);
    }

    /// The fold names only current backends that some slot needs.
    #[test]
    fn the_backend_list_is_what_the_slots_need() {
        let before = table(&[1, 2, 3], &[1, 1, 1, 1]);
        let now = table(&[1, 2, 3], &[3, 3, 3, 1]);
        let fold = fold(&now, &[&before]).unwrap();
        assert_eq!(fold.backends, vec![ip(1)]);
        assert_eq!(fold.slots, vec![0, 0, 0, 0]);
    }

    /// Entries without slots are skipped; folding stops at a table size
    /// change; a newest entry of another size is programmed alone.
    #[test]
    fn table_sizes_and_empty_entries() {
        let now = table(&[1, 2], &[1, 1, 2]);
        let empty = table(&[], &[]);
        let same = table(&[1, 2], &[2, 1, 2]);
        let other_size = table(&[1, 2], &[2, 2]);
        let f = fold(&now, &[&empty, &same, &other_size]).unwrap();
        assert_eq!(owners(&f), vec![2, 1, 2]);
        // The older same-size entry beyond the size change is left out.
        let older = table(&[1, 2], &[1, 2, 1]);
        let f = fold(&now, &[&same, &other_size, &older]).unwrap();
        assert_eq!(owners(&f), vec![2, 1, 2]);
        let f = fold(&now, &[&other_size, &same]).unwrap();
        assert_eq!(owners(&f), vec![2, 2]);
        // ... with its non-serving owners emptied.
        let gone = table(&[1, 7], &[7, 1]);
        let f = fold(&now, &[&gone]).unwrap();
        assert_eq!(f.backends, vec![ip(1)]);
        assert_eq!(f.slots, vec![NO_BACKEND, 0]);
        assert_eq!(fold(&now, &[&table(&[7], &[7, 7])]), None);
    }

    /// The measurement with real Maglev tables (65,537 slots):
    /// 4 -> 5 backends, then one of the first four drained. Every slot that
    /// changed owner in the first step and not in the second carries its
    /// owner from before the first step; the fold never carries the drained
    /// backend's replacement as its own previous owner.
    #[test]
    fn add_then_drain_carries_the_owner_from_before_the_add() {
        use edgelb_consensus::{Backend, BackendState, MaglevInput, Protocol, VipKey};
        let key = VipKey {
            address: "192.0.2.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let input = |n: u8, drained: Option<u8>| MaglevInput {
            table_size: 65_537,
            backends: (1..=n)
                .map(|b| Backend {
                    address: ip(b),
                    weight: 1,
                    state: if Some(b) == drained {
                        BackendState::Draining
                    } else {
                        BackendState::Active
                    },
                })
                .collect(),
        };
        let build = |i: &MaglevInput| crate::tables::build(&key, i).unwrap();
        let four = build(&input(4, None));
        let five = build(&input(5, None));
        let drained = build(&input(5, Some(2)));
        let fold = fold(&drained, &[&five, &four]).unwrap();
        let addr = |t: &VipTable, s: usize| t.backends[t.slots[s] as usize];
        let folded = |s: usize| fold.backends[fold.slots[s] as usize];
        let (mut first_only, mut both) = (0, 0);
        for s in 0..65_537 {
            let (a, b, c) = (addr(&four, s), addr(&five, s), addr(&drained, s));
            if b == c && a != b {
                first_only += 1;
                assert_eq!(folded(s), a, "slot {s}");
            } else if b != c {
                assert_eq!(folded(s), b, "slot {s}");
                both += usize::from(a != b);
            } else {
                assert_eq!(folded(s), c, "slot {s}: no second hop");
            }
        }
        // About a fifth of the slots moved in the first step; the second
        // step moved almost none of those again.
        assert!(first_only > 65_537 / 6, "{first_only}");
        assert!(both < 65_537 / 100, "{both}");
    }
}
