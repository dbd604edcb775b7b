//! The RING map's values mapped into the loader (`BPF_F_MMAPABLE`): a table
//! half is written with plain stores instead of one `bpf()` update per slot.
use super::map_mmap::MapMmap;
use crate::{Error, Result};

/// Bytes between two RING slots in the mapping: the kernel stores array
/// values `round_up(value_size, 8)` apart, so each u32 slot is followed by
/// four bytes of padding.
const SLOT_STRIDE: usize = 8;

/// A shared read-write mapping of the RING array's values, unmapped on drop.
///
/// Soundness: the mapping covers `entries * 8` bytes rounded up to pages
/// (what the kernel maps for the array), every access is bounds-checked
/// against `entries`, and only the loader writes (through `&mut self`). The
/// program reads slots concurrently with plain loads; it cannot see a torn
/// slot because each slot is one 4-byte aligned u32 store, which is atomic
/// on the architectures we support (x86-64, arm64), and the loader only
/// writes a half that is not live (the double buffering and
/// `HALF_REUSE_GRACE` in `table`). A half becomes live through a VipMeta
/// update, a `bpf()` syscall after a release fence, so the stores are
/// visible before the program can pick the half.
///
/// Send and Sync through [`MapMmap`]: writes need `&mut self`, and reads
/// through `&self` race only with the program's own loads, which the kernel
/// makes no Rust aliasing claims about.
pub(super) struct RingMapping {
    map: MapMmap,
    entries: usize,
}

impl RingMapping {
    /// Maps the values of `map` (the RING array, created mmapable with
    /// `entries` slots).
    pub(super) fn new(map: &aya::maps::Map, entries: u32) -> Result<Self> {
        let entries = entries as usize;
        let map = MapMmap::new(map, "RING array", entries * SLOT_STRIDE)?;
        Ok(Self { map, entries })
    }

    /// Slot `i`'s address (in bounds: the callers check against `entries`;
    /// aligned: page-aligned base, 8-byte stride).
    fn slot(&self, i: usize) -> *mut u32 {
        self.map
            .as_ptr()
            .cast::<u32>()
            .wrapping_add(i * (SLOT_STRIDE / 4))
    }

    /// Checks that slots `first..first + count` exist.
    fn check(&self, first: u32, count: usize) -> Result<usize> {
        let first = first as usize;
        match first.checked_add(count) {
            Some(end) if end <= self.entries => Ok(first),
            _ => Err(Error::Invalid(format!(
                "RING slots {first}..+{count} beyond its {} entries",
                self.entries
            ))),
        }
    }

    /// Writes `values` into slots `first..`, skipping each slot whose
    /// `known` value (what it is known to hold, if anything) is already the
    /// one to write. Returns the number of slots written.
    pub(super) fn write(
        &mut self,
        first: u32,
        values: &[u32],
        known: Option<&[u32]>,
    ) -> Result<usize> {
        let first = self.check(first, values.len())?;
        let mut written = 0;
        for (i, &v) in values.iter().enumerate() {
            if known.and_then(|k| k.get(i)) == Some(&v) {
                continue;
            }
            // SAFETY: in bounds (checked above); aligned (page-aligned base,
            // 8-byte stride); volatile, as the program reads it too.
            unsafe { self.slot(first + i).write_volatile(v) };
            written += 1;
        }
        // Orders the stores before the VipMeta update that makes them live.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        Ok(written)
    }

    /// Reads `count` slots from `first`.
    pub(super) fn read(&self, first: u32, count: usize) -> Result<Vec<u32>> {
        let first = self.check(first, count)?;
        Ok((0..count)
            .map(|i| {
                // SAFETY: in bounds and aligned, as in `write`.
                unsafe { self.slot(first + i).read_volatile() }
            })
            .collect())
    }
}
