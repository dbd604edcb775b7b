//! A built table and how it is built: [`Table`], [`Backend`].

use crate::populate::{populate, Walk};
use crate::quota::quotas;
use crate::siphash::{siphash24, SipHasher24};
use crate::{BackendKey, BackendState, Error, TableSize, ALGORITHM_VERSION, NO_BACKEND};

/// `(k0, k1)` of a SipHash key given as 16 ASCII bytes.
const fn sip_key(s: &[u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        a[i] = s[i];
        b[i] = s[i + 8];
        i += 1;
    }
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

/// SipHash key of a backend's permutation offset.
pub(crate) const OFFSET_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-of");
/// SipHash key of a backend's permutation skip.
pub(crate) const SKIP_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-sk");
/// SipHash key of [`Table::fingerprint`].
pub(crate) const FINGERPRINT_KEY: (u64, u64) = sip_key(b"EdgeLB-Maglev-fp");

/// Most backends a table takes in all (any state): indices stay below
/// `u32::MAX - 1`, clear of [`NO_BACKEND`] and of the diff's sentinel.
const MAX_BACKENDS: usize = u32::MAX as usize - 1;

/// One backend's entry in a built [`Table`]: its key, weight, state and the
/// number of slots it got. (A cluster's configured backend is another type,
/// in the consensus crate; this one exists only inside a table.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend<K> {
    key: K,
    key_bytes: Vec<u8>,
    weight: u32,
    state: BackendState,
    slots: u32,
}

impl<K> Backend<K> {
    /// The key it was given as.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Its canonical key bytes ([`BackendKey::key_bytes`]).
    pub fn key_bytes(&self) -> &[u8] {
        &self.key_bytes
    }

    /// Its weight, as given (also when it is not active).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Its state, as given.
    pub fn state(&self) -> BackendState {
        self.state
    }

    /// How many slots of the table it holds.
    pub fn slots(&self) -> u32 {
        self.slots
    }
}

/// A built Maglev table: `M` slots, each holding the index of a backend in
/// [`Table::backends`] (or [`NO_BACKEND`] if no backend is active).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table<K> {
    size: TableSize,
    backends: Vec<Backend<K>>,
    entries: Vec<u32>,
    /// See [`Table::build_scratch_bytes`].
    scratch_bytes: usize,
}

impl<K: BackendKey> Table<K> {
    /// Builds the table of `size` slots for `backends`, given as
    /// `(key, weight)` in any order, all [`BackendState::Active`] (a weight of
    /// 0 gets no slots). See the [crate docs](crate) for the algorithm and
    /// [`Error`] for what is refused.
    pub fn build<I>(size: TableSize, backends: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, u32)>,
    {
        Self::build_with_states(
            size,
            backends
                .into_iter()
                .map(|(key, weight)| (key, weight, BackendState::Active)),
        )
    }

    /// Builds the table of `size` slots for `backends`, given as
    /// `(key, weight, state)` in any order. Only active backends of weight > 0
    /// get slots; draining and down ones keep their index (and weight, for
    /// the record) but get none.
    pub fn build_with_states<I>(size: TableSize, backends: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, u32, BackendState)>,
    {
        let mut backends: Vec<Backend<K>> = backends
            .into_iter()
            .map(|(key, weight, state)| Backend {
                key_bytes: key.key_bytes(),
                key,
                weight,
                state,
                slots: 0,
            })
            .collect();
        backends.sort_unstable_by(|a, b| a.key_bytes.cmp(&b.key_bytes));
        if let Some(pair) = backends
            .windows(2)
            .find(|p| p[0].key_bytes == p[1].key_bytes)
        {
            return Err(Error::DuplicateBackend(pair[0].key_bytes.clone()));
        }
        if backends.len() > MAX_BACKENDS {
            return Err(Error::TooManyBackends {
                backends: backends.len(),
                limit: MAX_BACKENDS,
            });
        }
        let weights: Vec<u32> = backends.iter().map(effective_weight).collect();
        let active = weights.iter().filter(|&&w| w > 0).count();
        let m = size.get();
        if active > m as usize {
            return Err(Error::TooManyBackends {
                backends: active,
                limit: m as usize,
            });
        }

        let quotas = quotas(m, &weights);
        let mut walks: Vec<Walk> = backends
            .iter()
            .zip(&quotas)
            .map(|(b, &q)| {
                if q == 0 {
                    Walk::IDLE
                } else {
                    permutation(m, &b.key_bytes)
                }
            })
            .collect();
        let mut entries = vec![NO_BACKEND; m as usize];
        let populate_bytes = populate(m, &mut walks, &quotas, &weights, &mut entries);
        let scratch_bytes = populate_bytes
            + weights.capacity() * std::mem::size_of::<u32>()
            + quotas.capacity() * std::mem::size_of::<u32>()
            + walks.capacity() * std::mem::size_of::<Walk>();
        for (b, &q) in backends.iter_mut().zip(&quotas) {
            b.slots = q;
        }
        Ok(Table {
            size,
            backends,
            entries,
            scratch_bytes,
        })
    }
}

