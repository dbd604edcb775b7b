//! Differential fuzz of the forwarder: a million frames (random bytes, and
//! valid frames of every kind the fixtures cover, mutated) through the real
//! program (BPF_PROG_TEST_RUN, arriving on `fwd0` of a [`RouteLab`]) and
//! through the reference model (`xdp_fwd::model`), failing on the first
//! difference in verdict, output frame or counters. Needs root.
//!
//! - `EDGELB_FUZZ_SEED=<n>`: another frame sequence (the default is fixed);
//! - `EDGELB_FUZZ_FRAMES=<n>`: another frame count (default 1,000,000);
//! - `EDGELB_FUZZ_FRAME=<hex>`: runs that one frame alone (a replay).
//!
//! Deterministic set-up: routes and permanent neighbours in the lab
//! namespace, flood admission off, a UDP timeout longer than the run, the
//! thread pinned to CPU 0. Both connection caches are emptied at the start
//! of every batch (and when the model's LRU choice would depend on the
//! jiffies tick), so a batch whose counters differ is re-run one frame at
//! a time to find the first differing frame.

mod common;

use std::{collections::BTreeMap, net::IpAddr, time::Duration, time::Instant};

use common::*;
use packet_builder::{Fragment, FrameBuilder, L4};
use testbed::fuzz::{self, hex, Rng};
use xdp_fwd::{
    common::stats::{stat, STAT_NAMES},
    model::{Model, ModelConfig, ModelRoute, ModelVip, Outcome, RouteOutcome},
    verdict, Capacity, Encap, FloodThreshold, Forwarder, ForwarderSettings, HashFields,
    LoadOptions, Protocol, Stats, VipKey, VipOptions, NO_BACKEND,
};

const DEFAULT_SEED: u64 = 0xed6e_1b00_f022_0001;
const DEFAULT_FRAMES: u64 = 1_000_000;
/// Frames between counter comparisons (and cache resets).
const BATCH: usize = 1000;
/// Time bound of a run (a full run takes seconds).
const MAX_RUN: Duration = Duration::from_secs(600);
const GUE_PORT: u16 = 6080;
const M: usize = 13;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn settings() -> ForwarderSettings {
    ForwarderSettings {
        hash_seed: 0x5eed_0f22,
        gue_port: GUE_PORT,
        default_encap: Encap::IpIp,
        udp_timeout: Duration::from_secs(86_400),
        flood_threshold: FloodThreshold::Off,
        ..Default::default()
    }
}

const CAP: Capacity = Capacity {
    vips: 16,
    backends: 64,
    table_size: 251,
    flows: 64,
};

/// The VIPs: every encapsulation, hash mode, family mix and route
/// outcome; previous tables (second hop) that differ in some slots, in all
/// slots, only across families (never carried), and in size.
fn vips() -> Vec<ModelVip> {
    use HashFields::*;
    use Protocol::*;
    let rr = |n: usize| (0..M).map(|i| (i % n) as u32).collect::<Vec<_>>();
    let addrs = |b: &[&str]| b.iter().map(|a| ip(a)).collect::<Vec<_>>();
    let vip = |a: &str, port: u16, p: Protocol, hash, encap, backends: &[&str], slots: Vec<u32>| {
        ModelVip {
            key: VipKey::new(ip(a), port, p),
            options: VipOptions { hash, encap },
            backends: addrs(backends),
            slots,
            previous: None,
        }
    };
    let mut holes = rr(3);
    holes[4] = NO_BACKEND;
    holes[9] = NO_BACKEND;
    let mut v = vec![
        vip(
            "203.0.113.7",
            80,
            Tcp,
            FiveTuple,
            Encap::Default,
            &["10.200.0.1", "10.200.0.2", "10.200.0.3"],
            rr(3),
        ),
        vip(
            "203.0.113.7",
            0,
            Udp,
            FiveTuple,
            Encap::Gue,
            &["10.200.0.4", "fd00:200::4"],
            rr(2),
        ),
        vip(
            "203.0.113.8",
            443,
            Tcp,
            NoSourcePort,
            Encap::Gue,
            &["10.201.0.1", "10.202.0.1", "10.203.0.1", "10.204.0.1"],
            rr(4),
        ),
        vip(
            "203.0.113.8",
            0,
            Tcp,
            FiveTuple,
            Encap::IpIp,
            &["fd00:200::8", "10.200.0.8", "10.201.0.8"],
            holes,
        ),
        vip(
            "203.0.113.9",
            80,
            Tcp,
            FiveTuple,
            Encap::Default,
            &[],
            vec![],
        ),
        vip(
            "2001:db8:ffff::7",
            80,
            Tcp,
            FiveTuple,
            Encap::Default,
            &["fd00:200::1", "fd00:200::2", "fd00:200::3"],
            rr(3),
        ),
        vip(
            "2001:db8:ffff::7",
            0,
            Udp,
            DestinationPortOnly,
            Encap::Gue,
            &["fd00:200::5", "10.200.0.5"],
            rr(2),
        ),
        vip(
            "2001:db8:ffff::8",
            443,
            Tcp,
            NoSourcePort,
            Encap::Gue,
            &["fd00:200::6", "10.202.0.6", "fd00:300::6"],
            rr(3),
        ),
    ];
    v[0].previous = Some((addrs(&["10.200.0.1", "10.200.0.2", "10.200.0.9"]), rr(3)));
    v[1].previous = Some((addrs(&["fd00:200::4", "10.200.0.4"]), rr(2)));
    let mut short = rr(2);
    short.truncate(7);
    short[3] = NO_BACKEND;
    v[2].previous = Some((addrs(&["10.200.0.6", "10.202.0.1"]), short));
    v[5].previous = Some((addrs(&["fd00:200::3", "fd00:200::1", "fd00:200::2"]), rr(3)));
    v[6].previous = Some((addrs(&["fd00:200::7", "10.200.0.7"]), rr(2)));
    v
}

