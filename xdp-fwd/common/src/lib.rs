//! Types shared by the EdgeLB XDP program (`xdp-fwd-ebpf`) and its userspace
//! loader (`xdp-fwd`). Everything here is `#[repr(C)]` plain data: the same bytes
//! are written by userspace into BPF maps and read by the kernel program.
#![no_std]

/// Address family tag used in [`VipKey::family`].
pub mod family {
    /// IPv4: only the first word of the address is used, the rest is zero.
    pub const V4: u8 = 4;
    /// IPv6: all four words are used.
    pub const V6: u8 = 6;
}

/// Key of the VIP map: (address, port, protocol). Port 0 means "all ports".
///
/// Addresses and the port are stored in network byte order, exactly as they
/// appear in the packet, so the program copies them without swapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Address in network byte order; IPv4 uses `addr[0]` only.
    pub addr: [u32; 4],
    /// Destination port in network byte order; 0 matches any port.
    pub port: u16,
    /// IP protocol number (6 = TCP, 17 = UDP).
    pub proto: u8,
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
}

/// Value of the VIP map: what the program needs to know about a VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipMeta {
    /// Bit set of `VIP_FLAG_*`.
    pub flags: u32,
    /// Dense index of the VIP: selects its Maglev table and its counters.
    pub index: u32,
}

/// Drop reasons, used as indices into the drop counter array.
pub mod drop_reason {
    /// The packet was for a VIP that has no usable backend.
    pub const NO_BACKEND: u32 = 0;
    /// Number of drop reasons (size of the counter array).
    pub const COUNT: u32 = 1;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are #[repr(C)] plain old data with no padding-dependent
    // invariants; any bit pattern is a valid value.
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipMeta {}
}
