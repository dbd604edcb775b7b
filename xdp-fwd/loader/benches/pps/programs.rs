//! The bench's own small BPF programs, assembled here (no second eBPF
//! crate to build for a few dozen instructions):
//!
//! - the spray: rewrites the frame's Ethernet/IPv4/TCP header from a
//!   template with a distinct 5-tuple per frame, then tail-calls the
//!   program measured. Every path runs it, the floor too, so its cost
//!   cancels out of the comparison;
//! - the counter: counts each packet under its IPv4 protocol number and
//!   drops it, as the sink of what a path sends out (XDP on the veth
//!   peer, or tcx egress).

/// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R10: u8 = 10;

/// One instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64
        | ((dst | src << 4) as u64) << 8
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// Instruction opcodes used here (class | size/op | source).
mod op {
    pub const MOV_IMM: u8 = 0xb7;
    pub const MOV_REG: u8 = 0xbf;
    pub const ADD_IMM: u8 = 0x07;
    pub const ADD_REG: u8 = 0x0f;
    pub const SUB_REG: u8 = 0x1f;
    pub const DIV_IMM: u8 = 0x37;
    pub const MOD_IMM: u8 = 0x97;
    pub const TO_BE: u8 = 0xdc;
    pub const LDX_B: u8 = 0x71;
    pub const LDX_H: u8 = 0x69;
    pub const LDX_W: u8 = 0x61;
    pub const LDX_DW: u8 = 0x79;
    pub const STX_H: u8 = 0x6b;
    pub const STX_W: u8 = 0x63;
    pub const STX_DW: u8 = 0x7b;
    pub const ST_H: u8 = 0x6a;
    pub const ST_W: u8 = 0x62;
    pub const ATOMIC_DW: u8 = 0xdb;
    pub const JGT_REG: u8 = 0x2d;
    pub const JEQ_IMM: u8 = 0x15;
    pub const JNE_IMM: u8 = 0x55;
    pub const LD_IMM64: u8 = 0x18;
    pub const CALL: u8 = 0x85;
    pub const EXIT: u8 = 0x95;
}

/// Helpers called.
const MAP_LOOKUP_ELEM: i32 = 1;
const TAIL_CALL: i32 = 12;

/// `dst = map` (a map descriptor, resolved by the kernel at load).
fn ld_map(dst: u8, map_fd: i32) -> [u64; 2] {
    [insn(op::LD_IMM64, dst, 1, 0, map_fd), 0]
}

/// Frame header bytes the spray rewrites: Ethernet (14), IPv4 (20), TCP
/// ports (4), rounded up to whole words.
pub const HEADER: usize = 14 + 20 + 20;

/// Where the varying fields are in the frame.
const IP_ID: i16 = 18;
const SRC_LOW: i16 = 28;
const SPORT: i16 = 34;

/// Source ports per source address in the spray (then the address moves on).
pub const PORTS_PER_ADDRESS: u32 = 60_000;
/// First source port.
pub const FIRST_PORT: u32 = 1024;
/// IPv4 identification of frame 0; frame `f` carries `ID_BASE - f / PORTS_PER_ADDRESS`.
pub const ID_BASE: u16 = 0x8000;

