//! The diff between two tables.

mod common;

use common::names;
use maglev::{BackendState, Error, SlotChange, Table, TableSize, NO_BACKEND};

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
    assert_eq!(a.diff(&b), Err(mismatch));
}
