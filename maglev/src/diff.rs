//! What changed between two tables: [`TableDiff`].
//!
//! No other crate calls it yet: it is what the property tests
//! (`tests/properties.rs`, flows moved by a change), the diff tests and the
//! `diff`/`changed_slots` benchmarks measure a change with, and what a
//! forwarder that rewrites only changed slots would use.

use crate::{Error, Table, TableSize, NO_BACKEND};

/// In an index map, an old backend that the new table does not have. Never an
/// index (tables hold fewer than `u32::MAX - 1` backends) nor [`NO_BACKEND`].
const UNMATCHED: u32 = u32::MAX - 1;

/// One slot whose backend changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotChange {
    /// The slot.
    pub slot: u32,
    /// Its backend's index in the old table's [`Table::backends`], or
    /// [`NO_BACKEND`] if the old table was empty.
    pub previous: u32,
    /// Its backend's index in the new table's [`Table::backends`], or
    /// [`NO_BACKEND`] if the new table is empty.
    pub current: u32,
}

/// The slots whose backend differs between two tables of the same size, in
/// slot order, each with its previous and its new backend: what the
/// forwarder rewrites when the backend set changes.
///
/// Backends are matched by key bytes, not by index, since indices shift when a
/// backend with a smaller key comes or goes: a slot whose backend kept its key
/// but changed index is not listed (a forwarder whose map holds stable ids,
/// see [`Table::entries_with`], has nothing to rewrite there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDiff {
    size: TableSize,
    changes: Vec<SlotChange>,
}

impl TableDiff {
    /// The size of both tables.
    pub fn size(&self) -> TableSize {
        self.size
    }

    /// The changed slots, in slot order.
    pub fn changes(&self) -> &[SlotChange] {
        &self.changes
    }

    /// How many slots changed.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// True if no slot changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl<K> Table<K> {
    /// The slots that send new flows to a different backend in `new` than in
    /// `self`, with the backend before and after. Both tables must be of the
    /// same size.
    pub fn diff<L>(&self, new: &Table<L>) -> Result<TableDiff, Error> {
        let map = self.index_map(new)?;
        let changes = self
            .entries()
            .iter()
            .zip(new.entries())
            .enumerate()
            .filter(|&(_, (&old, &cur))| map[old.wrapping_add(1) as usize] != cur)
            .map(|(slot, (&previous, &current))| SlotChange {
                slot: slot as u32,
                previous,
                current,
            })
            .collect();
        Ok(TableDiff {
            size: self.size(),
            changes,
        })
    }

    /// How many slots send new flows to a different backend in `other` (the
    /// length of [`Table::diff`], without listing them).
    pub fn changed_slots<L>(&self, other: &Table<L>) -> Result<usize, Error> {
        let map = self.index_map(other)?;
        Ok(self
            .entries()
            .iter()
            .zip(other.entries())
            .map(|(&old, &cur)| usize::from(map[old.wrapping_add(1) as usize] != cur))
            .sum())
    }

    /// For each entry value `e` of `self`, at `e + 1` (wrapping, so
    /// [`NO_BACKEND`] is at 0): the index in `new` of the backend with the
    /// same key bytes, [`NO_BACKEND`] for [`NO_BACKEND`], or [`UNMATCHED`].
    fn index_map<L>(&self, new: &Table<L>) -> Result<Vec<u32>, Error> {
        if self.size() != new.size() {
            return Err(Error::SizeMismatch {
                left: self.size().get(),
                right: new.size().get(),
            });
        }
        let mut map = Vec::with_capacity(self.backends().len() + 1);
        map.push(NO_BACKEND);
        // Both backend lists are sorted by key bytes: merge them.
        let theirs = new.backends();
        let mut j = 0;
        for b in self.backends() {
            while j < theirs.len() && theirs[j].key_bytes() < b.key_bytes() {
                j += 1;
            }
            let same = j < theirs.len() && theirs[j].key_bytes() == b.key_bytes();
            map.push(if same { j as u32 } else { UNMATCHED });
        }
        Ok(map)
    }
}
