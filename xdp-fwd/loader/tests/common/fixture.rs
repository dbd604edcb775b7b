//! The set-up the BPF_PROG_TEST_RUN fixtures (`tests/test_run/`) share:
//! the forwarder they load, its settings and capacities, frame builders,
//! and the check that a frame was forwarded byte for byte.

use std::net::IpAddr;

use packet_builder::{FrameBuilder, L4};
use xdp_fwd::{
    verdict, Capacity, Forwarder, ForwarderSettings, LoadOptions, Protocol, VipKey, VipOptions,
};

use super::{
    expected_encap, hash_of, round_robin_table, rr_backend, Expect, InNamespace, RouteLab,
    FWD0_MAC, GW0_MAC,
};

/// Small map capacities: the fixtures need few VIPs, backends and flows.
pub const CAP: Capacity = Capacity {
    vips: 16,
    backends: 64,
    table_size: 251,
    flows: 1024,
};

/// Table size used by the fixtures (prime, like real Maglev tables).
pub const M: usize = 13;

/// The data-plane settings every fixture programs (a fixed hash seed).
pub fn settings() -> ForwarderSettings {
    ForwarderSettings {
        hash_seed: 0x5eed_0001,
        gue_port: 6080,
        ..Default::default()
    }
}

/// The set-up nearly every fixture starts with: the program loaded and
/// verified with [`CAP`], nothing pinned, [`settings`] written.
pub fn forwarder() -> Forwarder {
    let mut f = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: CAP,
    })
    .expect("load and verify the XDP program");
    f.set_settings(&settings()).unwrap();
    f
}

/// Parses an address literal.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP frame builder.
pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> FrameBuilder {
    FrameBuilder::new(
        ip(src),
        ip(dst),
        L4::Tcp {
            sport,
            dport,
            flags,
        },
    )
}

/// A UDP frame builder.
pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> FrameBuilder {
    FrameBuilder::new(ip(src), ip(dst), L4::Udp { sport, dport })
}

/// Adds `vip` with `options` and a round-robin table over `backends`.
pub fn serve(fwd: &mut Forwarder, vip: VipKey, options: VipOptions, backends: &[&str]) {
    let b: Vec<IpAddr> = backends.iter().map(|s| ip(s)).collect();
    fwd.set_vip(vip, options).unwrap();
    fwd.set_table(&vip, &b, &round_robin_table(M, b.len()))
        .unwrap();
}

/// A forwarder serving TCP port 80 on 203.0.113.7 (over [`V4_BACKENDS`])
/// and on 2001:db8:ffff::7 (over [`V6_BACKENDS`]), default options.
pub fn forwarder_with_tcp_80_vips() -> Forwarder {
    let mut fwd = forwarder();
    for (vip, backends) in [
        ("203.0.113.7", &V4_BACKENDS[..]),
        ("2001:db8:ffff::7", &V6_BACKENDS[..]),
    ] {
        serve(
            &mut fwd,
            VipKey::new(ip(vip), 80, Protocol::Tcp),
            VipOptions::default(),
            backends,
        );
    }
    fwd
}

/// (hash, backend) the program must pick for a new flow of `frame`.
pub fn expected_choice(frame: &FrameBuilder, backends: &[&str], flags: u32) -> (u32, IpAddr) {
    let (sport, dport, proto) = match frame.l4 {
        L4::Tcp { sport, dport, .. } => (sport, dport, 6),
        L4::Udp { sport, dport } => (sport, dport, 17),
        L4::Icmp { .. } => panic!("not a flow"),
    };
    let h = hash_of(
        frame.src,
        frame.dst,
        sport,
        dport,
        proto,
        settings().hash_seed,
        flags,
    );
    (h, ip(backends[rr_backend(h, M, backends.len())]))
}

/// Runs `frame` on fwd0 and checks XDP_TX with the exact expected frame.
pub fn assert_forwarded(
    lab: &RouteLab,
    fwd: &mut Forwarder,
    frame: &FrameBuilder,
    backends: &[&str],
    flags: u32,
    mode: Expect,
) -> IpAddr {
    let (hash, backend) = expected_choice(frame, backends, flags);
    let out = lab
        .ns
        .run(|| fwd.test_run_on(&frame.build(), lab.fwd0, 1))
        .unwrap();
    assert_eq!(out.verdict, verdict::TX, "verdict for {frame:?}");
    let want = expected_encap(frame, &settings(), backend, hash, mode, GW0_MAC, FWD0_MAC);
    assert_eq!(hex(&out.frame), hex(&want), "frame for {frame:?}");
    backend
}

/// Bytes as hex, so a frame mismatch shows where it differs.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The outer destination of an encapsulated frame (no VLAN).
pub fn outer_dst(frame: &[u8]) -> IpAddr {
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => IpAddr::from(<[u8; 4]>::try_from(&frame[30..34]).unwrap()),
        0x86dd => IpAddr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap()),
        t => panic!("not IP: ethertype {t:#x}"),
    }
}

/// IPv4 backends, routed through `fwd0` in a [`RouteLab`].
pub const V4_BACKENDS: [&str; 3] = ["10.200.0.1", "10.200.0.2", "10.200.0.3"];

/// IPv6 backends, routed through `fwd0` in a [`RouteLab`].
pub const V6_BACKENDS: [&str; 3] = ["fd00:200::1", "fd00:200::2", "fd00:200::3"];
