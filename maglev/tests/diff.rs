//! The diff between two tables and the per-slot record of previous owners.

mod common;

use common::names;
use maglev::{BackendState, Error, PreviousOwners, SlotChange, Table, TableSize, NO_BACKEND};

fn equal(n: usize) -> Vec<(String, u32)> {
    names(n).into_iter().map(|s| (s, 1)).collect()
}

/// The backend key of each slot, or None: what a diff must agree with.
fn owners(t: &Table<String>) -> Vec<Option<&str>> {
    t.entries()
        .iter()
        .map(|&e| (e != NO_BACKEND).then(|| t.backends()[e as usize].key().as_str()))
        .collect()
}

/// Checks `diff(old, new)` slot by slot against the keys of both tables.
fn check_diff(old: &Table<String>, new: &Table<String>) -> usize {
    let diff = old.diff(new).unwrap();
    let (before, after) = (owners(old), owners(new));
    let want: Vec<usize> = (0..before.len())
        .filter(|&s| before[s] != after[s])
        .collect();
    let got: Vec<usize> = diff.changes().iter().map(|c| c.slot as usize).collect();
    assert_eq!(got, want);
    for c in diff.changes() {
        assert_eq!(c.previous, old.entries()[c.slot as usize]);
        assert_eq!(c.current, new.entries()[c.slot as usize]);
    }
    assert_eq!(diff.len(), old.changed_slots(new).unwrap());
    assert_eq!(diff.is_empty(), want.is_empty());
    assert_eq!(diff.size(), old.size());
    diff.len()
}

#[test]
fn diff_lists_exactly_the_slots_whose_backend_changed() {
    let m = TableSize::new(16_381).unwrap();
    let base = Table::build(m, equal(20)).unwrap();
    // Remove one, add one (with a key that sorts first, so every index
    // shifts), reweight one, drain one, and empty the table.
    let mut removed = equal(20);
    removed.remove(7);
    let mut added = equal(20);
    added.push(("a-first".to_string(), 1));
    let mut reweighted = equal(20);
    reweighted[3].1 = 3;
    let drained: Vec<(String, u32, BackendState)> = equal(20)
        .into_iter()
        .enumerate()
        .map(|(i, (s, w))| {
            (
                s,
                w,
                if i == 11 {
                    BackendState::Draining
                } else {
                    BackendState::Active
                },
            )
        })
        .collect();
    let nexts = [
        Table::build(m, removed).unwrap(),
        Table::build(m, added).unwrap(),
        Table::build(m, reweighted).unwrap(),
        Table::build_with_states(m, drained).unwrap(),
        Table::build(m, Vec::<(String, u32)>::new()).unwrap(),
    ];
    for next in &nexts {
        let n = check_diff(&base, next);
        assert!(n > 0);
        check_diff(next, &base);
    }
    assert_eq!(check_diff(&base, &base), 0);
    // The empty table: every slot changes, to NO_BACKEND.
    let to_empty = base.diff(&nexts[4]).unwrap();
    assert_eq!(to_empty.len(), 16_381);
    assert!(to_empty.changes().iter().all(|c| c.current == NO_BACKEND));
    // Adding a backend that sorts first shifts every index by one, but only
    // the slots it takes (and the few others that move) are listed.
    let add = base.diff(&nexts[1]).unwrap();
    let taken = add.changes().iter().filter(|c| c.current == 0).count();
    assert_eq!(taken, nexts[1].backends()[0].slots() as usize);
    assert!(
        (add.len() - taken) * 100 < 16_381,
        "{} others",
        add.len() - taken
    );
}

#[test]
fn diff_of_draining_lists_its_slots_with_their_new_owners() {
    let m = TableSize::DEFAULT;
    let active: Vec<(String, u32, BackendState)> = names(10)
        .into_iter()
        .map(|s| (s, 1, BackendState::Active))
        .collect();
    let mut drained = active.clone();
    drained[2].2 = BackendState::Draining;
    let before = Table::build_with_states(m, active).unwrap();
    let after = Table::build_with_states(m, drained).unwrap();
    let diff = before.diff(&after).unwrap();
    let from_drained = diff.changes().iter().filter(|c| c.previous == 2).count();
    assert_eq!(from_drained, before.backends()[2].slots() as usize);
    assert!(diff.changes().iter().all(|c| c.current != 2));
    assert_eq!(
        diff.changes()[0],
        SlotChange {
            slot: diff.changes()[0].slot,
            previous: before.entries()[diff.changes()[0].slot as usize],
            current: after.entries()[diff.changes()[0].slot as usize],
        }
    );
}