fn routes(fwd0: u32, fwd1: u32) -> Vec<ModelRoute> {
    let via = |ifindex, dmac, smac| RouteOutcome::Neighbour {
        ifindex,
        dmac,
        smac,
        mtu: 1500,
    };
    vec![
        ModelRoute {
            prefix: ip("10.200.0.0"),
            len: 16,
            outcome: via(fwd0, GW0_MAC, FWD0_MAC),
        },
        ModelRoute {
            prefix: ip("fd00:200::"),
            len: 64,
            outcome: via(fwd0, GW0_MAC, FWD0_MAC),
        },
        ModelRoute {
            prefix: ip("10.201.0.0"),
            len: 16,
            outcome: via(fwd1, GW1_MAC, FWD1_MAC),
        },
        ModelRoute {
            prefix: ip("10.202.0.0"),
            len: 16,
            outcome: RouteOutcome::NoNeighbour,
        },
        ModelRoute {
            prefix: ip("10.203.0.0"),
            len: 16,
            outcome: RouteOutcome::Unreachable,
        },
    ]
}

/// The program and the model, programmed alike.
fn set_up(lab: &RouteLab) -> (Forwarder, Model) {
    let mut fwd = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: CAP,
    })
    .expect("load and verify the XDP program");
    fwd.set_settings(&settings()).unwrap();
    for v in vips() {
        fwd.set_vip(v.key, v.options).unwrap();
        if !v.slots.is_empty() {
            let previous = v.previous.as_ref().map(|(b, s)| (&b[..], &s[..]));
            fwd.set_table_with_previous(&v.key, &v.backends, &v.slots, previous)
                .unwrap();
        }
    }
    fwd.add_tx_port("fwd1").unwrap();
    let fwd1 = lab.ns.ifindex("fwd1");
    let model = Model::new(ModelConfig {
        settings: settings(),
        vips: vips(),
        routes: routes(lab.fwd0, fwd1),
        ingress_ifindex: lab.fwd0,
        tx_ports: vec![fwd1],
        conn_sets: xdp_fwd::common::conn_sets(CAP.flows).unwrap(),
    });
    (fwd, model)
}

// ----- frames ------------------------------------------------------------------

const V4_VIPS: [&str; 3] = ["203.0.113.7", "203.0.113.8", "203.0.113.9"];
const V6_VIPS: [&str; 2] = ["2001:db8:ffff::7", "2001:db8:ffff::8"];

fn address(rng: &mut Rng, v4: bool, vip: bool) -> IpAddr {
    if vip {
        return ip(if v4 {
            rng.pick(&V4_VIPS)
        } else {
            rng.pick(&V6_VIPS)
        });
    }
    let host = if rng.chance(80) {
        rng.below(48) as u8 + 1
    } else {
        rng.next() as u8
    };
    match (v4, rng.chance(85)) {
        (true, true) => IpAddr::from([192, 0, 2, host]),
        (false, true) => ip(&format!("2001:db8::{host:x}")),
        (true, false) => IpAddr::from(
            rng.next().to_be_bytes()[..4]
                .try_into()
                .map(|a: [u8; 4]| a)
                .unwrap(),
        ),
        (false, false) => {
            IpAddr::from(((rng.next() as u128) << 64 | rng.next() as u128).to_be_bytes())
        }
    }
}