/// The weight that counts for slots: none unless active.
fn effective_weight<K>(b: &Backend<K>) -> u32 {
    if b.state.takes_new_flows() {
        b.weight
    } else {
        0
    }
}

/// Step 4 of the algorithm: where a backend's permutation starts and how it
/// steps, from its key bytes.
fn permutation(m: u32, key_bytes: &[u8]) -> Walk {
    let m64 = u64::from(m);
    let offset = (siphash24(OFFSET_KEY.0, OFFSET_KEY.1, key_bytes) % m64) as u32;
    // m >= TableSize::MIN = 2, so m - 1 > 0.
    let skip = (siphash24(SKIP_KEY.0, SKIP_KEY.1, key_bytes) % (m64 - 1)) as u32 + 1;
    Walk::new(m, offset, skip)
}

impl<K> Table<K> {
    /// The number of slots `M`.
    pub fn size(&self) -> TableSize {
        self.size
    }

    /// The `M` entries, slot by slot: the index of each slot's backend in
    /// [`Table::backends`].
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The entries with each backend index replaced by `id(backend)`, which is
    /// called once per backend in index order; [`NO_BACKEND`] stays as it is.
    /// This is what the forwarder's map holds: its own stable backend ids,
    /// since a table's indices shift when a backend with a smaller key comes
    /// or goes.
    pub fn entries_with(&self, id: impl FnMut(&Backend<K>) -> u32) -> Vec<u32> {
        let ids: Vec<u32> = self.backends.iter().map(id).collect();
        self.entries
            .iter()
            .map(|&e| {
                if e == NO_BACKEND {
                    NO_BACKEND
                } else {
                    ids[e as usize]
                }
            })
            .collect()
    }

    /// All backends given, in every state, sorted by key bytes: an entry `i`
    /// means `backends()[i]`.
    pub fn backends(&self) -> &[Backend<K>] {
        &self.backends
    }

    /// The index of the backend whose key bytes are `key_bytes`, if it is in
    /// the table (in any state).
    pub fn index_of(&self, key_bytes: &[u8]) -> Option<u32> {
        self.backends
            .binary_search_by(|b| b.key_bytes.as_slice().cmp(key_bytes))
            .ok()
            .map(|i| i as u32)
    }

    /// True if no slot has a backend (no active backend of weight > 0).
    pub fn is_empty(&self) -> bool {
        self.entries[0] == NO_BACKEND
    }

    /// The slot a flow hash falls in: `hash % M`.
    pub fn slot_of(&self, hash: u64) -> usize {
        (hash % u64::from(self.size.get())) as usize
    }

    /// The index of the backend for a new flow of this hash, or `None` if the
    /// table is empty.
    pub fn lookup_index(&self, hash: u64) -> Option<u32> {
        let e = self.entries[self.slot_of(hash)];
        (e != NO_BACKEND).then_some(e)
    }

    /// The backend for a new flow of this hash, or `None` if the table is
    /// empty. Always an active one.
    pub fn lookup(&self, hash: u64) -> Option<&K> {
        self.lookup_index(hash)
            .map(|i| &self.backends[i as usize].key)
    }

