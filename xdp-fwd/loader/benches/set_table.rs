//! Time of `Forwarder::set_table` installing one full 65,537-slot Maglev
//! table (every slot of the inactive RING half differs), median of rounds.
//!
//! Run (root): `cargo bench -p xdp-fwd --bench set_table` (optional
//! argument: rounds, default 21).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use testbed::stats;
use xdp_fwd::{Capacity, Forwarder, LoadOptions, Protocol, VipKey, VipOptions};

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    let table_size = 65537u32;
    let mut fwd = Forwarder::load_with(LoadOptions {
        pin_dir: None,
        capacity: Capacity {
            vips: 2,
            backends: 256,
            table_size,
            flows: 1024,
        },
    })
    .expect("load the forwarder (root)");
    let vip = VipKey::new("203.0.113.7".parse().unwrap(), 80, Protocol::Tcp);
    fwd.set_vip(vip, VipOptions::default()).unwrap();
    let backends: Vec<IpAddr> = (1..=100)
        .map(|i| format!("10.200.0.{i}").parse().unwrap())
        .collect();
    // Three tables in turn: the inactive half always holds the one from two
    // installs ago, which differs from the next in every slot.
    let tables: Vec<Vec<u32>> = (0..3)
        .map(|k| (0..table_size).map(|i| (i + k) % 100).collect())
        .collect();
    let mut times_us = Vec::with_capacity(rounds);
    for round in 0..rounds + 2 {
        // Past the half-reuse grace, so the figure is the writing alone.
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        let written = fwd.set_table(&vip, &backends, &tables[round % 3]).unwrap();
        let took = start.elapsed();
        // The first two fill halves that held nothing.
        if round >= 2 {
            assert_eq!(written, table_size as usize, "a full table each round");
            times_us.push(took.as_secs_f64() * 1e6);
        }
    }
    let median = stats::median(&times_us);
    println!(
        "set_table of {table_size} slots, {rounds} rounds: median {median:.0} us \
         ({:.1} ns/slot), min {:.0} us, max {:.0} us",
        median * 1000.0 / f64::from(table_size),
        times_us.iter().cloned().fold(f64::INFINITY, f64::min),
        times_us.iter().cloned().fold(0.0, f64::max),
    );
}
