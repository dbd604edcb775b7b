//! Deterministic, weighted Maglev lookup tables.
//!
//! A Maglev table (Eisenbud et al., *Maglev: A Fast and Reliable Software
//! Network Load Balancer*, NSDI 2016) maps every flow hash to a backend so that
//! the backends share new flows in proportion to their weights, and a change
//! to the backend set moves few flows that did not have to move. EdgeLB's XDP
//! forwarder reads the table from a BPF array map: slot `flow_hash % M` holds
//! the flow's backend.
//!
//! Every EdgeLB node builds its tables from the Raft-replicated backend set, and
//! all of them must come out bit-identical, so that a flow that ECMP moves to
//! another node still reaches the same backend. This crate is therefore pure
//! (no I/O, no randomness, no floating point, no dependence on the platform,
//! the toolchain or the order the backends are given in), and the algorithm
//! below is a fixed format, versioned by [`ALGORITHM_VERSION`] and pinned by
//! the golden vectors of `tests/golden.rs`. Nodes report
//! [`Table::fingerprint`] so operators and tests can see that they agree.
//!
//! ```
//! use maglev::{BackendState, Table, TableSize};
//! use std::net::SocketAddr;
//!
//! let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
//! let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
//! let c: SocketAddr = "10.0.0.3:80".parse().unwrap();
//! let table = Table::build(TableSize::DEFAULT, [(a, 1), (b, 3)]).unwrap();
//!
//! // b has three times a's weight, so three times a's slots (to one slot).
//! let (sa, sb) = (table.backends()[0].slots(), table.backends()[1].slots());
//! assert_eq!((sa, sb), (16_384, 49_153));
//!
//! // Any flow hash picks a backend; the same hash always picks the same one.
//! let backend = table.lookup(0x1234_5678_9abc_def0).unwrap();
//! assert!(*backend == a || *backend == b);
//!
//! // Draining b and adding c: b keeps its index but gets no new flows.
//! let next = Table::build_with_states(
//!     TableSize::DEFAULT,
//!     [(a, 1, BackendState::Active), (b, 3, BackendState::Draining), (c, 1, BackendState::Active)],
//! )
//! .unwrap();
//! assert_eq!(next.backends()[1].slots(), 0);
//! let diff = table.diff(&next).unwrap();
//! // All of b's slots change owner (and some of a's, as a and c now share).
//! assert_eq!(diff.changes().iter().filter(|ch| ch.previous == 1).count(), 49_153);
//! assert!(diff.changes().iter().all(|ch| ch.current != 1));
//! ```
//!
//! # The algorithm (version 2)
//!
//! Input: a prime table size `M` ([`TableSize`]) and a set of backends, each a
//! key ([`BackendKey`], encoded to canonical bytes), a `u32` weight and a
//! [`BackendState`].
//!
//! 1. **Order.** The backends are sorted by their canonical key bytes
//!    (lexicographically, as unsigned bytes); a backend's *index* is its
//!    position in that order, and is what the table's entries hold. Two
//!    backends with the same bytes are an error.
//! 2. **Who gets slots.** A backend is *active* if its state is
//!    [`BackendState::Active`] and its weight is > 0. Draining and down
//!    backends keep their index (so draining one renumbers no other) but get
//!    no slots, whatever their weight. More active backends than `M` is an
//!    error; with none, every slot is [`NO_BACKEND`].
//! 3. **How many slots.** With `S` the sum of the active weights, active
//!    backend `i` of weight `w` is owed `M * w / S` slots. It gets the floor of
//!    that, and the slots left over go one each to the backends with the
//!    largest remainders `(M * w) mod S`, ties to the lower index (the
//!    largest-remainder method, in exact integers). So each count `q_i` is
//!    less than one slot from its ideal share, and equal weights give counts
//!    that differ by at most one. A weight is relative: scaling every weight
//!    by the same factor changes nothing.
//! 4. **Permutations.** Each active backend has a permutation of the slots:
//!    `offset = siphash(OFFSET_KEY, bytes) % M`,
//!    `skip = siphash(SKIP_KEY, bytes) % (M - 1) + 1`, and its `j`-th preferred
//!    slot is `(offset + j * skip) % M` (`j` = 0, 1, ...). SipHash is
//!    SipHash-2-4 ([`siphash24`]); its keys `(k0, k1)` are the little-endian
//!    words of the 16 ASCII bytes `"EdgeLB-Maglev-of"` and `"EdgeLB-Maglev-sk"`.
//! 5. **Turns.** With `W` the largest weight of the active backends, a
//!    backend of weight `w` and count `q` takes its `k`-th turn
//!    (`k` = 1..=`q`) in round `floor((k - 1) * W / w) + 1`: every backend
//!    takes a turn in round 1, and then one every `W / w` rounds. Turns are
//!    taken in order of round, and within a round in order of index. On its
//!    turn a backend takes the first slot of its permutation that is still
//!    free (skipping the ones it has already looked at). A backend stops
//!    when it has its count, so all `M` slots are taken, each backend's count
//!    of them, by round `M + 1` at the latest.
//!
//! Step 5 is the paper's round robin, paced by weight as in Katran's
//! weighted Maglev: a backend of half another's weight takes a turn every
//! other round, so the backends' turns interleave evenly through the
//! population. A backend's schedule depends only on its own weight and the
//! largest one, so removing or adding a backend (one that does not change
//! the largest weight) leaves the order of the others' turns as it was, but
//! for where each stops, which is what keeps the flows a change moves few; the property tests bound them
//! (`tests/properties.rs`). With equal weights it is exactly the paper's
//! round robin: backends whose count is one short miss the last round.
//!
//! # Flows of draining and down backends
//!
//! The table only decides where *new* flows go. The forwarder looks a flow up
//! in its connection table first: a flow pinned there to a
//! [`Draining`](BackendState::Draining) backend keeps going to it, while an
//! entry for a [`Down`](BackendState::Down) one is ignored and the flow is
//! re-hashed onto this table ([`BackendState::keeps_existing_flows`]).
//! [`Table::diff`] lists the slots whose backend changes between two tables.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod diff;
mod error;
mod key;
mod populate;
mod quota;
mod siphash;
mod size;
mod state;
mod table;

pub use diff::{SlotChange, TableDiff};
pub use error::Error;
pub use key::BackendKey;
pub use siphash::{siphash24, SipHasher24};
pub use size::TableSize;
pub use state::BackendState;
pub use table::{Backend, Table};

/// Version of the table format: the algorithm, its hash keys, the
/// [`BackendKey`] encodings and the fingerprint. Nodes whose versions differ
/// build different tables. Version 1 (equal turns scaled by weight, no
/// states) was never deployed.
pub const ALGORITHM_VERSION: u32 = 2;

/// The entry of a slot that has no backend (only in tables with no active
/// backend).
pub const NO_BACKEND: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display() {
        let cases = [
            (Error::SizeNotPrime(4), "Maglev table size 4 is not prime"),
            (
                Error::SizeOutOfRange(1),
                "Maglev table size 1 is outside 2..=16777213",
            ),
            (
                Error::DuplicateBackend(vec![1, 0xab]),
                "two backends have the same key (bytes [01, ab])",
            ),
            (
                Error::TooManyBackends {
                    backends: 4,
                    limit: 3,
                },
                "4 backends, but the table takes at most 3",
            ),
            (
                Error::SizeMismatch { left: 3, right: 5 },
                "cannot compare Maglev tables of sizes 3 and 5",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