    /// A 64-bit digest of the table, for nodes to report and compare: equal
    /// on every node and platform exactly when the tables are equal (format
    /// version, size, every backend's key bytes, weight and state, and every
    /// entry). SipHash-2-4 keyed with `"EdgeLB-Maglev-fp"` over: the version
    /// and `M` as u32 LE, the backend count as u64 LE, per backend its key
    /// length as u64 LE, key bytes, weight as u32 LE and [state
    /// code](BackendState::code), then every entry as u32 LE.
    pub fn fingerprint(&self) -> u64 {
        let mut h = SipHasher24::new(FINGERPRINT_KEY.0, FINGERPRINT_KEY.1);
        h.write_u32(ALGORITHM_VERSION);
        h.write_u32(self.size.get());
        h.write_u64(self.backends.len() as u64);
        for b in &self.backends {
            h.write_u64(b.key_bytes.len() as u64);
            h.write(&b.key_bytes);
            h.write_u32(b.weight);
            h.write(&[b.state.code()]);
        }
        let mut buf = [0u8; 4 * 1024];
        for chunk in self.entries.chunks(1024) {
            for (out, e) in buf.chunks_exact_mut(4).zip(chunk) {
                out.copy_from_slice(&e.to_le_bytes());
            }
            h.write(&buf[..4 * chunk.len()]);
        }
        h.finish()
    }

    /// Heap bytes the table holds: its entries (`4 M`) and its backend list
    /// with their key bytes (not counting heap memory owned by the keys `K`).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u32>()
            + self.backends.capacity() * std::mem::size_of::<Backend<K>>()
            + self
                .backends
                .iter()
                .map(|b| b.key_bytes.capacity())
                .sum::<usize>()
    }

    /// Bytes of scratch memory the build of this table held while it filled
    /// the slots, besides the table itself (the build's working set, as
    /// allocated): a bitset of taken slots (`M / 8` bytes); per backend its
    /// effective weight, slot count, permutation walk and turn clock; and one
    /// window of the turn order (about 4,096 turns, listed then sorted) with
    /// its round counters.
    pub fn build_scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_are_the_documented_strings() {
        assert_eq!(OFFSET_KEY.0.to_le_bytes(), *b"EdgeLB-M");
        assert_eq!(OFFSET_KEY.1.to_le_bytes(), *b"aglev-of");
        assert_eq!(SKIP_KEY.0.to_le_bytes(), *b"EdgeLB-M");
        assert_eq!(SKIP_KEY.1.to_le_bytes(), *b"aglev-sk");
        assert_eq!(FINGERPRINT_KEY.1.to_le_bytes(), *b"aglev-fp");
    }

    #[test]
    fn smallest_table_works() {
        let t = Table::build(TableSize::new(2).unwrap(), [("a", 1), ("b", 1)]).unwrap();
        let mut e = t.entries().to_vec();
        e.sort();
        assert_eq!(e, [0, 1]);
        let t = Table::build(TableSize::new(2).unwrap(), [("a", 1)]).unwrap();
        assert_eq!(t.entries(), [0, 0]);
    }

    #[test]
    fn scratch_bytes_are_the_bitset_and_a_little_more() {
        let size = TableSize::DEFAULT;
        let bitset = 65_537usize.div_ceil(64) * 8;
        for (n, w) in [(1u32, 1u32), (10, 1), (1000, 1), (1000, 7)] {
            let t = Table::build(size, (0..n).map(|i| (i, 1 + i % w))).unwrap();
            let bytes = t.build_scratch_bytes();
            let n = n as usize;
            // Per backend: weight, count and walk (16 bytes), and a turn clock.
            assert!(bytes > bitset + n * 16, "n={n}: {bytes}");
            // Plus one window: about 4096 turns (listed in 8 bytes each,
            // sorted in 4, grown by doubling) and their round counters.
            let window = 2 * (4096 + n) * (8 + 4) + 4 * 4097;
            assert!(bytes <= bitset + n * 64 + window, "n={n}: {bytes}");
        }
        let empty = Table::<u32>::build(size, []).unwrap();
        assert_eq!(empty.build_scratch_bytes(), 0);
    }
}
