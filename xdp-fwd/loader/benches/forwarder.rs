//! Per-packet cost of the forwarder from BPF_PROG_TEST_RUN, beside a
//! trivial XDP_PASS program measured in the same run (the harness floor).
//!
//! Run (root): `CARGO_TARGET_DIR=/work/main/target-xdp cargo bench -p xdp-fwd --bench forwarder`
//! Optional: `-- <rounds> <loop_repeat>` (defaults 20000 and 1000000).
//!
//! Figures per case:
//! - median of `rounds` runs with repeat=1 (each run gets a fresh copy of
//!   the frame); the cases are interleaved round by round so machine noise
//!   hits them alike; beside it the interquartile mean of the same runs,
//!   which resolves differences smaller than the kernel's duration steps;
//! - the kernel's own average over one run with a large repeat. The kernel
//!   reuses the (modified) buffer between repeats, so this figure is only
//!   meaningful for cases that leave the frame as it was (non-VIP pass and
//!   the floor); after the first repeat an encapsulated frame is no longer
//!   addressed to a VIP. It is printed for those cases only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{net::IpAddr, time::Duration};

use common::*;
use packet_builder::{tcp_flags, FrameBuilder, L4};
use xdp_fwd::{
    verdict, Capacity, Forwarder, ForwarderSettings, LoadOptions, Protocol, Vip, VipOptions,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Case {
    name: &'static str,
    /// Frames sent in turn, one per round (distinct flows for the new-flow
    /// case, so every run really inserts a connection-table entry).
    frames: Vec<Vec<u8>>,
    /// Frame sent once before measuring (creates the connection entry).
    prime: Option<Vec<u8>>,
    verdict: u32,
    /// Whether the program leaves the frame unchanged (loop figure valid).
    unchanged: bool,
}

/// Loads `n` two-instruction XDP programs (kept open) so that the programs
/// loaded after them get JIT images `n` 64-byte chunks further into the
/// kernel's program pack. Where code and data land moves a single run's
/// figures by tens of ns (cache set conflicts); varying it across runs
/// (`EDGELB_BENCH_SHIFT`, set per run by scripts/bench-xdp-compare.sh)
/// spreads that placement effect evenly over the builds compared.
fn occupy_jit_chunks(n: usize) -> Vec<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // mov r0, XDP_PASS; exit
    let insns: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    (0..n)
        .map(|_| {
            // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license.
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&6u32.to_ne_bytes()); // BPF_PROG_TYPE_XDP
            attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
            attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
            attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
            // SAFETY: a valid bpf_attr of the size passed.
            let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len()) };
            assert!(fd >= 0, "BPF_PROG_LOAD: {}", std::io::Error::last_os_error());
            // SAFETY: a new descriptor owned by nothing else.
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
        })
        .collect()
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Mean of the middle half of the samples: as robust to outliers as the
/// median, but finer than the kernel's duration steps (often 10 ns here), so
/// small differences between builds show.
fn interquartile_mean(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    let mid = &v[v.len() / 4..v.len() - v.len() / 4];
    mid.iter().sum::<u64>() as f64 / mid.len().max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with('-')).collect();
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let loop_repeat: u32 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);

    let lab = RouteLab::new("bench");
    let table_size = 65537;
    let capacity = Capacity {
        vips: 8,
        backends: 256,
        table_size,
        flows: 65536,
    };
    let b4: Vec<IpAddr> = (1..=100).map(|i| ip(&format!("10.200.0.{i}"))).collect();
    let b6: Vec<IpAddr> = (1..=100).map(|i| ip(&format!("fd00:200::{i:x}"))).collect();
    let table: Vec<u32> = (0..table_size as usize).map(|i| (i % 100) as u32).collect();

    let tcp4_from = |client: IpAddr, sport: u16, flags| {
        FrameBuilder::new(
            client,
            ip("203.0.113.7"),
            L4::Tcp {
                sport,
                dport: 80,
                flags,
            },
        )
        .payload(&[0u8; 64])
        .build()
    };
    let tcp4 = |flags| tcp4_from(ip("192.0.2.10"), 40000, flags);
    // One distinct client (address, port) per round.
    let new_flows: Vec<Vec<u8>> = (0..rounds)
        .map(|i| {
            tcp4_from(
                IpAddr::from([198, 18, (i >> 8) as u8 & 0x7f, i as u8]),
                1024 + (i % 60000) as u16,
                tcp_flags::SYN,
            )
        })
        .collect();
    let cases = vec![
        Case {
            name: "non-VIP pass",
            frames: vec![FrameBuilder::new(
                ip("192.0.2.10"),
                ip("198.51.100.1"),
                L4::Tcp {
                    sport: 40000,
                    dport: 80,
                    flags: tcp_flags::ACK,
                },
            )
            .payload(&[0u8; 64])
            .build()],
            prime: None,
            verdict: verdict::PASS,
            unchanged: true,
        },
        Case {
            name: "TCP SYN (new flow)",
            frames: new_flows,
            prime: None,
            verdict: verdict::TX,
            unchanged: false,
        },
        Case {
            name: "TCP SYN (one flow repeated, warm cache)",
            frames: vec![tcp4(tcp_flags::SYN)],
            prime: None,
            verdict: verdict::TX,
            unchanged: false,
        },
        Case {
            name: "TCP established (LRU hit)",
            frames: vec![tcp4(tcp_flags::ACK)],
            prime: Some(tcp4(tcp_flags::SYN)),
            verdict: verdict::TX,
            unchanged: false,
        },
        Case {
            name: "UDP established",
            frames: vec![FrameBuilder::new(
                ip("192.0.2.10"),
                ip("203.0.113.7"),
                L4::Udp {
                    sport: 5353,
                    dport: 53,
                },
            )
            .payload(&[0u8; 64])
            .build()],
            prime: Some(
                FrameBuilder::new(
                    ip("192.0.2.10"),
                    ip("203.0.113.7"),
                    L4::Udp {
                        sport: 5353,
                        dport: 53,
                    },
                )
                .payload(&[0u8; 64])
                .build(),
            ),
            verdict: verdict::TX,
            unchanged: false,
        },
        Case {
            name: "IPv6 TCP established",
            frames: vec![FrameBuilder::new(
                ip("2001:db8::10"),
                ip("2001:db8:ffff::7"),
                L4::Tcp {
                    sport: 40000,
                    dport: 80,
                    flags: tcp_flags::ACK,
                },
            )
            .payload(&[0u8; 64])
            .build()],
            prime: Some(
                FrameBuilder::new(
                    ip("2001:db8::10"),
                    ip("2001:db8:ffff::7"),
                    L4::Tcp {
                        sport: 40000,
                        dport: 80,
                        flags: tcp_flags::SYN,
                    },
                )
                .payload(&[0u8; 64])
                .build(),
            ),
            verdict: verdict::TX,
            unchanged: false,
        },
    ];

    let fwd0 = lab.fwd0;
    let shift: usize = std::env::var("EDGELB_BENCH_SHIFT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    lab.ns.run(|| {
        let _placement = occupy_jit_chunks(shift);
        let mut fwd = Forwarder::load_with(LoadOptions { pin_dir: None, capacity }).unwrap();
        fwd.set_settings(&ForwarderSettings { hash_seed: 1, udp_timeout: Duration::from_secs(3600), ..Default::default() }).unwrap();
        for (vip, backends) in [
            (Vip::new(ip("203.0.113.7"), 80, Protocol::Tcp), &b4),
            (Vip::new(ip("203.0.113.7"), 53, Protocol::Udp), &b4),
            (Vip::new(ip("2001:db8:ffff::7"), 80, Protocol::Tcp), &b6),
        ] {
            fwd.set_vip(vip, VipOptions::default()).unwrap();
            fwd.set_table(&vip, backends, &table).unwrap();
        }
        for c in &cases {
            if let Some(p) = &c.prime {
                fwd.test_run_on(p, fwd0, 1).unwrap();
            }
            let out = fwd.test_run_on(&c.frames[0], fwd0, 1).unwrap();
            assert_eq!(out.verdict, c.verdict, "{}", c.name);
        }
        let floor_frame = &cases[0].frames[0];

        // Interleaved repeat=1 runs.
        let mut floor = Vec::with_capacity(rounds);
        let mut samples: Vec<Vec<u64>> = cases.iter().map(|_| Vec::with_capacity(rounds)).collect();
        for round in 0..rounds {
            floor.push(fwd.test_run_pass(floor_frame, 1).unwrap().duration.as_nanos() as u64);
            for (c, s) in cases.iter().zip(samples.iter_mut()) {
                let frame = &c.frames[round % c.frames.len()];
                s.push(fwd.test_run_on(frame, fwd0, 1).unwrap().duration.as_nanos() as u64);
            }
        }
        let floor_med = median(&mut floor);
        let floor_iqm = interquartile_mean(&mut floor);
        let floor_loop = fwd.test_run_pass(floor_frame, loop_repeat).unwrap().duration.as_nanos() as u64;

        let (xlated, jited) = fwd.program_size().unwrap();
        println!("xdp_fwd program: {xlated} bytes verified bytecode ({} insns), {jited} bytes JIT code", xlated / 8);
        println!("object file: {} bytes", xdp_fwd::PROGRAM_OBJECT.len());
        println!("rounds={rounds} loop_repeat={loop_repeat} table_size={table_size} backends=100 shift={shift}");
        println!();
        // Elimination builds (a step cut out so the frame stays unchanged)
        // can ask for the loop figure of every case.
        let loop_all = std::env::var_os("EDGELB_BENCH_LOOP_ALL").is_some();
        println!("| case | median ns (repeat=1) | minus floor | interquartile mean minus floor | ratio to floor | loop avg ns (repeat={loop_repeat}) |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!("| trivial XDP_PASS (floor) | {floor_med} | 0 | 0.0 | 1.00 | {floor_loop} |");
        for (c, s) in cases.iter().zip(samples.iter_mut()) {
            let med = median(s);
            let iqm = interquartile_mean(s);
            let looped = if c.unchanged || loop_all {
                fwd.test_run_on(&c.frames[0], fwd0, loop_repeat).unwrap().duration.as_nanos().to_string()
            } else {
                "n/a (frame modified)".to_string()
            };
            println!(
                "| {} | {med} | {} | {:.1} | {:.2} | {looped} |",
                c.name,
                med as i64 - floor_med as i64,
                iqm - floor_iqm,
                med as f64 / floor_med.max(1) as f64
            );
        }
    });
}