fn port(rng: &mut Rng, service: bool) -> u16 {
    if service {
        rng.pick(&[80, 443, 53, 80, 443, 22, GUE_PORT])
    } else if rng.chance(80) {
        40000 + rng.below(32) as u16
    } else {
        rng.next() as u16
    }
}

/// A valid frame of one of the kinds the fixtures cover.
fn base_frame(rng: &mut Rng) -> FrameBuilder {
    let v4 = rng.chance(50);
    let to_vip = rng.chance(75);
    let client = address(rng, v4, false);
    let dst = address(rng, v4, to_vip);
    let l4 = match rng.below(10) {
        0..=4 => L4::Tcp {
            sport: port(rng, false),
            dport: port(rng, true),
            flags: {
                let any = rng.next() as u8;
                rng.pick(&[0x02, 0x10, 0x18, 0x12, 0x11, 0x04, any])
            },
        },
        5..=7 => L4::Udp {
            sport: port(rng, false),
            dport: port(rng, true),
        },
        _ => {
            let (echo, too_big) = if v4 {
                ((8, 0), (3, 4))
            } else {
                ((128, 0), (2, 0))
            };
            let any = (rng.next() as u8, rng.next() as u8);
            let (kind, code) = rng.pick(&[echo, too_big, too_big, any]);
            let mut b = FrameBuilder::new(
                client,
                dst,
                L4::Icmp {
                    kind,
                    code,
                    rest: [0, 0, 5, 0xdc],
                },
            );
            if (kind, code) == too_big {
                // The quote: a backend's packet from the VIP to the client.
                let l4 = if rng.chance(70) {
                    L4::Tcp {
                        sport: port(rng, true),
                        dport: port(rng, false),
                        flags: 0x10,
                    }
                } else {
                    L4::Udp {
                        sport: port(rng, true),
                        dport: port(rng, false),
                    }
                };
                let quoted = FrameBuilder::new(dst, client, l4).ip_packet();
                let keep = (quoted.len()).min(rng.below(80) as usize + 24);
                b = b.payload(&quoted[..keep]);
            } else {
                let n = rng.below(64) as usize;
                b = b.payload(&rng.bytes(n));
            }
            return decorate(rng, b);
        }
    };
    let n = if rng.chance(5) {
        1400 + rng.below(140) as usize
    } else {
        rng.below(80) as usize
    };
    let payload = rng.bytes(n);
    decorate(rng, FrameBuilder::new(client, dst, l4).payload(&payload))
}

/// VLAN tags, IPv4 options, fragments, ToS, DF.
fn decorate(rng: &mut Rng, mut b: FrameBuilder) -> FrameBuilder {
    b = b.macs(
        [0x02, 0, 0, 0, 0, 0xaa],
        [0x02, 0, 0, 0, 0x0c, rng.next() as u8],
    );
    if rng.chance(10) {
        b = b.vlan(rng.next() as u16 & 0x0fff);
    }
    if b.src.is_ipv4() && rng.chance(10) {
        let n = 4 * (1 + rng.below(10) as usize);
        b = b.ipv4_options(&vec![1u8; n]);
    }
    if rng.chance(4) {
        b = b.fragment(Fragment {
            offset: rng.below(4) as u16 * 185,
            more: rng.chance(50),
            id: rng.next() as u32,
        });
    }
    b.dont_fragment = rng.chance(70);
    b.tos(if rng.chance(30) { rng.next() as u8 } else { 0 })
}

/// Offset of the IP header (after an optional 802.1Q tag).
fn l3_of(f: &[u8]) -> usize {
    if f.len() >= 14 && f[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

/// An IPv6 extension header inserted after the fixed header.
fn add_ext_header(rng: &mut Rng, f: &mut Vec<u8>) {
    let l3 = l3_of(f);
    if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return;
    }
    let next = f[l3 + 6];
    f[l3 + 6] = rng.pick(&[0, 43, 60, 51, 135]);
    let mut ext = vec![next, 0];
    ext.extend_from_slice(&rng.bytes(6));
    f.splice(l3 + 40..l3 + 40, ext);
    let len = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]).wrapping_add(8);
    f[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
}

