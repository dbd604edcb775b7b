//! What can go wrong building or comparing tables: [`Error`].

use crate::TableSize;

/// Why a table could not be built or compared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The table size is not prime.
    #[error("Maglev table size {0} is not prime")]
    SizeNotPrime(u32),
    /// The table size is outside [`TableSize::MIN`]`..=`[`TableSize::MAX`].
    #[error("Maglev table size {0} is outside {min}..={max}", min = TableSize::MIN, max = TableSize::MAX)]
    SizeOutOfRange(u32),
    /// Two backends have the same canonical key bytes (given here).
    #[error("two backends have the same key (bytes {0:02x?})")]
    DuplicateBackend(Vec<u8>),
    /// More backends (active ones, or in all) than the table can index.
    #[error("{backends} backends, but the table takes at most {limit}")]
    TooManyBackends {
        /// How many backends there were.
        backends: usize,
        /// How many the table can take.
        limit: usize,
    },
    /// Two tables of different sizes were compared.
    #[error("cannot compare Maglev tables of sizes {left} and {right}")]
    SizeMismatch {
        /// Size of the table compared.
        left: u32,
        /// Size of the table it was compared with.
        right: u32,
    },
}
