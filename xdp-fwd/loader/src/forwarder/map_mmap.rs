//! A shared read-write mapping of an mmapable BPF array's values (CONN_CACHE,
//! RING), unmapped on drop: the one place the loader calls mmap.
use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use crate::{Error, Result};

/// The mapping of the first bytes of an array's values, owned: unmapped
/// when dropped. Users write and read through [`MapMmap::as_ptr`] within
/// [`MapMmap::len`] bytes; what is sound to do there concurrently with
/// the program is theirs to argue (see `ring_map`).
pub(super) struct MapMmap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: plain shared memory owned by this value, not tied to a thread.
unsafe impl Send for MapMmap {}
// SAFETY: `&self` hands out only the address; accesses are the users'.
unsafe impl Sync for MapMmap {}

impl MapMmap {
    /// Maps `len` bytes (rounded up to pages, as the kernel maps them) of the
    /// values of `map`, an array created `BPF_F_MMAPABLE`; `what` names it
    /// in errors (e.g. "RING array").
    pub(super) fn new(map: &aya::maps::Map, what: &'static str, len: usize) -> Result<Self> {
        let data = match map {
            aya::maps::Map::Array(data) => data,
            _ => return Err(Error::Missing(what)),
        };
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = len.div_ceil(page) * page;
        // SAFETY: a new shared mapping of the map's value area; the kernel
        // refuses (EINVAL) a length beyond the array's (its value area is
        // page-rounded too), or a map that is not mmapable. The mapping
        // keeps the map alive on its own.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Io(
                format!("mmap {what}"),
                std::io::Error::last_os_error(),
            ));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(Error::Missing(what))?;
        Ok(Self { base, len })
    }

    /// The page-aligned start of the mapping.
    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Mapped bytes (a whole number of pages, at least what was asked).
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for MapMmap {
    fn drop(&mut self) {
        // SAFETY: our mapping, of `len` bytes; nothing refers to it after
        // (users borrow it through `&self`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