/// The spray for `template` (an Ethernet/IPv4/TCP frame whose IP ID is
/// [`ID_BASE`] and whose source address's low 16 bits leave room for
/// `flows / PORTS_PER_ADDRESS` more): frame `i` of a run becomes flow
/// `c % flows` (c counts frames in `counter`, an array of one u64), with
/// source port `FIRST_PORT + f % PORTS_PER_ADDRESS`, source address low
/// half `+ f / PORTS_PER_ADDRESS`, and the IP ID lowered by as much, which
/// keeps the header checksum of the template valid. Then it tail-calls
/// entry 0 of `targets`; XDP_ABORTED if that fails.
pub fn spray(template: &[u8], flows: u32, counter_fd: i32, targets_fd: i32) -> Vec<u64> {
    assert!(template.len() >= 64 && flows > 0);
    let src_low = u16::from_be_bytes([template[SRC_LOW as usize], template[SRC_LOW as usize + 1]]);
    let mut p = vec![
        insn(op::MOV_REG, R6, R1, 0, 0),
        insn(op::LDX_W, R7, R6, 0, 0), // data
        insn(op::LDX_W, R3, R6, 4, 0), // data_end
        insn(op::MOV_REG, R2, R7, 0, 0),
        insn(op::ADD_IMM, R2, 0, 0, 64),
    ];
    let bounds_check = p.len();
    p.push(0); // if r2 > r3 goto abort (patched below)
    p.push(insn(op::ST_W, R10, 0, -4, 0));
    p.extend(ld_map(R1, counter_fd));
    p.push(insn(op::MOV_REG, R2, R10, 0, 0));
    p.push(insn(op::ADD_IMM, R2, 0, 0, -4));
    p.push(insn(op::CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    let null_check = p.len();
    p.push(0); // if r0 == 0 goto abort (patched below)
    p.push(insn(op::LDX_DW, R8, R0, 0, 0));
    p.push(insn(op::MOV_REG, R1, R8, 0, 0));
    p.push(insn(op::ADD_IMM, R1, 0, 0, 1));
    p.push(insn(op::STX_DW, R0, R1, 0, 0));
    p.push(insn(op::MOD_IMM, R8, 0, 0, flows as i32));
    // The template: whole words, then the last half word.
    for off in (0..HEADER - 2).step_by(4) {
        let w = u32::from_ne_bytes(template[off..off + 4].try_into().unwrap());
        p.push(insn(op::ST_W, R7, 0, off as i16, w as i32));
    }
    let off = HEADER - 2;
    let h = u16::from_ne_bytes(template[off..off + 2].try_into().unwrap());
    p.push(insn(op::ST_H, R7, 0, off as i16, h as i32));
    // Source port.
    p.push(insn(op::MOV_REG, R1, R8, 0, 0));
    p.push(insn(op::MOD_IMM, R1, 0, 0, PORTS_PER_ADDRESS as i32));
    p.push(insn(op::ADD_IMM, R1, 0, 0, FIRST_PORT as i32));
    p.push(insn(op::TO_BE, R1, 0, 0, 16));
    p.push(insn(op::STX_H, R7, R1, SPORT, 0));
    // Source address and IP ID, moved in opposite directions.
    p.push(insn(op::MOV_REG, R2, R8, 0, 0));
    p.push(insn(op::DIV_IMM, R2, 0, 0, PORTS_PER_ADDRESS as i32));
    p.push(insn(op::MOV_IMM, R3, 0, 0, src_low as i32));
    p.push(insn(op::ADD_REG, R3, R2, 0, 0));
    p.push(insn(op::TO_BE, R3, 0, 0, 16));
    p.push(insn(op::STX_H, R7, R3, SRC_LOW, 0));
    p.push(insn(op::MOV_IMM, R4, 0, 0, ID_BASE as i32));
    p.push(insn(op::SUB_REG, R4, R2, 0, 0));
    p.push(insn(op::TO_BE, R4, 0, 0, 16));
    p.push(insn(op::STX_H, R7, R4, IP_ID, 0));
    // Tail call.
    p.push(insn(op::MOV_REG, R1, R6, 0, 0));
    p.extend(ld_map(R2, targets_fd));
    p.push(insn(op::MOV_IMM, R3, 0, 0, 0));
    p.push(insn(op::CALL, 0, 0, 0, TAIL_CALL));
    let abort = p.len();
    p.push(insn(op::MOV_IMM, R0, 0, 0, 0));
    p.push(insn(op::EXIT, 0, 0, 0, 0));
    p[bounds_check] = insn(op::JGT_REG, R2, R3, (abort - bounds_check - 1) as i16, 0);
    p[null_check] = insn(op::JEQ_IMM, R0, 0, (abort - null_check - 1) as i16, 0);
    p
}

/// Entry of the counter's map for packets too short to hold an IPv4
/// header.
pub const SHORT: u32 = 255;
/// Entry of the counter's map for frames that are not IPv4 (neighbour
/// discovery and the like, which the checks leave aside).
pub const NOT_IPV4: u32 = 254;

/// The counter: `counts` (an array of 256 u64) entry by the packet's IPv4
/// protocol byte (or [`SHORT`], [`NOT_IPV4`]), then returns `verdict`.
/// `data_off` and `data_end_off` locate the packet pointers in the context
/// (xdp_md: 0 and 4; __sk_buff: 76 and 80); the packet starts with its
/// Ethernet header in both.
pub fn counter(counts_fd: i32, data_off: i16, data_end_off: i16, verdict: i32) -> Vec<u64> {
    let mut p = vec![
        insn(op::LDX_W, R2, R1, data_off, 0),
        insn(op::LDX_W, R3, R1, data_end_off, 0),
        insn(op::MOV_REG, R4, R2, 0, 0),
        insn(op::ADD_IMM, R4, 0, 0, 24),
        insn(op::MOV_IMM, R5, 0, 0, SHORT as i32),
        insn(op::JGT_REG, R4, R3, 4, 0),
        insn(op::MOV_IMM, R5, 0, 0, NOT_IPV4 as i32),
        insn(op::LDX_H, R0, R2, 12, 0),
        // Ethertype 0x0800, read little-endian.
        insn(op::JNE_IMM, R0, 0, 1, 0x0008),
        insn(op::LDX_B, R5, R2, 23, 0),
        insn(op::STX_W, R10, R5, -4, 0),
    ];
    p.extend(ld_map(R1, counts_fd));
    p.extend([
        insn(op::MOV_REG, R2, R10, 0, 0),
        insn(op::ADD_IMM, R2, 0, 0, -4),
        insn(op::CALL, 0, 0, 0, MAP_LOOKUP_ELEM),
        insn(op::JEQ_IMM, R0, 0, 2, 0),
        insn(op::MOV_IMM, R1, 0, 0, 1),
        insn(op::ATOMIC_DW, R0, R1, 0, 0), // lock *(u64 *)(r0 + 0) += r1
        insn(op::MOV_IMM, R0, 0, 0, verdict),
        insn(op::EXIT, 0, 0, 0, 0),
    ]);
    p
}
