//! Who held each slot before its current backend: [`PreviousOwners`].

use crate::{Error, Table, TableDiff, TableSize, NO_BACKEND};

/// A backend that some slot's record names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner<K> {
    key: K,
    key_bytes: Vec<u8>,
}

/// For every slot, the backend that held it before its current one: kept up
/// to date across a sequence of tables with [`PreviousOwners::record`].
///
/// This is what connection preservation needs: a flow that has no
/// connection-table entry (its entry expired or was never made, or ECMP
/// moved it to a node that never saw it) but belongs to an established
/// connection most likely started on its slot's previous owner, which the
/// forwarder can try (as Beamer's daisy chaining does). A slot that changes
/// owner records the owner it had; a slot that does not change keeps its
/// record, so a later unrelated change does not forget it.
///
/// The record depends on the sequence of tables a node has seen, not only on
/// the replicated state, so it is not part of any fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousOwners<K> {
    size: TableSize,
    /// Every backend some slot names, sorted by key bytes.
    owners: Vec<Owner<K>>,
    /// Per slot, an index into `owners`, or [`NO_BACKEND`] for none.
    slots: Vec<u32>,
}

impl<K: Clone> PreviousOwners<K> {
    /// A record of `size` slots in which no slot has a previous owner yet.
    pub fn new(size: TableSize) -> Self {
        PreviousOwners {
            size,
            owners: Vec::new(),
            slots: vec![NO_BACKEND; size.get() as usize],
        }
    }

    /// Records the change from `old` to `new` (the tables the forwarder had
    /// and now gets): every slot whose backend changed now names its backend
    /// in `old` (or none, if `old` was empty). Returns the diff, for the
    /// forwarder to rewrite those slots. All sizes must agree.
    pub fn record<L>(&mut self, old: &Table<K>, new: &Table<L>) -> Result<TableDiff, Error> {
        if self.size != old.size() {
            return Err(Error::SizeMismatch {
                left: self.size.get(),
                right: old.size().get(),
            });
        }
        let diff = old.diff(new)?;

        // Which existing owners unchanged slots still name, and which
        // backends of `old` the changed slots will name.
        let mut keep = vec![false; self.owners.len()];
        let mut changed = vec![false; self.slots.len()];
        for c in diff.changes() {
            changed[c.slot as usize] = true;
        }
        for (&o, &c) in self.slots.iter().zip(&changed) {
            if !c && o != NO_BACKEND {
                keep[o as usize] = true;
            }
        }
        let mut from_old = vec![false; old.backends().len()];
        for c in diff.changes() {
            if c.previous != NO_BACKEND {
                from_old[c.previous as usize] = true;
            }
        }

        // Merge both (sorted by key bytes) into the new owner list.
        let old_owners: Vec<Owner<K>> = std::mem::take(&mut self.owners);
        let mut owners: Vec<Owner<K>> = Vec::new();
        let mut remap_kept = vec![NO_BACKEND; old_owners.len()];
        let mut remap_old = vec![NO_BACKEND; old.backends().len()];
        let kept = old_owners.iter().enumerate().filter(|&(i, _)| keep[i]);
        let added = old
            .backends()
            .iter()
            .enumerate()
            .filter(|&(i, _)| from_old[i]);
        let mut kept = kept.peekable();
        let mut added = added.peekable();
        loop {
            let next = match (kept.peek(), added.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((_, k)), Some((_, a))) => k.key_bytes.as_slice().cmp(a.key_bytes()),
            };
            let at = owners.len() as u32;
            match next {
                std::cmp::Ordering::Less => {
                    let (i, k) = kept.next().expect("peeked");
                    remap_kept[i] = at;
                    owners.push(k.clone());
                }
                std::cmp::Ordering::Greater => {
                    let (i, a) = added.next().expect("peeked");
                    remap_old[i] = at;
                    owners.push(Owner {
                        key: a.key().clone(),
                        key_bytes: a.key_bytes().to_vec(),
                    });
                }
                std::cmp::Ordering::Equal => {
                    let (i, k) = kept.next().expect("peeked");
                    let (j, _) = added.next().expect("peeked");
                    remap_kept[i] = at;
                    remap_old[j] = at;
                    owners.push(k.clone());
                }
            }
        }

        for (o, &c) in self.slots.iter_mut().zip(&changed) {
            if !c && *o != NO_BACKEND {
                *o = remap_kept[*o as usize];
            }
        }
        for c in diff.changes() {
            self.slots[c.slot as usize] = if c.previous == NO_BACKEND {
                NO_BACKEND
            } else {
                remap_old[c.previous as usize]
            };
        }
        self.owners = owners;
        Ok(diff)
    }
}

impl<K> PreviousOwners<K> {
    /// The number of slots.
    pub fn size(&self) -> TableSize {
        self.size
    }

    /// The backend that held `slot` before its current one, if any (or if
    /// `slot` is out of range, none).
    pub fn owner(&self, slot: usize) -> Option<&K> {
        let o = *self.slots.get(slot)?;
        (o != NO_BACKEND).then(|| &self.owners[o as usize].key)
    }

    /// The key bytes of the backend that held `slot` before its current one.
    pub fn owner_key_bytes(&self, slot: usize) -> Option<&[u8]> {
        let o = *self.slots.get(slot)?;
        (o != NO_BACKEND).then(|| self.owners[o as usize].key_bytes.as_slice())
    }

    /// How many distinct backends the record names.
    pub fn owner_count(&self) -> usize {
        self.owners.len()
    }

    /// Per slot, `id(previous owner)`, or [`NO_BACKEND`] where there is none:
    /// what the forwarder's previous-owner map holds. `id` is called once per
    /// distinct owner, in key-byte order; it can return [`NO_BACKEND`] itself
    /// for an owner that must get no flows any more (one that is now down or
    /// gone), since the record keeps owners whatever became of them.
    pub fn entries_with(&self, mut id: impl FnMut(&K) -> u32) -> Vec<u32> {
        let ids: Vec<u32> = self.owners.iter().map(|o| id(&o.key)).collect();
        self.slots
            .iter()
            .map(|&o| {
                if o == NO_BACKEND {
                    NO_BACKEND
                } else {
                    ids[o as usize]
                }
            })
            .collect()
    }
}
