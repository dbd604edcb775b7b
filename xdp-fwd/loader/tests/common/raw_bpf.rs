//! bpf(2) calls the benchmarks issue themselves, for what aya has no call
//! for: bare programs from hand-assembled instructions, their maps and
//! links, and live-frame test runs (BPF_F_TEST_XDP_LIVE_FRAMES).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use super::bpf_cmd;

/// BPF_MAP_LOOKUP_ELEM.
const MAP_LOOKUP_ELEM: i64 = 1;
/// BPF_MAP_UPDATE_ELEM.
const MAP_UPDATE_ELEM: i64 = 2;
/// BPF_LINK_CREATE.
const LINK_CREATE: i64 = 28;

/// Program types (`enum bpf_prog_type`).
pub mod prog_type {
    /// BPF_PROG_TYPE_SCHED_CLS (tc / tcx).
    pub const SCHED_CLS: u32 = 3;
    /// BPF_PROG_TYPE_XDP.
    pub const XDP: u32 = 6;
}

/// Map types (`enum bpf_map_type`).
pub mod map_type {
    /// BPF_MAP_TYPE_ARRAY.
    pub const ARRAY: u32 = 2;
    /// BPF_MAP_TYPE_PROG_ARRAY.
    pub const PROG_ARRAY: u32 = 3;
}

/// Attach types (`enum bpf_attach_type`).
pub mod attach_type {
    /// BPF_XDP.
    pub const XDP: u32 = 37;
    /// BPF_TCX_EGRESS.
    pub const TCX_EGRESS: u32 = 47;
}

/// bpf(2) that reports failure instead of panicking (set-ups that may be
/// unsupported on a kernel).
///
/// # Safety
/// As [`bpf_syscall`].
unsafe fn try_bpf(cmd: i64, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: the caller's contract.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `insns` as a program of `prog_type` (GPL, `expected_attach_type`
/// as given). On rejection the error carries the verifier's log.
pub fn load_program(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[u64],
) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&1u32.to_ne_bytes()); // log_level
    attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
    attr[68..72].copy_from_slice(&expected_attach_type.to_ne_bytes());
    // SAFETY: the instructions, the license and the log outlive the call.
    match unsafe { try_bpf(bpf_cmd::PROG_LOAD, &mut attr) } {
        // SAFETY: a new descriptor owned by nothing else.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(io::Error::new(
                e.kind(),
                format!(
                    "BPF_PROG_LOAD: {e}\n{}",
                    String::from_utf8_lossy(&log[..end])
                ),
            ))
        }
    }
}

/// A two-instruction program returning `action`.
pub fn trivial_insns(action: u32) -> [u64; 2] {
    // mov r0, action; exit
    [
        0x0000_0000_0000_00b7 | (action as u64) << 32,
        0x0000_0000_0000_0095,
    ]
}

/// Loads a two-instruction XDP program returning `action` (kept open).
pub fn trivial_program(action: u32) -> OwnedFd {
    load_program(prog_type::XDP, 0, &trivial_insns(action)).expect("trivial XDP program")
}

/// Creates a map of `map_type` with 4-byte keys and `value_size`-byte values.
pub fn create_map(map_type: u32, value_size: u32, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&map_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&4u32.to_ne_bytes());
    attr[8..12].copy_from_slice(&value_size.to_ne_bytes());
    attr[12..16].copy_from_slice(&max_entries.to_ne_bytes());
    // SAFETY: no pointers.
    let fd = unsafe { try_bpf(bpf_cmd::MAP_CREATE, &mut attr) }?;
    // SAFETY: a new descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sets entry `key` of a map with 4-byte values (a program array: a
/// program descriptor).
pub fn update_u32(map: BorrowedFd, key: u32, value: u32) -> io::Result<()> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(&key as *const u32 as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(&value as *const u32 as u64).to_ne_bytes());
    // SAFETY: key and value outlive the call.
    unsafe { try_bpf(MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

/// Entry `key` of an array map of u64 values.
pub fn lookup_u64(map: BorrowedFd, key: u32) -> io::Result<u64> {
    let mut value = 0u64;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(&key as *const u32 as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(&mut value as *mut u64 as u64).to_ne_bytes());
    // SAFETY: key and value outlive the call.
    unsafe { try_bpf(MAP_LOOKUP_ELEM, &mut attr) }?;
    Ok(value)
}

/// Attaches `prog` to interface `ifindex` (of the calling thread's
/// namespace) with a BPF link of `attach_type`; detached when the returned
/// descriptor closes.
pub fn attach_link(prog: BorrowedFd, ifindex: u32, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    // SAFETY: no pointers.
    let fd = unsafe { try_bpf(LINK_CREATE, &mut attr) }?;
    // SAFETY: a new descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The newest loaded program called `name`: the one this process just
/// loaded (the loader does not hand out its program descriptors).
pub fn newest_program(name: &str) -> aya::programs::ProgramFd {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(name))
        .max_by_key(|p| p.id())
        .expect("program loaded")
        .fd()
        .unwrap()
}

/// BPF_PROG_TEST_RUN of `prog` in live-frame mode
/// (BPF_F_TEST_XDP_LIVE_FRAMES, batches of 64): `repeat` frames from a
/// page pool filled with `frame` once, arriving on `ifindex`, verdicts
/// carried out (XDP_TX really transmits, XDP_PASS enters the stack).
/// Returns the kernel's ns per frame.
pub fn live_frames_ns(
    prog: BorrowedFd,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
) -> io::Result<u32> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: Vec<u8> = [0u32, frame.len() as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    // union bpf_attr, the BPF_PROG_TEST_RUN part.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes()); // data_size_in
    attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes()); // data_in
    attr[32..36].copy_from_slice(&repeat.to_ne_bytes());
    attr[40..44].copy_from_slice(&(ctx.len() as u32).to_ne_bytes()); // ctx_size_in
    attr[48..56].copy_from_slice(&(ctx.as_ptr() as u64).to_ne_bytes()); // ctx_in
    attr[64..68].copy_from_slice(&2u32.to_ne_bytes()); // BPF_F_TEST_XDP_LIVE_FRAMES
    attr[72..76].copy_from_slice(&64u32.to_ne_bytes()); // batch_size

    // SAFETY: the frame and the context outlive the call.
    unsafe { try_bpf(bpf_cmd::PROG_TEST_RUN, &mut attr) }
        .map_err(|e| io::Error::new(e.kind(), format!("BPF_PROG_TEST_RUN (live frames): {e}")))?;
    Ok(u32::from_ne_bytes(attr[36..40].try_into().unwrap())) // duration
}