#[test]
fn diff_needs_equal_sizes() {
    let a = Table::build(TableSize::new(251).unwrap(), equal(3)).unwrap();
    let b = Table::build(TableSize::new(257).unwrap(), equal(3)).unwrap();
    let mismatch = Error::SizeMismatch {
        left: 251,
        right: 257,
    };
    assert_eq!(a.diff(&b), Err(mismatch.clone()));
    let mut record = PreviousOwners::new(TableSize::new(251).unwrap());
    assert_eq!(record.record(&a, &b), Err(mismatch));
    let mut wrong = PreviousOwners::new(TableSize::new(257).unwrap());
    assert_eq!(
        wrong.record(&a, &a),
        Err(Error::SizeMismatch {
            left: 257,
            right: 251
        })
    );
}

#[test]
fn previous_owners_remember_who_held_each_slot_before() {
    let m = TableSize::new(4001).unwrap();
    let t0 = Table::build(m, equal(5)).unwrap();
    let mut record = PreviousOwners::new(m);
    assert!((0..4001).all(|s| record.owner(s).is_none()));
    assert_eq!(record.owner_count(), 0);

    // 1: backend-1 goes down: its slots now name it; no other slot moved
    // (or if one did, it names its old owner).
    let mut set1: Vec<(String, u32, BackendState)> = equal(5)
        .into_iter()
        .map(|(s, w)| (s, w, BackendState::Active))
        .collect();
    set1[1].2 = BackendState::Down;
    let t1 = Table::build_with_states(m, set1.clone()).unwrap();
    let d1 = record.record(&t0, &t1).unwrap();
    assert_eq!(d1, t0.diff(&t1).unwrap());
    let before = owners(&t0);
    let mid = owners(&t1);
    for s in 0..4001 {
        let want = (before[s] != mid[s]).then(|| before[s].unwrap());
        assert_eq!(record.owner(s).map(String::as_str), want, "slot {s}");
        assert_eq!(record.owner_key_bytes(s), want.map(str::as_bytes));
    }
    let held_by_1: Vec<usize> = (0..4001)
        .filter(|&s| before[s] == Some("backend-1"))
        .collect();
    assert!(held_by_1
        .iter()
        .all(|&s| record.owner(s).map(String::as_str) == Some("backend-1")));

    // 2: a new backend joins (sorting first). Slots it takes name their
    // owner in t1; slots that do not change keep their record, so
    // backend-1's old slots that the newcomer did not take still name it.
    set1.push(("a-new".to_string(), 1, BackendState::Active));
    let t2 = Table::build_with_states(m, set1).unwrap();
    record.record(&t1, &t2).unwrap();
    let after = owners(&t2);
    for s in 0..4001 {
        let want = if mid[s] != after[s] {
            mid[s]
        } else if before[s] != mid[s] {
            before[s]
        } else {
            None
        };
        assert_eq!(record.owner(s).map(String::as_str), want, "slot {s}");
    }
    // Down backend-1 is still named where no later change overwrote it.
    assert!(held_by_1
        .iter()
        .any(|&s| record.owner(s).map(String::as_str) == Some("backend-1")));

    // The forwarder's view: ids per slot, NO_BACKEND where there is none;
    // id is asked once per distinct owner.
    let mut asked = Vec::new();
    let ids = record.entries_with(|k| {
        asked.push(k.clone());
        k.trim_start_matches("backend-")
            .parse::<u32>()
            .unwrap_or(99)
    });
    assert_eq!(asked.len(), record.owner_count());
    assert!(asked.windows(2).all(|w| w[0] < w[1]));
    for (s, id) in ids.into_iter().enumerate() {
        match record.owner(s) {
            None => assert_eq!(id, NO_BACKEND),
            Some(k) => assert_eq!(
                id,
                k.trim_start_matches("backend-")
                    .parse::<u32>()
                    .unwrap_or(99)
            ),
        }
    }

    // 3: back to the start: every slot that changes names its t2 owner, and
    // owners no slot names any more are forgotten.
    let d3 = record.record(&t2, &t0).unwrap();
    for c in d3.changes() {
        let s = c.slot as usize;
        assert_eq!(record.owner(s).map(String::as_str), after[s]);
    }
    let named: std::collections::BTreeSet<&str> = (0..4001)
        .filter_map(|s| record.owner(s).map(String::as_str))
        .collect();
    assert_eq!(named.len(), record.owner_count());
    assert_eq!(record.size(), m);
    assert_eq!(record.owner(4001), None);
}

#[test]
fn previous_owners_of_slots_that_had_none() {
    let m = TableSize::new(251).unwrap();
    let empty = Table::build(m, Vec::<(String, u32)>::new()).unwrap();
    let full = Table::build(m, equal(3)).unwrap();
    let mut record = PreviousOwners::new(m);
    let d = record.record(&empty, &full).unwrap();
    assert_eq!(d.len(), 251);
    assert!(d.changes().iter().all(|c| c.previous == NO_BACKEND));
    assert!((0..251).all(|s| record.owner(s).is_none()));
    assert_eq!(record.owner_count(), 0);
    record.record(&full, &empty).unwrap();
    assert!((0..251).all(|s| record.owner(s).is_some()));
    assert_eq!(record.owner_count(), 3);
}