/// One to three mutations: bit flips, truncation at header boundaries,
/// lying lengths, bad data offsets, other EtherTypes, trailing bytes.
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(3) {
        let l3 = l3_of(f);
        let v4 = f.len() > l3 && f[l3] >> 4 == 4;
        let ihl = if v4 {
            usize::from(f[l3] & 0x0f) * 4
        } else {
            40
        };
        let l4 = l3 + ihl;
        match rng.below(10) {
            0 | 1 => {
                let at = rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
            2 => {
                let cuts = [
                    14,
                    18,
                    l3 + 1,
                    l3 + 19,
                    l3 + 20,
                    l3 + 39,
                    l3 + 40,
                    l4 + 4,
                    l4 + 7,
                    l4 + 8,
                    l4 + 13,
                    l4 + 19,
                    l4 + 20,
                    l4 + 28,
                    l4 + 47,
                    l4 + 48,
                ];
                let cut = (rng.pick(&cuts)).max(14);
                f.truncate(cut.min(f.len()));
            }
            3 if f.len() >= l3 + 6 => {
                // A total length / payload length that lies.
                let at = if v4 { l3 + 2 } else { l3 + 4 };
                let old = u16::from_be_bytes([f[at], f[at + 1]]);
                let new = match rng.below(3) {
                    0 => rng.next() as u16,
                    1 => old.wrapping_add(1 + rng.below(24) as u16),
                    _ => old.wrapping_sub(1 + rng.below(24) as u16),
                };
                f[at..at + 2].copy_from_slice(&new.to_be_bytes());
            }
            4 if v4 && f.len() > l3 => f[l3] = 0x40 | (rng.next() as u8 & 0x0f),
            5 if f.len() > l4 + 12 => f[l4 + 12] = (rng.next() as u8) & 0xf0,
            6 => {
                let any = [rng.next() as u8, 0];
                let et = rng.pick(&[[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00], [0x88, 0xa8], any]);
                let at = if rng.chance(50) || f.len() < l3 {
                    12
                } else {
                    l3 - 2
                };
                f[at..at + 2].copy_from_slice(&et);
            }
            7 => {
                let n = rng.below(40) as usize;
                let tail = rng.bytes(n);
                f.extend_from_slice(&tail);
            }
            8 if f.len() >= l4 + 4 => f[l4 + 2..l4 + 4].copy_from_slice(&GUE_PORT.to_be_bytes()),
            _ => {
                let at = rng.below(f.len() as u64) as usize;
                f[at] = rng.next() as u8;
            }
        }
        if f.len() < 14 {
            f.resize(14, 0);
        }
    }
}

fn frame(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(8) {
        let n = 14 + rng.below(120) as usize;
        return rng.bytes(n);
    }
    let mut f = base_frame(rng).build();
    if rng.chance(4) {
        add_ext_header(rng, &mut f);
    }
    if rng.chance(55) {
        mutate(rng, &mut f);
    }
    f
}

// ----- comparison ------------------------------------------------------------------

/// Every counter as (name, value), VIP and backend traffic included.
fn flat(s: &Stats) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = s.named().map(|(n, v)| (n.to_string(), v)).collect();
    for (vip, t) in &s.vips {
        m.insert(format!("vip {vip} packets"), t.packets);
        m.insert(format!("vip {vip} bytes"), t.bytes);
    }
    for (b, t) in &s.backends {
        m.insert(format!("backend {b} packets"), t.packets);
        m.insert(format!("backend {b} bytes"), t.bytes);
    }
    m
}

fn delta(before: &Stats, after: &Stats) -> BTreeMap<String, u64> {
    let b = flat(before);
    flat(after)
        .into_iter()
        .map(|(k, v)| {
            let d = v - b.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .filter(|(_, d)| *d != 0)
        .collect()
}

fn outcome_delta(outcomes: &[Outcome]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        for (i, c) in o.counters.iter().enumerate() {
            *m.entry(STAT_NAMES[i].to_string()).or_insert(0) += c;
        }
        if let Some((vip, bytes)) = o.vip_traffic {
            *m.entry(format!("vip {vip} packets")).or_insert(0) += 1;
            *m.entry(format!("vip {vip} bytes")).or_insert(0) += bytes;
        }
        if let Some((b, bytes)) = o.backend_traffic {
            *m.entry(format!("backend {b} packets")).or_insert(0) += 1;
            *m.entry(format!("backend {b} bytes")).or_insert(0) += bytes;
        }
    }
    m.retain(|_, v| *v != 0);
    m
}

fn verdict_name(v: u32) -> &'static str {
    ["ABORTED", "DROP", "PASS", "TX", "REDIRECT"]
        .get(v as usize)
        .copied()
        .unwrap_or("?")
}

