//! Differential fuzz of the backend decap program: 250,000 frames (random
//! bytes, and IPIP / IP6IP6 / 4in6 / 6in4 / GUE frames as the forwarder
//! builds them, mutated) through the real program (BPF_PROG_TEST_RUN) and
//! through `xdp_decap::model`, failing on the first difference in verdict,
//! output frame or counters. Needs root.
//!
//! `EDGELB_FUZZ_SEED=<n>` runs another sequence, `EDGELB_FUZZ_FRAMES=<n>`
//! another count, `EDGELB_FUZZ_FRAME=<hex>` one frame alone.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use packet_builder::{headers, FrameBuilder, L4};
use xdp_decap::{model::DecapModel, DecapStats, Decapper};

const DEFAULT_SEED: u64 = 0xed6e_1b00_dec0_0001;
const DEFAULT_FRAMES: u64 = 250_000;
const BATCH: usize = 1000;
/// Time bound of a run (a full run takes seconds).
const MAX_RUN: Duration = Duration::from_secs(600);
const GUE_PORT: u16 = 6080;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The client's packet to a VIP.
fn inner(rng: &mut Rng) -> Vec<u8> {
    let v4 = rng.chance(50);
    let (src, dst) = if v4 {
        (ip("192.0.2.10"), ip("203.0.113.7"))
    } else {
        (ip("2001:db8::10"), ip("2001:db8:ffff::7"))
    };
    let l4 = if rng.chance(60) {
        L4::Tcp {
            sport: 40000 + rng.below(100) as u16,
            dport: 80,
            flags: rng.next() as u8,
        }
    } else {
        L4::Udp {
            sport: 40000 + rng.below(100) as u16,
            dport: 53,
        }
    };
    let n = rng.below(64) as usize;
    FrameBuilder::new(src, dst, l4)
        .payload(&rng.bytes(n))
        .ip_packet()
}

/// An encapsulated frame as the forwarder sends it, or another UDP / IP
/// packet to the backend.
fn encapsulated(rng: &mut Rng) -> Vec<u8> {
    let inner = inner(rng);
    let outer_v4 = rng.chance(50);
    let (src, dst) = if outer_v4 {
        (ip("172.16.1.2"), ip("10.200.0.1"))
    } else {
        (ip("fd00::1:2"), ip("fd00:200::1"))
    };
    let inner_proto = if inner[0] >> 4 == 4 { 4 } else { 41 };
    let (proto, payload) = match rng.below(14) {
        0..=3 => (inner_proto, inner),
        // Second hop, GUE form: variant 0, EdgeLB's private data.
        10 | 11 => {
            let hlen = if outer_v4 { 2 } else { 5 };
            let mut g = vec![
                hlen,
                inner_proto,
                0,
                0,
                0xe5,
                rng.below(2) as u8,
                if outer_v4 { 4 } else { 6 },
                0,
            ];
            g.extend_from_slice(&addr_bytes(if outer_v4 {
                ip("10.200.0.9")
            } else {
                ip("fd00:200::9")
            }));
            g.extend_from_slice(&inner);
            (
                17,
                headers::udp(src, dst, 0xc000 | rng.next() as u16 & 0x3fff, GUE_PORT, &g),
            )
        }
        // Second hop, IP-in-IP form: a marked middle header.
        12 | 13 => {
            let hopped = rng.chance(30);
            let middle = match (
                dst,
                if outer_v4 {
                    ip("10.200.0.9")
                } else {
                    ip("fd00:200::9")
                },
            ) {
                (IpAddr::V4(s), IpAddr::V4(d)) => headers::Ipv4Header {
                    src: s,
                    dst: d,
                    proto: inner_proto,
                    tos: 0,
                    ttl: 64,
                    id: if hopped { 0xe55f } else { 0xe55e },
                    dont_fragment: true,
                }
                .bytes(inner.len()),
                (IpAddr::V6(s), IpAddr::V6(d)) => headers::Ipv6Header {
                    src: s,
                    dst: d,
                    next: inner_proto,
                    traffic_class: 0,
                    flow_label: if hopped { 0xe55e1 } else { 0xe55e0 },
                    hop_limit: 64,
                }
                .bytes(inner.len()),
                _ => unreachable!(),
            };
            if hopped {
                // After the second hop the middle header is the outer one.
                let mut m = middle;
                m.extend_from_slice(&inner);
                let mut f = headers::ethernet(
                    [2, 0, 0, 0, 0, 2],
                    [2, 0, 0, 0, 0, 1],
                    None,
                    if outer_v4 { 0x0800 } else { 0x86dd },
                );
                f.extend_from_slice(&m);
                return f;
            }
            let mut m = middle;
            m.extend_from_slice(&inner);
            (if outer_v4 { 4 } else { 41 }, m)
        }
        4..=7 => {
            let port = if rng.chance(85) {
                GUE_PORT
            } else {
                rng.next() as u16
            };
            (
                17,
                headers::udp(src, dst, 0xc000 | rng.next() as u16 & 0x3fff, port, &inner),
            )
        }
        _ => (rng.next() as u8, inner),
    };
    let (ethertype, mut ip_hdr) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (
            0x0800,
            headers::Ipv4Header {
                src: s,
                dst: d,
                proto,
                tos: 0,
                ttl: 64,
                id: 0,
                dont_fragment: true,
            }
            .bytes(payload.len()),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => (
            0x86dd,
            headers::Ipv6Header {
                src: s,
                dst: d,
                next: proto,
                traffic_class: 0,
                flow_label: 7,
                hop_limit: 64,
            }
            .bytes(payload.len()),
        ),
        _ => unreachable!(),
    };
    if outer_v4 && rng.chance(5) {
        // A fragment: MF, or an offset.
        ip_hdr[6] = if rng.chance(50) { 0x20 } else { 0x01 };
    }
    let vlan = if rng.chance(5) { Some(7) } else { None };
    let mut f = headers::ethernet([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], vlan, ethertype);
    f.extend_from_slice(&ip_hdr);
    f.extend_from_slice(&payload);
    f
}