/// Runs one frame through both; `Err` describes a verdict or frame
/// difference.
fn run_one(
    lab: &RouteLab,
    fwd: &mut Forwarder,
    model: &mut Model,
    f: &[u8],
) -> Result<Outcome, String> {
    let mut want = model.step(f);
    if want.tick_dependent {
        fwd.clear_conn_cache().unwrap();
        model.clear_cache();
        want = model.step(f);
    }
    let got = fwd
        .test_run_on(f, lab.fwd0, 1)
        .map_err(|e| format!("test run: {e}"))?;
    if got.verdict != want.verdict {
        return Err(format!(
            "verdict: program {} model {}",
            verdict_name(got.verdict),
            verdict_name(want.verdict)
        ));
    }
    // A dropped frame's bytes go nowhere.
    if want.verdict != verdict::DROP && got.frame != want.frame {
        return Err(format!(
            "output frame ({}):\n  program {}\n  model   {}",
            verdict_name(got.verdict),
            hex(&got.frame),
            hex(&want.frame)
        ));
    }
    Ok(want)
}

#[test]
fn forwarder_agrees_with_the_model_on_a_million_frames() {
    let lab = RouteLab::new("dfuzz");
    let seed = fuzz::seed(DEFAULT_SEED);
    let total = fuzz::frames(DEFAULT_FRAMES);
    let replay = fuzz::replay_frame();
    lab.ns.run(|| {
        let (mut fwd, mut model) = set_up(&lab);
        if let Some(f) = replay {
            let before = fwd.stats().unwrap();
            let want = run_one(&lab, &mut fwd, &mut model, &f).unwrap_or_else(|e| panic!("{e}"));
            let got = delta(&before, &fwd.stats().unwrap());
            assert_eq!(got, outcome_delta(&[want]), "counters (program, model)");
            return;
        }
        let started = Instant::now();
        let mut rng = Rng::new(seed);
        let mut verdicts = [0u64; 5];
        let (mut second_hops, mut evictions) = (0u64, 0u64);
        let mut done = 0u64;
        let mut batch_no = 0u64;
        while done < total {
            // Bounded in time as well as in count (minutes above what it takes).
            assert!(
                started.elapsed() < MAX_RUN,
                "seed {seed:#x}: {done} frames in {:?}, past the time bound",
                started.elapsed()
            );
            let n = BATCH.min((total - done) as usize);
            let frames: Vec<Vec<u8>> = (0..n).map(|_| frame(&mut rng)).collect();
            fwd.clear_conn_cache().unwrap();
            model.clear_cache();
            let before = fwd.stats().unwrap();
            let mut outcomes = Vec::with_capacity(n);
            for (i, f) in frames.iter().enumerate() {
                match run_one(&lab, &mut fwd, &mut model, f) {
                    Ok(o) => outcomes.push(o),
                    Err(e) => panic!(
                        "seed {seed:#x}, batch {batch_no}, frame {i}: {e}\n  frame {}\n  replay: EDGELB_FUZZ_FRAME={} (alone) or EDGELB_FUZZ_SEED={seed:#x}",
                        hex(f),
                        hex(f)
                    ),
                }
            }
            let got = delta(&before, &fwd.stats().unwrap());
            if got != outcome_delta(&outcomes) {
                // Same starting point again, then frame by frame.
                fwd.clear_conn_cache().unwrap();
                model.clear_cache();
                for (i, f) in frames.iter().enumerate() {
                    let before = fwd.stats().unwrap();
                    let want = run_one(&lab, &mut fwd, &mut model, f).unwrap_or_else(|e| panic!("{e}"));
                    let got = delta(&before, &fwd.stats().unwrap());
                    assert_eq!(
                        got,
                        outcome_delta(&[want]),
                        "seed {seed:#x}, batch {batch_no}, frame {i}: counters (left program, right model)\n  frame {}",
                        hex(f)
                    );
                }
                panic!("seed {seed:#x}, batch {batch_no}: counters differ over the batch but not frame by frame");
            }
            for o in &outcomes {
                verdicts[o.verdict as usize] += 1;
                second_hops += o.counters[stat::SECOND_HOP_SENT as usize];
                evictions += o.counters[stat::LRU_EVICTED as usize];
            }
            done += n as u64;
            batch_no += 1;
        }
        eprintln!(
            "diff_fuzz: {done} frames, seed {seed:#x}, {:.1} s; verdicts aborted/drop/pass/tx/redirect = {verdicts:?}; second hops {second_hops}, evictions {evictions}",
            started.elapsed().as_secs_f64()
        );
        // The frames must reach every outcome, or the fuzz tests little.
        for (v, n) in verdicts.iter().enumerate().skip(1) {
            assert!(*n * 1000 > done, "verdict {} only {n} times", verdict_name(v as u32));
        }
        assert!(second_hops * 1000 > done, "only {second_hops} second hops");
    });
}