/// Bit flips, truncation at header boundaries, IHL / protocol / next
/// header / EtherType / port rewrites, trailing bytes.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let v4 = f.len() > 14 && f[14] >> 4 == 4;
        let l4 = 14
            + if v4 {
                usize::from(f[14] & 0x0f) * 4
            } else {
                40
            };
        match rng.below(8) {
            0 | 1 => {
                let at = rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
            2 => {
                let cuts = [
                    14,
                    15,
                    33,
                    34,
                    53,
                    54,
                    l4,
                    l4 + 7,
                    l4 + 8,
                    l4 + 9,
                    l4 + 13,
                    l4 + 14,
                    l4 + 22,
                    l4 + 28,
                ];
                let cut = cuts[rng.below(cuts.len() as u64) as usize].max(14);
                f.truncate(cut.min(f.len()));
            }
            3 if f.len() > 14 => f[14] = (f[14] & 0xf0) | (rng.next() as u8 & 0x0f),
            4 if f.len() > 23 => {
                let at = if v4 { 23 } else { 20 };
                f[at] = [4, 41, 17, 44, 0, rng.next() as u8][rng.below(6) as usize];
            }
            5 => {
                let et = [
                    [0x08, 0x00],
                    [0x86, 0xdd],
                    [0x81, 0x00],
                    [rng.next() as u8, 0],
                ];
                f[12..14].copy_from_slice(&et[rng.below(4) as usize]);
            }
            6 if f.len() > l4 + 4 => f[l4 + 2..l4 + 4].copy_from_slice(&GUE_PORT.to_be_bytes()),
            _ => {
                let n = rng.below(40) as usize;
                let tail = rng.bytes(n);
                f.extend_from_slice(&tail);
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
    }
}

fn frame(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let n = 14 + rng.below(100) as usize;
        return rng.bytes(n);
    }
    let mut f = encapsulated(rng);
    if rng.chance(60) {
        mutate(rng, &mut f);
    }
    f
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn add(a: DecapStats, b: DecapStats) -> DecapStats {
    DecapStats {
        ipip: a.ipip + b.ipip,
        gue: a.gue + b.gue,
        fragments: a.fragments + b.fragments,
        second_hop_forwarded: a.second_hop_forwarded + b.second_hop_forwarded,
        second_hop_delivered: a.second_hop_delivered + b.second_hop_delivered,
        second_hop_loop_refused: a.second_hop_loop_refused + b.second_hop_loop_refused,
        second_hop_invalid: a.second_hop_invalid + b.second_hop_invalid,
        second_hop_no_route: a.second_hop_no_route + b.second_hop_no_route,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

#[test]
fn decap_agrees_with_the_model_on_250k_frames() {
    let mut dec = Decapper::load(GUE_PORT).expect("load the decap program");
    let model = DecapModel { gue_port: GUE_PORT };
    let run = |dec: &mut Decapper, f: &[u8]| -> Result<DecapStats, String> {
        let want = model.step(f);
        let (verdict, out) = dec.test_run(f).map_err(|e| format!("test run: {e}"))?;
        if verdict != want.verdict || out != want.frame {
            return Err(format!(
                "program verdict {verdict} frame {}\n  model verdict {} frame {}",
                hex(&out),
                want.verdict,
                hex(&want.frame)
            ));
        }
        Ok(want.stats)
    };
    if let Ok(h) = std::env::var("EDGELB_FUZZ_FRAME") {
        let f: Vec<u8> = (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let before = dec.stats().unwrap();
        let want = run(&mut dec, &f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            dec.stats().unwrap(),
            add(before, want),
            "counters (program, model)"
        );
        return;
    }
    let seed = env_u64("EDGELB_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let total = env_u64("EDGELB_FUZZ_FRAMES").unwrap_or(DEFAULT_FRAMES);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut want_stats = dec.stats().unwrap();
    let mut done = 0u64;
    while done < total {
        // Bounded in time as well as in count (minutes above what it takes).
        assert!(
            started.elapsed() < MAX_RUN,
            "seed {seed:#x}: {done} frames in {:?}, past the time bound",
            started.elapsed()
        );
        let n = BATCH.min((total - done) as usize);
        let frames: Vec<Vec<u8>> = (0..n).map(|_| frame(&mut rng)).collect();
        let before = want_stats;
        for (i, f) in frames.iter().enumerate() {
            match run(&mut dec, f) {
                Ok(s) => want_stats = add(want_stats, s),
                Err(e) => panic!(
                    "seed {seed:#x}, frame {}: {e}\n  frame {}\n  replay: EDGELB_FUZZ_FRAME={}",
                    done + i as u64,
                    hex(f),
                    hex(f)
                ),
            }
        }
        if dec.stats().unwrap() != want_stats {
            let mut expect = dec.stats().unwrap();
            for (i, f) in frames.iter().enumerate() {
                let want = run(&mut dec, f).unwrap_or_else(|e| panic!("{e}"));
                let got = dec.stats().unwrap();
                expect = add(expect, want);
                assert_eq!(
                    got,
                    expect,
                    "seed {seed:#x}, frame {}: counters (program, model)\n  frame {}",
                    done + i as u64,
                    hex(f)
                );
            }
            panic!("seed {seed:#x}: counters differ over a batch (from {before:?}) but not frame by frame");
        }
        done += n as u64;
    }
    let s = dec.stats().unwrap();
    eprintln!(
        "decap diff_fuzz: {done} frames, seed {seed:#x}, {:.1} s; {s:?}",
        started.elapsed().as_secs_f64(),
    );
    assert!(
        s.ipip * 10 > done && s.gue * 10 > done,
        "too few decapsulated frames: {s:?}"
    );
}
